"""The flowlib command line: commands, shared flags, error messages and exit codes, and the
end-to-end runs on image pairs, folders of frames and video files (random-weight SpyNet)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import flowlib
from flowlib import cli, io, video, viz
from flowlib.cli import _model as _cli_model

COMMANDS = (
    "demo",
    "estimate",
    "stereo",
    "viz",
    "evaluate",
    "benchmark",
    "train",
    "convert",
    "download",
    "models",
)
needs_av = pytest.mark.skipif(
    importlib.util.find_spec("av") is None, reason="needs PyAV (flowlib[video])"
)
H, W = 64, 96


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    # Nothing here may touch the network or the user's cache: a missing weight file must
    # fail, not download or load.
    monkeypatch.setenv("FLOWLIB_OFFLINE", "1")
    monkeypatch.setenv("FLOWLIB_HOME", str(tmp_path / "flowlib-home"))


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


def _random_weights(path: Path, name: str, seed: int) -> Path:
    """Random weights for zoo model ``name`` from the shapes of its init (no forward pass)."""
    import jax
    import jax.numpy as jnp

    from flowlib import _zoo
    from flowlib.weights import flatten, save_weights, unflatten

    x = jax.ShapeDtypeStruct((1, H, W, 3), jnp.float32)
    shapes = jax.eval_shape(_zoo.spec(name).build().init, jax.random.PRNGKey(0), x, x)
    rng = np.random.default_rng(seed)
    flat = {
        k: (0.05 * rng.standard_normal(v.shape)).astype(np.float32)
        for k, v in flatten(dict(shapes)).items()
    }
    save_weights(path, unflatten(flat), {"model": name, "model_kwargs": {}})
    return path


@pytest.fixture(scope="session")
def spynet_weights(tmp_path_factory) -> Path:
    return _random_weights(tmp_path_factory.mktemp("weights") / "spynet-random.npz", "spynet", 0)


_MODELS: dict = {}


@pytest.fixture
def model_cache(monkeypatch):
    """Every load of the same weights returns one Model, so its jitted forward compiles once
    per shape for the whole module instead of once per command."""
    from flowlib import _api

    real = _api.load_model

    def load(name="spynet", weights=None, **kwargs):
        key = (name, None if weights is None else os.fspath(weights))
        if key not in _MODELS:
            _MODELS[key] = real(name, weights, **kwargs)
        return _MODELS[key]

    monkeypatch.setattr(flowlib, "load_model", load)
    return load


@pytest.fixture(scope="session")
def clip() -> dict:
    from flowlib.data import synthetic

    return synthetic.flow_sequence(5, H, W, frames=5, motion=0.3)


@pytest.fixture
def frames_dir(tmp_path, clip) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, image in enumerate(clip["images"]):
        io.write_image(folder / f"frame_{i + 1}.png", _u8(image))  # unpadded: natural order matters
    return folder


def _run_error(capsys, argv: list[str], needle: str) -> str:
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    command = next(a for a in argv if a in COMMANDS)
    assert (
        err.startswith(f"flowlib {command}: error: ")
        and err.endswith("\n")
        and err.count("\n") == 1
    ), err
    assert needle in err, err
    return err


def _usage_error(capsys, argv: list[str], needle: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and needle in err, err


# ------------------------------------------------------------------------------ help and flags


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert f" {command}" in out, command


@pytest.mark.parametrize(
    "command",
    ["demo", "estimate", "stereo", "viz", "evaluate", "benchmark", "convert", "download", "models"],
)
def test_every_command_has_help_and_the_shared_flags(capsys, command):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--debug" in out and "--quiet" in out
    if command in ("estimate", "stereo", "evaluate", "benchmark"):
        for flag in ("--model", "--weights", "--device"):
            assert flag in out, flag
    if command in ("estimate", "evaluate", "benchmark"):
        assert "--batch-size" in out


def test_train_help_is_the_trainers(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--steps" in out and "--data" in out and "spynet" in out


def test_train_parses_the_trainers_options_and_the_global_flags(monkeypatch):
    import flowlib.train.__main__ as train_main

    seen = []
    monkeypatch.setattr(train_main, "run", lambda cfg, debug: seen.append((cfg, debug)) or 7)
    argv = ["spynet", "--data", "synthetic", "--steps", "3", "--crop", "64", "96", "--lr=1e-3"]
    assert cli.main(["train", *argv]) == 7
    assert cli.main(["--quiet", "--debug", "--device", "cpu", "train", *argv]) == 7
    want = train_main.config_from_args(train_main.build_parser().parse_args(argv))
    assert seen[0] == (want, False)
    assert seen[1][0].progress is False and seen[1][1] is True
    assert seen[1][0].identity() == want.identity()


def test_version(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out.strip() == f"flowlib {flowlib.__version__}"


# ------------------------------------------------------------------------------ demo, viz, models


@pytest.mark.slow  # 23 s on 2 cores
def test_demo_works_offline_and_beats_zero_flow(tmp_path, monkeypatch, capsys):
    import re
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("demo tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    out = tmp_path / "demo.png"
    assert cli.main(["demo", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    epe, zero = map(float, re.search(r"EPE ([\d.]+) px \(zero flow: ([\d.]+) px\)", printed).groups())
    # The embedded default weights do real work on the demo scene (not in their training set).
    assert epe < 0.85 * zero, printed  # measured 2.62 vs 3.52
    rgb = io.read_image(out, dtype="uint8")
    h, w = cli.DEMO_SIZE
    assert rgb.shape == (round((4 * h / w + 0.35) * 100), 1600, 3)  # image, flow, GT, error


@pytest.mark.slow
def test_demo_stereo_figure(tmp_path, capsys):
    import re

    flow_png, stereo_png = tmp_path / "f.png", tmp_path / "s.png"
    assert cli.main(["demo", "-o", str(flow_png), "--stereo", str(stereo_png)]) == 0
    printed = capsys.readouterr().out
    found = re.search(r"patchstereo disparity .* EPE ([\d.]+) px, D1 ([\d.]+) %", printed)
    epe, d1 = float(found.group(1)), float(found.group(2))
    # scene disparities span 1-48 px; zero disparity scores ~25 px. Measured 1.65 px, 7.8 %
    # (the scene without pixel-scale texture: 3.94 px, 30.5 %).
    assert epe < 2.5 and d1 < 12.0, printed
    h, w = cli.DEMO_SIZE
    assert io.read_image(stereo_png, dtype="uint8").shape == (round((4 * h / w + 0.35) * 100), 1600, 3)


def test_demo_stereo_scene_is_textured_on_every_surface():
    from scipy.ndimage import uniform_filter

    pair = cli.demo_stereo_pair()
    for view in ("left", "right"):
        grey = pair[view].mean(axis=-1).astype(np.float64)
        std = np.sqrt(np.maximum(uniform_filter(grey**2, 7) - uniform_filter(grey, 7) ** 2, 0))
        # 7x7 windows varying by less than one 8-bit grey level hold no disparity to find
        # (the scene without pixel-scale texture: 52 % of the left image)
        assert (std < 1 / 255).mean() < 0.01


def test_viz_round_trip_and_max_norm(tmp_path):
    flow = np.zeros((10, 12, 2), np.float32)
    flow[:, :, 0] = 1.0
    io.write_flow(tmp_path / "f.flo", flow)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert cli.main(["viz", str(tmp_path / "f.flo"), "-o", str(a)]) == 0
    assert cli.main(["viz", str(tmp_path / "f.flo"), "-o", str(b), "--max-norm", "4"]) == 0
    ia, ib = io.read_image(a, dtype="uint8"), io.read_image(b, dtype="uint8")
    np.testing.assert_array_equal(ia, np.broadcast_to(np.array([255, 0, 0], np.uint8), (10, 12, 3)))
    np.testing.assert_array_equal(ib, viz.flow_to_rgb(flow, max_norm=4.0))
    assert tuple(ib[0, 0]) == (255, 191, 191)  # a quarter of max_norm: pale red


def test_viz_of_a_kitti_png_keeps_invalid_pixels_black(tmp_path):
    flow = np.zeros((6, 7, 2), np.float32)
    flow[..., 0] = 2.0
    valid = np.ones((6, 7), bool)
    valid[0, 0] = False
    io.write_flow(tmp_path / "f.png", flow, valid=valid)
    assert (
        cli.main(["viz", str(tmp_path / "f.png"), "-o", str(tmp_path / "v.png"), "--legend"]) == 0
    )
    rgb = io.read_image(tmp_path / "v.png", dtype="uint8")
    assert tuple(rgb[0, 0]) == (0, 0, 0) and tuple(rgb[1, 1]) == (255, 0, 0)


def test_download_reports_cached_weights_and_offline_misses(capsys, spynet_weights):
    from flowlib import hub
    from flowlib.weights import load_weights, save_weights

    _run_error(capsys, ["download", "spynet:sintel-final"], "offline")
    variables, _ = load_weights(spynet_weights)
    meta = {
        "model": "spynet",
        "weights": "spynet:sintel-final",
        "model_kwargs": {},
        "source_url": "https://example.invalid/spynet",
    }
    save_weights(hub.cache_dir() / "converted" / "spynet-sintel-final.npz", variables, meta)
    assert cli.main(["download", "spynet:sintel-final", "-q"]) == 0
    assert (
        capsys.readouterr().out == "spynet:sintel-final: found in the cache "
        f"({hub.converted_path('spynet', 'sintel-final')}; from https://example.invalid/spynet)\n"
    )


def test_models_lists_the_zoo(capsys):
    from flowlib import _zoo

    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "spynet:sintel-final" in out and "cfnet:" in out
    # One star per task: the model used without --model.
    starred = [line.split()[1] for line in out.splitlines() if line.startswith("* ")
               and not line.startswith("* =")]
    assert starred == sorted([_zoo.DEFAULT_FLOW_MODEL, _zoo.DEFAULT_STEREO_MODEL])
    # Each model's own default weights: embedded, else the named default variant.
    assert "  spynet (embedded)" in out and "  cfnet (embedded)" in out
    assert "  flownetc:chairs (default)" in out and "spynet:sintel-final (default)" not in out
    assert "--pyramid-levels, --dtype bfloat16" in out


def test_listing_models_traces_none(tmp_path):
    # JAX reports every trace (jit, eval_shape, ...) as a duration event: there must be none.
    code = ("import jax, sys; from flowlib import cli; events = []\n"
            "jax.monitoring.register_event_duration_secs_listener("
            "lambda name, secs, **kw: events.append(name))\n"
            "assert cli.main(['models']) == 0\n"
            "print([e for e in events if 'trac' in e or 'compile' in e], file=sys.stderr)\n")
    env = dict(os.environ, FLOWLIB_HOME=str(tmp_path), JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and proc.stderr == "[]\n", proc.stderr


# ------------------------------------------------------------------------------ errors


def test_errors_are_one_line_on_stderr_with_exit_1_in_a_real_process(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "flowlib", "viz", str(tmp_path / "missing.flo"), "-o", "x.png"],
        capture_output=True,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "missing.flo" in proc.stderr


def test_debug_shows_the_traceback(tmp_path):
    missing = str(tmp_path / "missing.flo")
    for argv in (
        ["--debug", "viz", missing, "-o", "x.png"],
        ["viz", missing, "-o", "x.png", "--debug"],
    ):
        with pytest.raises(FileNotFoundError, match="missing.flo"):
            cli.main(argv)


def test_file_errors_name_the_file(tmp_path, capsys, frames_dir, spynet_weights, model_cache):
    a = tmp_path / "a.png"
    io.write_image(a, np.zeros((H, W, 3), np.uint8))
    small = tmp_path / "small.png"
    io.write_image(small, np.zeros((H, W - 2, 3), np.uint8))
    broken = tmp_path / "broken.flo"
    broken.write_bytes(b"PIEH" + b"\0" * 5)
    missing = tmp_path / "missing.png"

    _run_error(
        capsys, ["viz", str(tmp_path / "none.flo"), "-o", str(tmp_path / "v.png")], "none.flo"
    )
    _run_error(capsys, ["viz", str(broken), "-o", str(tmp_path / "v.png")], "broken.flo")
    _run_error(capsys, ["viz", str(broken), "-o", str(tmp_path / "nodir" / "v.png")], "nodir")
    _run_error(capsys, ["demo", "-o", str(tmp_path / "nodir" / "d.png")], "nodir")
    _run_error(
        capsys, ["estimate", str(a), str(missing), "-o", str(tmp_path / "f.flo")], "missing.png"
    )
    _run_error(
        capsys,
        ["estimate", str(a), str(small), "-o", str(tmp_path / "f.flo")],
        "small.png: size 94x64",
    )
    _run_error(
        capsys, ["estimate", str(a), str(a), "-o", str(tmp_path / "nodir" / "f.flo")], "nodir"
    )
    _run_error(
        capsys, ["stereo", str(missing), str(a), "-o", str(tmp_path / "d.png")], "missing.png"
    )
    _run_error(capsys, ["stereo", str(a), str(small), "-o", str(tmp_path / "d.png")], "small.png")
    _run_error(
        capsys,
        ["convert", "spynet", str(tmp_path / "nothing.pth"), str(tmp_path / "s.npz")],
        "nothing.pth",
    )
    _run_error(capsys, ["evaluate", "sintel", "--root", str(tmp_path / "noroot")], "noroot")
    _run_error(capsys, ["evaluate", "kitti-flow", "--root", str(frames_dir)], "KITTI")
    # A frame of another size in a folder is named.
    io.write_image(frames_dir / "frame_3.png", np.zeros((H, W - 4, 3), np.uint8))
    _run_error(
        capsys,
        [
            "estimate",
            str(frames_dir),
            "-o",
            str(tmp_path / "out"),
            "--weights",
            str(spynet_weights),
            "-q",
        ],
        "frame_3.png: frame is 92x64",
    )
    assert not (tmp_path / "out").exists()  # checked before anything was written
    one = tmp_path / "one"
    one.mkdir()
    io.write_image(one / "0.png", np.zeros((H, W, 3), np.uint8))
    _run_error(
        capsys, ["estimate", str(one), "-o", str(tmp_path / "out")], "at least 2 frames, found 1"
    )


def test_model_errors_name_the_model_or_weights(tmp_path, capsys, spynet_weights):
    a = tmp_path / "a.png"
    io.write_image(a, np.zeros((H, W, 3), np.uint8))
    out = str(tmp_path / "f.flo")
    _run_error(capsys, ["estimate", str(a), str(a), "-o", out, "--model", "nosuchnet"], "nosuchnet")
    _run_error(
        capsys,
        ["estimate", str(a), str(a), "-o", out, "--weights", str(tmp_path / "w.npz")],
        "w.npz",
    )
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(b"not an npz at all")
    _run_error(
        capsys, ["estimate", str(a), str(a), "-o", out, "--weights", str(damaged)], "damaged.npz"
    )
    _run_error(capsys, ["download", "nosuchnet:v1"], "nosuchnet")
    _run_error(
        capsys,
        [
            "estimate",
            str(a),
            str(a),
            "-o",
            out,
            "--model",
            "spynet:sintel-final",
            "--weights",
            "chairs",
        ],
        "sintel-final",
    )
    # A stereo model cannot estimate flow, and the reverse (checked before any weights load).
    _run_error(
        capsys,
        ["estimate", str(a), str(a), "-o", out, "--model", "cfnet:sceneflow"],
        "cfnet:sceneflow is a stereo model",
    )
    _run_error(
        capsys,
        [
            "stereo",
            str(a),
            str(a),
            "-o",
            str(tmp_path / "d.png"),
            "--model",
            "spynet",
            "--weights",
            str(spynet_weights),
        ],
        f"--weights {spynet_weights} holds spynet weights, a flow model; this command needs a "
        "stereo model",
    )
    assert not os.path.exists(out)


@pytest.mark.parametrize("device", ["gpu", "tpu"])
def test_unavailable_device_is_one_clear_line(capsys, device):
    import jax

    if jax.devices()[0].platform == device:
        pytest.skip(f"this machine has a {device}")
    _run_error(
        capsys, ["download", "spynet:sintel-final", "--device", device], f"--device {device}"
    )


def test_device_sets_the_jax_platform_before_jax_starts():
    code = (
        "import os, sys; from flowlib import cli; from flowlib.cli import _model as _cli_model; assert 'jax' not in sys.modules; "
        "_cli_model.select_device('cpu'); import jax; "
        "print(os.environ['JAX_PLATFORMS'], jax.default_backend(), jax.config.jax_default_device)"
    )
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[:2] == ["cpu", "cpu"]


def test_usage_errors_exit_2(tmp_path, capsys, frames_dir):
    a = str(tmp_path / "a.png")
    io.write_image(a, np.zeros((H, W, 3), np.uint8))
    _usage_error(capsys, ["estimate", a, a, a, "-o", "x.flo"], "got 3 inputs")
    _usage_error(capsys, ["estimate", a, a, "-o", "x.flo", "--video", "v.mp4"], "--video")
    _usage_error(capsys, ["estimate", a, a], "nothing to write: pass -o OUT")
    _usage_error(capsys, ["estimate", a, "-o", "out"], "single image")
    _usage_error(capsys, ["estimate", str(frames_dir)], "nothing to write")
    _usage_error(capsys, ["estimate", str(frames_dir), "-o", "d", "--viz", "v.png"], "--video")
    _usage_error(capsys, ["estimate", str(frames_dir), "--video", "v.avi"], "v.avi")
    _usage_error(capsys, ["estimate", str(frames_dir), "-o", "d", "--every", "0"], "--every")
    _usage_error(
        capsys, ["estimate", str(frames_dir), "-o", "d", "--batch-size", "0"], "--batch-size"
    )
    _usage_error(capsys, ["estimate", a, a, "-o", "x.flo", "--bogus"], "--bogus")
    _usage_error(capsys, ["--device", "abacus", "demo"], "abacus")
    _usage_error(capsys, ["evaluate", "imagenet", "--root", "."], "imagenet")
    _usage_error(capsys, ["frobnicate"], "frobnicate")


def test_missing_video_extra_is_explained(tmp_path, capsys, frames_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # import av -> ImportError
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    _run_error(capsys, ["estimate", str(clip), "-o", str(tmp_path / "o")], "flowlib[video]")
    _run_error(
        capsys, ["estimate", str(frames_dir), "--video", str(tmp_path / "v.mp4")], "flowlib[video]"
    )


@needs_av
def test_bad_video_paths(tmp_path, capsys):
    _run_error(
        capsys, ["estimate", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "o")], "nope.mp4"
    )
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\0\0\0\x18ftypmp42" + b"garbage" * 100)
    _run_error(capsys, ["estimate", str(broken), "-o", str(tmp_path / "o")], "broken.mp4")


# ------------------------------------------------------------------------------ end to end


def test_estimate_pair_writes_flow_viz_and_arrows(
    tmp_path, capsys, clip, spynet_weights, model_cache
):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    io.write_image(a, _u8(clip["images"][0]))
    io.write_image(b, _u8(clip["images"][1]))
    out, png, arrows = tmp_path / "f.flo", tmp_path / "f.png", tmp_path / "arrows.png"
    argv = [
        "estimate",
        str(a),
        str(b),
        "-o",
        str(out),
        "--viz",
        str(png),
        "--arrows",
        str(arrows),
        "--weights",
        str(spynet_weights),
        "--device",
        "cpu",
        "--max-norm",
        "3",
    ]
    assert cli.main(argv) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    flow, valid = io.read_flow(out)
    assert flow.shape == (H, W, 2) and valid.all()
    model = model_cache("spynet", spynet_weights)
    expected = flowlib.estimate(
        io.read_image(a, dtype="uint8"), io.read_image(b, dtype="uint8"), model
    )
    np.testing.assert_array_equal(flow, expected)
    np.testing.assert_array_equal(
        io.read_image(png, dtype="uint8"), viz.flow_to_rgb(expected, max_norm=3.0)
    )
    np.testing.assert_array_equal(
        io.read_image(arrows, dtype="uint8"),
        viz.draw_arrows(io.read_image(a, dtype="uint8"), expected, step=16),
    )


def _pairs_reference(frames: list[np.ndarray], model, step: int, batch: int) -> np.ndarray:
    first = np.stack(frames[:-1][::step][: (len(frames) - 1) // step])
    second = np.stack(frames[step::step])
    return flowlib.estimate(first, second, model, batch_size=batch)


def _assert_video_shows(
    path: Path, images: list[np.ndarray], wrong: list[np.ndarray], *, bound: float
) -> None:
    """Each decoded frame is close to its expected image (H.264 is lossy, and x264's threads
    make it bit-for-bit unrepeatable), closer than to any other frame's image, and much closer
    than to ``wrong[k]`` (what a plausible bug would have written)."""
    decoded = list(video.iter_frames(path))
    assert len(decoded) == len(images)

    def err(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a.astype(np.int64) - b).mean())

    for k, frame in enumerate(decoded):
        own = err(frame, images[k])
        assert own < bound, (k, own)
        assert all(own < err(frame, other) for j, other in enumerate(images) if j != k), k
        assert own < 0.6 * err(frame, wrong[k]), (k, own, err(frame, wrong[k]))


@needs_av
def test_estimate_folder_writes_flows_and_playable_videos(
    tmp_path, capsys, frames_dir, spynet_weights, model_cache
):
    out, colour, arrows = tmp_path / "out", tmp_path / "flow.mp4", tmp_path / "arrows.mp4"
    argv = [
        "estimate",
        str(frames_dir),
        "-o",
        str(out),
        "--video",
        str(colour),
        "--arrows",
        str(arrows),
        "--weights",
        str(spynet_weights),
        "--batch-size",
        "2",
        "--max-norm",
        "2",
        "--arrow-scale",
        "1",
        "--quiet",
    ]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # --quiet: no progress bar
    assert "4 flow files" in captured.out
    # Named after each pair's first frame (frames_dir holds frame_1.png ... frame_5.png).
    assert sorted(os.listdir(out)) == [f"frame_{i}.flo" for i in range(1, 5)]
    frames = list(video.iter_frames(frames_dir))
    expected = _pairs_reference(frames, model_cache("spynet", spynet_weights), 1, 2)
    flows = np.stack([io.read_flow(out / f"frame_{i}.flo")[0] for i in range(1, 5)])
    np.testing.assert_allclose(flows, expected, rtol=0, atol=1e-5)

    for path in (colour, arrows):
        source = video.open_frames(path)
        assert source.count == 4 and source.fps == pytest.approx(24.0)
        decoded = list(source)
        assert len(decoded) == 4 and all(f.shape == (H, W, 3) for f in decoded)
    # The colour video uses the fixed --max-norm (not per-frame normalisation); the arrow video
    # draws each pair's flow over its first frame.
    _assert_video_shows(
        colour,
        [viz.flow_to_rgb(f, max_norm=2.0) for f in flows],
        [viz.flow_to_rgb(f) for f in flows],
        bound=14,
    )
    _assert_video_shows(
        arrows, [viz.draw_arrows(a, f, scale=1.0) for a, f in zip(frames, flows)], frames[:-1],
        bound=16,
    )
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []  # no temporary files left


@needs_av
def test_estimate_video_file_with_every(tmp_path, capsys, clip, spynet_weights, model_cache):
    source = tmp_path / "clip.mp4"
    with video.VideoWriter(source, fps=10) as writer:
        for image in clip["images"]:
            writer.write(_u8(image))
    out, colour = tmp_path / "out", tmp_path / "flow.mkv"
    argv = [
        "estimate",
        str(source),
        "-o",
        str(out),
        "--video",
        str(colour),
        "--every",
        "2",
        "--format",
        "pfm",
        "--weights",
        str(spynet_weights),
        "--batch-size",
        "2",
        "-q",
    ]
    assert cli.main(argv) == 0
    assert sorted(os.listdir(out)) == ["frame_000000.pfm", "frame_000002.pfm"]  # 0->2, 2->4
    frames = list(video.iter_frames(source))
    expected = _pairs_reference(frames, model_cache("spynet", spynet_weights), 2, 2)
    for k, name in enumerate(["frame_000000.pfm", "frame_000002.pfm"]):
        np.testing.assert_allclose(io.read_flow(out / name)[0], expected[k], rtol=0, atol=1e-5)
    result = video.open_frames(colour)
    assert result.fps == pytest.approx(5.0)  # the source's 10 fps / every 2
    assert len(list(result)) == 2


@needs_av
def test_sequence_memory_is_flat_over_long_videos(tmp_path, capsys, monkeypatch):
    """The whole CLI pipeline (decode, flow files, colour video) on 20 and 60 frames: the
    traced peak does not grow with the length. The model is a numpy stand-in."""

    h, w = 96, 128
    monkeypatch.setattr(flowlib, "load_model", lambda *args, **kwargs: None)
    monkeypatch.setattr(
        flowlib,
        "estimate",
        lambda a, b, model, **kw: (b.astype(np.float32) - a.astype(np.float32))[..., :2],
    )

    def peak(n: int) -> int:
        clip = tmp_path / f"clip{n}.mp4"
        with video.VideoWriter(clip, fps=25) as writer:
            for i in range(n):
                writer.write(np.full((h, w, 3), (i * 7) % 256, np.uint8))
        argv = [
            "estimate",
            str(clip),
            "-o",
            str(tmp_path / f"out{n}"),
            "--video",
            str(tmp_path / f"v{n}.mp4"),
            "--batch-size",
            "3",
            "-q",
        ]
        tracemalloc.start()
        try:
            assert cli.main(argv) == 0
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak(5)  # warm-up: imports and one-off caches
    short, long = peak(20), peak(60)
    assert len(os.listdir(tmp_path / "out60")) == 59
    frame_bytes = h * w * 3
    # Keeping the 40 extra frames (or their float32 flows, 2.7x larger) would add > 40 frames.
    assert long - short < 4 * frame_bytes, (short, long)


# ------------------------------------------------------------------- usage and output checks


@pytest.fixture
def stand_ins(monkeypatch):
    """flowlib.load_model, which every command loads through, gives a stand-in of the named
    model's task: zero flow, or a constant 3 px disparity (16 on the first column)."""
    from flowlib import _zoo
    from tests._stand_ins import constant_stereo, zero_flow

    def load(name, weights=None, **options):
        return zero_flow() if _zoo.spec(name).task == "flow" else constant_stereo()

    monkeypatch.setattr(flowlib, "load_model", load)


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if a command gets as far as loading a model (i.e. computing)."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(flowlib, "load_model", refuse)


