"""SpyNet (flowlib.models.spynet) and its converter (flowlib.convert.spynet).

Golden data: /work/shared/fixtures/spynet (sniklaus/pytorch-spynet @ 690689d run in PyTorch
with the synthetic weights of keys.json, seed 1000) and spynet_real (the real sintel-final
weights on RubberWhale and Sintel alley_1). Fixture arrays are NCHW; transposed to NHWC
here. Tolerances are those of fixtures/tolerances.json.

Cost on a 2-core CPU: case_a compiles and runs in ~5 s; the real-weight forwards at Sintel
size take ~8 s each after ~6 s of compilation, so that test is marked ``slow``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from flowlib import io
from flowlib.convert import spynet as convert_spynet
from flowlib.convert._t7 import T7Object
from flowlib.models import spynet
from flowlib.models.spynet import SpyNet, SpyNetChairs
from flowlib.weights import flatten, unflatten
from tests.convert._t7_writer import write_t7

TOTAL_PARAMS = 1_440_300  # fixture keys.json num_parameters: 6 x 240,050
CONV_SHAPES = [(32, 8), (64, 32), (32, 64), (16, 32), (2, 16)]  # (out, in), 7x7


def _nhwc(a: np.ndarray) -> np.ndarray:
    """(B, C, H, W) -> (B, H, W, C)."""
    return np.moveaxis(a, 1, -1)


def _max_err(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _read_rgb(path) -> np.ndarray:
    """RGB in [0, 1] as run.py builds it: uint8 * float32(1/255) (not / 255)."""
    return np.asarray(Image.open(path).convert("RGB")).astype(np.float32) * np.float32(1.0 / 255.0)


def _random_state(num_networks: int, seed: int = 0, prefix: str = "netBasic") -> dict:
    """PyTorch-layout state dict with He-normal weights (like make_weights.py, smaller seed)."""
    rng = np.random.default_rng(seed)
    state = {}
    for level in range(num_networks):
        for j, (o, i) in zip((0, 2, 4, 6, 8), CONV_SHAPES):
            w = rng.standard_normal((o, i, 7, 7)) * np.sqrt(2.0 / (i * 49))
            state[f"{prefix}.{level}.{prefix}.{j}.weight"] = w.astype(np.float32)
            bias = 0.01 * rng.standard_normal(o)
            state[f"{prefix}.{level}.{prefix}.{j}.bias"] = bias.astype(np.float32)
    return state


@pytest.fixture(scope="module")
def tolerances(fixtures):
    return json.loads((fixtures / "tolerances.json").read_text())["files"]


@pytest.fixture(scope="module")
def fixture_state(fixtures):
    """The synthetic reference weights (PyTorch layout, ``netBasic`` keys)."""
    spec = importlib.util.spec_from_file_location("make_weights", fixtures / "make_weights.py")
    make_weights = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_weights)
    return make_weights.make_state_dict(make_weights.load_keys(fixtures / "spynet" / "keys.json"))


@pytest.fixture(scope="module")
def forward_with_inputs():
    return jax.jit(SpyNet(return_level_inputs=True).apply)


# ------------------------------------------------------------------ helpers, hand-computed


def test_network_size():
    assert spynet.network_size(436, 1024) == (448, 1024)
    assert spynet.network_size(90, 530) == (96, 544)
    assert spynet.network_size(1, 1) == (32, 32)
    assert spynet.network_size(32, 33) == (32, 64)


def test_pyramid_sizes():
    assert spynet.pyramid_sizes(416, 1024) == [
        (13, 32), (26, 64), (52, 128), (104, 256), (208, 512), (416, 1024)]
    assert spynet.pyramid_sizes(96, 544) == [
        (3, 17), (6, 34), (12, 68), (24, 136), (48, 272), (96, 544)]
    # Level index counts from the coarsest level: 64x64 uses networks 0 and 1 only.
    assert spynet.pyramid_sizes(64, 64) == [(32, 64 // 2), (64, 64)]
    assert spynet.pyramid_sizes(32, 32) == [(32, 32)]
    # Either side above 32 pools again, down to a one-pixel-high level; at most 6 levels.
    assert spynet.pyramid_sizes(32, 1024) == [
        (1, 32), (2, 64), (4, 128), (8, 256), (16, 512), (32, 1024)]
    assert spynet.pyramid_sizes(2048, 2048)[0] == (64, 64)
    assert len(spynet.pyramid_sizes(2048, 2048, max_levels=3)) == 3


def test_preprocess_multiplies_by_float32_reciprocal():
    # Every 8-bit value in every channel, scaled like run.py (times float32(1/255)).
    x = (np.arange(256, dtype=np.float32) * np.float32(1 / 255))[None, :, None, None]
    x = np.broadcast_to(x, (1, 256, 1, 3))
    got = np.asarray(spynet.preprocess(jnp.asarray(x)))
    mean = np.float32([0.485, 0.456, 0.406])
    np.testing.assert_array_equal(got, (x - mean) * np.float32([1 / 0.229, 1 / 0.224, 1 / 0.225]))
    # Dividing by the float32 std instead differs in the last bit for some values.
    assert np.any(got != (x - mean) / np.float32([0.229, 0.224, 0.225]))
    exact = (1 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(got[0, 255, 0], exact, rtol=1e-6)


def test_upsample_to_level_hand_computed():
    # 1x2 flow -> 2x4 with align_corners=True: columns at 0, 1/3, 2/3, 1 of the way; x2.
    flow = jnp.asarray(np.array([[[[0.0, 1.0], [3.0, -1.0]]]], np.float32))  # (1, 1, 2, 2)
    up = np.asarray(spynet.upsample_to_level(flow, (2, 4)))
    np.testing.assert_allclose(up[0, 0, :, 0], [0.0, 2.0, 4.0, 6.0], atol=1e-6)
    np.testing.assert_allclose(up[0, 0, :, 1], [2.0, 2 / 3, -2 / 3, -2.0], atol=1e-6)
    np.testing.assert_array_equal(up[0, 1], up[0, 0])
    # Odd level size: one replicated row at the bottom and column at the right.
    odd = np.asarray(spynet.upsample_to_level(flow, (3, 5)))
    np.testing.assert_array_equal(odd[:, :2, :4], up)
    np.testing.assert_array_equal(odd[:, 2, :4], up[:, 1])
    np.testing.assert_array_equal(odd[:, :, 4], odd[:, :, 3])
    with pytest.raises(ValueError, match="not twice the flow size"):
        spynet.upsample_to_level(flow, (4, 4))


# ------------------------------------------------------------------ model without shared data


@pytest.fixture(scope="module")
def random_variables():
    return convert_spynet.convert_state_dict(_random_state(6, seed=1))


def test_param_count_and_tree():
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    # A 32x32 input uses one level only; the variables still hold all networks.
    shapes = jax.eval_shape(SpyNet().init, jax.random.PRNGKey(0), x, x)
    flat = flatten(shapes)
    assert sum(int(np.prod(s.shape)) for s in flat.values()) == TOTAL_PARAMS
    assert sorted(shapes["params"]) == [f"basic{i}" for i in range(6)]
    assert flat["params/basic3/conv1/conv/kernel"].shape == (7, 7, 32, 64)
    chairs = flatten(jax.eval_shape(SpyNetChairs().init, jax.random.PRNGKey(0), x, x))
    assert sum(int(np.prod(s.shape)) for s in chairs.values()) == 5 * spynet.NUM_LEVEL_PARAMS


@pytest.fixture(scope="module")
def forward():
    """SpyNet's apply, jitted once for the module (one compile per shape)."""
    return jax.jit(SpyNet().apply)


