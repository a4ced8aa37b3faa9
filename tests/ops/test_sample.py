"""Tests for flowlib.ops.sample: bilinear_sample, in_bounds, grid_sample_coords."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowlib import ops
from tests._gradients import check_grads


def naive_bilinear_sample(x: np.ndarray, coords: np.ndarray, padding: str) -> np.ndarray:
    """Loop reference with torch grid_sample semantics, in float64."""
    batch, height, width, channels = x.shape
    out = np.zeros((*coords.shape[:-1], channels))
    for b in range(batch):
        for i in range(coords.shape[1]):
            for j in range(coords.shape[2]):
                cx, cy = (float(c) for c in coords[b, i, j])
                if padding == "border":
                    cx = min(max(cx, 0.0), width - 1.0)
                    cy = min(max(cy, 0.0), height - 1.0)
                x0, y0 = math.floor(cx), math.floor(cy)
                fx, fy = cx - x0, cy - y0
                for yy, wy in ((y0, 1 - fy), (y0 + 1, fy)):
                    for xx, wx in ((x0, 1 - fx), (x0 + 1, fx)):
                        if 0 <= xx < width and 0 <= yy < height:
                            out[b, i, j] += wy * wx * x[b, yy, xx]
    return out


def random_coords(rng, shape, height, width, margin=2.5):
    """Coordinates covering the image and a band of `margin` pixels around it."""
    cx = rng.uniform(-margin, width - 1 + margin, shape)
    cy = rng.uniform(-margin, height - 1 + margin, shape)
    return np.stack([cx, cy], axis=-1)


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_matches_naive_reference(padding, jit):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 7, 3)).astype(np.float32)
    coords = random_coords(rng, (2, 4, 6), 5, 7).astype(np.float32)
    # Exact integers and the exact image edges are where implementations differ most.
    coords[0, 0, 0] = (0.0, 0.0)
    coords[0, 0, 1] = (6.0, 4.0)
    coords[0, 0, 2] = (-1.0, 2.0)
    coords[0, 0, 3] = (7.0, 4.5)
    coords[0, 0, 4] = (3.0, -0.5)
    f = jit(lambda a, c: ops.bilinear_sample(a, c, padding=padding))
    out = np.asarray(f(jnp.asarray(x), jnp.asarray(coords)))
    # float32 interpolation of O(1) values: a few ulps.
    np.testing.assert_allclose(out, naive_bilinear_sample(x, coords, padding), atol=2e-6)


def test_hand_computed_values():
    x = jnp.asarray([[0.0, 1.0], [2.0, 3.0]]).reshape(1, 2, 2, 1)

    def at(cx, cy, padding):
        coords = jnp.asarray([cx, cy], jnp.float32).reshape(1, 1, 1, 2)
        return float(ops.bilinear_sample(x, coords, padding=padding)[0, 0, 0, 0])

    assert at(0.5, 0.5, "zeros") == 1.5
    assert at(0.25, 0.0, "zeros") == 0.25
    assert at(1.0, 1.0, "zeros") == 3.0
    # Half a pixel left of column 0: only the in-image neighbour (weight 0.5) counts.
    assert at(-0.5, 1.0, "zeros") == 1.0
    assert at(-0.5, 1.0, "border") == 2.0
    # Half a pixel right of column 1 / below row 1.
    assert at(1.5, 0.0, "zeros") == 0.5
    assert at(1.5, 0.0, "border") == 1.0
    assert at(1.0, 1.5, "zeros") == 1.5
    # Far outside: zeros gives 0, border gives the nearest corner.
    assert at(-10.0, -10.0, "zeros") == 0.0
    assert at(-10.0, -10.0, "border") == 0.0
    assert at(10.0, 10.0, "border") == 3.0
    assert at(float("inf"), 0.0, "zeros") == 0.0


def test_xy_order_convention():
    # Asymmetric image: value = 10 * row + column, so a swapped (x, y) is detected.
    height, width = 3, 5
    x = (10 * np.arange(height)[:, None] + np.arange(width)[None, :]).astype(np.float32)
    x = jnp.asarray(x).reshape(1, height, width, 1)
    coords = jnp.asarray([[4.0, 1.0], [0.0, 2.0], [2.5, 0.0]]).reshape(1, 1, 3, 2)
    out = ops.bilinear_sample(x, coords, padding="zeros")[0, 0, :, 0]
    np.testing.assert_array_equal(np.asarray(out), [14.0, 20.0, 2.5])


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_integer_coordinates_are_exact_gathers(padding):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 4, 6, 2)).astype(np.float32)
    rows, cols = np.meshgrid(np.arange(4), np.arange(6), indexing="ij")
    perm = rng.permutation(24)
    coords = np.stack([cols.ravel()[perm], rows.ravel()[perm]], -1).reshape(1, 4, 6, 2)
    out = ops.bilinear_sample(jnp.asarray(x), jnp.asarray(coords, jnp.float32), padding=padding)
    expected = x[0, rows.ravel()[perm], cols.ravel()[perm]].reshape(1, 4, 6, 2)
    np.testing.assert_array_equal(np.asarray(out), expected)


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_horizontal_reads_the_row_only_with_the_same_values(padding):
    """Whole-row y: the two-neighbour blend equals the four-neighbour one exactly (also
    outside the image), jitted and eager."""
    rng = np.random.default_rng(21)
    x = jnp.asarray(rng.standard_normal((2, 5, 9, 3)), jnp.float32)
    cx = rng.uniform(-3, 11, (2, 4, 6)).astype(np.float32)
    cy = rng.integers(-2, 7, (2, 4, 6)).astype(np.float32)
    coords = jnp.asarray(np.stack([cx, cy], -1))
    want = np.asarray(jax.jit(lambda a, c: ops.bilinear_sample(a, c, padding=padding))(x, coords))
    got = jax.jit(lambda a, c: ops.bilinear_sample(a, c, padding=padding, horizontal=True))
    np.testing.assert_array_equal(np.asarray(got(x, coords)), want)
    np.testing.assert_array_equal(  # eager against eager (jit may fuse a multiply-add)
        np.asarray(ops.bilinear_sample(x, coords, padding=padding, horizontal=True)),
        np.asarray(ops.bilinear_sample(x, coords, padding=padding)))


def test_batch_independence():
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((3, 5, 6, 2)), jnp.float32)
    coords = jnp.asarray(random_coords(rng, (3, 4, 4), 5, 6), jnp.float32)
    sample = jax.jit(lambda x, c: ops.bilinear_sample(x, c, padding="zeros"))
    full = sample(x, coords)
    for b in range(3):
        single = sample(x[b : b + 1], coords[b : b + 1])
        np.testing.assert_array_equal(np.asarray(full[b]), np.asarray(single[0]))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_dtype_preserved(dtype):
    x = jnp.ones((1, 3, 3, 2), dtype)
    coords = jnp.full((1, 2, 2, 2), 0.5, jnp.float32)
    out = ops.bilinear_sample(x, coords, padding="border")
    assert out.dtype == dtype
    np.testing.assert_array_equal(np.asarray(out, np.float32), 1.0)


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_gradients(padding, x64):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((1, 4, 5, 2)))
    # Bilinear interpolation has kinks at integers and, for border, where the
    # coordinate is clamped: keep the finite differences (eps 1e-3) away from both.
    margin = 1.0 if padding == "zeros" else -0.1
    coords = random_coords(rng, (1, 3, 3), 4, 5, margin=margin)
    coords = np.floor(coords) + np.clip(coords - np.floor(coords), 0.1, 0.9)
    coords = jnp.asarray(coords)
    assert x.dtype == jnp.float64
    check_grads(
        lambda a, c: ops.bilinear_sample(a, c, padding=padding),
        (x, coords),
        order=1,
        modes=("rev", "fwd"),
    )


def test_gradient_wrt_coordinates_is_the_slope():
    # Along a row x = [0, 1, 4], the slope between columns 1 and 2 is 3.
    x = jnp.asarray([0.0, 1.0, 4.0]).reshape(1, 1, 3, 1)

    def value(cx):
        coords = jnp.stack([cx, jnp.zeros_like(cx)]).reshape(1, 1, 1, 2)
        return ops.bilinear_sample(x, coords, padding="zeros")[0, 0, 0, 0]

    assert float(jax.grad(value)(jnp.float32(1.3))) == pytest.approx(3.0)
    assert float(jax.grad(value)(jnp.float32(0.6))) == pytest.approx(1.0)
    # Left of the image the only in-image neighbour fades in with slope x[0, 0] = 0,
    # right of it x[2] fades out with slope -4.
    assert float(jax.grad(value)(jnp.float32(2.5))) == pytest.approx(-4.0)


def test_in_bounds():
    coords = jnp.asarray(
        [[0.0, 0.0], [4.0, 2.0], [-0.01, 1.0], [4.01, 1.0], [2.0, 2.01], [2.0, -1e-6], [3.5, 1.5]]
    )
    mask = ops.in_bounds(coords, 3, 5)
    np.testing.assert_array_equal(np.asarray(mask), [1, 1, 0, 0, 0, 0, 1])
    assert mask.dtype == jnp.bool_
    assert ops.in_bounds(jnp.zeros((2, 4, 6, 2)), 3, 5).shape == (2, 4, 6)


def test_grid_sample_coords_convention():
    height, width = 3, 5
    corners = jnp.asarray([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]])
    aligned = ops.grid_sample_coords(corners, height, width, align_corners=True)
    # align_corners=True: -1/+1 are the first/last pixel centres.
    np.testing.assert_allclose(np.asarray(aligned), [[0, 0], [4, 2], [2, 1]], atol=1e-6)
    unaligned = ops.grid_sample_coords(corners, height, width, align_corners=False)
    # align_corners=False: -1/+1 are the outer image edges, half a pixel beyond the centres.
    np.testing.assert_allclose(
        np.asarray(unaligned), [[-0.5, -0.5], [4.5, 2.5], [2, 1]], atol=1e-6
    )


@pytest.mark.parametrize("align_corners", [True, False])
def test_grid_sample_coords_inverts_the_normalisation(align_corners):
    # Pixel -> normalised formulas of grid_sample (align_corners True / False).
    height, width = 4, 7
    rng = np.random.default_rng(4)
    pixels = np.stack([rng.uniform(0, width - 1, 10), rng.uniform(0, height - 1, 10)], -1)
    size = np.asarray([width, height])
    if align_corners:
        grid = 2 * pixels / (size - 1) - 1
    else:
        grid = (2 * pixels + 1) / size - 1
    out = ops.grid_sample_coords(jnp.asarray(grid, jnp.float32), height, width,
                                 align_corners=align_corners)
    np.testing.assert_allclose(np.asarray(out), pixels, atol=1e-5)


def test_bad_inputs_name_the_expected_shape():
    x = jnp.zeros((1, 4, 5, 3))
    coords = jnp.zeros((1, 2, 2, 2))
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        ops.bilinear_sample(x[0], coords, padding="zeros")
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        ops.bilinear_sample(x, jnp.zeros((1, 2, 2, 3)), padding="zeros")
    with pytest.raises(ValueError, match=r"\(B, H2, W2, 2\) with B = 1"):
        ops.bilinear_sample(x, jnp.zeros((2, 2, 2, 2)), padding="zeros")
    with pytest.raises(ValueError, match="padding must be one of"):
        ops.bilinear_sample(x, coords, padding="reflect")
    with pytest.raises(ValueError, match="floating-point"):
        ops.bilinear_sample(x.astype(jnp.int32), coords, padding="zeros")
    with pytest.raises(ValueError, match="floating-point"):
        ops.bilinear_sample(x, coords.astype(jnp.int32), padding="zeros")
    with pytest.raises(TypeError):
        ops.bilinear_sample(x, coords, "zeros")  # padding is keyword-only
    with pytest.raises(TypeError):
        ops.bilinear_sample(x, coords)  # and required
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        ops.in_bounds(jnp.zeros((3, 3)), 2, 2)
    with pytest.raises(TypeError):
        ops.grid_sample_coords(jnp.zeros((3, 2)), 2, 2)  # align_corners required


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_jit_equals_eager(padding):
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.standard_normal((2, 6, 5, 4)), jnp.float32)
    coords = jnp.asarray(random_coords(rng, (2, 3, 7), 6, 5), jnp.float32)
    eager = ops.bilinear_sample(x, coords, padding=padding)
    jitted = jax.jit(lambda a, c: ops.bilinear_sample(a, c, padding=padding))(x, coords)
    # XLA may contract multiply-adds into FMAs under jit: equal to an ulp or two.
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=0, atol=1e-6)
