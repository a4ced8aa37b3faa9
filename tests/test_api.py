"""flowlib.estimate / estimate_disparity / load_model: inputs, errors, caching."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowlib
from flowlib import _api
from flowlib.weights import save_weights

from tests._random_weights import random_variables
from tests._stand_ins import constant_stereo


@pytest.fixture(scope="module")
def spynet_model():
    """SpyNet with random weights: estimate needs no download."""
    from flowlib.models.spynet import SpyNet

    module = SpyNet()
    x = jnp.zeros((1, 64, 64, 3), jnp.float32)
    variables = random_variables(module, x, x)
    return flowlib.Model("spynet", module, variables, task="flow", meta={"weights": "random"})


# The size of the tests where any size will do: spynet_model compiles it once for all of them.
SHARED_SIZE = (40, 56)


def _pair(h, w, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return a, np.roll(a, 2, axis=1)


@pytest.mark.parametrize("size", [(97, 131), (64, 64), (37, 250)])
def test_estimate_any_size(spynet_model, size):
    a, b = _pair(*size)
    flow = flowlib.estimate(a, b, spynet_model)
    assert flow.shape == (*size, 2) and flow.dtype == np.float32
    assert np.all(np.isfinite(flow))


def test_uint8_float_grey_and_batch_agree(spynet_model):
    a, b = _pair(*SHARED_SIZE)
    ref = flowlib.estimate(a, b, spynet_model)
    f = flowlib.estimate(a / np.float32(255), b / np.float32(255), spynet_model)
    np.testing.assert_allclose(f, ref, atol=1e-5)
    batch = flowlib.estimate(np.stack([a, a]), np.stack([b, b]), spynet_model)
    assert batch.shape == (2, *SHARED_SIZE, 2)
    np.testing.assert_allclose(batch[0], ref, atol=1e-5)
    chunked = flowlib.estimate(np.stack([a, a]), np.stack([b, b]), spynet_model, batch_size=1)
    np.testing.assert_allclose(chunked, batch, atol=1e-5)
    grey = flowlib.estimate(a[..., 0], b[..., 0], spynet_model)
    ref_grey = flowlib.estimate(np.repeat(a[..., :1], 3, -1), np.repeat(b[..., :1], 3, -1), spynet_model)
    np.testing.assert_array_equal(grey, ref_grey)


def test_same_shape_compiles_once(spynet_model, monkeypatch):
    from jax import monitoring

    monkeypatch.setenv("FLOWLIB_COMPILATION_CACHE", "0")  # count compiles, not cache loads
    compiles = []

    def listener(name, secs, **kwargs):
        if name == "/jax/core/compile/backend_compile_duration":
            compiles.append(secs)

    monitoring.register_event_duration_secs_listener(listener)
    try:
        flowlib.estimate(*_pair(48, 72, seed=3), spynet_model)
        first = len(compiles)
        for seed in range(3):
            flowlib.estimate(*_pair(48, 72, seed=seed), spynet_model)
        flowlib.estimate(*_pair(37, 61, seed=0), spynet_model)  # a size no other test uses
    finally:
        monitoring.unregister_event_duration_listener(listener)
    assert len(compiles) == first + 1  # nothing for the same shape, once for the new one


def test_paths_are_accepted(spynet_model, tmp_path):
    from flowlib import io

    a, b = _pair(*SHARED_SIZE, seed=1)
    io.write_image(tmp_path / "a.png", a)
    io.write_image(tmp_path / "b.png", b)
    np.testing.assert_allclose(
        flowlib.estimate(str(tmp_path / "a.png"), tmp_path / "b.png", spynet_model),
        flowlib.estimate(a, b, spynet_model),
        atol=1e-5,
    )


@pytest.mark.parametrize(
    "a, b, message",
    [
        (np.zeros((20, 20, 3), np.uint8), np.zeros((20, 21, 3), np.uint8), "same shape"),
        (np.zeros((20, 20, 5), np.uint8), np.zeros((20, 20, 5), np.uint8), "(H, W, 3)"),
        (np.zeros((20, 20, 2), np.uint8), np.zeros((20, 20, 2), np.uint8), "(H, W, 3)"),
        (np.zeros((0, 20, 3), np.uint8), np.zeros((0, 20, 3), np.uint8), "at least 8x8"),
        (np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1, 3), np.uint8), "at least 8x8"),
        (np.full((20, 20, 3), np.nan, np.float32), np.zeros((20, 20, 3), np.float32), "NaN"),
        (np.full((20, 20, 3), 200.0, np.float32), np.zeros((20, 20, 3), np.float32), "[0, 1]"),
        (np.zeros((20, 20, 3), np.int64), np.zeros((20, 20, 3), np.int64), "dtype"),
        (np.zeros((2, 20, 20, 3), np.uint8), np.zeros((20, 20, 3), np.uint8), "same shape"),
        ("no/such/file.png", np.zeros((20, 20, 3), np.uint8), "no/such/file.png"),
    ],
)
def test_bad_inputs_are_rejected_with_clear_messages(spynet_model, a, b, message):
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        flowlib.estimate(a, b, spynet_model)
    assert message in str(err.value)


def test_task_mismatch(spynet_model):
    a, b = _pair(16, 16)
    with pytest.raises(ValueError, match="estimate"):
        flowlib.estimate_disparity(a, b, spynet_model)


def test_load_model_from_local_npz(spynet_model, tmp_path):
    path = tmp_path / "w.npz"
    save_weights(path, jax.device_get(spynet_model.variables), {"model": "spynet", "model_kwargs": {}})
    m = flowlib.load_model("spynet", path)
    a, b = _pair(*SHARED_SIZE, seed=2)
    np.testing.assert_array_equal(flowlib.estimate(a, b, m), flowlib.estimate(a, b, spynet_model))


def test_load_model_rejects_weights_for_another_model(tmp_path):
    path = tmp_path / "w.npz"
    save_weights(path, {"params": {"conv": {"kernel": np.zeros((3, 3, 3, 8), np.float32)}}}, {})
    with pytest.raises(ValueError, match="do not fit model 'spynet'"):
        flowlib.load_model("spynet", path)


def test_unknown_names():
    with pytest.raises(ValueError, match="available"):
        flowlib.load_model("pwcnet")
    with pytest.raises(ValueError, match="named variants"):
        flowlib.load_model("spynet:no-such-variant")


def test_offline_named_weights_say_where_to_put_the_file(tmp_path, monkeypatch):
    from flowlib import hub

    monkeypatch.setenv("FLOWLIB_HOME", str(tmp_path))
    monkeypatch.setenv("FLOWLIB_OFFLINE", "1")
    with pytest.raises(hub.WeightsUnavailableError) as err:
        flowlib.load_model("spynet:sintel-final")
    text = str(err.value)
    assert "sniklaus" in text and str(tmp_path) in text


def test_public_surface():
    assert {"estimate", "estimate_disparity", "load_model", "available_models"} <= set(flowlib.__all__)
    assert {"spynet", "flownets", "flownetc", "cfnet"} <= set(flowlib.available_models())
    for fn in (flowlib.estimate, flowlib.estimate_disparity, flowlib.load_model):
        # Signatures are pinned by tests/test_api_surface.py.
        assert "Args:" in fn.__doc__ and "Returns:" in fn.__doc__


def test_embedded_defaults_are_small_recorded_and_used(monkeypatch):
    """The shipped weights: <= 10 MB in total, their training recorded, used when weights=None."""
    from pathlib import Path

    from flowlib import _api
    from flowlib.weights import load_weights

    folder = Path(_api.__file__).parent / "assets" / "weights"
    files = sorted(folder.glob("*.npz"))
    names = [f.name for f in files]
    assert names == ["cfnet.npz", "patchflow.npz", "patchstereo.npz", "spynet.npz"]
    assert sum(f.stat().st_size for f in files) <= 10 * 2**20
    for f in files:
        meta = load_weights(f)[1]
        assert meta["license"].startswith("MIT")
        if f.stem.startswith("patch"):  # settings only: nothing learned, selection recorded
            variables = load_weights(f)[0]
            assert variables == {} and "validation" in meta["training_data"]
            continue
        assert meta["training_data"] == "synthetic"
        for stage in meta["curriculum"]:
            assert stage["command"].startswith("python -m flowlib.train ") and stage["steps_done"] > 0
            assert {"seed", "data_kwargs", "crop", "lr"} <= set(stage["config"])
    flow_model = flowlib.load_model("spynet")
    assert flow_model.meta["weights"] == "embedded:spynet" and flow_model.module.num_networks == 1
    stereo_model = flowlib.load_model("cfnet")
    assert stereo_model.meta["weights"] == "embedded:cfnet" and stereo_model.module.channel_divisor == 8
    # What estimate / estimate_disparity use when no model is named.
    assert _api._model_for(_api.estimate.__defaults__[0], None, "flow").name == "patchflow"
    assert _api._model_for(_api.estimate_disparity.__defaults__[0], None, "stereo").name == "patchstereo"


# ------------------------------------------------------------- model options and weight sources


@functools.lru_cache(maxsize=None)
def _shapes(name, kwargs):
    """``{path: shape}`` of zoo model ``name``'s init (traced once per settings: CFNet ~1 s)."""
    from flowlib import _zoo
    from flowlib.convert._common import flatten

    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    shapes = jax.eval_shape(_zoo.spec(name).build(**dict(kwargs)).init, jax.random.PRNGKey(0), x, x)
    return {k: v.shape for k, v in flatten(dict(shapes)).items()}