@pytest.mark.parametrize("hw", [(37, 53), (97, 131)])
def test_smoke_odd_sizes(random_variables, forward, hw):
    rng = np.random.default_rng(0)
    x1 = jnp.asarray(rng.random((2, *hw, 3), np.float32))
    x2 = jnp.asarray(rng.random((2, *hw, 3), np.float32))
    out = forward(random_variables, x1, x2)
    assert out.flow.shape == (2, *hw, 2)
    assert np.all(np.isfinite(out.flow))
    net_hw = spynet.network_size(*hw)
    assert out.aux["raw_flow"].shape == (2, *net_hw, 2)
    sizes = spynet.pyramid_sizes(*net_hw)
    assert [f.shape[1:3] for f in out.aux["level_flows"]] == sizes
    np.testing.assert_array_equal(out.aux["level_flows"][-1], out.aux["raw_flow"])
    # Batch elements are independent (same batch size reversed: no second compile).
    swapped = forward(random_variables, x1[::-1], x2[::-1])
    np.testing.assert_allclose(swapped.flow[0], out.flow[1], atol=1e-4, rtol=1e-5)


def test_jit_equals_eager(random_variables, forward):
    # The size and batch of test_smoke_odd_sizes' first case: the jitted run is compiled once.
    rng = np.random.default_rng(1)
    x1, x2 = (jnp.asarray(rng.random((2, 37, 53, 3), np.float32)) for _ in range(2))
    jitted = forward(random_variables, x1, x2)
    eager = SpyNet().apply(random_variables, x1, x2)
    np.testing.assert_allclose(eager.flow, jitted.flow, atol=1e-4, rtol=1e-5)
    for a, b in zip(eager.aux["level_flows"], jitted.aux["level_flows"], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)