@pytest.fixture
def loads(monkeypatch):
    """Record load_model's arguments; return a stand-in model that estimates zero flow."""

    seen = []

    def load(name="spynet", weights=None, **kwargs):
        seen.append((name, weights, kwargs))
        raise RuntimeError("stand-in: not loaded")

    monkeypatch.setattr(flowlib, "load_model", load)
    return seen


def test_model_options_on_the_command_line(tmp_path, capsys, loads):
    a = str(tmp_path / "a.png")
    io.write_image(a, np.zeros((H, W, 3), np.uint8))
    d, f = str(tmp_path / "d.pfm"), str(tmp_path / "f.flo")
    _run_error(capsys, ["stereo", a, a, "-o", d, "--max-disp", "128"], "stand-in")
    _run_error(capsys, ["estimate", a, a, "-o", f, "--model", "spynet", "--pyramid-levels", "4"],
               "stand-in")
    _run_error(capsys, ["estimate", a, a, "-o", f, "--model", "flownets", "--div-flow", "10"],
               "stand-in")
    _run_error(capsys, ["stereo", a, a, "-o", d, "--preset", "fast"], "stand-in")
    options = [{k: v for k, v in x[2].items() if k not in ("progress", "dtype")} for x in loads]
    assert options == [{"maxdisp": 128}, {"max_levels": 4}, {"div_flow": 10.0}, {"preset": "fast"}]
    _usage_error(capsys, ["estimate", a, a, "-o", f, "--model", "spynet", "--preset", "fast"],
                 "--preset applies to patchflow and patchstereo, not spynet")
    _usage_error(capsys, ["estimate", a, a, "-o", f, "--div-flow", "10"],
                 "--div-flow applies to flownetc and flownets, not patchflow")
    _usage_error(capsys, ["stereo", a, a, "-o", d, "--max-disp", "0"],
                 "--max-disp: maxdisp must be an integer in [1, 1024], got 0")
    _usage_error(capsys, ["estimate", a, a, "-o", f, "--max-disp", "64"], "--max-disp")
    assert len(loads) == 4


