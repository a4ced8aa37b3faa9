"""FlowNetS / FlowNetC: golden parity with both upstream code bases, converter, conventions.

Parity tier: the six fixtures of ``shared/fixtures`` (FNP flownets / flownets_bn /
flownetc / flownetc_bn at 180x330, NV FlowNet2S / FlowNet2C at 192x320) with the synthetic
weights of ``make_weights.py``, checked to ``tolerances.json``. Each fixture's model is
converted, compiled and run once (module-scoped); the BatchNorm fixtures are ``slow``.
The other tests need no shared data: a small-width model (``channel_divisor=16``) for
real forwards and ``jax.eval_shape`` for the full-size one.
"""

from __future__ import annotations

import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowlib.convert import flownet as convert
from flowlib.models import flownet
from flowlib.models.flownet import FlowNet
from flowlib.weights import flatten
from tests.convert._torch_writer import write_torch_checkpoint

# ----------------------------------------------------------------------------- parity

_FNP_ARRAYS = ("flow2", "flow3", "flow4", "flow5", "flow6", "inference_flow_quarter",
               "inference_flow_bilinear")
_NV_ARRAYS = ("flow2", "flow3", "flow4", "flow5", "flow6", "output")
_CORR_ARRAYS = ("conv_redir", "corr_lrelu")
FIXTURES = {
    "flownet_pytorch/flownets": _FNP_ARRAYS,
    "flownet_pytorch/flownets_bn": _FNP_ARRAYS,
    "flownet_pytorch/flownetc": _FNP_ARRAYS + _CORR_ARRAYS,
    "flownet_pytorch/flownetc_bn": _FNP_ARRAYS + _CORR_ARRAYS,
    "flownet2_pytorch/FlowNet2S": _NV_ARRAYS,
    "flownet2_pytorch/FlowNet2C": _NV_ARRAYS + _CORR_ARRAYS,
}
# What the converter must infer from each fixture's keys.
EXPECTED_KWARGS = {
    "flownet_pytorch/flownets": dict(correlation=False, batch_norm=False, family="fnp"),
    "flownet_pytorch/flownets_bn": dict(correlation=False, batch_norm=True, family="fnp"),
    "flownet_pytorch/flownetc": dict(correlation=True, batch_norm=False, family="fnp"),
    "flownet_pytorch/flownetc_bn": dict(correlation=True, batch_norm=True, family="fnp"),
    "flownet2_pytorch/FlowNet2S": dict(correlation=False, batch_norm=False, family="nv"),
    "flownet2_pytorch/FlowNet2C": dict(correlation=True, batch_norm=False, family="nv"),
}
_SLOW = {"flownet_pytorch/flownets_bn", "flownet_pytorch/flownetc_bn"}
_PARAMS = [pytest.param(name, marks=[pytest.mark.slow] if name in _SLOW else [], id=name.split("/")[1])
           for name in FIXTURES]


def _nchw(x) -> np.ndarray:
    return np.transpose(np.asarray(x), (0, 3, 1, 2))


