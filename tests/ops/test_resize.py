"""Tests for flowlib.ops.resize: bilinear/trilinear/nearest resizing, flow upsampling,
average pooling and image pyramids."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowlib import ops
from tests._gradients import check_grads


def nhwc(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


def naive_source(dst: int, n_in: int, n_out: int, align_corners: bool) -> float:
    """PyTorch's linear source position (UpSample.h), float64."""
    if n_in == n_out:
        return float(dst)
    if align_corners:
        return dst * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    return max((dst + 0.5) * n_in / n_out - 0.5, 0.0)


def naive_resize(x: np.ndarray, size, align_corners: bool) -> np.ndarray:
    """Loop reference for (trilinear / bilinear) interpolation over axes 1..n, float64."""
    spatial = x.shape[1:-1]
    out = np.zeros((x.shape[0], *size, x.shape[-1]))
    for index in np.ndindex(*size):
        taps = []
        for dst, n_in, n_out in zip(index, spatial, size):
            src = naive_source(dst, n_in, n_out, align_corners)
            i0 = min(math.floor(src), n_in - 1)
            frac = src - i0
            taps.append(((i0, 1 - frac), (min(i0 + 1, n_in - 1), frac)))
        for corner in np.ndindex(*(2,) * len(size)):
            weight = np.prod([taps[a][c][1] for a, c in enumerate(corner)])
            source = tuple(taps[a][c][0] for a, c in enumerate(corner))
            out[(slice(None), *index)] += weight * x[(slice(None), *source)]
    return out


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def resize_fixture(fixtures):
    data = np.load(fixtures / "primitives" / "resize_and_convT.npz")
    tolerances = json.loads((fixtures / "tolerances.json").read_text())["files"]
    return data, tolerances["primitives/resize_and_convT.npz"]


# (fixture array, input array, call) as listed in fixtures/README.md section 4.6.
FIXTURE_CALLS = {
    "spynet_flow_up": ("x_1x2x3x8", lambda x: ops.resize_bilinear(x, (6, 16), align_corners=True)),
    "resize_up_ac_false": (
        "x_1x3x7x9", lambda x: ops.resize_bilinear(x, (12, 20), align_corners=False)),
    "resize_down_ac_false": (
        "x_1x3x7x9", lambda x: ops.resize_bilinear(x, (5, 6), align_corners=False)),
    "nv_upsample4": ("x_1x2x3x8", lambda x: ops.resize_bilinear(x, (12, 32), align_corners=False)),
    "cfnet_spp_up": ("x_1x2x3x8", lambda x: ops.resize_bilinear(x, (5, 11), align_corners=False)),
    "cfnet_disp_up": ("x_1x2x3x8", lambda x: ops.resize_bilinear(x, (10, 29), align_corners=True)),
    "cfnet_nearest2": ("x_1x3x7x9", lambda x: ops.resize_nearest(x, (14, 18))),
    "avgpool2": ("x_1x3x7x9", lambda x: ops.avg_pool(x, 2, stride=2, count_include_pad=False)),
}


@pytest.mark.parametrize("name", sorted(FIXTURE_CALLS))
def test_pytorch_fixtures(resize_fixture, name, jit):
    data, tol = resize_fixture
    input_name, call = FIXTURE_CALLS[name]
    out = jit(call)(jnp.asarray(nhwc(data[input_name])))
    expected = nhwc(data[name])
    assert out.shape == expected.shape
    assert np.abs(np.asarray(out, np.float64) - expected).max() <= tol[name]


def test_spynet_upsampled_flow_fixture(resize_fixture):
    # SpyNet: interpolate(x2, align_corners=True) * 2.0 == upsample_flow to twice the size.
    data, tol = resize_fixture
    out = ops.upsample_flow(jnp.asarray(nhwc(data["x_1x2x3x8"])), (6, 16), align_corners=True)
    expected = 2.0 * nhwc(data["spynet_flow_up"])
    assert np.abs(np.asarray(out, np.float64) - expected).max() <= 2 * tol["spynet_flow_up"]


# -------------------------------------------------------------------- naive references


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size", [(7, 11), (2, 3), (5, 5), (1, 9), (13, 1)])
def test_bilinear_matches_naive_reference(size, align_corners):
    x = np.random.default_rng(20).standard_normal((2, 5, 6, 3)).astype(np.float32)
    out = ops.resize_bilinear(jnp.asarray(x), size, align_corners=align_corners)
    # float32 weights and products of O(1) values: a few ulps.
    np.testing.assert_allclose(np.asarray(out), naive_resize(x, size, align_corners), atol=2e-6)