def test_output_is_resized_raw_flow_with_scaled_vectors(random_variables):
    rng = np.random.default_rng(3)
    x1, x2 = (jnp.asarray(rng.random((1, 40, 60, 3), np.float32)) for _ in range(2))
    out = jax.jit(SpyNet().apply)(random_variables, x1, x2)
    raw = np.asarray(out.aux["raw_flow"], np.float64)  # 64 x 64 grid
    # Output pixel (0, 0) reads the raw grid at (x, y) = (0.5 * 64/60 - 0.5, 0.5 * 64/40 - 0.5)
    # bilinearly (align_corners=False), then u *= 60/64 and v *= 40/64.
    sx, sy = 0.5 * 64 / 60 - 0.5, 0.5 * 64 / 40 - 0.5
    top = raw[0, 0, 0] * (1 - sx) + raw[0, 0, 1] * sx
    bottom = raw[0, 1, 0] * (1 - sx) + raw[0, 1, 1] * sx
    expected = (top * (1 - sy) + bottom * sy) * [60 / 64, 40 / 64]
    np.testing.assert_allclose(out.flow[0, 0, 0], expected, rtol=1e-5, atol=1e-5)


def test_chairs_reuses_last_network_on_sixth_level():
    # 32x544 -> six levels down to 1x17 (a one-pixel-high level upstream cannot handle).
    state5 = _random_state(5, seed=2)
    state6 = dict(state5)
    for key in [k for k in state5 if k.startswith("netBasic.4.")]:
        state6[key.replace("netBasic.4.netBasic.", "netBasic.5.netBasic.")] = state5[key]
    rng = np.random.default_rng(4)
    x1, x2 = (jnp.asarray(rng.random((1, 32, 544, 3), np.float32)) for _ in range(2))
    out5 = jax.jit(SpyNetChairs().apply)(convert_spynet.convert_state_dict(state5), x1, x2)
    out6 = jax.jit(SpyNet().apply)(convert_spynet.convert_state_dict(state6), x1, x2)
    assert len(out5.aux["level_flows"]) == 6
    assert np.all(np.isfinite(out5.flow))
    np.testing.assert_array_equal(out5.flow, out6.flow)


def test_train_mode_and_levelwise_gradients(random_variables):
    rng = np.random.default_rng(5)
    x1, x2 = (jnp.asarray(rng.random((1, 64, 64, 3), np.float32)) for _ in range(2))
    model = SpyNet()

    def loss(params):
        flows = model.apply({"params": params}, x1, x2, train=True).aux["level_flows"]
        return sum(jnp.mean(jnp.linalg.norm(f - 1.0, axis=-1)) for f in flows), flows

    # One compile: the training forward's level flows come out as the loss's aux.
    (_, flows), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(random_variables["params"])
    assert [f.shape for f in flows] == [(1, 32, 32, 2), (1, 64, 64, 2)]
    norms = {name: float(sum(jnp.sum(g ** 2) for g in jax.tree.leaves(tree)))
             for name, tree in grads.items()}
    # Two levels: networks 0 and 1 get gradients, the unused ones exactly none.
    assert norms["basic0"] > 0 and norms["basic1"] > 0
    assert all(norms[f"basic{i}"] == 0.0 for i in range(2, 6))
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_bad_inputs(random_variables):
    model = SpyNet()
    ok = jnp.zeros((1, 40, 60, 3), jnp.float32)
    with pytest.raises(ValueError, match=r"image1 must have shape \(B, H, W, 3\)"):
        model.apply(random_variables, jnp.zeros((1, 40, 60, 4), jnp.float32), ok)
    with pytest.raises(ValueError, match=r"image2 must have shape \(B, H, W, 3\)"):
        model.apply(random_variables, ok, jnp.zeros((40, 60, 3), jnp.float32))
    with pytest.raises(ValueError, match="same shape"):
        model.apply(random_variables, ok, jnp.zeros((1, 40, 61, 3), jnp.float32))
    with pytest.raises(ValueError, match="floating-point"):
        model.apply(random_variables, ok.astype(jnp.uint8), ok.astype(jnp.uint8))
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        model.apply(random_variables, jnp.zeros((1, 0, 60, 3)), jnp.zeros((1, 0, 60, 3)))


