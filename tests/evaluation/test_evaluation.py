"""Evaluators give the numbers a direct computation gives; sharding changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowlib
from flowlib import data, evaluation, io, metrics
from flowlib.data import synthetic
from flowlib.models._outputs import FlowOutput, StereoOutput

REPO = Path(__file__).resolve().parents[2]


class ConstantFlow(nn.Module):
    """Predicts the same flow (u, v) everywhere: metrics are then known in closed form."""

    u: float = 0.0
    v: float = 0.0

    @nn.compact
    def __call__(self, image1, image2, *, train=False):
        bias = self.param("bias", nn.initializers.zeros, (2,))
        flow = jnp.zeros(image1.shape[:3] + (2,)) + jnp.array([self.u, self.v]) + bias
        return FlowOutput(flow=flow, aux={})


class ConstantDisparity(nn.Module):
    d: float = 0.0

    @nn.compact
    def __call__(self, left, right, *, train=False):
        bias = self.param("bias", nn.initializers.zeros, ())
        return StereoOutput(disparity=jnp.zeros(left.shape[:3]) + self.d + bias, aux={})


def _model(module, task="flow"):
    x = jnp.zeros((1, 16, 16, 3))
    return flowlib.Model("const", module, module.init(jax.random.PRNGKey(0), x, x), task=task,
                         meta={"weights": "none"})


@pytest.fixture(scope="module")
def sintel_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("sintel")
    synthetic.write_sintel_layout(root, scenes=2, frames=3, seed=5, height=40, width=64)
    return root


def test_sintel_matches_direct_computation(sintel_tree):
    model = _model(ConstantFlow(u=1.5, v=-0.5))
    samples = data.index_sintel(sintel_tree, pass_="clean")
    result = evaluation.evaluate_sintel(model, samples, progress=False)
    epes, occ = [], []
    for s in samples:
        gt, valid = io.read_flow(s.target)
        e = np.hypot(1.5 - gt[..., 0], -0.5 - gt[..., 1])
        epes.append(e[valid])
        occ.append(io.read_grey(s.masks["occlusions"])[valid] > 0)
    e, o = np.concatenate(epes), np.concatenate(occ)
    assert result.metrics["epe"] == pytest.approx(e.mean(), rel=1e-6)
    assert result.metrics["epe_matched"] == pytest.approx(e[~o].mean(), rel=1e-6)
    if o.any():
        assert result.metrics["epe_unmatched"] == pytest.approx(e[o].mean(), rel=1e-6)
    assert result.num_pairs == 4 and set(result.groups) == {"synthetic_1", "synthetic_2"}
    assert result.metrics["1px"] == pytest.approx((e < 1).mean(), rel=1e-6)
    record = json.loads(result.to_json())
    assert record["record"]["device_count"] >= 1 and "jax" in record["record"]
    assert "overall" in result.table()


def test_kitti_flow_uses_per_image_mean_and_pooled_fl(tmp_path):
    # Two images with very different valid-pixel counts make the two aggregations differ.
    root = tmp_path / "kitti"
    for folder in ("image_2", "flow_occ"):
        (root / "training" / folder).mkdir(parents=True)
    expect_epe, fl_out, fl_n = [], 0, 0
    for i, (u, frac) in enumerate(((4.0, 0.9), (1.0, 0.1))):
        img = np.full((24, 32, 3), 100, np.uint8)
        io.write_image(root / f"training/image_2/{i:06d}_10.png", img)
        io.write_image(root / f"training/image_2/{i:06d}_11.png", img)
        flow = np.zeros((24, 32, 2), np.float32)
        flow[..., 0] = u
        valid = np.zeros((24, 32), bool)
        valid.flat[: int(frac * valid.size)] = True
        io.write_kitti_flow(root / f"training/flow_occ/{i:06d}_10.png", flow, valid=valid)
        expect_epe.append(u)  # prediction is zero: EPE = |u| everywhere
        fl_out += valid.sum() * (u > 3)
        fl_n += valid.sum()
    res = evaluation.evaluate_kitti_flow(_model(ConstantFlow()), data.index_kitti_flow(root), progress=False)
    assert res.metrics["epe"] == pytest.approx(np.mean(expect_epe))
    assert res.metrics["epe_pooled"] != pytest.approx(res.metrics["epe"])
    assert res.metrics["fl"] == pytest.approx(100 * fl_out / fl_n)
    assert res.benchmark == "kitti2015-flow-all"


def test_kitti_stereo_d1(tmp_path):
    root = tmp_path / "kitti"
    for folder in ("image_2", "image_3", "disp_occ_0"):
        (root / "training" / folder).mkdir(parents=True)
    img = np.full((20, 30, 3), 50, np.uint8)
    io.write_image(root / "training/image_2/000000_10.png", img)
    io.write_image(root / "training/image_3/000000_10.png", img)
    gt = np.linspace(1, 80, 600, dtype=np.float32).reshape(20, 30)
    io.write_kitti_disparity(root / "training/disp_occ_0/000000_10.png", gt)
    res = evaluation.evaluate_kitti_stereo(_model(ConstantDisparity(d=10.0), "stereo"),
                                           data.index_kitti_stereo(root), progress=False)
    gt_q, valid = io.read_kitti_disparity(root / "training/disp_occ_0/000000_10.png")
    err = np.abs(10.0 - gt_q[valid])
    assert res.metrics["epe"] == pytest.approx(err.mean(), rel=1e-5)
    assert res.metrics["d1"] == pytest.approx(100 * np.mean((err > 3) & (err > 0.05 * gt_q[valid])), rel=1e-6)


def test_submission_roundtrip_and_zip(tmp_path, sintel_tree):
    model = _model(ConstantFlow(u=2.0, v=1.0))
    samples = data.index_sintel(sintel_tree, pass_="final")
    out = evaluation.write_submission(model, samples, tmp_path / "sub", zip=True, progress=False)
    assert out.suffix == ".zip"
    flo = tmp_path / "sub" / "final" / "synthetic_1" / "frame0001.flo"
    flow, valid = io.read_flow(flo)
    assert valid.all() and np.allclose(flow, [2.0, 1.0])
    import zipfile

    names = zipfile.ZipFile(out).namelist()
    assert "final/synthetic_1/frame0001.flo" in names and len(names) >= 4
    # resume skips existing files (they are complete: each was written atomically)
    os.utime(flo, (1, 1))
    evaluation.write_submission(model, samples, tmp_path / "sub", resume=True, progress=False)
    assert os.stat(flo).st_mtime == 1


def test_real_sintel_and_middlebury(shared):
    model = _model(ConstantFlow())
    samples = data.index_sintel(shared / "data" / "sintel", pass_="final")
    res = evaluation.evaluate_sintel(model, samples, progress=False)
    gt, valid = io.read_flow(samples[0].target)
    invalid = io.read_grey(samples[0].masks["invalid"]) > 0
    mag = np.hypot(gt[..., 0], gt[..., 1])[valid & ~invalid]
    assert res.metrics["epe"] == pytest.approx(mag.mean(), rel=1e-5)
    assert res.metrics["s0-10"] == pytest.approx(mag[mag < 10].mean(), rel=1e-5)
    mb = evaluation.evaluate_middlebury_flow(model, data.index_middlebury_flow(shared / "data" / "middlebury-flow"),
                                             progress=False)
    per_scene = []
    for s in data.index_middlebury_flow(shared / "data" / "middlebury-flow"):
        gt, valid = io.read_flow(s.target)
        per_scene.append(np.hypot(gt[..., 0], gt[..., 1])[valid].mean())
    assert mb.metrics["epe"] == pytest.approx(np.mean(per_scene), rel=1e-5)
    st = evaluation.evaluate_middlebury_stereo(_model(ConstantDisparity(d=5.0), "stereo"),
                                               data.index_middlebury_stereo(shared / "data" / "middlebury-stereo"),
                                               progress=False)
    assert 0 < st.metrics["bad2_nonocc"] < 100 and set(st.groups) == {"tsukuba", "venus"}


_SHARDED = r"""
import json, sys, jax, jax.numpy as jnp
sys.path.insert(0, {tests!r})
from evaluation.test_evaluation import ConstantFlow, _model
from flowlib import data, evaluation
model = _model(ConstantFlow(u=0.75, v=0.25))
samples = data.index_sintel({root!r}, pass_="clean")
res = evaluation.evaluate_sintel(model, samples, batch_size=4, progress=False)
print(json.dumps({{"devices": jax.device_count(), "metrics": res.metrics}}))
"""


def test_sharded_evaluation_equals_single_device(sintel_tree):
    single = evaluation.evaluate_sintel(_model(ConstantFlow(u=0.75, v=0.25)),
                                        data.index_sintel(sintel_tree, pass_="clean"), progress=False)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    code = _SHARDED.format(tests=str(REPO / "tests"), root=str(sintel_tree))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 4
    for k, v in single.metrics.items():
        assert out["metrics"][k] == pytest.approx(v, rel=1e-6, nan_ok=True), k


# ------------------------------------------------------------------- result tables


def test_middlebury_stereo_reports_a_non_occluded_epe(tmp_path):
    scene = tmp_path / "mb" / "scene"
    scene.mkdir(parents=True)
    img = np.full((16, 24, 3), 90, np.uint8)
    io.write_image(scene / "imL.png", img)
    io.write_image(scene / "imR.png", img)
    gt = np.full((16, 24), 8 * 8, np.uint8)  # scale 8: 8 px on the left, 12 px on the right
    gt[:, 12:] = 12 * 8
    io.write_image(scene / "groundtruth.png", gt)
    nonocc = np.zeros((16, 24), np.uint8)
    nonocc[:, :12] = 255
    io.write_image(scene / "nonocc.png", nonocc)
    io.write_image(scene / "all.png", np.full((16, 24), 255, np.uint8))
    (scene / "info.txt").write_text("8\n16\n")
    result = evaluation.evaluate_middlebury_stereo(_model(ConstantDisparity(d=5.0), "stereo"),
                                                   data.index_middlebury_stereo(tmp_path / "mb"),
                                                   progress=False)
    assert result.metrics["epe_nonocc"] == pytest.approx(3.0)  # |5 - 8| on the left half
    assert result.metrics["epe_all"] == pytest.approx(5.0)  # (3 + 7) / 2


def test_kitti_noc_only_tree_suggests_gt_noc(tmp_path):
    root = tmp_path / "kitti"
    for folder in ("image_2", "flow_noc"):
        (root / "training" / folder).mkdir(parents=True)
    with pytest.raises(ValueError, match=r"flow_occ.*only non-occluded ground truth \(flow_noc\)"
                                         r": use gt='noc' \(--gt noc\)"):
        evaluation.kitti.index_kitti(root, task="flow")
    with pytest.raises(ValueError, match="image_2") as err:  # other layout errors unchanged
        evaluation.kitti.index_kitti(tmp_path, task="flow")
    assert "--gt noc" not in str(err.value)
    # A full tree missing one ground-truth file is not told it has only noc ground truth.
    for name in ("000000_10.png", "000000_11.png"):
        (root / "training" / "image_2" / name).write_bytes(b"")
    (root / "training" / "flow_occ").mkdir()
    with pytest.raises(ValueError, match="flow_occ") as err:
        evaluation.kitti.index_kitti(root, task="flow")
    assert "--gt noc" not in str(err.value)
    # The stereo indexer gives the same hint.
    for folder in ("image_3", "disp_noc_0"):
        (root / "training" / folder).mkdir()
    with pytest.raises(ValueError, match=r"disp_occ_0.*only non-occluded ground truth "
                                         r"\(disp_noc_0\): use gt='noc' \(--gt noc\)"):
        evaluation.kitti.index_kitti(root, task="stereo")


def _result(figures, groups):
    return evaluation.EvaluationResult("demo", figures, groups, 2, {})


def test_table_columns_do_not_depend_on_arrival_order():
    a = _result({"1px": 0.5, "epe_pooled": 2.0, "epe": 1.0, "zz": 3.0},
                {"0": {"1px": 0.4, "epe": 1.5}, "1": {"epe": 0.5, "1px": 0.6}})
    b = _result({"zz": 3.0, "epe": 1.0, "1px": 0.5, "epe_pooled": 2.0},
                {"0": {"epe": 1.5, "1px": 0.4}, "1": {"1px": 0.6, "epe": 0.5}})
    assert a.table() == b.table() and a.to_json() == b.to_json()
    assert list(a.metrics) == ["epe", "epe_pooled", "1px", "zz"]


def test_table_labels_fractions_and_leaves_missing_figures_blank():
    table = _result({"epe": 1.0, "epe_pooled": 2.0, "1px": 0.5, "3px": 0.7, "5px": 0.9},
                    {"000000": {"epe": 1.0}}).table()
    row = next(line for line in table.splitlines() if line.startswith("000000"))
    assert "nan" not in table and row.split() == ["000000", "1.0000"]
    assert "1px/3px/5px: fraction (0-1) of pixels with EPE below 1/3/5 px" in table


def test_json_has_null_not_nan():
    text = _result({"epe": float("nan"), "fl": float("inf"), "d1": 1.0},
                   {"g": {"epe": float("nan")}}).to_json()

    def refuse(name):
        raise AssertionError(f"bare {name} in the JSON")

    record = json.loads(text, parse_constant=refuse)
    assert record["metrics"] == {"d1": 1.0, "epe": None, "fl": None}
    assert record["groups"]["g"]["epe"] is None