def test_bad_model_option_values_are_usage_errors(tmp_path, capsys):
    a = str(tmp_path / "a.png")
    io.write_image(a, np.zeros((H, W, 3), np.uint8))
    _usage_error(capsys, ["stereo", a, a, "-o", str(tmp_path / "d.pfm"), "--model", "cfnet",
                        "--max-disp", "100"],
               "maxdisp must be an integer in [32, 1024] and a multiple of 32, got 100")


def test_outputs_are_checked_before_computing(tmp_path, capsys, frames_dir, no_model):
    a = str(tmp_path / "a.png")
    io.write_image(a, np.zeros((H, W, 3), np.uint8))
    folder = tmp_path / "somefolder"
    folder.mkdir()
    f = str(tmp_path / "f.flo")
    _usage_error(capsys, ["stereo", a, a, "-o", str(tmp_path / "d.txt")], "d.txt has extension")
    _usage_error(capsys, ["stereo", a, a, "-o", str(folder)], "somefolder has no extension")
    (tmp_path / "dir.pfm").mkdir()
    _run_error(capsys, ["stereo", a, a, "-o", str(tmp_path / "dir.pfm")], "dir.pfm is a folder")
    _run_error(capsys, ["stereo", a, a, "-o", str(tmp_path / "no" / "d.pfm")], "does not exist")
    _usage_error(capsys, ["stereo", a, a, "-o", str(tmp_path / "d.pfm"), "--viz", "x.txt"],
                 "x.txt has extension '.txt'; write .png, .jpg")
    _usage_error(capsys, ["estimate", a, a, "-o", f, "--arrows", "arrows.mp4"],
                 "--arrows (an image for a pair): arrows.mp4 has extension '.mp4'")
    _usage_error(capsys, ["estimate", a, a, "-o", f, "--viz", "v.txt"], "v.txt")
    _usage_error(capsys, ["estimate", a, a, "-o", str(tmp_path / "f.txt")], "f.txt")
    _usage_error(capsys, ["estimate", a, a, "-o", f, "--format", "pfm"], "--format")
    _usage_error(capsys, ["estimate", str(frames_dir), "--arrows", "a.png"],
                 "--arrows (a video for a sequence)")
    _usage_error(capsys, ["estimate", str(frames_dir), "-o", str(tmp_path / "o.flo")],
                 "name a folder")
    _usage_error(capsys, ["viz", f, "-o", str(tmp_path / "v.gif")], "v.gif")
    _usage_error(capsys, ["evaluate", "sintel", "--root", ".", "--json", "r.txt"], "r.txt")
    _usage_error(capsys, ["convert", "spynet", a, str(tmp_path / "w.pth")], "w.pth")
    assert set(os.listdir(tmp_path)) - {"flowlib-home"} == {"a.png", "dir.pfm", "frames",
                                                            "somefolder"}