# ------------------------------------------------------------------ converter


def test_convert_key_spellings_agree():
    state = _random_state(6, seed=6)
    reference = flatten(convert_spynet.convert_state_dict(state))
    historic = {k.replace("netBasic", "moduleBasic"): v for k, v in state.items()}
    variants = [
        historic,
        {f"module.{k}": v for k, v in state.items()},
        {"state_dict": {f"module.{k}": v for k, v in historic.items()}, "epoch": 3},
    ]
    for source in variants:
        got = flatten(convert_spynet.convert_state_dict(source))
        assert got.keys() == reference.keys()
        assert all(np.array_equal(got[k], reference[k]) for k in got)
    # Layout: (O, I, kh, kw) -> (kh, kw, I, O).
    w = state["netBasic.2.netBasic.6.weight"]
    kernel = reference["params/basic2/conv3/conv/kernel"]
    np.testing.assert_array_equal(kernel[1, 4, :, :], w[:, :, 1, 4].T)
    np.testing.assert_array_equal(reference["params/basic5/conv4/conv/bias"],
                                  state["netBasic.5.netBasic.8.bias"])


def test_convert_infers_five_networks():
    state = _random_state(5, seed=7)
    assert convert_spynet.num_networks_from_state(state) == 5
    variables = convert_spynet.convert_state_dict(state)
    assert sorted(variables["params"]) == [f"basic{i}" for i in range(5)]
    with pytest.raises(ValueError, match=r"no tensor 'netBasic\.5\.netBasic\.0\.weight'"):
        convert_spynet.convert_state_dict(state, num_networks=6)


def test_convert_strict_accounting():
    state = _random_state(6, seed=8)
    missing = {k: v for k, v in state.items() if k != "netBasic.3.netBasic.4.bias"}
    with pytest.raises(ValueError, match=r"no tensor 'netBasic\.3\.netBasic\.4\.bias'"):
        convert_spynet.convert_state_dict(missing, num_networks=6)
    extra = {**state, "netBasic.1.netBasic.10.weight": np.zeros((2, 2, 7, 7), np.float32)}
    with pytest.raises(ValueError,
                       match=r"neither used nor ignored: \['netBasic\.1\.netBasic\.10\.weight'\]"):
        convert_spynet.convert_state_dict(extra)
    stray = {**state, "preprocess.mean": np.zeros(3, np.float32)}
    with pytest.raises(ValueError, match=r"preprocess\.mean"):
        convert_spynet.convert_state_dict(stray)
    bad = {**state, "netBasic.0.netBasic.0.weight": np.zeros((32, 6, 7, 7), np.float32)}
    with pytest.raises(ValueError, match=r"basic0/conv0/conv/kernel: checkpoint gives "
                                         r"\(7, 7, 6, 32\), model expects \(7, 7, 8, 32\)"):
        convert_spynet.convert_state_dict(bad)
    mixed = {**state, "moduleBasic.0.moduleBasic.0.bias": np.zeros(32, np.float32)}
    with pytest.raises(ValueError, match="found \\['moduleBasic', 'netBasic'\\]"):
        convert_spynet.convert_state_dict(mixed)
    with pytest.raises(ValueError, match="expected a SpyNet state dict"):
        convert_spynet.convert_state_dict([1, 2])  # type: ignore[arg-type]


def _write_t7_level(path, convs):
    modules = []
    for weight, bias in convs:
        o, i = weight.shape[:2]
        modules.append(T7Object("cudnn.SpatialConvolution", {
            "nInputPlane": i, "nOutputPlane": o, "kW": 7, "kH": 7, "dW": 1, "dH": 1,
            "padW": 3, "padH": 3, "weight": weight, "bias": bias}))
        modules.append(T7Object("cudnn.ReLU", {"inplace": False}))
    write_t7(path, T7Object("nn.Sequential", {"modules": modules[:-1]}))