@pytest.fixture(scope="module")
def make_weights(fixtures):
    spec = importlib.util.spec_from_file_location("make_weights", fixtures / "make_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tolerances(fixtures):
    return json.loads((fixtures / "tolerances.json").read_text())["files"]


@pytest.fixture(scope="module", params=_PARAMS)
def case(request, fixtures, make_weights):
    """One fixture: its reference arrays, inferred kwargs and our outputs (one jit run)."""
    name = request.param
    folder = fixtures / name
    state = make_weights.make_state_dict(make_weights.load_keys(folder / "keys.json"))
    kwargs = convert.model_kwargs_from_state(state)
    variables = convert.convert_state_dict(state)
    ref = dict(np.load(folder / "reference.npz"))
    image1 = jnp.asarray(ref["img1_u8"][None].astype(np.float32) / 255)
    image2 = jnp.asarray(ref["img2_u8"][None].astype(np.float32) / 255)
    module = FlowNet(**kwargs)
    out = jax.jit(module.apply)(variables, image1, image2)
    ours = {f"flow{level}": _nchw(f) for level, f in zip(range(2, 7), out.aux["flows"])}
    if kwargs["correlation"]:
        ours["conv_redir"] = _nchw(out.aux["conv_redir"])
        ours["corr_lrelu"] = _nchw(out.aux["corr"])
    if kwargs["family"] == "fnp":
        # run_inference.py without / with --upsampling bilinear (both x div_flow = 20).
        ours["inference_flow_quarter"] = _nchw(out.aux["flows"][0] * module.div_flow)[0]
        ours["inference_flow_bilinear"] = _nchw(out.flow)[0]
    else:
        ours["output"] = _nchw(out.flow)
    return dict(name=name, ref=ref, ours=ours, kwargs=kwargs, images=(image1, image2))


def test_fixture_parity(case, tolerances):
    tol = tolerances[f"{case['name']}/reference.npz"]
    errors = {}
    for key in FIXTURES[case["name"]]:
        ref, ours = case["ref"][key], case["ours"][key]
        assert ours.shape == ref.shape, key
        errors[key] = float(np.max(np.abs(ours - ref)))
    failing = {k: (e, tol[k]) for k, e in errors.items() if not e <= tol[k]}
    assert not failing, f"max |ours - reference| over tolerance: {failing}"


def test_fixture_kwargs_inferred(case):
    assert {k: case["kwargs"][k] for k in EXPECTED_KWARGS[case["name"]]} == EXPECTED_KWARGS[case["name"]]
    expected_norm = "fnp_inference" if case["kwargs"]["family"] == "fnp" else "nv_per_image_mean"
    assert case["kwargs"]["input_norm"] == expected_norm


def test_fixture_preprocessing(case, tolerances):
    """The network input our preprocessing builds equals the one the reference was fed."""
    ref, (image1, image2) = case["ref"], case["images"]
    tol = tolerances[f"{case['name']}/reference.npz"]
    x1, x2 = flownet.preprocess(image1, image2, input_norm=case["kwargs"]["input_norm"])
    ours = _nchw(jnp.concatenate([x1, x2], axis=-1))
    if case["kwargs"]["family"] == "fnp":
        assert np.max(np.abs(ours - ref["input"])) <= tol["input"]
    else:
        # `inputs` is NV's raw (1, 3, 2, H, W) 0..255 tensor, the PNG bytes exactly.
        raw = np.stack([ref["img1_u8"], ref["img2_u8"]]).transpose(3, 0, 1, 2)[None]
        assert np.max(np.abs(raw.astype(np.float32) - ref["inputs"])) <= tol["inputs"]
        # models.py: (x - mean over both frames and all pixels) / rgb_max, per channel.
        inputs = ref["inputs"].astype(np.float64)
        x = (inputs - inputs.mean(axis=(2, 3, 4), keepdims=True)) / 255.0
        expected = np.concatenate([x[:, :, 0], x[:, :, 1]], axis=1)
        assert np.max(np.abs(ours - expected)) < 1e-6


# ----------------------------------------------------------------------------- structure

# The official models' parameter counts (fixtures README) (trainable parameters; BN adds scale and bias).
PARAM_COUNTS = {
    "FlowNetS": 38_675_536,
    "FlowNetC": 39_174_320,
    "FlowNetS_BN": 38_680_336,
    "FlowNetC_BN": 39_179_152,
    "FlowNet2S": 38_676_506,
    "FlowNet2C": 39_175_298,
}
_X64 = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)


def _shapes(module, height=64, width=64):
    x = jax.ShapeDtypeStruct((1, height, width, 3), jnp.float32)
    return jax.eval_shape(module.init, jax.random.PRNGKey(0), x, x)


@pytest.mark.parametrize("variant", sorted(PARAM_COUNTS))
def test_param_count(variant):
    variables = _shapes(getattr(flownet, variant)())
    count = sum(int(np.prod(v.shape)) for v in jax.tree_util.tree_leaves(variables["params"]))
    assert count == PARAM_COUNTS[variant]
    assert ("batch_stats" in variables) == variant.endswith("_BN")