def test_outputs_are_written_as_their_extension_says(tmp_path, capsys):
    flow = np.random.default_rng(0).normal(size=(20, 24, 2)).astype(np.float32)
    io.write_flow(tmp_path / "f.flo", flow)
    for name, magic in (("v.jpg", b"\xff\xd8"), ("v.bmp", b"BM"), ("v.png", b"\x89PNG")):
        assert cli.main(["viz", str(tmp_path / "f.flo"), "-o", str(tmp_path / name)]) == 0
        assert (tmp_path / name).read_bytes().startswith(magic), name
    np.testing.assert_array_equal(io.read_image(tmp_path / "v.bmp", dtype="uint8"),
                                  viz.flow_to_rgb(flow))


def test_stereo_writes_npy_and_a_disparity_picture(tmp_path, capsys, monkeypatch):

    disp = np.linspace(0, 40, H * W, dtype=np.float32).reshape(H, W)
    monkeypatch.setattr(flowlib, "load_model", lambda *args, **kwargs: None)
    monkeypatch.setattr(flowlib, "estimate_disparity", lambda a, b, model: disp)
    a = str(tmp_path / "a.png")
    io.write_image(a, np.zeros((H, W, 3), np.uint8))
    out, png = tmp_path / "d.npy", tmp_path / "d.jpg"
    argv = ["stereo", a, a, "-o", str(out), "--viz", str(png), "--legend"]
    assert cli.main(argv) == 0
    np.testing.assert_array_equal(np.load(out), disp)
    picture = io.read_image(png, dtype="uint8")
    assert picture.shape[0] == 96 and picture.shape[1] > W  # the colour bar beside it