def test_convert_t7_chairs_folder(tmp_path):
    state = _random_state(5, seed=9)
    for level in range(5):
        stem = f"netBasic.{level}.netBasic"
        convs = [(state[f"{stem}.{j}.weight"], state[f"{stem}.{j}.bias"]) for j in (0, 2, 4, 6, 8)]
        _write_t7_level(tmp_path / f"modelL{level + 1}_3.t7", convs)
    variables, kwargs = convert_spynet.convert_t7_dir(tmp_path, variant="chairs-final")
    assert kwargs == {"num_networks": 5}
    expected = flatten(convert_spynet.convert_state_dict(state))
    got = flatten(variables)
    assert got.keys() == expected.keys() and all(np.array_equal(got[k], expected[k]) for k in got)
    # The variant is found from the file names; convert_file takes the folder too.
    auto, _ = convert_spynet.convert_file(tmp_path)
    assert all(np.array_equal(flatten(auto)[k], expected[k]) for k in expected)
    with pytest.raises(ValueError, match=r"missing Torch7 files \['modelL1_F.t7'"):
        convert_spynet.convert_t7_dir(tmp_path, variant="sintel-final")
    with pytest.raises(ValueError, match="unknown SpyNet variant"):
        convert_spynet.convert_t7_dir(tmp_path, variant="sintel")
    with pytest.raises(ValueError, match="holds 5 level networks, expected 6"):
        convert_spynet.convert_file(tmp_path, num_networks=6)
    # A wrong module in a file is reported with its path.
    write_t7(tmp_path / "modelL2_3.t7", T7Object("nn.Sequential", {"modules": []}))
    with pytest.raises(ValueError, match=r"modelL2_3\.t7: expected 5 SpatialConvolution"):
        convert_spynet.convert_t7_dir(tmp_path)


def test_checkpoints_table():
    assert set(spynet.CHECKPOINTS) == set(convert_spynet.T7_SUFFIXES)
    for name, ckpt in spynet.CHECKPOINTS.items():
        url = f"http://content.sniklaus.com/github/pytorch-spynet/network-{name}.pytorch"
        assert ckpt.url == url
        assert ckpt.source_format == "pytorch"
        assert "non-commercial" in ckpt.license


# ------------------------------------------------------------------ golden fixtures


@pytest.mark.parametrize("case", ["case_a", "case_b"])
def test_fixture_parity(fixtures, fixture_state, tolerances, forward_with_inputs, case):
    ref = np.load(fixtures / "spynet" / f"{case}_reference.npz")
    tol = tolerances[f"spynet/{case}_reference.npz"]
    one = _read_rgb(fixtures / "spynet" / f"{case}_one.png")
    two = _read_rgb(fixtures / "spynet" / f"{case}_two.png")
    # The reference input is the same bytes in BGR, NCHW.
    np.testing.assert_array_equal(one[..., ::-1].transpose(2, 0, 1), ref["input_one"])
    np.testing.assert_array_equal(two[..., ::-1].transpose(2, 0, 1), ref["input_two"])
    variables = convert_spynet.convert_state_dict(fixture_state)
    out = forward_with_inputs(variables, one[None], two[None])
    levels = len(out.aux["level_flows"])
    assert levels == {"case_a": 6, "case_b": 2}[case]
    errors = {}
    for k in range(levels):
        for name, key in (("input", "level_inputs"), ("flow", "level_flows")):
            errors[f"level{k}_{name}"] = _max_err(out.aux[key][k], _nhwc(ref[f"level{k}_{name}"]))
    errors["raw_flow"] = _max_err(out.aux["raw_flow"], _nhwc(ref["raw_flow"]))
    errors["flow"] = _max_err(out.flow[0], np.moveaxis(ref["flow"], 0, -1))
    failed = {k: (e, tol[k]) for k, e in errors.items() if not e <= tol[k]}
    assert not failed, failed


def test_fixture_resize_and_normalisation(fixtures, tolerances):
    from flowlib import ops

    ref = np.load(fixtures / "spynet" / "case_a_reference.npz")
    one = _read_rgb(fixtures / "spynet" / "case_a_one.png")
    size = spynet.network_size(90, 530)
    resized = ops.resize_bilinear(jnp.asarray(one[None]), size, align_corners=False)
    tol = tolerances["spynet/case_a_reference.npz"]["resized_one"]
    assert _max_err(resized[..., ::-1], _nhwc(ref["resized_one"])) <= tol
    # Frame-1 channels of the finest level's input = preprocess of the resized frame, bit
    # for bit (run.py: flip to RGB, subtract the mean, multiply by float32(1 / std)).
    rgb = _nhwc(ref["resized_one"])[..., ::-1].copy()
    normalised = spynet.preprocess(jnp.asarray(rgb))
    np.testing.assert_array_equal(normalised, _nhwc(ref["level5_input"])[..., :3])


