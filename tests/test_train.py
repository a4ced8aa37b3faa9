"""Training loop: it learns, it writes loadable weights, and a killed run resumes exactly."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import flowlib
from flowlib.data import synthetic
from flowlib.train import TrainConfig, _checkpoint, train
from flowlib.weights import flatten, load_weights

# A tiny SpyNet run: 3 pyramid levels on 32 x 48 crops, one network shared by all levels.
_TINY = dict(model="spynet", data="synthetic", batch_size=2, crop=(32, 48), lr=1e-3, warmup=2,
             schedule="constant", model_kwargs={"num_networks": 1, "max_levels": 3}, workers=1,
             progress=False, log_every=1)


def _cli(out: Path, steps: int, every: int) -> list[str]:
    return [sys.executable, "-m", "flowlib.train", "spynet", "--steps", str(steps), "--batch-size", "2",
            "--crop", "32", "48", "--lr", "1e-3", "--warmup", "2", "--schedule", "constant",
            "--model-kwargs", json.dumps(_TINY["model_kwargs"]), "--workers", "1", "--no-progress",
            "--log-every", "1", "--checkpoint-every", str(every), "--out", str(out)]


@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> tuple[Path, TrainConfig, dict]:
    """A finished 60-step run (checkpoints at steps 20, 40, 60): its folder, configuration and
    result, shared by the tests that only read it or refuse to resume it (each copies it
    before changing anything)."""
    root = tmp_path_factory.mktemp("short_run")
    # One small FlyingChairs-layout pair: random crops/flips/jitter of it are learnable in 60 steps.
    synthetic.write_chairs_layout(root / "chairs", 1, seed=3, height=40, width=60)
    cfg = TrainConfig(**{**_TINY, "lr": 2e-3, "data": "chairs", "root": str(root / "chairs")},
                      steps=60, checkpoint_every=20, out=str(root / "run"))
    return root / "run", cfg, train(cfg)


def test_short_run_learns_and_writes_loadable_weights(short_run):
    run, _, result = short_run
    losses = [h["loss"] for h in result["history"]]
    assert len(losses) == 60 and np.all(np.isfinite(losses))
    # Deterministic (fixed seed): the last ten steps average well below the first ten
    # (measured 19.4 -> 14.3).
    assert np.mean(losses[-10:]) < 0.85 * np.mean(losses[:10]), losses
    assert (run / "curves.png").stat().st_size > 1000
    assert json.loads((run / "history.json").read_text()) == result["history"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step_00000020.npz", "step_00000040.npz", "step_00000060.npz"]
    _, meta = load_weights(run / "weights.npz")
    assert meta["model"] == "spynet" and meta["training"]["steps"] == 60
    model = flowlib.load_model("spynet", run / "weights.npz")
    rng = np.random.default_rng(0)
    a = rng.random((40, 56, 3), dtype=np.float32)
    flow = flowlib.estimate(a, np.roll(a, 1, axis=1), model=model)
    assert flow.shape == (40, 56, 2) and np.isfinite(flow).all()


def test_export_turns_a_checkpoint_into_the_same_weights(short_run, tmp_path):
    from flowlib.train.export import export, main

    run, _, _ = short_run
    want, _ = load_weights(run / "weights.npz")
    info = export(run, tmp_path / "w.npz", model_kwargs={"max_levels": None, "num_networks": 1})
    got, meta = load_weights(tmp_path / "w.npz")
    assert flatten(got).keys() == flatten(want).keys()
    for k, v in flatten(want).items():
        np.testing.assert_array_equal(flatten(got)[k], v)
    # Training settings recorded; the inference override applied (max_levels back to default).
    assert meta["model_kwargs"] == {"num_networks": 1} == info["model_kwargs"]
    assert meta["training"]["steps"] == 60 and meta["training"]["crop"] == [32, 48]
    # Written atomically but with the permissions a plain open() gives (mkstemp makes 0600).
    umask = os.umask(0o022)
    os.umask(umask)
    for written in (tmp_path / "w.npz", _checkpoint.latest(run / "checkpoints")):
        assert os.stat(written).st_mode & 0o777 == 0o666 & ~umask
    assert flowlib.load_model("spynet", tmp_path / "w.npz").module.max_levels == 6
    assert main([str(tmp_path / "nothing"), str(tmp_path / "x.npz")]) == 2
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ValueError, match="unreadable training checkpoint"):
        export(tmp_path / "bad.npz", tmp_path / "y.npz")


def test_resume_refuses_a_different_configuration(short_run, tmp_path):
    run, cfg, _ = short_run
    shutil.copytree(run, tmp_path, dirs_exist_ok=True)
    other = dataclasses.replace(cfg, lr=5e-4, steps=80, out=str(tmp_path))
    with pytest.raises(ValueError, match="different run configuration"):
        train(other)


def test_damaged_checkpoint_is_a_clear_error(short_run, tmp_path):
    run, cfg, _ = short_run
    shutil.copytree(run, tmp_path, dirs_exist_ok=True)
    ckpt = _checkpoint.latest(tmp_path / "checkpoints")
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    with pytest.raises(ValueError, match="unreadable training checkpoint"):
        train(dataclasses.replace(cfg, steps=80, out=str(tmp_path)))


@pytest.mark.slow  # 47 s on 2 cores
def test_killed_run_resumes_to_the_same_state(tmp_path):
    """SIGKILL a training subprocess after a random checkpoint, re-run: same weights, same curve."""
    steps = 20
    ref = tmp_path / "reference"
    subprocess.run(_cli(ref, steps, 1), check=True, capture_output=True, timeout=600)

    run = tmp_path / "killed"
    kill_after = int(np.random.default_rng().integers(1, 9))  # a random step, as a user would
    proc = subprocess.Popen(_cli(run, steps, 1), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    try:
        while _checkpoint.latest(run / "checkpoints") is None or \
                int(_checkpoint.latest(run / "checkpoints").stem.split("_")[1]) < kill_after:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    killed_at = int(_checkpoint.latest(run / "checkpoints").stem.split("_")[1])
    assert killed_at < steps or not (run / "weights.npz").exists()
    # No temp file may pass as a checkpoint (flowlib._files names them .step_<n>.npz.<random>.tmp).
    assert all(p.name.startswith("step_") or (p.name.startswith(".step_") and p.suffix == ".tmp")
               for p in (run / "checkpoints").iterdir())
    assert _checkpoint.latest(run / "checkpoints").name.startswith("step_")

    done = subprocess.run(_cli(run, steps, 1), check=True, capture_output=True, text=True, timeout=600)
    assert "done: 20 steps" in done.stdout
    want, _ = load_weights(ref / "weights.npz")
    got, _ = load_weights(run / "weights.npz")
    flat_want = dict(_flatten(want))
    flat_got = dict(_flatten(got))
    assert flat_want.keys() == flat_got.keys()
    for key in flat_want:
        np.testing.assert_array_equal(flat_got[key], flat_want[key], err_msg=key)
    hist_ref = json.loads((ref / "history.json").read_text())
    hist_run = json.loads((run / "history.json").read_text())
    assert [h["loss"] for h in hist_run] == [h["loss"] for h in hist_ref]


def _flatten(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}/")
        else:
            yield prefix + key, np.asarray(value)


def test_synthetic_scene_choice():
    from flowlib.train.batches import batch_builder as _batch_fn

    cfg = TrainConfig(**{**_TINY, "data_kwargs": {"scene": "translation", "max_shift": 1}})
    batch = _batch_fn(cfg, "flow", 2, 0)(0)
    assert batch["flow"].shape == (2, 32, 48, 2)
    # Augmentation rescales the vectors, but each pair's flow is still one constant vector.
    for f in batch["flow"]:
        assert np.allclose(f, f[0, 0]) and np.abs(f).max() <= 1.3 * 1.25 + 1e-5
    mixed = _batch_fn(TrainConfig(**{**_TINY, "data_kwargs": {"scene": "mix", "motion": 0.3}}), "flow", 2, 0)(0)
    assert mixed["flow"].shape == (2, 32, 48, 2) and np.isfinite(mixed["flow"]).all()
    with pytest.raises(ValueError, match="scene must be one of"):
        _batch_fn(TrainConfig(**{**_TINY, "data_kwargs": {"scene": "moon"}}), "flow", 2, 0)


def test_batches_are_a_pure_function_of_seed_and_step():
    """What exact resume rests on: the same (seed, step) gives the same bytes, another step not."""
    from flowlib.train.batches import batch_builder

    cfg = TrainConfig(**{**_TINY, "data_kwargs": {"scene": "mix", "motion": 0.3}})
    a, b = batch_builder(cfg, "flow", 2, 0)(5), batch_builder(cfg, "flow", 2, 0)(5)
    assert a.keys() == b.keys() == {"image1", "image2", "flow", "valid"}
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(batch_builder(cfg, "flow", 2, 0)(6)["image1"], a["image1"])
    # A process's slice (offset) is the same samples as the global batch's rows.
    second = batch_builder(cfg, "flow", 1, 1)(5)
    np.testing.assert_array_equal(second["image1"][0], a["image1"][1])
    stereo_cfg = TrainConfig(**{**_TINY, "model": "cfnet", "model_kwargs": {}})
    stereo = batch_builder(stereo_cfg, "stereo", 1, 0)(0)
    assert stereo["disparity"].shape == (1, 32, 48) and np.isfinite(stereo["disparity"]).all()


def test_mixed_scene_alternates_generators_and_still_pairs():
    from flowlib.train.batches import STILL_MOTION_DIVISOR, mixed_flow_pair

    still = 0.5 / STILL_MOTION_DIVISOR
    cases = ((0, synthetic.flow_pair, 0.5), (1, synthetic.warp_pair, 0.5),
             (2, synthetic.flow_pair, still), (3, synthetic.warp_pair, still))
    for seed, generator, motion in cases:
        got = mixed_flow_pair(seed, 24, 32, motion=0.5)
        want = generator(seed, 24, 32, motion=motion)
        np.testing.assert_array_equal(got["flow"], want["flow"])


def test_loss_dispatch_binds_the_module_options():
    import functools

    from flowlib import _zoo, losses
    from flowlib.models.cfnet import CFNet
    from flowlib.models.flownet import FlowNet

    assert _zoo.spec("spynet").training_loss(None) is losses.spynet_loss
    flownet = _zoo.spec("flownetc").training_loss(FlowNet(div_flow=10.0))
    assert isinstance(flownet, functools.partial) and flownet.func is losses.flownet_loss
    assert flownet.keywords == {"div_flow": 10.0}
    assert _zoo.spec("cfnet").training_loss(CFNet(maxdisp=128)).keywords == {"maxdisp": 128.0}
    with pytest.raises(ValueError, match="model 'patchflow' has no training loss"):
        _zoo.spec("patchflow").training_loss(None)


def test_command_line_is_generated_from_the_config():
    import dataclasses

    from flowlib.train.__main__ import build_parser
    from flowlib.train.config import config_from_args

    parser = build_parser()
    cfg = config_from_args(parser.parse_args(["spynet"]))
    defaults = TrainConfig()
    for field in dataclasses.fields(TrainConfig):
        want = "runs/spynet" if field.name == "out" else getattr(defaults, field.name)
        assert getattr(cfg, field.name) == want, field.name
        if field.name != "model":
            assert field.metadata["help"], field.name
            flag = ("--no-" if field.type == "bool" else "--") + field.name.replace("_", "-")
            assert flag in parser.format_help(), flag
    cfg = config_from_args(parser.parse_args(
        ["cfnet", "--crop", "64", "96", "--model-kwargs", '{"maxdisp": 128}', "--no-photometric",
         "--no-progress", "--batch-size", "4", "--out", "x"]))
    assert (cfg.crop, cfg.model_kwargs, cfg.photometric, cfg.progress, cfg.batch_size, cfg.out) == (
        (64, 96), {"maxdisp": 128}, False, False, 4, "x")


def test_the_models_offered_are_those_with_a_training_loss(capsys):
    from flowlib import _zoo
    from flowlib.train.__main__ import build_parser

    specs = _zoo.specs()
    trainable = [spec.name for spec in specs if spec.loss is not None]
    for spec in specs:
        if spec.loss is not None:
            assert build_parser().parse_args([spec.name]).model == spec.name
            continue
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args([spec.name])
        assert exit_.value.code == 2
        listed = ", ".join(f"'{name}'" for name in trainable)
        assert f"invalid choice: '{spec.name}' (choose from {listed})" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["spynet", "--model-kwargs", "{maxdisp: 1}"], "not valid JSON"),
    (["spynet", "--data-kwargs", "[1, 2]"], "must be a JSON object"),
    (["spynet", "--steps", "0"], "must be >= 1"),
    (["pwcnet"], "invalid choice"),
])
def test_command_line_errors_are_usage_errors(argv, message, capsys):
    from flowlib.train.__main__ import build_parser

    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_recorded_commands_give_the_recorded_identity():
    """The embedded weights' curriculum commands still parse to the configs their checkpoints hold.

    Run folders stay resumable only while the identity of a command line does not change.
    """
    import shlex

    from flowlib.train.__main__ import build_parser
    from flowlib.train.config import config_from_args

    folder = Path(flowlib.__file__).parent / "assets" / "weights"
    checked = 0
    for path in sorted(folder.glob("*.npz")):
        for stage in load_weights(path)[1].get("curriculum", []):  # trained weights only
            argv = shlex.split(stage["command"].split("#")[0])[3:]  # drop python -m flowlib.train
            identity = config_from_args(build_parser().parse_args(argv)).identity()
            if "photometric" not in stage["config"]:  # recorded before the option existed
                identity.pop("photometric")
            assert identity == stage["config"], stage["command"]
            checked += 1
    assert checked >= 4



@pytest.mark.slow
def test_raft_small_learns_and_resumes(tmp_path):
    """RAFT-small (2 updates, 64 x 64 crops) through the trainer: stopped at step 6, re-run to 12."""
    cfg = dict(model="raft_small", data="synthetic", batch_size=2, crop=(64, 64), lr=1e-3, warmup=2,
               schedule="constant", model_kwargs={"iters": 2},
               data_kwargs={"scene": "translation", "max_shift": 3}, workers=1, progress=False,
               log_every=1, checkpoint_every=3, out=str(tmp_path))
    first = [h["loss"] for h in train(TrainConfig(**cfg, steps=6))["history"]]
    assert _checkpoint.latest(tmp_path / "checkpoints").name == "step_00000006.npz"
    history = train(TrainConfig(**cfg, steps=12))["history"]
    losses = [h["loss"] for h in history]
    # The resumed run keeps the first six steps and continues from step 7.
    assert len(losses) == 12 and losses[:6] == first and np.all(np.isfinite(losses))
    # Deterministic (fixed seed): measured 14.2 over the first four steps, 3.6 over the last four.
    assert np.mean(losses[-4:]) < 0.6 * np.mean(losses[:4]), losses
    assert flowlib.load_model("raft_small", tmp_path / "weights.npz").module.iters == 2
