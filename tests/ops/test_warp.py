"""Tests for flowlib.ops.warp: backward_warp, warp_validity, warp_by_disparity."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowlib import ops
from tests.ops.test_sample import naive_bilinear_sample
from tests._gradients import check_grads


def nhwc(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


@pytest.fixture(scope="module")
def warps(fixtures):
    data = np.load(fixtures / "primitives" / "warps.npz")
    tolerances = json.loads((fixtures / "tolerances.json").read_text())["files"]
    return data, tolerances["primitives/warps.npz"]


def test_spynet_backwarp_fixture(warps, jit):
    data, tol = warps
    f = jit(lambda i, fl: ops.backward_warp(i, fl, padding="border", align_corners=True))
    out = f(jnp.asarray(nhwc(data["spynet_img"])), jnp.asarray(nhwc(data["spynet_flow"])))
    expected = nhwc(data["spynet_backwarp"])
    assert np.abs(np.asarray(out, np.float64) - expected).max() <= tol["spynet_backwarp"]


def test_cfnet_warp_fixture(warps, jit):
    # CF submodule.warp(): zeros padding, the align-corners grid formula fed to
    # grid_sample(align_corners=False), times the 0.999-thresholded warp of ones.
    data, tol = warps
    x = jnp.asarray(nhwc(data["cfnet_x"]))
    disparity = jnp.asarray(data["cfnet_disp"][:, 0])

    def cfnet_warp(x, d):
        warped = ops.warp_by_disparity(x, d, padding="zeros", align_corners=False)
        flow = jnp.stack([-d, jnp.zeros_like(d)], axis=-1)
        return warped * ops.warp_validity(flow, align_corners=False)[..., None]

    out = jit(cfnet_warp)(x, disparity)
    expected = nhwc(data["cfnet_warp"])
    assert np.abs(np.asarray(out, np.float64) - expected).max() <= tol["cfnet_warp"]
    # The fixture's information-only align_corners=True evaluation differs by whole
    # pixels' worth of interpolation, which pins that the False quirk is really applied.
    aligned = nhwc(data["cfnet_warp_if_align_corners_true"])
    assert np.abs(expected - aligned).max() > 0.1


def naive_cfnet_coords(flow: np.ndarray) -> np.ndarray:
    """Where grid_sample(align_corners=False) reads for the grid 2(x+u)/(W-1) - 1, float64."""
    _, height, width, _ = flow.shape
    ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    gx = 2 * (xs + flow[..., 0]) / (width - 1) - 1
    gy = 2 * (ys + flow[..., 1]) / (height - 1) - 1
    return np.stack([((gx + 1) * width - 1) / 2, ((gy + 1) * height - 1) / 2], axis=-1)


@pytest.mark.parametrize("padding", ["zeros", "border"])
@pytest.mark.parametrize("align_corners", [True, False])
def test_matches_naive_reference(padding, align_corners):
    rng = np.random.default_rng(10)
    image = rng.standard_normal((2, 5, 6, 3)).astype(np.float32)
    flow = rng.uniform(-3, 3, (2, 5, 6, 2)).astype(np.float32)
    out = ops.backward_warp(jnp.asarray(image), jnp.asarray(flow), padding=padding,
                            align_corners=align_corners)
    if align_corners:
        ys, xs = np.meshgrid(np.arange(5), np.arange(6), indexing="ij")
        coords = np.stack([xs + flow[..., 0].astype(np.float64), ys + flow[..., 1]], axis=-1)
    else:
        coords = naive_cfnet_coords(flow.astype(np.float64))
    expected = naive_bilinear_sample(image, coords, padding)
    # float32 coordinates of magnitude <= 9 (~1e-6 rounding) times image slopes of O(3).
    np.testing.assert_allclose(np.asarray(out), expected, atol=1e-5)


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_zero_flow_is_identity(padding, jit):
    image = jnp.asarray(np.random.default_rng(11).standard_normal((2, 4, 7, 3)), jnp.float32)
    f = jit(lambda i, fl: ops.backward_warp(i, fl, padding=padding, align_corners=True))
    out = f(image, jnp.zeros((2, 4, 7, 2)))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(image))


def test_align_corners_false_zero_flow_reads_stretched_grid():
    # 1 x 3 row [0, 10, 20]: with align_corners=False CFNet's grid reads x * 3/2 - 1/2,
    # i.e. columns -0.5, 1, 2.5 -> 0.5 * 0, 10, 0.5 * 20 with zero padding.
    image = jnp.asarray([0.0, 10.0, 20.0]).reshape(1, 1, 3, 1)
    image = jnp.concatenate([image, image], axis=1)  # H = 2 keeps y on the grid: y*2 - 0.5
    flow = jnp.zeros((1, 2, 3, 2))
    out = ops.backward_warp(image, flow, padding="zeros", align_corners=False)
    # Rows read y = -0.5 and 1.5: half of each value survives.
    np.testing.assert_allclose(np.asarray(out[0, :, :, 0]), [[0.0, 5.0, 5.0]] * 2, atol=1e-6)
    mask = ops.warp_validity(flow, align_corners=False)
    np.testing.assert_array_equal(np.asarray(mask), 0.0)
    np.testing.assert_array_equal(
        np.asarray(ops.warp_validity(flow, align_corners=True)), 1.0
    )


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_integer_flow_shifts_the_interior(padding):
    image = np.random.default_rng(12).standard_normal((1, 6, 9, 2)).astype(np.float32)
    u, v = 2, -1
    flow = np.zeros((1, 6, 9, 2), np.float32)
    flow[..., 0], flow[..., 1] = u, v
    out = np.asarray(ops.backward_warp(jnp.asarray(image), jnp.asarray(flow), padding=padding,
                                       align_corners=True))
    # out[y, x] = image[y + v, x + u]; np.roll by (-v, -u) agrees away from the wrap.
    rolled = np.roll(image, shift=(-v, -u), axis=(1, 2))
    np.testing.assert_array_equal(out[:, 1:, :-2], rolled[:, 1:, :-2])
    if padding == "zeros":
        np.testing.assert_array_equal(out[:, 0], 0.0)
        np.testing.assert_array_equal(out[:, :, -2:], 0.0)
    else:
        np.testing.assert_array_equal(out[:, 1:, -2:], image[:, :-1, -1:].repeat(2, axis=2))


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_warp_by_disparity_is_negative_horizontal_flow(padding, align_corners, jit):
    rng = np.random.default_rng(13)
    right = jnp.asarray(rng.standard_normal((2, 4, 8, 3)), jnp.float32)
    disparity = jnp.asarray(rng.uniform(0, 5, (2, 4, 8)), jnp.float32)
    by_disparity = jit(
        lambda r, d: ops.warp_by_disparity(r, d, padding=padding, align_corners=align_corners)
    )(right, disparity)
    by_flow = jit(
        lambda r, d: ops.backward_warp(r, jnp.stack([-d, jnp.zeros_like(d)], axis=-1),
                                       padding=padding, align_corners=align_corners)
    )(right, disparity)
    np.testing.assert_array_equal(np.asarray(by_disparity), np.asarray(by_flow))


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_horizontal_warp_is_the_bilinear_warp_with_v_zero(padding):
    rng = np.random.default_rng(17)
    image = jnp.asarray(rng.standard_normal((2, 5, 9, 2)), jnp.float32)
    u = rng.uniform(-4, 4, (2, 5, 9)).astype(np.float32)
    flow = jnp.asarray(np.stack([u, np.zeros_like(u)], -1))
    want = np.asarray(jax.jit(lambda i, f: ops.backward_warp(i, f, padding=padding,
                                                            align_corners=True))(image, flow))
    warp = jax.jit(lambda i, f: ops.backward_warp(i, f, padding=padding, align_corners=True,
                                                  horizontal=True))
    np.testing.assert_array_equal(np.asarray(warp(image, flow)), want)
    with_v = flow.at[..., 1].set(jnp.asarray(rng.uniform(-2, 2, u.shape), jnp.float32))
    np.testing.assert_array_equal(np.asarray(warp(image, with_v)), want)  # v is ignored
    with pytest.raises(ValueError, match="align_corners=True"):
        ops.backward_warp(image, flow, padding=padding, align_corners=False, horizontal=True)


def test_warp_by_integer_disparity_reads_left_columns():
    # Left pixel x matches right pixel x - d.
    right = jnp.arange(6.0).reshape(1, 1, 6, 1)
    disparity = jnp.full((1, 1, 6), 2.0)
    out = ops.warp_by_disparity(right, disparity, padding="zeros", align_corners=True)
    np.testing.assert_array_equal(np.asarray(out[0, 0, :, 0]), [0, 0, 0, 1, 2, 3])


def test_warp_validity_threshold():
    # 1 x 4 image; u pushes column 3 past the edge by 0.0005 (in-image weight 0.9995,
    # valid at 0.999) or 0.002 (0.998, invalid), and column 0 entirely outside.
    flow = np.zeros((1, 1, 4, 2), np.float32)
    flow[0, 0, 3, 0] = 0.0005
    flow[0, 0, 2, 0] = 1.002
    flow[0, 0, 0, 0] = -1.5
    flow[0, 0, 1, 0] = 1.25
    mask = ops.warp_validity(jnp.asarray(flow), align_corners=True)
    assert mask.shape == (1, 1, 4) and mask.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(mask[0, 0]), [0, 1, 0, 1])
    strict = ops.warp_validity(jnp.asarray(flow), align_corners=True, threshold=0.9999)
    np.testing.assert_array_equal(np.asarray(strict[0, 0]), [0, 1, 0, 0])


def test_warp_validity_matches_warped_ones():
    rng = np.random.default_rng(14)
    flow = jnp.asarray(rng.uniform(-2, 2, (2, 5, 6, 2)), jnp.float32)
    for align_corners in (True, False):
        ones = ops.backward_warp(jnp.ones((2, 5, 6, 1)), flow, padding="zeros",
                                 align_corners=align_corners)[..., 0]
        mask = ops.warp_validity(flow, align_corners=align_corners, threshold=0.999)
        # Compare away from the threshold, where the two summation orders could disagree.
        away = np.abs(np.asarray(ones) - 0.999) > 1e-5
        np.testing.assert_array_equal(np.asarray(mask)[away], (np.asarray(ones) >= 0.999)[away])


def test_batch_independence_and_dtype():
    rng = np.random.default_rng(15)
    image = jnp.asarray(rng.standard_normal((3, 4, 5, 2)), jnp.bfloat16)
    flow = jnp.asarray(rng.uniform(-2, 2, (3, 4, 5, 2)), jnp.float32)
    warp = jax.jit(lambda i, f: ops.backward_warp(i, f, padding="zeros", align_corners=True))
    full = warp(image, flow)
    assert full.dtype == jnp.bfloat16
    for b in range(3):
        single = warp(image[b : b + 1], flow[b : b + 1])
        np.testing.assert_array_equal(np.asarray(full[b], np.float32),
                                      np.asarray(single[0], np.float32))


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_gradients(padding, align_corners, x64):
    rng = np.random.default_rng(16)
    image = jnp.asarray(rng.standard_normal((1, 4, 5, 2)))
    # Sampling positions away from integers (bilinear kinks) and, for border, inside
    # the image (clamping kinks); the flow is built from the targets.
    ys, xs = np.meshgrid(np.arange(4), np.arange(5), indexing="ij")
    tx = rng.integers(0, 4, (1, 4, 5)) + rng.uniform(0.1, 0.9, (1, 4, 5))
    ty = rng.integers(0, 3, (1, 4, 5)) + rng.uniform(0.1, 0.9, (1, 4, 5))
    if not align_corners:
        # Invert the quirk's stretch so the actual sample positions are the targets.
        tx = (tx + 0.5) * (5 - 1) / 5
        ty = (ty + 0.5) * (4 - 1) / 4
    flow = jnp.asarray(np.stack([tx - xs, ty - ys], axis=-1))
    assert flow.dtype == jnp.float64
    check_grads(
        lambda i, f: ops.backward_warp(i, f, padding=padding, align_corners=align_corners),
        (image, flow),
        order=1,
        modes=("rev",),
    )


def test_bad_inputs_name_the_expected_shape():
    image = jnp.zeros((1, 4, 5, 3))
    with pytest.raises(ValueError, match=r"flow must have shape \(B, H, W, 2\)"):
        ops.backward_warp(image, jnp.zeros((1, 4, 5, 3)), padding="zeros", align_corners=True)
    with pytest.raises(ValueError, match=r"\(1, 4, 5, 2\)"):
        ops.backward_warp(image, jnp.zeros((1, 4, 6, 2)), padding="zeros", align_corners=True)
    with pytest.raises(ValueError, match=r"image must have shape \(B, H, W, C\)"):
        ops.backward_warp(image[0], jnp.zeros((4, 5, 2)), padding="zeros", align_corners=True)
    with pytest.raises(ValueError, match="padding must be one of"):
        ops.backward_warp(image, jnp.zeros((1, 4, 5, 2)), padding="wrap", align_corners=True)
    with pytest.raises(TypeError):
        ops.backward_warp(image, jnp.zeros((1, 4, 5, 2)), padding="zeros")
    with pytest.raises(ValueError, match=r"disparity must have shape \(B, H, W\)"):
        ops.warp_by_disparity(image, jnp.zeros((1, 4, 5, 1)), padding="zeros",
                              align_corners=True)
    with pytest.raises(ValueError, match=r"\(B, H, W\) = \(1, 4, 6\)"):
        ops.warp_by_disparity(image, jnp.zeros((1, 4, 6)), padding="zeros", align_corners=True)
    with pytest.raises(ValueError, match=r"flow must have shape \(B, H, W, 2\)"):
        ops.warp_validity(jnp.zeros((4, 5, 2)), align_corners=True)
