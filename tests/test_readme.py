"""The README's "Use" and "Evaluate" examples, run as written so that they cannot drift.

Offline and small: in a scratch folder holding the files the examples name (24x32 frames,
tiny dataset trees in the official layouts), with random weights in the cache standing in
for the named downloads, and one Model per (model, weights, settings) so each network
compiles once. ``python -m benchmarks.defaults`` is the one example not run (it measures the
embedded defaults against OpenCV over ../shared/data, minutes of CPU).
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowlib
from flowlib import cli, io

REPO = Path(__file__).resolve().parents[1]
# 24 rows: PatchFlow and PatchStereo run one pyramid level (fewer stages to compile).
H, W = 24, 32
NOT_RUN = {"python -m benchmarks.defaults": "a long comparison over ../shared/data"}


def _section(name: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(f"## {name}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)


def _commands(section: str) -> list[str]:
    lines = []
    for block in _blocks(section, "bash"):
        lines += [line.split(" #")[0].strip() for line in block.splitlines() if line.strip()]
    return lines


def _random_npz(path: Path, name: str, meta: dict | None = None, **kwargs) -> Path:
    from flowlib import _zoo
    from flowlib.convert._common import flatten, save_weights, unflatten

    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    shapes = jax.eval_shape(_zoo.spec(name).build(**kwargs).init, jax.random.PRNGKey(0), x, x)
    rng = np.random.default_rng(0)
    flat = {k: (0.05 * rng.standard_normal(v.shape)).astype(np.float32)
            for k, v in flatten(dict(shapes)).items()}
    save_weights(path, unflatten(flat), {"model": name, "model_kwargs": kwargs, **(meta or {})})
    return path


def _spynet_pytorch(path: Path) -> Path:
    from flowlib.convert import spynet as convert_spynet
    from flowlib.convert._common import flatten
    try:  # the test-only writer
        from tests.convert._torch_writer import write_torch_checkpoint
    except ImportError:
        from flowlib.convert._torch import write_torch_checkpoint

    tree = flatten(dict(convert_spynet._expected_tree(1)))
    rng = np.random.default_rng(1)
    state = {}
    for stem, flax_path in convert_spynet.key_table(1, prefix="moduleBasic"):
        k = tree[f"{flax_path}/kernel"].shape
        state[f"{stem}.weight"] = 0.05 * rng.standard_normal((k[3], k[2], k[0], k[1]))
        state[f"{stem}.bias"] = np.zeros(k[3])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_torch_checkpoint(path, {k: v.astype(np.float32) for k, v in state.items()})
    return path


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


def _datasets(root: Path) -> None:
    """MPI-Sintel/ (training + test), KITTI2015/ (training: noc flow, stereo; testing),
    middlebury/ (flow),
    middlebury-2001/ (stereo): one or two tiny pairs each."""
    from flowlib.data import synthetic

    sintel = synthetic.write_sintel_layout(root / "MPI-Sintel", scenes=1, frames=2, seed=1,
                                           height=H, width=W)
    for pass_ in ("clean", "final"):
        shutil.copytree(sintel / "training" / pass_, sintel / "test" / pass_)
    pair = synthetic.flow_pair(3, H, W, motion=0.3)
    stereo = synthetic.stereo_pair(4, H, W, max_disparity=16.0)
    kitti = root / "KITTI2015" / "training"
    for folder in ("image_2", "image_3", "flow_noc", "disp_occ_0"):
        (kitti / folder).mkdir(parents=True)
    io.write_image(kitti / "image_2" / "000000_10.png", _u8(stereo["left"]))
    io.write_image(kitti / "image_2" / "000000_11.png", _u8(pair["image2"]))
    io.write_image(kitti / "image_3" / "000000_10.png", _u8(stereo["right"]))
    io.write_kitti_flow(kitti / "flow_noc" / "000000_10.png", pair["flow"])
    io.write_kitti_disparity(kitti / "disp_occ_0" / "000000_10.png", stereo["disparity"])
    for folder in ("image_2", "image_3"):  # the testing split: the same images, no ground truth
        shutil.copytree(kitti / folder, root / "KITTI2015" / "testing" / folder)
    flow_root = root / "middlebury"
    for sub in ("other-data/Scene", "other-gt-flow/Scene"):
        (flow_root / sub).mkdir(parents=True)
    io.write_image(flow_root / "other-data/Scene/frame10.png", _u8(pair["image1"]))
    io.write_image(flow_root / "other-data/Scene/frame11.png", _u8(pair["image2"]))
    io.write_flow(flow_root / "other-gt-flow/Scene/flow10.flo", pair["flow"])
    scene = root / "middlebury-2001" / "scene"
    scene.mkdir(parents=True)
    io.write_image(scene / "imL.png", _u8(stereo["left"]))
    io.write_image(scene / "imR.png", _u8(stereo["right"]))
    io.write_image(scene / "groundtruth.png", np.clip(stereo["disparity"] * 8, 1, 255)
                   .astype(np.uint8))
    for mask in ("nonocc", "all"):
        io.write_image(scene / f"{mask}.png", np.full((H, W), 255, np.uint8))
    (scene / "info.txt").write_text("8\n32\n")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """The folder the examples run in, with every file they name."""
    from flowlib import video
    from flowlib.data import synthetic

    root = tmp_path_factory.mktemp("readme")
    clip = synthetic.flow_sequence(2, H, W, frames=3, motion=0.3)
    io.write_image(root / "frame10.png", _u8(clip["images"][0]))
    io.write_image(root / "frame11.png", _u8(clip["images"][1]))
    stereo = synthetic.stereo_pair(5, H, W, max_disparity=16.0)
    io.write_image(root / "left.png", _u8(stereo["left"]))
    io.write_image(root / "right.png", _u8(stereo["right"]))
    if importlib.util.find_spec("av") is not None:
        with video.VideoWriter(root / "video.mp4", fps=10) as writer:
            for image in clip["images"]:
                writer.write(_u8(image))
    _spynet_pytorch(root / "network-sintel-final.pytorch")
    _spynet_pytorch(root / "path/to/network-sintel-final.pytorch")
    _random_npz(root / "my-weights.npz", "spynet", num_networks=1)
    home = root / "flowlib-home"
    # The named downloads, as if already fetched and converted (FlowNetC at 1/16 width).
    _random_npz(home / "converted" / "spynet-sintel-final.npz", "spynet",
                {"weights": "spynet:sintel-final", "source_url": "https://example.invalid"})
    _random_npz(home / "converted" / "flownetc-chairs.npz", "flownetc",
                {"weights": "flownetc:chairs"}, correlation=True, channel_divisor=16)
    _datasets(root)
    return root


_MODELS: dict = {}  # shared by the tests: CFNet compiles in ~30 s on a 2-core CPU


@pytest.fixture
def in_scratch(scratch, monkeypatch):
    """The examples run in ``scratch``, offline, with its cache; flowlib.load_model (the
    entry point every command loads through) returns one Model per (model, weights,
    settings), so each network compiles once for all the examples."""
    monkeypatch.chdir(scratch)
    monkeypatch.setenv("FLOWLIB_HOME", str(scratch / "flowlib-home"))
    monkeypatch.setenv("FLOWLIB_OFFLINE", "1")
    real, models = flowlib.load_model, _MODELS

    def load(name="spynet", weights=None, **kwargs):
        key = (str(name), None if weights is None else os.fspath(weights),
               tuple(sorted((k, v) for k, v in kwargs.items() if k != "progress")))
        if key not in models:
            models[key] = real(name, weights, **kwargs)
        return models[key]

    monkeypatch.setattr(flowlib, "load_model", load)
    yield scratch


def _run(command: str) -> None:
    argv = shlex.split(command)
    if argv[0] == "flowlib":
        status = cli.main(argv[1:])
    elif argv[:2] == ["python", "-m"]:
        module = importlib.import_module(argv[2])
        if hasattr(module, "__path__"):  # python -m PACKAGE runs PACKAGE.__main__
            module = importlib.import_module(f"{argv[2]}.__main__")
        status = module.main(argv[3:])
    else:
        raise AssertionError(f"README command of an unknown form: {command}")
    assert status == 0, command


@pytest.mark.slow  # 25 s on 2 cores
def test_use_python_example_runs(in_scratch):
    rng = np.random.default_rng(0)
    names = {
        "img1": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        "img2": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        "batch1": rng.integers(0, 256, (2, H, W, 3), dtype=np.uint8),
        "batch2": rng.integers(0, 256, (2, H, W, 3), dtype=np.uint8),
    }
    (block,) = _blocks(_section("Use"), "python")
    exec(compile(block, "README.md (Use)", "exec"), names)  # noqa: S102 - our own README
    assert names["flow"].shape == (H, W, 2) and names["disp"].shape == (H, W)
    assert names["flows"].shape == (2, H, W, 2)
    assert names["model"].name == "patchstereo" and names["model"].module.maxdisp == 256


@pytest.mark.parametrize("section", ["Use", "Evaluate"])
def test_command_examples_run(in_scratch, section, capsys):
    if importlib.util.find_spec("av") is None:
        pytest.skip("the video example needs PyAV (flowlib[video])")
    commands = _commands(_section(section))
    assert commands, section
    for command in commands:
        if command in NOT_RUN:
            continue
        _run(command)
    out = capsys.readouterr().out
    assert "wrote" in out or "overall" in out
    if section == "Use":
        assert sorted(os.listdir(in_scratch / "flows")) == ["frame_000000.flo", "frame_000001.flo"]
        assert (in_scratch / "disp.jpg").read_bytes()[:2] == b"\xff\xd8"