@pytest.mark.parametrize("align_corners", [False, True])
def test_trilinear_matches_naive_reference(align_corners):
    x = np.random.default_rng(21).standard_normal((1, 3, 4, 5, 2)).astype(np.float32)
    size = (6, 3, 9)
    out = ops.resize_trilinear(jnp.asarray(x), size, align_corners=align_corners)
    assert out.shape == (1, 6, 3, 9, 2)
    np.testing.assert_allclose(np.asarray(out), naive_resize(x, size, align_corners), atol=2e-6)


@pytest.mark.parametrize("size", [(14, 18), (7, 9), (3, 4), (10, 25), (21, 27), (5, 13)])
def test_nearest_matches_floor_formula(size):
    x = np.random.default_rng(22).integers(0, 100, (1, 7, 9, 2)).astype(np.int32)
    out = ops.resize_nearest(jnp.asarray(x), size)
    rows = [min(math.floor(i * 7 / size[0]), 6) for i in range(size[0])]
    cols = [min(math.floor(j * 9 / size[1]), 8) for j in range(size[1])]
    assert out.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(out), x[:, rows][:, :, cols])


# ---------------------------------------------------------- hand values and conventions


def test_hand_computed_1d_values():
    row = jnp.asarray([0.0, 1.0]).reshape(1, 1, 2, 1)
    # align_corners=False, 2 -> 4: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (last pixel).
    up = ops.resize_bilinear(row, (1, 4), align_corners=False)[0, 0, :, 0]
    np.testing.assert_array_equal(np.asarray(up), [0.0, 0.25, 0.75, 1.0])
    # align_corners=True, 2 -> 3: the ends stay on the corner pixels.
    up = ops.resize_bilinear(row, (1, 3), align_corners=True)[0, 0, :, 0]
    np.testing.assert_array_equal(np.asarray(up), [0.0, 0.5, 1.0])
    # Downsampling 4 -> 2 without antialiasing reads positions 0.5 and 2.5.
    row4 = jnp.asarray([0.0, 1.0, 2.0, 7.0]).reshape(1, 1, 4, 1)
    down = ops.resize_bilinear(row4, (1, 2), align_corners=False)[0, 0, :, 0]
    np.testing.assert_array_equal(np.asarray(down), [0.5, 4.5])
    # One output pixel: align_corners=True reads the first pixel, False the centre.
    one = ops.resize_bilinear(row4, (1, 1), align_corners=True)[0, 0, 0, 0]
    assert float(one) == 0.0
    one = ops.resize_bilinear(row4, (1, 1), align_corners=False)[0, 0, 0, 0]
    assert float(one) == 1.5


def test_axes_are_not_swapped():
    # Values vary along width only; the output must too, whatever the sizes.
    x = jnp.broadcast_to(jnp.arange(4.0)[None, None, :, None], (1, 3, 4, 1))
    for align_corners in (False, True):
        out = np.asarray(ops.resize_bilinear(x, (5, 7), align_corners=align_corners))
        assert out.shape == (1, 5, 7, 1)
        np.testing.assert_array_equal(out, np.broadcast_to(out[:, :1], out.shape))
        assert np.all(np.diff(out[0, 0, :, 0]) >= 0)


def test_align_corners_true_preserves_linear_ramps():
    # A linear function of (row, col) is reproduced exactly in rescaled coordinates.
    h, w, out_h, out_w = 4, 6, 7, 11
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    x = (3.0 * rows - 2.0 * cols).astype(np.float32)[None, :, :, None]
    out = ops.resize_bilinear(jnp.asarray(x), (out_h, out_w), align_corners=True)
    rows, cols = np.meshgrid(np.arange(out_h) * (h - 1) / (out_h - 1),
                             np.arange(out_w) * (w - 1) / (out_w - 1), indexing="ij")
    np.testing.assert_allclose(np.asarray(out)[0, :, :, 0], 3.0 * rows - 2.0 * cols, atol=1e-5)


@pytest.mark.parametrize("align_corners", [False, True])
def test_same_size_is_identity(align_corners, jit):
    x = jnp.asarray(np.random.default_rng(23).standard_normal((2, 5, 7, 3)), jnp.float32)
    out = jit(lambda a: ops.resize_bilinear(a, (5, 7), align_corners=align_corners))(x)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(x))
    vol = jnp.asarray(np.random.default_rng(24).standard_normal((1, 3, 4, 5, 2)), jnp.float32)
    out = ops.resize_trilinear(vol, (3, 4, 5), align_corners=align_corners)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(vol))
    np.testing.assert_array_equal(np.asarray(ops.resize_nearest(x, (5, 7))), np.asarray(x))


