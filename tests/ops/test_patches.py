"""Patch grid primitives vs naive NumPy: extraction, means, bilinear sampling, overlap-add."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowlib.ops.patches import (extract_patches, overlap_add, patch_grid, patch_means,
                                 sample_patches)


def _naive_extract(x: np.ndarray, g) -> np.ndarray:
    ext = np.pad(x, ((0, 0), (0, g.height - x.shape[1]), (0, g.width - x.shape[2])), mode="edge")
    out = np.zeros((x.shape[0], g.rows, g.cols, g.size, g.size), x.dtype)
    for i in range(g.rows):
        for j in range(g.cols):
            y, xx = i * g.stride, j * g.stride
            out[:, i, j] = ext[:, y : y + g.size, xx : xx + g.size]
    return out


def _naive_bilinear(img: np.ndarray, x: float, y: float) -> float:
    """Edge-replicated bilinear sample of a 2-D image (pixel centres at integers)."""
    h, w = img.shape
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    fx, fy = x - x0, y - y0

    def at(yy: int, xx: int) -> float:
        return img[min(max(yy, 0), h - 1), min(max(xx, 0), w - 1)]

    return ((at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx) * (1 - fy)
            + (at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx) * fy)


@pytest.mark.parametrize("h,w,size,stride", [(16, 16, 8, 4), (17, 23, 8, 4), (9, 30, 6, 2),
                                             (5, 7, 8, 8), (12, 12, 4, 4)])
def test_grid_covers_the_image(h, w, size, stride):
    g = patch_grid(h, w, size=size, stride=stride)
    assert g.height >= h and g.width >= w
    # One row/column fewer would not cover it (smallest grid), unless there is only one.
    assert g.rows == 1 or g.height - stride < h
    assert g.cols == 1 or g.width - stride < w


@pytest.mark.parametrize("size,stride", [(8, 3), (0, 1), (4, 0), (-4, 2)])
def test_grid_rejects_bad_sizes(size, stride):
    with pytest.raises(ValueError, match="multiple of stride"):
        patch_grid(16, 16, size=size, stride=stride)


@pytest.mark.parametrize("h,w,size,stride", [(16, 16, 8, 4), (17, 23, 8, 4), (9, 30, 6, 2),
                                             (5, 7, 8, 8)])
def test_extract_matches_naive(h, w, size, stride):
    x = np.random.default_rng(0).random((2, h, w)).astype(np.float32)
    g = patch_grid(h, w, size=size, stride=stride)
    np.testing.assert_array_equal(np.asarray(extract_patches(jnp.asarray(x), g)), _naive_extract(x, g))


@pytest.mark.parametrize("h,w,size,stride", [(16, 16, 8, 4), (17, 23, 8, 4), (9, 30, 6, 2),
                                             (5, 7, 8, 8), (3, 4, 6, 3)])
def test_patch_means_match_the_naive_means(h, w, size, stride):
    """The means of the naively extracted patches (edge-replicated beyond the image), in
    float64 to 1e-12 and float32 to its rounding, eagerly and under jit."""
    x = np.random.default_rng(1).uniform(0, 255, (2, h, w))
    g = patch_grid(h, w, size=size, stride=stride)
    want = _naive_extract(x, g).mean(axis=(-2, -1))
    with jax.enable_x64(True):
        got = patch_means(jnp.asarray(x), g)
        assert got.dtype == jnp.float64 and got.shape == (2, g.rows, g.cols)
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12)
    x32 = jnp.asarray(x, jnp.float32)
    for fn in patch_means, jax.jit(patch_means, static_argnums=1):
        np.testing.assert_allclose(np.asarray(fn(x32, g)), want, rtol=1e-6)


@pytest.mark.parametrize("h,w,size,stride", [(16, 16, 8, 4), (17, 23, 8, 4), (9, 30, 6, 2)])
def test_overlap_add_matches_naive(h, w, size, stride):
    g = patch_grid(h, w, size=size, stride=stride)
    vals = np.random.default_rng(1).random((2, g.rows, g.cols, size, size)).astype(np.float32)
    want = np.zeros((2, g.height, g.width), np.float32)
    for i in range(g.rows):
        for j in range(g.cols):
            want[:, i * stride : i * stride + size, j * stride : j * stride + size] += vals[:, i, j]
    got = np.asarray(overlap_add(jnp.asarray(vals), g))
    np.testing.assert_allclose(got, want[:, :h, :w], rtol=1e-6)


def test_overlap_add_is_the_adjoint_of_extraction_on_a_fitting_grid():
    g = patch_grid(16, 24, size=8, stride=4)
    assert (g.height, g.width) == (16, 24)
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.random((1, 16, 24)), jnp.float32)
    p = jnp.asarray(rng.random((1, g.rows, g.cols, 8, 8)), jnp.float32)
    lhs = jnp.sum(extract_patches(x, g) * p)
    rhs = jnp.sum(x * overlap_add(p, g))
    np.testing.assert_allclose(float(lhs), float(rhs), rtol=1e-5)


def test_coverage_counts_by_hand():
    # 8x8 patches, stride 4, on 12x12: 2x2 patches; the centre 4x4 is covered four times.
    g = patch_grid(12, 12, size=8, stride=4)
    count = np.asarray(overlap_add(jnp.ones((1, g.rows, g.cols, 8, 8)), g))[0]
    np.testing.assert_array_equal(count[4:8, 4:8], 4)
    np.testing.assert_array_equal(count[0:4, 0:4], 1)
    np.testing.assert_array_equal(count[0:4, 4:8], 2)


def test_zero_offsets_sample_the_extracted_patches():
    x = jnp.asarray(np.random.default_rng(3).random((1, 20, 28)), jnp.float32)
    g = patch_grid(20, 28, size=8, stride=4)
    got = sample_patches(x, g, jnp.zeros((1, g.rows, g.cols, 2)))
    np.testing.assert_allclose(np.asarray(got), np.asarray(extract_patches(x, g)), atol=1e-6)


def test_sample_matches_naive_bilinear_at_random_offsets():
    rng = np.random.default_rng(4)
    x = rng.random((2, 18, 22)).astype(np.float32)
    g = patch_grid(18, 22, size=6, stride=3)
    off = rng.uniform(-9, 9, (2, g.rows, g.cols, 2)).astype(np.float32)
    got = np.asarray(sample_patches(jnp.asarray(x), g, jnp.asarray(off)))
    for b in range(2):
        for i in range(g.rows):
            for j in range(g.cols):
                for r in (0, 5):
                    for c in (0, 3, 5):
                        want = _naive_bilinear(x[b], j * 3 + c + off[b, i, j, 0], i * 3 + r + off[b, i, j, 1])
                        assert got[b, i, j, r, c] == pytest.approx(want, abs=1e-5)


def test_horizontal_sampling_is_the_bilinear_sampling_along_rows():
    """``horizontal=True`` gives exactly what the bilinear sampling gives for offsets with
    y = 0, and ignores the offsets' y (also far outside the image, where the clamp acts)."""
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.random((2, 18, 22)), jnp.float32)
    g = patch_grid(18, 22, size=6, stride=3)
    u = rng.uniform(-30, 30, (2, g.rows, g.cols)).astype(np.float32)
    along_rows = jnp.asarray(np.stack([u, np.zeros_like(u)], -1))
    want = np.asarray(jax.jit(sample_patches, static_argnums=1)(x, g, along_rows))
    got = jax.jit(functools.partial(sample_patches, horizontal=True), static_argnums=1)
    np.testing.assert_array_equal(np.asarray(got(x, g, along_rows)), want)
    y_ignored = jnp.asarray(np.stack([u, rng.uniform(-3, 3, u.shape).astype(np.float32)], -1))
    np.testing.assert_array_equal(np.asarray(got(x, g, y_ignored)), want)