def test_bias_layout_per_family():
    """FNP has no deconv/predict/upsample biases; NV has deconv and predict
    biases, and upsampled_flow biases in FlowNetC only; BatchNorm convs have no bias."""
    paths = {v: set(flatten(_shapes(getattr(flownet, v)())["params"]))
             for v in ("FlowNetS", "FlowNetC", "FlowNetS_BN", "FlowNet2S", "FlowNet2C")}
    biases = ("deconv5/bias", "predict_flow6/conv/bias", "upsampled_flow6_to_5/bias")
    for variant in ("FlowNetS", "FlowNetC"):
        assert not paths[variant] & set(biases)
    assert {"deconv2/bias", "predict_flow2/conv/bias"} <= paths["FlowNet2S"]
    assert "upsampled_flow3_to_2/bias" not in paths["FlowNet2S"]
    assert "upsampled_flow3_to_2/bias" in paths["FlowNet2C"]
    assert "conv1/conv/conv/bias" in paths["FlowNetS"]
    assert "conv1/conv/conv/bias" not in paths["FlowNetS_BN"]
    assert "conv1/bn/bn/bias" in paths["FlowNetS_BN"]


@pytest.mark.parametrize("height,width", [(180, 330), (97, 131), (1, 1), (436, 1024)])
def test_fnp_level_sizes_follow_ceil_halving(height, width):
    """FNP runs at the native size: level l has ceil(h / 2^l) rows (stride-2 convs with
    padding (k-1)//2), deconvolutions are cropped to the skip (crop_like)."""
    x = jax.ShapeDtypeStruct((1, height, width, 3), jnp.float32)
    module = flownet.FlowNetC()
    variables = _shapes(module)
    out = jax.eval_shape(module.apply, variables, x, x)
    h, w = height, width
    sizes = []
    for _ in range(6):
        h, w = -(-h // 2), -(-w // 2)
        sizes.append((h, w))
    assert [f.shape[1:3] for f in out.aux["flows"]] == sizes[1:]
    assert out.aux["corr"].shape == (1, *sizes[2], 441)
    assert out.aux["conv_redir"].shape == (1, *sizes[2], 32)
    assert out.flow.shape == (1, height, width, 2)


@pytest.mark.parametrize("height,width,padded", [(192, 320, (192, 320)), (97, 131, (128, 192)),
                                                 (436, 1024, (448, 1024)), (5, 3, (64, 64))])
def test_nv_runs_on_the_next_multiple_of_64(height, width, padded):
    x = jax.ShapeDtypeStruct((2, height, width, 3), jnp.float32)
    module = flownet.FlowNet2S()
    out = jax.eval_shape(module.apply, _shapes(module), x, x)
    assert out.flow.shape == (2, height, width, 2)
    assert out.aux["flows"][0].shape == (2, padded[0] // 4, padded[1] // 4, 2)
    assert out.aux["flows"][4].shape == (2, padded[0] // 64, padded[1] // 64, 2)
    assert flownet.network_padding(height, width, family="nv") == (
        0, padded[0] - height, 0, padded[1] - width)
    assert flownet.network_padding(height, width, family="fnp") == (0, 0, 0, 0)


def test_crop_like_keeps_top_left():
    x = jnp.arange(2 * 4 * 6 * 1, dtype=jnp.float32).reshape(2, 4, 6, 1)
    target = jnp.zeros((2, 3, 5, 7))
    np.testing.assert_array_equal(flownet.crop_like(x, target), np.asarray(x)[:, :3, :5])
    np.testing.assert_array_equal(flownet.crop_like(x, jnp.zeros((2, 4, 6, 1))), x)


# ----------------------------------------------------------------------------- preprocessing


def test_preprocess_hand_values():
    pixel = jnp.array([0.8, 0.5, 0.2], jnp.float32).reshape(1, 1, 1, 3)
    other = jnp.array([0.0, 0.1, 1.0], jnp.float32).reshape(1, 1, 1, 3)
    cases = {
        # run_inference.py: the BGR means applied to R, G, B (FNP#101).
        "fnp_inference": [0.8 - 0.411, 0.5 - 0.432, 0.2 - 0.45],
        "fnp_train": [0.8 - 0.45, 0.5 - 0.432, 0.2 - 0.411],
        # Caffe FlowNetS: B, G, R order, Caffe's means in that order.
        "caffe_bgr": [0.2 - 0.411, 0.5 - 0.432, 0.8 - 0.45],
        # NV: mean over both frames: (0.4, 0.3, 0.6).
        "nv_per_image_mean": [0.4, 0.2, -0.4],
    }
    for norm, expected in cases.items():
        x1, _ = flownet.preprocess(pixel, other, input_norm=norm)
        np.testing.assert_allclose(np.asarray(x1).ravel(), expected, atol=1e-7, err_msg=norm)
    _, x2 = flownet.preprocess(pixel, other, input_norm="nv_per_image_mean")
    np.testing.assert_allclose(np.asarray(x2).ravel(), [-0.4, -0.2, 0.4], atol=1e-7)


def test_nv_mean_is_per_image_over_both_frames():
    rng = np.random.default_rng(3)
    image1, image2 = rng.random((2, 3, 5, 7, 3), np.float32)
    x1, x2 = flownet.preprocess(image1, image2, input_norm="nv_per_image_mean")
    both = jnp.concatenate([x1, x2], axis=1)
    np.testing.assert_allclose(np.asarray(both.mean(axis=(1, 2))), 0, atol=1e-6)
    # Image b's normalisation does not see image b' != b.
    y1, _ = flownet.preprocess(image1[:1], image2[:1], input_norm="nv_per_image_mean")
    np.testing.assert_allclose(y1, x1[:1], atol=1e-7)


def test_bad_input_norm():
    x = jnp.zeros((1, 4, 4, 3))
    with pytest.raises(ValueError, match="input_norm must be one of"):
        flownet.preprocess(x, x, input_norm="imagenet")


# ----------------------------------------------------------------------------- forward

TINY = 16  # channel_divisor for real forwards without shared data


def _random_variables(module, seed=0):
    """He-scaled normal kernels, small biases, BatchNorm (1, 0) / running (0.1 z, 1 + u).

    Built with numpy from ``jax.eval_shape``: a jitted ``module.init`` spends most of a
    minute compiling the per-parameter threefry draws on XLA:CPU.
    """
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        z = rng.standard_normal(leaf.shape).astype(np.float32)
        if "kernel" in name:
            return z * np.float32(np.sqrt(2.0 / np.prod(leaf.shape[:-1])))
        if "'var'" in name:
            return 1 + rng.random(leaf.shape).astype(np.float32)
        if "'scale'" in name:
            return 1 + 0.1 * z
        return 0.1 * z if "'mean'" in name else 0.01 * z

    return jax.tree_util.tree_map_with_path(draw, _shapes(module))


def _frames(seed, shape):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.random(shape, np.float32)), jnp.asarray(rng.random(shape, np.float32)))


@pytest.fixture(scope="module")
def tiny_c():
    """Small-width FNP FlowNetC on a (2, 96, 128) batch, compiled once: element 0 is a
    random pair, element 1 a frame and its copy shifted 16 px to the right."""
    module = FlowNet(correlation=True, channel_divisor=TINY)
    variables = _random_variables(module)
    image1, image2 = _frames(1, (2, 96, 128, 3))
    image2 = image2.at[1].set(jnp.roll(image1[1], 16, axis=1))
    apply = jax.jit(module.apply)
    return module, variables, apply, (image1, image2), apply(variables, image1, image2)


def test_tiny_forward_shapes_and_output_scaling(tiny_c):
    *_, out = tiny_c
    assert out.flow.shape == (2, 96, 128, 2)
    assert [f.shape[1:3] for f in out.aux["flows"]] == [(24, 32), (12, 16), (6, 8), (3, 4), (2, 2)]
    assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(out))
    # The output is div_flow x the 1/4 prediction resized (align_corners=False), never x4;
    # jax.image.resize (half-pixel centres, no antialiasing when upsampling) is the same map.
    expected = jax.image.resize(out.aux["flows"][0] * 20, (2, 96, 128, 2), "linear",
                                antialias=False)
    np.testing.assert_allclose(out.flow, expected, rtol=1e-5, atol=1e-5)