def test_nearest_doubling_repeats_pixels():
    x = jnp.asarray(np.random.default_rng(25).standard_normal((1, 3, 4, 2)), jnp.float32)
    out = ops.resize_nearest(x, (6, 8))
    expected = np.repeat(np.repeat(np.asarray(x), 2, axis=1), 2, axis=2)
    np.testing.assert_array_equal(np.asarray(out), expected)


def test_upsample_flow_rescales_vectors():
    flow = jnp.broadcast_to(jnp.asarray([1.5, -2.0]), (1, 3, 4, 2))
    up = ops.upsample_flow(flow, (6, 8), align_corners=True)
    np.testing.assert_array_equal(np.asarray(up[..., 0]), 3.0)
    np.testing.assert_array_equal(np.asarray(up[..., 1]), -4.0)
    # Different ratios per axis: u by 12/4, v by 5/3.
    down = ops.upsample_flow(flow, (5, 12), align_corners=False)
    assert down.shape == (1, 5, 12, 2)
    np.testing.assert_allclose(np.asarray(down[..., 0]), 1.5 * 3.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(down[..., 1]), -2.0 * 5 / 3, rtol=1e-6)


# -------------------------------------------------------------- pooling and pyramids


@pytest.mark.parametrize("window,stride", [(2, None), ((2, 3), None), (3, 2), ((2, 2), (1, 3))])
def test_avg_pool_matches_naive_reference(window, stride, jit):
    x = np.random.default_rng(26).standard_normal((2, 7, 9, 3)).astype(np.float32)
    kh, kw = (window, window) if isinstance(window, int) else window
    sh, sw = (kh, kw) if stride is None else ((stride, stride) if isinstance(stride, int)
                                               else stride)
    out_h, out_w = (7 - kh) // sh + 1, (9 - kw) // sw + 1
    expected = np.zeros((2, out_h, out_w, 3))
    for i in range(out_h):
        for j in range(out_w):
            expected[:, i, j] = x[:, i * sh : i * sh + kh, j * sw : j * sw + kw].mean(axis=(1, 2))
    for count_include_pad in (False, True):
        out = jit(lambda a: ops.avg_pool(a, window, stride=stride,
                                         count_include_pad=count_include_pad))(jnp.asarray(x))
        np.testing.assert_allclose(np.asarray(out), expected, atol=1e-6)


def test_image_pyramid_floors_odd_sizes():
    x = jnp.asarray(np.random.default_rng(27).standard_normal((1, 13, 10, 3)), jnp.float32)
    pyramid = ops.image_pyramid(x, levels=3)
    assert [p.shape for p in pyramid] == [(1, 13, 10, 3), (1, 6, 5, 3), (1, 3, 2, 3)]
    assert pyramid[0] is x
    np.testing.assert_allclose(
        np.asarray(pyramid[2]),
        np.asarray(ops.avg_pool(ops.avg_pool(x, 2, count_include_pad=False), 2,
                                count_include_pad=False)),
    )
    # The dropped last row/column of the 13 x 10 image never contributes.
    perturbed = x.at[:, 12].add(100.0)
    np.testing.assert_array_equal(np.asarray(ops.image_pyramid(perturbed, levels=2)[1]),
                                  np.asarray(pyramid[1]))
    assert len(ops.image_pyramid(x, levels=1)) == 1


# ------------------------------------------------------ gradients, dtypes, batch, jit


@pytest.mark.parametrize("align_corners", [False, True])
def test_gradients(align_corners, x64):
    rng = np.random.default_rng(28)
    x = jnp.asarray(rng.standard_normal((1, 3, 4, 2)))
    assert x.dtype == jnp.float64
    for size in [(5, 7), (2, 3)]:
        check_grads(lambda a: ops.resize_bilinear(a, size, align_corners=align_corners),
                    (x,), order=1, modes=("rev", "fwd"))
    vol = jnp.asarray(rng.standard_normal((1, 2, 3, 3, 1)))
    check_grads(lambda a: ops.resize_trilinear(a, (3, 5, 2), align_corners=align_corners),
                (vol,), order=1, modes=("rev",))
    check_grads(lambda a: ops.upsample_flow(a, (6, 8), align_corners=align_corners),
                (jnp.asarray(rng.standard_normal((1, 3, 4, 2))),), order=1, modes=("rev",))
    check_grads(lambda a: ops.avg_pool(a, (2, 3), count_include_pad=False),
                (jnp.asarray(rng.standard_normal((1, 5, 6, 2))),), order=1, modes=("rev",))