def _random_npz(path, name, meta_model=True, **kwargs):
    """Random weights for zoo model ``name`` from the shapes of its init (no forward pass)."""
    from flowlib.convert._common import unflatten

    rng = np.random.default_rng(0)
    flat = {k: (0.05 * rng.standard_normal(shape)).astype(np.float32)
            for k, shape in _shapes(name, tuple(sorted(kwargs.items()))).items()}
    meta = {"model_kwargs": kwargs, **({"model": name} if meta_model else {})}
    save_weights(path, unflatten(flat), meta)
    return path


def _spynet_pytorch(path):
    """A one-level SpyNet checkpoint in the official PyTorch layout (random values)."""
    from flowlib.convert import spynet as convert_spynet
    from flowlib.convert._common import flatten
    try:  # the test-only writer
        from tests.convert._torch_writer import write_torch_checkpoint
    except ImportError:
        from flowlib.convert._torch import write_torch_checkpoint

    tree = flatten(dict(convert_spynet._expected_tree(1)))
    rng = np.random.default_rng(1)
    state = {}
    for stem, flax in convert_spynet.key_table(1, prefix="moduleBasic"):
        k = tree[f"{flax}/kernel"].shape  # (kh, kw, in, out) -> torch (out, in, kh, kw)
        state[f"{stem}.weight"] = rng.standard_normal((k[3], k[2], k[0], k[1])).astype(np.float32)
        state[f"{stem}.bias"] = np.zeros(k[3], np.float32)
    write_torch_checkpoint(path, state)
    return path