def test_folder_failure_names_what_was_written(tmp_path, capsys, frames_dir, monkeypatch):

    calls = []

    def estimate(a, b, model, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise ValueError("device out of memory")
        return np.zeros((*a.shape[:-1], 2), np.float32)

    monkeypatch.setattr(flowlib, "load_model", lambda *args, **kwargs: None)
    monkeypatch.setattr(flowlib, "estimate", estimate)
    out = tmp_path / "out"
    err = _run_error(capsys, ["estimate", str(frames_dir), "-o", str(out)],
                     "device out of memory (before it, 2 complete flow files were written")
    assert f"to {out}: frame_1.flo ... frame_2.flo" in err
    assert sorted(os.listdir(out)) == ["frame_1.flo", "frame_2.flo"]
    assert all(io.read_flow(out / n)[0].shape == (H, W, 2) for n in os.listdir(out))


def test_frame_names_follow_the_source_frames(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in ("frame_0010.png", "frame_0002.png", "a.png", "a.jpg"):
        io.write_image(folder / name, np.zeros((8, 8, 3), np.uint8))
    source = video.open_frames(folder)
    assert [source.frame_name(i) for i in range(4)] == ["a_jpg", "a_png", "frame_0002",
                                                       "frame_0010"]
    source.check_sizes()
    io.write_image(folder / "frame_0003.png", np.zeros((8, 9, 3), np.uint8))
    with pytest.raises(ValueError, match="frame_0003.png: frame is 9x8 .* nothing was written"):
        video.open_frames(folder).check_sizes()


def test_arrow_scale_option(tmp_path, capsys, monkeypatch):

    flow = np.zeros((H, W, 2), np.float32)
    flow[..., 0] = 0.5
    monkeypatch.setattr(flowlib, "load_model", lambda *args, **kwargs: None)
    monkeypatch.setattr(flowlib, "estimate", lambda a, b, model: flow)
    a = str(tmp_path / "a.png")
    io.write_image(a, np.full((H, W, 3), 255, np.uint8))
    for scale in (None, "6"):
        arrows = tmp_path / f"arrows{scale}.png"
        argv = ["estimate", a, a, "-o", str(tmp_path / "f.flo"), "--arrows", str(arrows)]
        assert cli.main(argv + (["--arrow-scale", scale] if scale else [])) == 0
        expected = viz.draw_arrows(io.read_image(a), flow,
                                   scale=None if scale is None else float(scale))
        np.testing.assert_array_equal(io.read_image(arrows, dtype="uint8"), expected)


def test_viz_legend_is_labelled_and_on_white(tmp_path, capsys):
    flow = np.zeros((80, 100, 2), np.float32)
    flow[..., 0] = np.linspace(-3, 3, 100)
    io.write_flow(tmp_path / "f.flo", flow)
    out = tmp_path / "v.png"
    assert cli.main(["viz", str(tmp_path / "f.flo"), "-o", str(out), "--legend"]) == 0
    rgb = io.read_image(out, dtype="uint8")
    np.testing.assert_array_equal(rgb[:, :100], viz.flow_to_rgb(flow))
    key = rgb[:, 100:]
    np.testing.assert_array_equal(key, viz.flow_legend(80, 3.0))
    assert tuple(key[0, 0]) == (255, 255, 255) and tuple(key[-1, -1]) == (255, 255, 255)


def test_viz_shows_disparity_files(tmp_path, capsys):
    disp = np.tile(np.linspace(1, 50, 40, dtype=np.float32), (30, 1))
    disp[0, 0] = 1000.0  # one far-out estimate must not darken the rest
    io.write_disparity(tmp_path / "d.pfm", disp)
    io.write_disparity(tmp_path / "d.png", disp)  # KITTI 16-bit grey
    for name in ("d.pfm", "d.png"):
        out = tmp_path / f"{name}.png"
        assert cli.main(["viz", str(tmp_path / name), "-o", str(out)]) == 0
        assert "disparity" in capsys.readouterr().out
        rgb = io.read_image(out, dtype="uint8")
        low, high = viz.disparity_range(disp)
        assert high < 60  # the 99th percentile, not the outlier
        np.testing.assert_array_equal(rgb, viz.disparity_to_rgb(disp, min_disp=low,
                                                                 max_disp=high))
    fixed = tmp_path / "fixed.png"
    argv = ["viz", str(tmp_path / "d.pfm"), "-o", str(fixed), "--min-disp", "0", "--max-disp",
            "100", "--legend"]
    assert cli.main(argv) == 0
    rgb = io.read_image(fixed, dtype="uint8")
    assert rgb.shape == (96, 40 + 72, 3)
    np.testing.assert_array_equal(rgb[:30, :40], viz.disparity_to_rgb(disp, max_disp=100.0))
    _usage_error(capsys, ["viz", str(tmp_path / "d.pfm"), "-o", str(fixed), "--max-norm", "3"],
                 "--max-norm is for flow")
    # A 1-channel map read as flow is refused by the reader; --disparity forces it.
    np.save(tmp_path / "d.npy", disp)
    assert cli.main(["viz", str(tmp_path / "d.npy"), "-o", str(fixed), "--disparity"]) == 0


def test_weights_of_another_model_are_named_on_the_command_line(tmp_path, capsys, no_model):
    a = str(tmp_path / "a.png")
    io.write_image(a, np.zeros((H, W, 3), np.uint8))
    cfnet = tmp_path / "cfnet.npz"
    from flowlib.convert._common import save_weights

    save_weights(cfnet, {"params": {}}, {"model": "cfnet", "model_kwargs": {"channel_divisor": 8}})
    # Said before any weights are loaded (no_model): the weights' task, then their model.
    _run_error(capsys, ["estimate", a, a, "-o", str(tmp_path / "f.flo"), "--weights", str(cfnet)],
               f"--weights {cfnet} holds cfnet weights, a stereo model; this command needs a "
               "flow model")
    _run_error(capsys, ["stereo", a, a, "-o", str(tmp_path / "d.pfm"), "--weights", str(cfnet),
                        "--model", "patchstereo"],
               "holds cfnet weights, not patchstereo ones; pass --model cfnet")


def test_stereo_says_when_disparities_pile_up_at_max_disp(tmp_path, capsys, monkeypatch):
    from tests._stand_ins import constant_stereo

    a = str(tmp_path / "a.png")
    io.write_image(a, np.zeros((H, W, 3), np.uint8))
    for columns, warned in ((4, True), (0, False)):
        monkeypatch.setattr(flowlib, "load_model",
                            lambda *args, c=columns, **kwargs: constant_stereo(maxdisp=48, top=48.0,
                                                                               columns=c))
        assert cli.main(["stereo", a, a, "-o", str(tmp_path / "d.npy"), "--quiet"]) == 0
        out, err = capsys.readouterr()
        assert out.startswith("wrote")
        if warned:  # one line, after the outputs are written, naming the flag
            assert err.count("\n") == 1 and err.startswith("flowlib stereo: warning: 4.2 % ")
            assert "--max-disp 96" in err
        else:
            assert err == ""


def test_viz_disparity_flag_is_not_ignored_on_flow_files(tmp_path, capsys):
    flow = np.zeros((6, 8, 2), np.float32)
    io.write_flow(tmp_path / "f.flo", flow)
    np.save(tmp_path / "f.npy", flow)
    for name in ("f.flo", "f.npy"):
        out = tmp_path / "v.png"
        assert cli.main(["viz", str(tmp_path / name), "--disparity", "-o", str(out)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("flowlib viz: error: --disparity: ") and "flow" in err, err
        assert not out.exists()


def test_viz_warns_about_a_map_with_no_valid_value(tmp_path, capsys):
    np.save(tmp_path / "d.npy", np.full((6, 8), np.nan, np.float32))
    np.save(tmp_path / "f.npy", np.full((6, 8, 2), np.inf, np.float32))
    for name, kind in (("d.npy", "disparity"), ("f.npy", "flow")):
        out = tmp_path / f"{name}.png"
        assert cli.main(["viz", str(tmp_path / name), "-o", str(out)]) == 0
        printed = capsys.readouterr()
        assert printed.err.count("\n") == 1
        assert printed.err.startswith(f"flowlib viz: warning: {tmp_path / name} holds no valid "
                                      f"{kind} value")
        assert (io.read_image(out, dtype="uint8") == 0).all()
    np.save(tmp_path / "ok.npy", np.full((6, 8), np.nan, np.float32))
    np.save(tmp_path / "ok.npy", np.where(np.eye(6, 8) > 0, 3.0, np.nan).astype(np.float32))
    assert cli.main(["viz", str(tmp_path / "ok.npy"), "-o", str(tmp_path / "ok.png")]) == 0
    assert capsys.readouterr().err == ""


# ----------------------------------------------------------------- outputs, sizes, announcements


def test_an_output_that_is_an_input_is_refused(tmp_path, capsys, frames_dir, no_model):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    io.write_image(a, np.zeros((H, W, 3), np.uint8))
    io.write_image(b, np.full((H, W, 3), 9, np.uint8))
    link = tmp_path / "link.png"
    link.symlink_to(b)
    kitti = tmp_path / "k.png"
    io.write_flow(kitti, np.zeros((H, W, 2), np.float32))
    (tmp_path / "w.npz").write_bytes(b"not read")
    inputs = {p: p.read_bytes() for p in (a, b, kitti, tmp_path / "w.npz", *frames_dir.iterdir())}
    f = str(tmp_path / "f.flo")
    _usage_error(capsys, ["estimate", str(a), str(b), "-o", str(a)],
                 f"-o {a} is the input {a}: writing it would overwrite the input")
    _usage_error(capsys, ["estimate", str(a), str(b), "-o", f, "--viz", str(link)],
                 f"--viz {link} is the input {b}")
    _usage_error(capsys, ["estimate", str(a), str(b), "-o", f, "--arrows", str(a)],
                 "--arrows")
    _usage_error(capsys, ["estimate", str(a), str(b), "-o", str(tmp_path / "x.png"), "--viz",
                          str(tmp_path / "x.png")], "is also -o: name two files")
    _usage_error(capsys, ["stereo", str(a), str(b), "-o", str(b)], f"-o {b} is the input {b}")
    _usage_error(capsys, ["stereo", str(a), str(b), "-o", str(tmp_path / "d.pfm"), "--viz",
                          str(a)], f"--viz {a} is the input {a}")
    _usage_error(capsys, ["viz", str(kitti), "-o", str(kitti)], f"-o {kitti} is the input")
    _usage_error(capsys, ["convert", "spynet", str(tmp_path / "w.npz"), str(tmp_path / "w.npz")],
                 "DST")
    # A sequence's flow files written as PNG next to PNG frames of the same names.
    _usage_error(capsys, ["estimate", str(frames_dir), "-o", str(frames_dir), "--format", "png"],
                 "the flow file frame_1.png would overwrite the frame frame_1.png")
    assert {p: p.read_bytes() for p in inputs} == inputs


def test_png_flow_is_said_to_be_kitti_data(tmp_path, capsys, stand_ins):
    with pytest.raises(SystemExit):
        cli.main(["estimate", "--help"])
    assert "KITTI 16-bit encoding: data for flowlib/KITTI tools, not a picture" in " ".join(
        capsys.readouterr().out.split())
    a = tmp_path / "a.png"
    io.write_image(a, np.zeros((H, W, 3), np.uint8))
    for argv in (["estimate", str(a), str(a), "-o", str(tmp_path / "f.png")],
                 ["stereo", str(a), str(a), "-o", str(tmp_path / "d.png")]):
        assert cli.main(argv) == 0
        out = capsys.readouterr().out
        assert out == (f"wrote {argv[-1]} (KITTI 16-bit encoding: data for flowlib/KITTI tools, "
                       "not a picture; --viz writes one)\n")
    assert io.read_flow(tmp_path / "f.png")[0].shape == (H, W, 2)
    assert io.read_disparity(tmp_path / "d.png")[0].shape == (H, W)


def test_a_picture_alone_is_a_valid_request(tmp_path, capsys, stand_ins):
    a = tmp_path / "a.png"
    io.write_image(a, np.zeros((H, W, 3), np.uint8))
    for argv in (["estimate", str(a), str(a), "--viz", str(tmp_path / "f.jpg")],
                 ["estimate", str(a), str(a), "--arrows", str(tmp_path / "arrows.png")],
                 ["stereo", str(a), str(a), "--viz", str(tmp_path / "d.jpg")]):
        assert cli.main(argv) == 0
        assert capsys.readouterr().out == f"wrote {argv[-1]}\n"
        assert io.read_image(argv[-1]).shape == (H, W, 3)
    assert {p.name for p in tmp_path.iterdir()} - {"flowlib-home"} == {"a.png", "arrows.png",
                                                                        "d.jpg", "f.jpg"}
    _usage_error(capsys, ["stereo", str(a), str(a)], "nothing to write")
    _usage_error(capsys, ["estimate", str(a), str(a)], "nothing to write")


def test_images_too_small_fail_before_loading(tmp_path, capsys, no_model):
    tiny = tmp_path / "tiny.png"
    io.write_image(tiny, np.zeros((4, 6, 3), np.uint8))
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(3):
        io.write_image(frames / f"{k}.png", np.zeros((4, 6, 3), np.uint8))
    needle = "images must be at least 8x8 pixels, got 4x6"
    _run_error(capsys, ["estimate", str(tiny), str(tiny), "-o", str(tmp_path / "f.flo")],
               f"{tiny}: {needle}")
    _run_error(capsys, ["stereo", str(tiny), str(tiny), "--viz", str(tmp_path / "d.png")],
               needle)
    _run_error(capsys, ["estimate", str(frames), "-o", str(tmp_path / "out")], needle)
    assert {p.name for p in tmp_path.iterdir()} - {"flowlib-home"} == {"frames", "tiny.png"}


def test_sequence_outputs_are_counted_in_words(tmp_path, capsys, stand_ins):
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(2):
        io.write_image(frames / f"f{k}.png", np.zeros((H, W, 3), np.uint8))
    assert cli.main(["estimate", str(frames), "-o", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out == f"wrote 1 flow file to {tmp_path / 'out'}\n"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["f0.flo"]


def test_an_output_folder_appears_with_its_first_file(tmp_path, capsys, frames_dir,
                                                      monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("stand-in: no model")

    monkeypatch.setattr(flowlib, "load_model", fail)
    _run_error(capsys, ["estimate", str(frames_dir), "-o", str(tmp_path / "a" / "b")],
               "stand-in: no model")
    assert not (tmp_path / "a").exists()
    (tmp_path / "ro").mkdir(mode=0o500)
    if not os.access(tmp_path / "ro", os.W_OK):  # root may write anywhere
        _run_error(capsys, ["estimate", str(frames_dir), "-o", str(tmp_path / "ro" / "out")],
                   "cannot write in")


def test_compiles_are_announced_once_per_size_unless_quiet(capsys, monkeypatch):
    from flowlib import _compilation_cache
    from tests._stand_ins import constant_stereo

    # Keep even this tiny model's executable, so that a second model finds it.
    monkeypatch.setattr(_compilation_cache, "MIN_COMPILE_SECS", 0.0)
    cache = _compilation_cache.cache_path()
    one, two = np.zeros((1, 16, 24, 3), np.float32), np.zeros((2, 16, 24, 3), np.float32)
    model = constant_stereo(columns=3)
    _cli_model.announce_compiles(model, quiet=False)
    model(one, one), model(one, one), model(two, two)
    assert capsys.readouterr().err.splitlines() == [
        f"compiling constant for 16x24 (once per size; cached in {cache})",
        f"compiling constant for 16x24, batch 2 (once per size; cached in {cache})",
    ]
    again = constant_stereo(columns=3)  # the same computation: from the cache, silently
    _cli_model.announce_compiles(again, quiet=False)
    again(one, one)
    quiet = constant_stereo(columns=5)  # compiles, but --quiet
    _cli_model.announce_compiles(quiet, quiet=True)
    quiet(one, one)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("FLOWLIB_COMPILATION_CACHE", "0")
    off = constant_stereo(columns=7)
    _cli_model.announce_compiles(off, quiet=False)
    off(one, one)
    assert capsys.readouterr().err == ("compiling constant for 16x24 (once per size; the "
                                       "compilation cache is off)\n")


def test_device_gpu_without_gpu_support_says_so(tmp_path):
    if _cli_model.gpu_plugins():
        pytest.skip("this JAX has a GPU plugin")
    code = ("import sys; from flowlib.cli import _model\n"
            "try:\n    _model.select_device('gpu')\n"
            "except RuntimeError as err:\n    print(err, 'jax' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.stdout == ("--device gpu: this JAX has no GPU support (no CUDA or ROCm plugin is "
                           "installed); install a GPU build of JAX, e.g. pip install -U "
                           "'jax[cuda12]' False\n"), proc.stderr


def test_demo_writes_any_picture_format_and_takes_max_disp(tmp_path, capsys, monkeypatch):
    from flowlib import _zoo
    from tests._stand_ins import constant_stereo, zero_flow

    with pytest.raises(SystemExit):
        cli.main(["demo", "--help"])
    assert "--max-disp D" in capsys.readouterr().out
    _usage_error(capsys, ["demo", "--max-disp", "64"], "pass --stereo PICTURE too")
    loaded = []

    def load(name, weights=None, **kwargs):
        if _zoo.spec(name).task == "flow":
            return zero_flow()
        loaded.append((name, kwargs.get("maxdisp")))
        return constant_stereo(maxdisp=kwargs.get("maxdisp", 16))

    monkeypatch.setattr(flowlib, "load_model", load)
    flow_jpg, stereo_jpg = tmp_path / "demo.jpg", tmp_path / "stereo.jpg"
    assert cli.main(["demo", "-o", str(flow_jpg), "--stereo", str(stereo_jpg), "--max-disp",
                     "64"]) == 0
    assert loaded == [("patchstereo", 64)]
    for path in (flow_jpg, stereo_jpg):
        assert path.read_bytes()[:2] == b"\xff\xd8"  # a JPEG
        assert io.read_image(path).shape[1] == 1600


def test_every_positional_argument_has_help():
    _, commands = cli._parser_and_commands()
    for name, parser in commands.items():
        for action in parser._actions:
            if not action.option_strings and not isinstance(action, argparse._SubParsersAction):
                assert action.help, (name, action.dest)