def test_float64_uses_float64_positions(x64):
    # Positions computed in float32 would be off by ~1e-8 relative here.
    x = jnp.asarray(np.random.default_rng(29).standard_normal((1, 7, 9, 1)))
    out = ops.resize_bilinear(x, (12, 20), align_corners=False)
    assert out.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(out), naive_resize(np.asarray(x), (12, 20), False),
                               atol=1e-12)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_dtype_preserved(dtype):
    x = jnp.ones((1, 4, 6, 2), dtype)
    assert ops.resize_bilinear(x, (3, 5), align_corners=False).dtype == dtype
    assert ops.resize_nearest(x, (3, 5)).dtype == dtype
    assert ops.upsample_flow(x, (8, 12), align_corners=True).dtype == dtype
    assert ops.avg_pool(x, 2, count_include_pad=False).dtype == dtype
    vol = jnp.ones((1, 2, 4, 6, 2), dtype)
    assert ops.resize_trilinear(vol, (4, 3, 5), align_corners=True).dtype == dtype
    np.testing.assert_array_equal(
        np.asarray(ops.resize_bilinear(x, (3, 5), align_corners=False), np.float32), 1.0)


def test_batch_independence_and_jit():
    x = jnp.asarray(np.random.default_rng(30).standard_normal((3, 5, 6, 2)), jnp.float32)
    eager = ops.resize_bilinear(x, (9, 4), align_corners=False)
    jitted = jax.jit(lambda a: ops.resize_bilinear(a, (9, 4), align_corners=False))(x)
    # XLA may fuse multiply-adds under jit: equal to an ulp.
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=0, atol=1e-6)
    for b in range(3):
        single = ops.resize_bilinear(x[b : b + 1], (9, 4), align_corners=False)
        np.testing.assert_array_equal(np.asarray(eager[b]), np.asarray(single[0]))


def test_bad_inputs_name_the_expected_shape():
    x = jnp.zeros((1, 4, 6, 2))
    with pytest.raises(ValueError, match=r"size must be 2 ints \(height, width\)"):
        ops.resize_bilinear(x, (4,), align_corners=True)
    with pytest.raises(ValueError, match="size must be 2"):
        ops.resize_bilinear(x, (4.0, 2.0), align_corners=True)
    with pytest.raises(ValueError, match="size must be 2"):
        ops.resize_bilinear(x, (0, 2), align_corners=True)
    with pytest.raises(ValueError, match="size must be 2"):
        ops.resize_nearest(x, 8)
    with pytest.raises(ValueError, match=r"size must be 3 ints \(depth, height, width\)"):
        ops.resize_trilinear(jnp.zeros((1, 2, 3, 4, 1)), (2, 3), align_corners=True)
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        ops.resize_bilinear(x[0], (2, 3), align_corners=True)
    with pytest.raises(ValueError, match=r"\(B, D, H, W, C\)"):
        ops.resize_trilinear(x, (2, 3, 4), align_corners=True)
    with pytest.raises(ValueError, match="floating-point"):
        ops.resize_bilinear(x.astype(jnp.int32), (2, 3), align_corners=True)
    with pytest.raises(ValueError, match=r"flow must have shape \(B, H, W, 2\)"):
        ops.upsample_flow(jnp.zeros((1, 4, 6, 3)), (8, 12), align_corners=True)
    with pytest.raises(TypeError):
        ops.resize_bilinear(x, (2, 3))  # align_corners is required
    with pytest.raises(TypeError):
        ops.avg_pool(x, 2)  # count_include_pad is required
    with pytest.raises(ValueError, match="window"):
        ops.avg_pool(x, 5, count_include_pad=False)
    with pytest.raises(ValueError, match="window must be an int or 2 ints"):
        ops.avg_pool(x, (2, 2, 2), count_include_pad=False)
    with pytest.raises(ValueError, match=r"3 levels need H, W >= 4"):
        ops.image_pyramid(jnp.zeros((1, 3, 8, 1)), levels=3)
    with pytest.raises(ValueError, match="levels must be an int >= 1"):
        ops.image_pyramid(x, levels=0)
