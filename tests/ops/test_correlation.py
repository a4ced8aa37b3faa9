"""local_correlation / all_pairs_correlation: golden fixtures, naive reference, hand cases."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowlib import ops
from tests.ops import _reference
from tests._gradients import check_grads

IMPLS = ["banded", "shifted", "patches"]


def _nhwc(a: np.ndarray) -> jnp.ndarray:
    return jnp.asarray(np.transpose(a, (0, 2, 3, 1)))


def _random(shape, seed, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# Jitted once per shape and option set: eager dispatch of the unrolled displacement
# loops would compile every distinct slice separately (test_jit_equals_eager covers eager).
_corr = jax.jit(
    ops.local_correlation,
    static_argnames=("max_displacement", "stride", "kernel_size", "normalize", "precision", "impl"),
)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def flownet_fixture(fixtures):
    tolerances = json.loads((fixtures / "tolerances.json").read_text())["files"]
    return np.load(fixtures / "primitives" / "flownet_correlation.npz"), tolerances[
        "primitives/flownet_correlation.npz"
    ]


@pytest.mark.data
@pytest.mark.parametrize(
    "impl",
    # "shifted" unrolls all 441 displacements: ~20 s of XLA:CPU compile per shape.
    ["banded", "patches", pytest.param("shifted", marks=pytest.mark.slow)],
)
def test_flownet_fixtures(flownet_fixture, impl):
    ref, tol = flownet_fixture

    def corr(a, b, normalize):
        return _corr(a, b, max_displacement=20, stride=2, normalize=normalize, impl=impl)

    small1, small2 = _nhwc(ref["small_f1"]), _nhwc(ref["small_f2"])
    # PCE: raw channel sums, (B, 21 dy, 21 dx, H, W) -> dy-major 441 channels.
    raw = np.asarray(corr(small1, small2, "none"))
    expected = ref["small_pce_raw"].reshape(1, 441, 12, 16).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(raw, expected, rtol=0, atol=tol["small_pce_raw"])
    # NV (emulated): mean over channels, before the activation.
    mean = corr(small1, small2, "channels")
    np.testing.assert_allclose(
        mean, _nhwc(ref["small_nv_emulated"]), rtol=0, atol=tol["small_nv_emulated"]
    )
    # FNP correlate = /C then LeakyReLU(0.1).
    np.testing.assert_allclose(
        jax.nn.leaky_relu(mean, 0.1),
        _nhwc(ref["small_fnp_correlate"]),
        rtol=0,
        atol=tol["small_fnp_correlate"],
    )
    medium = corr(_nhwc(ref["medium_f1"]), _nhwc(ref["medium_f2"]), "channels")
    np.testing.assert_allclose(
        jax.nn.leaky_relu(medium, 0.1),
        _nhwc(ref["medium_fnp_correlate"]),
        rtol=0,
        atol=tol["medium_fnp_correlate"],
    )


# --------------------------------------------------------------------------- naive reference

CONFIGS = [
    # (max_displacement, stride, kernel_size)
    (0, 1, 1),
    (3, 1, 1),
    (4, 2, 1),
    (6, 3, 1),
    (2, 1, 3),
    (4, 2, 3),
    (1, 1, 5),
    (8, 4, 1),  # larger than H: whole channels are zero
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("max_displacement, stride, kernel_size", CONFIGS)
def test_matches_naive_reference(impl, max_displacement, stride, kernel_size):
    f1 = _random((2, 7, 11, 5), 0)
    f2 = _random((2, 7, 11, 5), 1)
    kw = {"max_displacement": max_displacement, "stride": stride, "kernel_size": kernel_size}
    got = _corr(f1, f2, normalize="none", impl=impl, **kw)
    want = _reference.local_correlation(f1, f2, normalize="none", **kw)
    # float32 sums of <= 125 products of N(0, 1) values: rounding ~1e-6 * sqrt(n) * |terms|.
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize(
    "normalize, divisor", [("channels", 9 * 6), ("sqrt_channels", np.sqrt(9 * 6)), ("none", 1)]
)
def test_normalize_modes(normalize, divisor):
    f1, f2 = _random((1, 6, 8, 6), 2), _random((1, 6, 8, 6), 3)
    raw = _corr(f1, f2, max_displacement=2, kernel_size=3, normalize="none")
    scaled = _corr(f1, f2, max_displacement=2, kernel_size=3, normalize=normalize)
    np.testing.assert_allclose(scaled, raw / divisor, rtol=1e-6, atol=1e-7)


@settings(max_examples=8, deadline=None)
@given(
    height=st.integers(1, 6),
    width=st.integers(1, 9),
    channels=st.integers(1, 4),
    radius=st.integers(0, 2),
    stride=st.integers(1, 3),
    kernel_size=st.sampled_from([1, 3]),
    impl=st.sampled_from(IMPLS),
)
def test_property_matches_reference(height, width, channels, radius, stride, kernel_size, impl):
    f1 = _random((1, height, width, channels), height * 31 + width)
    f2 = _random((1, height, width, channels), channels * 7 + radius)
    kw = {"max_displacement": radius * stride, "stride": stride, "kernel_size": kernel_size}
    got = _corr(f1, f2, normalize="channels", impl=impl, **kw)
    want = _reference.local_correlation(f1, f2, normalize="channels", **kw)
    assert got.shape == (1, height, width, (2 * radius + 1) ** 2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- hand-computed


def test_three_by_three_by_hand():
    # One channel holding 1..9 in both frames, max displacement 1, stride 1.
    f = jnp.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    out = np.asarray(_corr(f, f, max_displacement=1, normalize="none"))
    # Centre pixel (value 5) sees the whole image: channel k = (dy+1)*3 + (dx+1) holds 5 * f2.
    np.testing.assert_array_equal(out[0, 1, 1], 5.0 * np.arange(1, 10))
    # Top-left pixel (value 1): only dy, dx in {0, 1} stay inside.
    np.testing.assert_array_equal(out[0, 0, 0], [0, 0, 0, 0, 1, 2, 0, 4, 5])
    # Bottom-middle pixel (value 8): dy in {-1, 0}, dx in {-1, 0, 1}.
    np.testing.assert_array_equal(out[0, 2, 1], 8.0 * np.array([4, 5, 6, 7, 8, 9, 0, 0, 0]))
    # Two channels, "channels" divides by C = 2 (the second channel is 10 * the first).
    f2c = jnp.concatenate([f, 10.0 * f], axis=-1)
    out2 = np.asarray(_corr(f2c, f2c, max_displacement=1, normalize="channels"))
    np.testing.assert_allclose(out2[0, 1, 1], 101.0 * 5.0 * np.arange(1, 10) / 2, rtol=1e-6)


def test_kernel_three_by_hand():
    # All-ones 3x3 single channel, K = 3, zero displacement: the number of pixels of
    # the 3x3 patch inside the image (4 at a corner, 6 on an edge, 9 at the centre).
    f = jnp.ones((1, 3, 3, 1))
    out = _corr(f, f, max_displacement=0, kernel_size=3, normalize="none")[0, ..., 0]
    np.testing.assert_array_equal(out, [[4, 6, 4], [6, 9, 6], [4, 6, 4]])
    # "channels" divides by K^2 * C = 9.
    mean = _corr(f, f, max_displacement=0, kernel_size=3, normalize="channels")[0, 1, 1, 0]
    np.testing.assert_allclose(mean, 1.0, rtol=1e-7)


@pytest.mark.parametrize("impl", IMPLS)
def test_zero_displacement_is_mean_square(impl):
    f = _random((2, 5, 9, 7), 4)
    out = _corr(f, f, max_displacement=4, stride=2, normalize="channels", impl=impl)
    centre = 2 * 5 + 2  # R = 2: channel R*(2R+1) + R
    np.testing.assert_allclose(
        out[..., centre], np.mean(f.astype(np.float64) ** 2, -1), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shift_y, shift_x", [(2, -4), (-6, 0), (4, 6)])
def test_shifted_frame_peaks_at_its_displacement(impl, shift_y, shift_x):
    # f2(y + dy, x + dx) = f1(y, x): the peak is channel (dy/s + R)(2R+1) + (dx/s + R).
    f1 = _random((1, 16, 20, 64), 5)
    f2 = np.roll(f1, (shift_y, shift_x), axis=(1, 2))
    out = np.asarray(_corr(f1, f2, max_displacement=6, stride=2, normalize="channels", impl=impl))
    radius = 3
    expected = (shift_y // 2 + radius) * (2 * radius + 1) + (shift_x // 2 + radius)
    ys = slice(max(0, -shift_y), 16 - max(0, shift_y))  # pixels whose partner did not wrap
    xs = slice(max(0, -shift_x), 20 - max(0, shift_x))
    assert np.all(out[0, ys, xs].argmax(-1) == expected)


@pytest.mark.parametrize("impl", IMPLS)
def test_channel_order_is_dy_major(impl):
    # One-hot features: f1 at (y0, x0), f2 at (y0 + dy, x0 + dx) -> a single 1 at channel k.
    radius, stride = 2, 3
    m = radius * stride
    size = 2 * m + 3
    y0 = x0 = m + 1
    cases = {
        (-m, -m): 0,
        (-m, 0): radius,
        (-m + stride, -m): 2 * radius + 1,
        (0, 0): radius * (2 * radius + 1) + radius,
        (0, stride): radius * (2 * radius + 1) + radius + 1,
        (stride, 0): (radius + 1) * (2 * radius + 1) + radius,
        (m, m): (2 * radius + 1) ** 2 - 1,
    }
    for (dy, dx), k in cases.items():
        f1 = np.zeros((1, size, size, 1), np.float32)
        f2 = np.zeros((1, size, size, 1), np.float32)
        f1[0, y0, x0] = 1
        f2[0, y0 + dy, x0 + dx] = 1
        out = np.asarray(
            _corr(f1, f2, max_displacement=m, stride=stride, normalize="none", impl=impl)
        )
        assert out[0, y0, x0, k] == 1, (dy, dx)
        assert out.sum() == 1, (dy, dx)


# --------------------------------------------------------------------------- properties


@pytest.mark.parametrize("impl", IMPLS)
def test_batch_independence(impl):
    f1, f2 = _random((3, 6, 10, 4), 6), _random((3, 6, 10, 4), 7)
    kw = {
        "max_displacement": 4,
        "stride": 2,
        "kernel_size": 3,
        "normalize": "channels",
        "impl": impl,
    }
    batched = _corr(f1, f2, **kw)
    for b in range(3):
        np.testing.assert_allclose(
            batched[b : b + 1], _corr(f1[b : b + 1], f2[b : b + 1], **kw), rtol=1e-6, atol=1e-7
        )


@pytest.mark.parametrize("impl", IMPLS)
def test_jit_equals_eager(jit, impl):
    f1, f2 = _random((1, 5, 7, 3), 8), _random((1, 5, 7, 3), 9)
    fn = jit(
        lambda a, b: ops.local_correlation(
            a, b, max_displacement=2, stride=1, normalize="channels", impl=impl
        )
    )
    np.testing.assert_allclose(
        fn(f1, f2),
        _reference.local_correlation(f1, f2, max_displacement=2, normalize="channels"),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize("impl", IMPLS)
def test_bfloat16_accumulates_in_float32(impl):
    # 1024 products of 1: a bf16 running sum stops at 256 (256 + 1 rounds to 256).
    ones = jnp.ones((1, 3, 4, 1024), jnp.bfloat16)
    out = _corr(ones, ones, max_displacement=1, normalize="channels", impl=impl)
    assert out.dtype == jnp.bfloat16
    assert float(out[0, 1, 1, 4]) == 1.0
    # Random bf16 inputs: equal to the float32 result on the same (rounded) values up to
    # the final rounding to bf16 (relative 2^-8).
    f1 = jnp.asarray(_random((1, 6, 9, 96), 10), jnp.bfloat16)
    f2 = jnp.asarray(_random((1, 6, 9, 96), 11), jnp.bfloat16)
    got = _corr(f1, f2, max_displacement=2, normalize="none", impl=impl, precision="highest")
    want = _reference.local_correlation(
        np.float32(f1), np.float32(f2), max_displacement=2, normalize="none"
    )
    np.testing.assert_allclose(np.float32(got), want, rtol=2**-8, atol=1e-3)


@pytest.mark.parametrize("impl", IMPLS)
def test_gradients(x64, impl):
    f1 = jnp.asarray(_random((1, 4, 5, 3), 12, np.float64))
    f2 = jnp.asarray(_random((1, 4, 5, 3), 13, np.float64))
    fn = lambda a, b: _corr(
        a, b, max_displacement=2, stride=2, kernel_size=3, normalize="channels", impl=impl
    )
    assert fn(f1, f2).dtype == jnp.float64
    check_grads(fn, (f1, f2), order=1, modes=("rev",), atol=1e-7, rtol=1e-7)


# --------------------------------------------------------------------------- all pairs


def test_all_pairs_matches_einsum_and_local():
    f1, f2 = _random((2, 5, 6, 8), 14), _random((2, 4, 7, 8), 15)
    out = ops.all_pairs_correlation(f1, f2, normalize="sqrt_channels")
    assert out.shape == (2, 5, 6, 4, 7)
    want = np.einsum("bhwc,bijc->bhwij", f1.astype(np.float64), f2.astype(np.float64)) / np.sqrt(8)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
    raw = ops.all_pairs_correlation(f1, f2, normalize="none")
    np.testing.assert_allclose(
        ops.all_pairs_correlation(f1, f2, normalize="channels"), raw / 8, rtol=1e-6
    )
    # Local correlation is the all-pairs volume read at (y + dy, x + dx).
    g2 = _random((2, 5, 6, 8), 16)
    pairs = np.asarray(ops.all_pairs_correlation(f1, g2, normalize="none"))
    local = np.asarray(_corr(f1, g2, max_displacement=1, normalize="none"))
    y, x = 2, 3
    for k, (dy, dx) in enumerate([(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)]):
        np.testing.assert_allclose(local[:, y, x, k], pairs[:, y, x, y + dy, x + dx], rtol=1e-6)


def test_all_pairs_bfloat16_and_gradients(x64):
    ones = jnp.ones((1, 2, 2, 1024), jnp.bfloat16)
    out = ops.all_pairs_correlation(ones, ones, normalize="channels")
    assert out.dtype == jnp.bfloat16 and float(out.min()) == float(out.max()) == 1.0
    f1 = jnp.asarray(_random((1, 3, 2, 4), 17, np.float64))
    f2 = jnp.asarray(_random((1, 2, 3, 4), 18, np.float64))
    check_grads(
        lambda a, b: ops.all_pairs_correlation(a, b, normalize="sqrt_channels"),
        (f1, f2),
        order=1,
        modes=("rev",),
    )


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "f1_shape, f2_shape, kw, message",
    [
        ((1, 4, 4, 3), (1, 4, 5, 3), {}, "same shape"),
        ((4, 4, 3), (4, 4, 3), {}, "(B, H, W, C)"),
        ((1, 4, 4, 3), (1, 4, 4, 3), {"max_displacement": 3, "stride": 2}, "multiple of stride"),
        ((1, 4, 4, 3), (1, 4, 4, 3), {"kernel_size": 2}, "odd"),
        (
            (1, 4, 4, 3),
            (1, 4, 4, 3),
            {"max_displacement": -1},
            "max_displacement must be an int >= 0",
        ),
        ((1, 4, 4, 3), (1, 4, 4, 3), {"stride": 0}, "stride must be an int >= 1"),
        ((1, 4, 4, 3), (1, 4, 4, 3), {"max_displacement": 2.0}, "max_displacement must be an int"),
        ((1, 4, 4, 3), (1, 4, 4, 3), {"normalize": "mean"}, "normalize must be one of"),
        ((1, 4, 4, 3), (1, 4, 4, 3), {"impl": "cuda"}, "impl must be one of"),
    ],
)
def test_bad_arguments(f1_shape, f2_shape, kw, message):
    kw = {"max_displacement": 2, "normalize": "channels", **kw}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _corr(jnp.zeros(f1_shape), jnp.zeros(f2_shape), **kw)


def test_bad_dtype_and_all_pairs_shapes():
    with pytest.raises(ValueError, match="floating-point"):
        _corr(
            jnp.zeros((1, 3, 3, 2), jnp.int32),
            jnp.zeros((1, 3, 3, 2), jnp.int32),
            max_displacement=1,
            normalize="none",
        )
    with pytest.raises(ValueError, match="agree in B and C"):
        ops.all_pairs_correlation(
            jnp.zeros((1, 3, 3, 2)), jnp.zeros((1, 3, 3, 4)), normalize="none"
        )
    with pytest.raises(ValueError, match="normalize must be one of"):
        ops.all_pairs_correlation(
            jnp.zeros((1, 3, 3, 2)), jnp.zeros((1, 3, 3, 2)), normalize="mean"
        )