# ------------------------------------------------------------------ real weights


@pytest.fixture(scope="module")
def real_variables(data):
    variables, kwargs = convert_spynet.convert_file(
        data / "weights" / "spynet-pytorch-sintel-final" / "network-sintel-final.pytorch")
    assert kwargs == {"num_networks": 6}
    return variables


def test_real_weights_pytorch_legacy_and_t7_identical(data, fixtures, real_variables):
    t7, kwargs = convert_spynet.convert_file(data / "weights" / "spynet-t7-sintel-final")
    assert kwargs == {"num_networks": 6}
    legacy, _ = convert_spynet.convert_file(
        data / "weights" / "spynet-pytorch-sintel-final" / "network-sintel-final.legacy.pytorch")
    a, b, c = flatten(real_variables), flatten(t7), flatten(legacy)
    assert a.keys() == b.keys() == c.keys()
    assert all(np.array_equal(a[k], b[k]) and np.array_equal(a[k], c[k]) for k in a)
    # Each converted array, put back in PyTorch layout, has the hash the fixture recorded.
    doc = json.loads((fixtures / "spynet_real" / "checkpoint_keys.json").read_text())
    assert len(doc["keys"]) == 60
    for entry in doc["keys"]:
        _, level, _, j, kind = entry["key"].split(".")
        leaf_name = "kernel" if kind == "weight" else "bias"
        leaf = a[f"params/basic{level}/conv{int(j) // 2}/conv/{leaf_name}"]
        torch_layout = np.moveaxis(leaf, (-1, -2), (0, 1)) if kind == "weight" else leaf
        assert list(torch_layout.shape) == entry["shape"]
        digest = hashlib.sha256(np.ascontiguousarray(torch_layout, "<f4").tobytes()).hexdigest()
        assert digest == entry["sha256"], entry["key"]


@pytest.mark.slow
def test_real_weights_flow_matches_reference_and_ground_truth(data, fixtures, real_variables):
    forward = jax.jit(SpyNet().apply)
    rubber = data / "middlebury-flow" / "other-data" / "RubberWhale"
    out = forward(real_variables, _read_rgb(rubber / "frame10.png")[None],
                  _read_rgb(rubber / "frame11.png")[None])
    raw = np.load(fixtures / "spynet_real" / "rubberwhale_raw.npz")["raw_flow"]
    assert _max_err(out.aux["raw_flow"], _nhwc(raw)) <= 2e-3
    rubber_gt = data / "middlebury-flow" / "other-gt-flow" / "RubberWhale" / "flow10.flo"
    rubber_ref = fixtures / "spynet_real" / "rubberwhale.flo"
    results = {"rubberwhale": (out.flow[0], rubber_ref, rubber_gt)}
    # Clean and final pass of the same Sintel pair as one batch (one compilation).
    sintel = data / "sintel" / "training"
    frames = [[_read_rgb(sintel / p / "alley_1" / f"frame_000{i}.png") for p in ("clean", "final")]
              for i in (2, 3)]
    out = forward(real_variables, np.stack(frames[0]), np.stack(frames[1]))
    gt = sintel / "flow" / "alley_1" / "frame_0002.flo"
    for b, p in enumerate(("clean", "final")):
        reference = fixtures / "spynet_real" / f"sintel_{p}_alley_1_0002.flo"
        results[f"sintel_{p}"] = (out.flow[b], reference, gt)
    expected_epe = {"rubberwhale": 0.14774, "sintel_clean": 0.18814, "sintel_final": 0.21623}
    for name, (flow, ref_path, gt_path) in results.items():
        reference, _ = io.read_flo(ref_path)
        assert _max_err(flow, reference) <= 2e-3, name
        truth, valid = io.read_flo(gt_path)
        epe = np.linalg.norm(np.asarray(flow, np.float64) - truth, axis=-1)[valid].mean()
        zero_epe = np.linalg.norm(truth, axis=-1)[valid].mean()
        assert abs(epe - expected_epe[name]) < 1e-3, (name, epe)
        assert epe < 0.2 * zero_epe, (name, epe, zero_epe)