def test_tiny_batch_elements_are_independent(tiny_c):
    _, variables, apply, (image1, image2), out = tiny_c
    swapped = apply(variables, image1[::-1], image2[::-1])
    np.testing.assert_allclose(swapped.flow[::-1], out.flow, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(swapped.aux["corr"][::-1], out.aux["corr"], rtol=1e-5, atol=1e-6)


def test_tiny_shift_peaks_in_the_right_correlation_channel(tiny_c):
    """A 16 px shift to the right is 2 px at conv3 (1/8): channel (dy/2 + 10) * 21 +
    (dx/2 + 10) = 10 * 21 + 11 wins away from the borders and the roll's wrap-around."""
    *_, out = tiny_c
    interior = np.asarray(out.aux["corr"][1, 3:-3, 4:-4])
    winners = np.bincount(interior.argmax(-1).ravel(), minlength=441)
    assert winners.argmax() == 10 * 21 + 11
    assert winners.max() >= 0.75 * interior.shape[0] * interior.shape[1]


def test_tiny_jit_equals_eager_at_an_odd_size(tiny_c):
    module, variables, *_ = tiny_c
    image1, image2 = _frames(2, (1, 97, 131, 3))
    eager = module.apply(variables, image1, image2)
    jitted = jax.jit(module.apply)(variables, image1, image2)
    assert eager.flow.shape == (1, 97, 131, 2)
    assert np.all(np.isfinite(eager.flow))
    for a, b in zip(jax.tree_util.tree_leaves(jitted), jax.tree_util.tree_leaves(eager)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_nv_output_is_the_padded_result_cropped():
    """Off a multiple of 64, the result is the top-left crop of the network run on the
    normalised frames zero-padded at the bottom / right."""
    module = FlowNet(family="nv", input_norm="nv_per_image_mean", channel_divisor=TINY)
    image1, image2 = _frames(4, (1, 50, 70, 3))
    variables = _random_variables(module)
    out = jax.jit(module.apply)(variables, image1, image2)
    assert out.flow.shape == (1, 50, 70, 2)
    # x1, x2 have zero mean over both frames, so the zero-padded pair plus any constant
    # colour normalises back to exactly the padded x1, x2 in a 64 x 128 run (no padding).
    x1, x2 = flownet.preprocess(image1, image2, input_norm="nv_per_image_mean")
    colour = (image1 - x1)[:, :1, :1]
    pad = ((0, 0), (0, 14), (0, 58), (0, 0))
    full = jax.jit(module.apply)(variables, jnp.pad(x1, pad) + colour, jnp.pad(x2, pad) + colour)
    assert full.flow.shape == (1, 64, 128, 2)
    np.testing.assert_allclose(out.flow, full.flow[:, :50, :70], rtol=1e-5, atol=1e-5)
    for a, b in zip(out.aux["flows"], full.aux["flows"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_train_mode_batch_norm_updates_stats_and_returns_all_scales():
    module = FlowNet(batch_norm=True, channel_divisor=TINY)
    image1, image2 = _frames(5, (2, 48, 80, 3))
    variables = _random_variables(module)
    train = jax.jit(lambda v, a, b: module.apply(v, a, b, train=True, mutable=["batch_stats"]))
    out, updates = train(variables, image1, image2)
    shapes = [f.shape for f in out.aux["flows"]]
    assert shapes == [(2, 12, 20, 2), (2, 6, 10, 2), (2, 3, 5, 2), (2, 2, 3, 2), (2, 1, 2, 2)]
    before = flatten(variables["batch_stats"])
    after = flatten(updates["batch_stats"])
    assert before.keys() == after.keys()
    assert all(not np.allclose(before[k], after[k]) for k in after if k.endswith("/mean"))
    # Eval mode uses the running statistics, so it gives another result.
    evaluated = jax.jit(module.apply)(variables, image1, image2)
    assert not np.allclose(evaluated.flow, out.flow)


@pytest.mark.slow
def test_gradients_reach_every_parameter():
    module = FlowNet(channel_divisor=TINY)
    variables = _random_variables(module)
    image1, image2 = _frames(6, (1, 64, 64, 3))

    def loss(params):
        flows = module.apply({"params": params}, image1, image2, train=True).aux["flows"]
        return sum(w * jnp.sum(f ** 2) for w, f in zip((0.005, 0.01, 0.02, 0.08, 0.32), flows))

    grads = flatten(jax.jit(jax.grad(loss))(variables["params"]))
    dead = [k for k, g in grads.items() if not np.any(np.asarray(g))]
    assert not dead


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("shape1,shape2,dtype,match", [
    ((1, 32, 32, 4), (1, 32, 32, 4), jnp.float32, r"\(B, H, W, 3\)"),
    ((32, 32, 3), (32, 32, 3), jnp.float32, r"\(B, H, W, 3\)"),
    ((1, 0, 32, 3), (1, 0, 32, 3), jnp.float32, r"\(B, H, W, 3\)"),
    ((1, 32, 32, 3), (1, 32, 48, 3), jnp.float32, "same shape"),
    ((1, 32, 32, 3), (1, 32, 32, 3), jnp.uint8, "floating-point"),
])
def test_bad_images(shape1, shape2, dtype, match):
    module = flownet.FlowNetS()
    variables = _shapes(module)
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(module.apply, variables, jax.ShapeDtypeStruct(shape1, dtype),
                       jax.ShapeDtypeStruct(shape2, dtype))


@pytest.mark.parametrize("kwargs,match", [
    (dict(family="caffe"), "family must be one of"),
    (dict(input_norm="bgr"), "input_norm must be one of"),
    (dict(channel_divisor=3), "channel_divisor"),
])
def test_bad_fields(kwargs, match):
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(FlowNet(**kwargs).init, jax.random.PRNGKey(0), _X64, _X64)


# ----------------------------------------------------------------------------- converter


def _to_torch(variables, *, correlation, batch_norm, family):
    """Invert the key table: Flax variables -> a PyTorch-layout state dict."""
    flat = flatten(variables)
    inverse = {convert.conv_kernel: lambda k: np.transpose(k, (3, 2, 0, 1)),
               convert.conv_transpose_kernel: lambda k: np.transpose(k, (2, 3, 0, 1)),
               None: lambda a: a}
    state = {}
    for key, path, transform in convert.key_table(correlation=correlation, batch_norm=batch_norm,
                                                  family=family):
        state[key] = np.array(inverse[transform](np.asarray(flat[path])))
        if key.endswith(".1.running_var"):
            state[key.replace("running_var", "num_batches_tracked")] = np.array(7, np.int64)
    return state


VARIANTS = [dict(correlation=c, batch_norm=b, family=f)
            for c in (False, True) for b in (False, True) for f in ("fnp", "nv")]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v.values())))
def test_converter_round_trip_and_inference(variant):
    module = FlowNet(channel_divisor=TINY, **variant)
    variables = jax.tree_util.tree_map(
        lambda s: np.random.default_rng(0).standard_normal(s.shape).astype(np.float32),
        _shapes(module))
    state = _to_torch(variables, **variant)
    inferred = convert.model_kwargs_from_state(state)
    assert {k: inferred[k] for k in variant} == variant
    back = convert.convert_state_dict(state, channel_divisor=TINY)
    assert flatten(back).keys() == flatten(variables).keys()
    for k, v in flatten(variables).items():
        np.testing.assert_array_equal(flatten(back)[k], v, err_msg=k)


def test_converter_layouts_against_a_hand_made_layer():
    """conv (O, I, kh, kw) -> (kh, kw, I, O); convT (I, O, kh, kw) -> (kh, kw, I, O)."""
    variables = _shapes(FlowNet(channel_divisor=TINY))
    state = _to_torch(jax.tree_util.tree_map(lambda s: np.zeros(s.shape, np.float32), variables),
                      correlation=False, batch_norm=False, family="fnp")
    state["conv1.0.weight"] = np.arange(4 * 6 * 7 * 7, dtype=np.float32).reshape(4, 6, 7, 7)
    state["deconv5.0.weight"] = np.arange(64 * 32 * 16, dtype=np.float32).reshape(64, 32, 4, 4)
    out = convert.convert_state_dict(state, channel_divisor=TINY)["params"]
    assert out["conv1"]["conv"]["conv"]["kernel"][2, 5, 1, 3] == state["conv1.0.weight"][3, 1, 2, 5]
    assert out["deconv5"]["kernel"][1, 2, 60, 30] == state["deconv5.0.weight"][60, 30, 1, 2]


def _tiny_state(*, correlation=False, batch_norm=False, family="fnp"):
    variant = dict(correlation=correlation, batch_norm=batch_norm, family=family)
    shapes = _shapes(FlowNet(channel_divisor=TINY, **variant))
    return _to_torch(jax.tree_util.tree_map(lambda s: np.ones(s.shape, np.float32), shapes),
                     **variant)


def test_converter_strict_accounting():
    state = _tiny_state()
    missing = {k: v for k, v in state.items() if k != "predict_flow3.weight"}
    with pytest.raises(ValueError, match="predict_flow3.weight"):
        convert.convert_state_dict(missing, channel_divisor=TINY)
    extra = {**state, "corr.weight": np.zeros(3, np.float32)}
    with pytest.raises(ValueError, match="corr.weight"):
        convert.convert_state_dict(extra, channel_divisor=TINY)
    wrong = {**state, "conv2.0.bias": np.zeros(5, np.float32)}
    with pytest.raises(ValueError, match="shape"):
        convert.convert_state_dict(wrong, channel_divisor=TINY)
    # A forced variant that does not fit the keys fails loudly.
    with pytest.raises(ValueError, match="conv_redir"):
        convert.convert_state_dict(state, correlation=True, channel_divisor=TINY)
    with pytest.raises(ValueError, match="unknown FlowNet keyword"):
        convert.convert_state_dict(state, channel_divisor=TINY, dropout=0.5)
    with pytest.raises(ValueError, match="conv1.0.weight"):
        convert.convert_state_dict({"encoder.weight": np.zeros((2, 2, 1, 1), np.float32)})


def test_converter_reads_pth_tar_dicts(tmp_path):
    """FNP ``save_checkpoint`` dict (module. prefix, arch, div_flow) through a real file."""
    state = _tiny_state(batch_norm=True)
    checkpoint = {"epoch": 12, "arch": "flownets_bn", "best_EPE": 2.459, "div_flow": 10,
                  "state_dict": {f"module.{k}": v for k, v in state.items()}}
    path = tmp_path / "flownets_bn_EPE2.459.pth.tar"
    write_torch_checkpoint(path, checkpoint)
    variables, kwargs = convert.convert_file(path, channel_divisor=TINY)
    assert kwargs == dict(correlation=False, batch_norm=True, family="fnp",
                          input_norm="fnp_inference", div_flow=10.0, channel_divisor=TINY)
    assert "batch_stats" in variables
    # The kwargs rebuild a module the variables fit.
    module = FlowNet(**kwargs)
    expected = flatten(_shapes(module))
    assert {k: v.shape for k, v in expected.items()} == {k: v.shape for k, v in flatten(variables).items()}
    # Overrides win over the inference (the Caffe FlowNetS needs BGR input).
    _, kwargs = convert.convert_file(path, channel_divisor=TINY, input_norm="caffe_bgr")
    assert kwargs["input_norm"] == "caffe_bgr"

    write_torch_checkpoint(path, {**checkpoint, "arch": "flownetc"})
    with pytest.raises(ValueError, match="arch='flownetc'") as err:
        convert.convert_file(path, channel_divisor=TINY)
    assert str(path) in str(err.value)


def test_checkpoint_table():
    tables = {"flownets": flownet.FLOWNETS_CHECKPOINTS, "flownetc": flownet.FLOWNETC_CHECKPOINTS}
    checkpoints = {f"{model}:{variant}": ckpt for model, table in tables.items()
                   for variant, ckpt in table.items()}
    names = {"flownets:chairs", "flownets:chairs-bn", "flownetc:chairs", "flownets:caffe",
             "flownets:things", "flownetc:things"}
    assert set(checkpoints) == names
    for name, ckpt in checkpoints.items():
        kwargs = ckpt.model_kwargs
        assert kwargs["correlation"] == name.startswith("flownetc"), name
        assert kwargs["batch_norm"] == name.endswith("-bn"), name
        assert kwargs["family"] == ("nv" if name.endswith("things") else "fnp"), name
        if name != "flownets:caffe":
            default = {"nv": "nv_per_image_mean", "fnp": "fnp_inference"}[kwargs["family"]]
            assert kwargs["input_norm"] == default, name
        assert ckpt.sha256 is None or (len(ckpt.sha256) == 64 and int(ckpt.sha256, 16) >= 0)
        assert ckpt.url.startswith("https://") and ckpt.source_format == "pytorch"
        jax.eval_shape(FlowNet(**kwargs).init, jax.random.PRNGKey(0), _X64, _X64)
    assert checkpoints["flownets:caffe"].model_kwargs["input_norm"] == "caffe_bgr"