def test_model_options_are_keywords_of_load_model():
    cfnet = flowlib.load_model("cfnet", maxdisp=128)
    assert cfnet.module.maxdisp == 128 and cfnet.meta["model_options"] == {"maxdisp": 128}
    assert flowlib.load_model("cfnet").module.maxdisp == 192  # what the embedded weights record
    spynet = flowlib.load_model("spynet", max_levels=2)
    assert spynet.module.max_levels == 2
    a, b = _pair(96, 128, seed=4)
    assert not np.array_equal(flowlib.estimate(a, b, spynet), flowlib.estimate(a, b, "spynet"))


def test_flownet_div_flow_scales_the_output(tmp_path):
    path = _random_npz(tmp_path / "fs.npz", "flownets", channel_divisor=16)
    a, b = _pair(64, 64, seed=2)
    ref = flowlib.estimate(a, b, flowlib.load_model("flownets", path))
    half = flowlib.estimate(a, b, flowlib.load_model("flownets", path, div_flow=10.0))
    np.testing.assert_allclose(half, ref / 2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, options, error, message", [
    ("cfnet", {"maxdisp": 100}, ValueError,
     "maxdisp must be an integer in [32, 1024] and a multiple of 32, got 100"),
    ("cfnet", {"maxdisp": 192.0}, ValueError, "maxdisp must be an integer"),
    ("spynet", {"max_levels": 0}, ValueError, "max_levels must be an integer in [1, 10]"),
    ("flownets", {"div_flow": -1}, ValueError, "div_flow must be a finite number > 0"),
    ("spynet", {"maxdisp": 192}, TypeError, "unknown option(s) maxdisp; spynet accepts: max_levels"),
])
def test_model_options_are_validated(name, options, error, message):
    with pytest.raises(error) as err:
        flowlib.load_model(name, **options)
    assert message in str(err.value)