def test_a_wider_window_holds_the_patches_at_every_whole_pixel_offset():
    """A ``(p + 4) x (p + 4)`` window sampled at ``u - 2`` holds, at row and column
    ``2 + k``, the patch sampled at ``u + k`` for whole-pixel ``k``; stereo's ``p x (p + 3)``
    window at ``u - 3`` along rows holds the patches at ``u - 3 .. u``."""
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.random((2, 20, 26)), jnp.float32)
    g = patch_grid(20, 26, size=8, stride=4)
    u = jnp.asarray(rng.choice([-1.5, -0.25, 0.5, 3.75], (2, g.rows, g.cols, 2)), jnp.float32)
    wide = np.asarray(sample_patches(x, g, u - 2, window=(12, 12)))
    assert wide.shape == (2, g.rows, g.cols, 12, 12)
    for dy, dx in ((0, 0), (-2, 1), (2, -2), (1, 2)):
        want = np.asarray(sample_patches(x, g, u + jnp.asarray([dx, dy], jnp.float32)))
        np.testing.assert_array_equal(wide[..., 2 + dy : 10 + dy, 2 + dx : 10 + dx], want)
    rows = np.asarray(sample_patches(x, g, u - jnp.asarray([3.0, 0.0]), horizontal=True,
                                     window=(8, 11)))
    for k in range(4):
        want = np.asarray(sample_patches(x, g, u - jnp.asarray([float(k), 0.0]), horizontal=True))
        np.testing.assert_array_equal(rows[..., 3 - k : 11 - k], want)


def test_sample_jit_equals_eager_and_differentiates_in_offsets():
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.random((1, 16, 16)), jnp.float32)
    g = patch_grid(16, 16, size=8, stride=4)
    off = jnp.asarray(rng.uniform(-2, 2, (1, g.rows, g.cols, 2)), jnp.float32)
    np.testing.assert_allclose(np.asarray(jax.jit(sample_patches, static_argnums=1)(x, g, off)),
                               np.asarray(sample_patches(x, g, off)), atol=1e-6)
    # d/du of the sampled value is the image's horizontal slope between the taps.
    ramp = jnp.tile(jnp.arange(16.0) * 2.0, (16, 1))[None]
    grad = jax.grad(lambda o: jnp.sum(sample_patches(ramp, g, o)[0, 1, 1]))(jnp.full_like(off, 0.25))
    assert float(grad[0, 1, 1, 0]) == pytest.approx(2.0 * 64)
    assert float(grad[0, 1, 1, 1]) == pytest.approx(0.0)


def test_shape_errors_name_the_expected_shape():
    g = patch_grid(16, 16, size=8, stride=4)
    with pytest.raises(ValueError, match=r"\(B, 16, 16\)"):
        extract_patches(jnp.zeros((1, 16, 15)), g)
    with pytest.raises(ValueError, match="offsets must have shape"):
        sample_patches(jnp.zeros((1, 16, 16)), g, jnp.zeros((1, 2, 2, 2)))
    with pytest.raises(ValueError, match=r"window must be \(height, width\)"):
        sample_patches(jnp.zeros((1, 16, 16)), g, jnp.zeros((1, 3, 3, 2)), window=(0, 8))
    with pytest.raises(ValueError, match="values must have shape"):
        overlap_add(jnp.zeros((1, 3, 3, 4, 4)), g)
