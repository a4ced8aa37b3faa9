"""flowlib evaluate, the one evaluation front-end (``python -m benchmarks.sintel|kitti|
middlebury`` forward to it): tables, JSON records, synthetic sets, several passes and tasks,
submissions, journals and --resume, --save-viz, and the checks of its flags.

The models are stand-ins (zero flow, constant 3 px disparity), so every figure is computed
by hand from the ground truth files and nothing compiles a network.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

import flowlib
from flowlib import _zoo, cli, io
from flowlib.data import synthetic
from tests._stand_ins import constant_stereo, zero_flow

H, W = 48, 64


@pytest.fixture(autouse=True)
def _home(monkeypatch, tmp_path):
    monkeypatch.setenv("FLOWLIB_OFFLINE", "1")
    monkeypatch.setenv("FLOWLIB_HOME", str(tmp_path / "home"))


@pytest.fixture
def stand_ins(monkeypatch):
    """flowlib.load_model gives zero flow or constant 3 px disparity, by the task of the
    model named; the names asked for are recorded."""
    asked = []

    def load(name, weights=None, **options):
        asked.append((name, weights, {k: v for k, v in options.items()
                                      if k not in ("progress", "dtype")}))
        return zero_flow() if _zoo.spec(name).task == "flow" else constant_stereo(columns=0)

    monkeypatch.setattr(flowlib, "load_model", load)
    return asked


def _zero_flow_epe(gt_files: list[Path]) -> tuple[float, float]:
    """(pixel-pooled, per-image mean) EPE of zero flow: the mean |gt| over valid pixels."""
    sums, counts = [], []
    for path in gt_files:
        gt, valid = io.read_flow(path)
        sums.append(np.linalg.norm(gt.astype(np.float64), axis=-1)[valid].sum())
        counts.append(valid.sum())
    return sum(sums) / sum(counts), float(np.mean(np.divide(sums, counts)))


def test_sintel_passes_table_and_json(tmp_path, capsys, stand_ins):
    root = synthetic.write_sintel_layout(tmp_path / "sintel", scenes=1, frames=3, seed=3,
                                         height=H, width=W)
    out = tmp_path / "r.json"
    assert cli.main(["evaluate", "sintel", "--root", str(root), "--json", str(out), "-q",
                     "--batch-size", "2"]) == 0
    printed = capsys.readouterr().out
    assert "sintel-clean  (2 pairs)\n" in printed and "sintel-final  (2 pairs)\n" in printed
    assert "SYNTHETIC" not in printed and f"wrote {out}" in printed
    records = json.loads(out.read_text())
    assert [r["benchmark"] for r in records] == ["sintel-clean", "sintel-final"]
    pooled, _ = _zero_flow_epe(sorted((root / "training" / "flow").rglob("*.flo")))
    for r in records:  # zero flow: the same EPE on both passes, pooled over the pixels
        assert r["num_pairs"] == 2 and r["metrics"]["epe"] == pytest.approx(pooled, rel=1e-6)
        assert r["record"]["root"] == str(root.resolve()) and r["record"]["synthetic"] is False
    assert cli.main(["evaluate", "sintel", "--root", str(root), "--pass", "final", "--limit",
                     "1", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "sintel-final  (1 pair)" in printed and "sintel-clean" not in printed


def test_without_a_root_the_synthetic_set_is_rendered_once_and_named_in_the_table(
        capsys, stand_ins, tmp_path):
    argv = ["evaluate", "middlebury-flow", "-q", "--json", str(tmp_path / "r.json")]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    title = printed.splitlines()[0]
    assert title.startswith("middlebury-flow  (2 pairs)  SYNTHETIC: a small set flowlib "
                            "renders itself")
    root = synthetic.benchmark_set("middlebury-flow")
    assert root.is_relative_to(tmp_path / "home")
    (record,) = json.loads((tmp_path / "r.json").read_text())
    _, per_image = _zero_flow_epe(sorted((root / "other-gt-flow").rglob("flow10.flo")))
    assert record["metrics"]["epe"] == pytest.approx(per_image, rel=1e-6)
    assert record["record"]["synthetic"] is True
    rendered = {p: p.stat().st_mtime_ns for p in root.rglob("*.png")}
    assert cli.main(argv) == 0  # the cached set is reused, not rendered again
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.png")} == rendered


def test_kitti_both_tasks_viz_journals_and_resume(tmp_path, capsys, stand_ins):
    root = tmp_path / "kitti"
    synthetic.write_kitti_layout(root, task="flow", pairs=2, height=H, width=W, seed=1)
    synthetic.write_kitti_layout(root, task="stereo", pairs=2, height=H, width=W, seed=2)
    argv = ["evaluate", "kitti", "--root", str(root), "--json", str(tmp_path / "a.json"),
            "--save-viz", str(tmp_path / "viz"), "--journal-dir", str(tmp_path / "j"), "-q",
            "--max-disp", "32"]
    assert cli.main(argv) == 0
    first = json.loads((tmp_path / "a.json").read_text())
    names = ["kitti2015-flow-all", "kitti2015-flow-noc", "kitti2015-stereo-all",
             "kitti2015-stereo-noc"]
    assert [r["benchmark"] for r in first] == names
    # One stand-in per task, the model settings going to the model whose task has them.
    assert [(_zoo.spec(n).task, o) for n, _, o in stand_ins] == [("flow", {}),
                                                                  ("stereo", {"maxdisp": 32})]
    training = root / "training"
    _, flow_epe = _zero_flow_epe(sorted((training / "flow_occ").glob("*.png")))
    assert first[0]["metrics"]["epe"] == pytest.approx(flow_epe, rel=1e-6)
    disp, valid = zip(*(io.read_disparity(p) for p in sorted((training / "disp_noc_0").glob("*"))))
    per_image = [np.abs(3.0 - d.astype(np.float64))[v].mean() for d, v in zip(disp, valid)]
    assert first[3]["metrics"]["epe"] == pytest.approx(np.mean(per_image), rel=1e-6)
    # Colour-coded predictions, once per task (the noc tables score the same predictions).
    pictures = sorted(p.relative_to(tmp_path / "viz").as_posix()
                      for p in (tmp_path / "viz").rglob("*.png"))
    assert pictures == [f"{kind}_{i:06d}_10.png" for kind in ("disp_0", "flow") for i in range(2)]
    np.testing.assert_array_equal(
        io.read_image(tmp_path / "viz" / "disp_0_000001_10.png", dtype="uint8"),
        flowlib.viz.disparity_to_rgb(np.full((H, W), 3.0)))
    capsys.readouterr()
    # Every pair is in a journal: --resume evaluates nothing again and gives the same figures.
    stand_ins.clear()
    argv[argv.index(str(tmp_path / "a.json"))] = str(tmp_path / "b.json")
    assert cli.main(argv + ["--resume"]) == 0
    printed = capsys.readouterr().out
    assert all(f"{name.replace('-all', '-occ')}: resuming, 2 pairs already evaluated" in printed
               for name in names)
    second = json.loads((tmp_path / "b.json").read_text())
    assert [r["metrics"] for r in second] == [r["metrics"] for r in first]


def test_sintel_test_split_submission_and_zip(tmp_path, capsys, stand_ins):
    root = synthetic.write_sintel_layout(tmp_path / "sintel", scenes=1, frames=2, seed=3,
                                         height=H, width=W)
    (root / "training").rename(root / "test")
    sub = tmp_path / "sub"
    assert cli.main(["evaluate", "sintel", "--root", str(root), "--submission", str(sub),
                     "--zip", "-q"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote 1 flow prediction under {sub}" in printed and f"wrote {sub}.zip" in printed
    written = sorted(p.relative_to(sub).as_posix() for p in sub.rglob("*.flo"))
    assert written == ["clean/synthetic_1/frame0001.flo", "final/synthetic_1/frame0001.flo"]
    files = [n for n in zipfile.ZipFile(f"{sub}.zip").namelist() if not n.endswith("/")]
    assert sorted(files) == written
    flow, valid = io.read_flow(sub / written[0])
    assert valid.all() and not flow.any()


@pytest.mark.parametrize("argv, message", [
    (["kitti", "--pass", "clean"], "--pass is for sintel, not kitti"),
    (["sintel", "--gt", "noc"], "--gt is for kitti, not sintel"),
    (["middlebury", "--submission", "s"], "--submission is for sintel and kitti, not middlebury"),
    (["sintel", "--split", "testing"], "--split testing: sintel's split without ground truth "
                                       "is 'test'"),
    (["kitti", "--split", "testing"], "--split testing has no ground truth: pass --submission"),
    (["sintel", "--zip"], "--zip zips the submission folder"),
    (["sintel", "--task", "flow"], "--task is for kitti and middlebury, not sintel"),
    (["kitti-flow", "--task", "stereo"], "--task stereo: kitti-flow is flow only"),
    (["kitti-flow", "--stereo-root", "."], "--stereo-root: this run has no stereo task"),
    (["sintel", "--stereo-model", "m"], "--stereo-model / --stereo-weights: this run has no "
                                        "stereo task"),
    (["middlebury", "--root", "."], "Middlebury's flow and stereo sets are separate folders"),
    (["kitti-flow", "--root", ".", "--max-disp", "8"], "--max-disp applies to"),
    (["kitti-stereo", "--root", ".", "--model", "m", "--stereo-weights", "w"],
     "takes --model/--weights or --stereo-model/--stereo-weights, not both"),
])
def test_flags_that_do_not_fit_the_benchmark_are_usage_errors(tmp_path, capsys, argv, message,
                                                               stand_ins, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        cli.main(["evaluate", *argv])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err
    assert stand_ins == []


@pytest.mark.parametrize("script, argv, message", [
    ("sintel", ["--year", "2012"], "--year is for kitti, not sintel"),
    ("kitti", ["--pass", "clean"], "--pass is for sintel, not kitti"),
    ("middlebury", ["--pass", "clean"], "--pass is for sintel, not middlebury"),
])
def test_the_benchmark_scripts_are_flowlib_evaluate(capsys, script, argv, message):
    import importlib

    with pytest.raises(SystemExit) as stop:
        importlib.import_module(f"benchmarks.{script}").main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: flowlib evaluate") and message in err