def test_load_model_takes_a_weights_file_as_the_name(tmp_path):
    path = _random_npz(tmp_path / "mine.npz", "spynet", num_networks=1)
    m = flowlib.load_model(path)
    assert m.name == "spynet" and m.meta["weights"] == str(path)
    with pytest.raises(ValueError, match="is a file, not a model name: pass the model too"):
        flowlib.load_model(_spynet_pytorch(tmp_path / "network-sintel-final.pytorch"))
    with pytest.raises(FileNotFoundError, match="weights file .*nothere.npz: no such file"):
        flowlib.load_model(tmp_path / "nothere.npz")


def test_missing_weights_file_is_not_an_unknown_variant(tmp_path):
    for missing in (tmp_path / "w.npz", "checkpoints/network-sintel-final.pytorch", "w.pth"):
        with pytest.raises(FileNotFoundError, match="no such file or folder"):
            flowlib.load_model("spynet", missing)


def test_weights_of_another_model_are_named(tmp_path):
    cfnet = _random_npz(tmp_path / "cfnet.npz", "cfnet", channel_divisor=16)
    with pytest.raises(ValueError, match=r"holds cfnet weights, not spynet ones; use load_model\('cfnet'"):
        flowlib.load_model("spynet", cfnet)
    anonymous = _random_npz(tmp_path / "anon.npz", "cfnet", meta_model=False, channel_divisor=16)
    with pytest.raises(ValueError, match="were not made for spynet: their settings"):
        flowlib.load_model("spynet", anonymous)
    spy = _spynet_pytorch(tmp_path / "spynet.pytorch")
    assert flowlib.load_model("spynet", spy).module.num_networks == 1
    with pytest.raises(ValueError, match="is a spynet checkpoint, not a cfnet one"):
        flowlib.load_model("cfnet", spy)


def test_pil_images_and_rgba_arrays_are_accepted(spynet_model):
    from PIL import Image

    a, b = _pair(*SHARED_SIZE, seed=5)
    ref = flowlib.estimate(a, b, spynet_model)
    alpha = np.full((*SHARED_SIZE, 1), 7, np.uint8)
    rgba = flowlib.estimate(np.concatenate([a, alpha], -1), np.concatenate([b, alpha], -1),
                            spynet_model)
    np.testing.assert_array_equal(rgba, ref)
    pil = flowlib.estimate(Image.fromarray(a), Image.fromarray(b).convert("RGBA"), spynet_model)
    np.testing.assert_array_equal(pil, ref)


def test_disparity_piling_up_at_maxdisp_warns_and_names_the_setting():
    a = np.zeros((10, 100, 3), np.float32)
    with pytest.warns(flowlib.DisparityRangeWarning, match=r"1\.0 % .*maxdisp=16.*maxdisp=32") as w:
        disp = flowlib.estimate_disparity(a, a, constant_stereo(top=16.0, columns=1))  # 1 % at 16
    assert w[0].message.maxdisp == 16 and w[0].message.fraction == pytest.approx(0.01)
    assert w[0].filename == __file__  # points at the caller
    assert (disp[:, 0] == 16).all()
    with pytest.warns(flowlib.DisparityRangeWarning):  # within 1 px of the top counts
        flowlib.estimate_disparity(a, a, constant_stereo(top=15.2, columns=1))
    with pytest.warns(flowlib.DisparityRangeWarning):  # batches too
        flowlib.estimate_disparity(a[None], a[None], constant_stereo(top=16.0, columns=1))


def test_disparity_within_the_range_does_not_warn():
    a = np.zeros((10, 100, 3), np.float32)
    # (pytest turns any warning into an error)
    flowlib.estimate_disparity(a, a, constant_stereo(top=14.9, columns=50))  # below the 1 px band
    flowlib.estimate_disparity(a, a, constant_stereo(top=16.0, columns=0))
    a = np.zeros((10, 400, 3), np.float32)
    flowlib.estimate_disparity(a, a, constant_stereo(top=16.0, columns=2))  # 0.5 %: not more

