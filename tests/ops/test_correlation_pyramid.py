"""correlation_pyramid / lookup_correlation_pyramid / lookup_correlation_on_the_fly:
naive-NumPy references, hand-computed cases, jit == eager, float64 gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowlib import ops
from tests._gradients import check_grads


def _random(shape, seed, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ----------------------------------------------------------------- naive references


def _naive_pyramid(f1, f2, levels):
    f1 = np.asarray(f1, np.float64)
    f2 = np.asarray(f2, np.float64)
    channels = f1.shape[-1]
    vol = np.einsum("bhwc,bijc->bhwij", f1, f2) / np.sqrt(channels)
    out = [vol]
    for _ in range(levels - 1):
        h2, w2 = vol.shape[3] // 2, vol.shape[4] // 2
        pooled = np.zeros(vol.shape[:3] + (h2, w2))
        for i in range(h2):
            for j in range(w2):
                pooled[..., i, j] = vol[..., 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].mean(axis=(-1, -2))
        vol = pooled
        out.append(vol)
    return out


def _naive_sample(image, x, y):
    """Bilinear sample of a 2-D array at (x, y), zero outside (grid_sample zeros)."""
    h, w = image.shape
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    total = 0.0
    for yi, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xi, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yi < h and 0 <= xi < w:
                total += wy * wx * image[yi, xi]
    return total


def _naive_lookup(pyramid, coords, radius):
    coords = np.asarray(coords, np.float64)
    batch, height, width = coords.shape[:3]
    side = 2 * radius + 1
    out = np.zeros((batch, height, width, len(pyramid) * side * side))
    for k, level in enumerate(pyramid):
        level = np.asarray(level, np.float64)
        for b in range(batch):
            for y in range(height):
                for x in range(width):
                    cx, cy = coords[b, y, x] / 2**k
                    for i, dx in enumerate(range(-radius, radius + 1)):
                        for j, dy in enumerate(range(-radius, radius + 1)):
                            out[b, y, x, k * side * side + i * side + j] = _naive_sample(
                                level[b, y, x], cx + dx, cy + dy
                            )
    return out


def _coords(batch, height, width, seed, spread=6.0):
    """Identity grid plus random displacements reaching outside the grid."""
    rng = np.random.default_rng(seed)
    ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    grid = np.stack([xs, ys], -1)[None].astype(np.float64)
    return grid + rng.uniform(-spread, spread, (batch, height, width, 2))


# The value checks run the lookups jitted (one compile each; eager, every operation compiles
# on its own); test_jit_equals_eager compares the two.
_lookup = jax.jit(ops.lookup_correlation_pyramid, static_argnames=("radius",))
_on_the_fly = jax.jit(ops.lookup_correlation_on_the_fly,
                      static_argnames=("radius", "normalize", "chunk"))


# ----------------------------------------------------------------- hand-computed cases


def test_pyramid_hand_computed():
    # One frame-1 pixel with feature (2,), frame 2 a 2x2 grid of features 1..4, c = 1:
    # the volume is 2 * f2 / sqrt(1); the pooled level is its mean, 2 * 2.5 = 5.
    f1 = jnp.full((1, 1, 1, 1), 2.0)
    f2 = jnp.arange(1.0, 5.0).reshape(1, 2, 2, 1)
    pyr = ops.correlation_pyramid(f1, f2, levels=2, normalize="sqrt_channels")
    np.testing.assert_array_equal(pyr[0][0, 0, 0], [[2.0, 4.0], [6.0, 8.0]])
    np.testing.assert_array_equal(pyr[1][0, 0, 0], [[5.0]])


def test_lookup_hand_computed():
    # Volume [[1, 2], [3, 4]] for one pixel, radius 1, centre (0.5, 0): samples at x in
    # {-0.5, 0.5, 1.5}, y in {-1, 0, 1}; channel order x-major.
    level = jnp.asarray([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 1, 2, 2)
    coords = jnp.asarray([0.5, 0.0]).reshape(1, 1, 1, 2)
    out = _lookup([level], coords, radius=1)
    expected = [
        # x = -0.5: half of column 0 (y = -1, 0, 1)
        0.0, 0.5, 1.5,
        # x = 0.5: mean of columns 0 and 1
        0.0, 1.5, 3.5,
        # x = 1.5: half of column 1
        0.0, 1.0, 2.0,
    ]
    np.testing.assert_allclose(np.asarray(out[0, 0, 0]), expected, rtol=0, atol=1e-7)


def test_integer_coords_read_the_volume():
    f1, f2 = _random((1, 3, 4, 5), 0), _random((1, 6, 7, 5), 1)
    pyr = ops.correlation_pyramid(jnp.asarray(f1), jnp.asarray(f2), levels=1, normalize="none")
    coords = np.zeros((1, 3, 4, 2), np.float32)
    coords[..., 0], coords[..., 1] = 3, 2  # every pixel looks at frame-2 pixel (x=3, y=2)
    out = _lookup(pyr, jnp.asarray(coords), radius=2)
    centre = 2 * 5 + 2  # dx = 0, dy = 0
    np.testing.assert_allclose(out[..., centre], np.einsum("bhwc,bc->bhw", f1, f2[:, 2, 3]),
                               rtol=1e-6, atol=1e-6)
    # (dx, dy) = (1, -2): frame-2 pixel (4, 0), at channel (dx + r) * 5 + (dy + r).
    np.testing.assert_allclose(out[..., 3 * 5 + 0], np.einsum("bhwc,bc->bhw", f1, f2[:, 0, 4]),
                               rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------- naive references


def test_pyramid_matches_naive():
    f1, f2 = _random((2, 3, 4, 6), 2), _random((2, 9, 11, 6), 3)
    pyr = ops.correlation_pyramid(jnp.asarray(f1), jnp.asarray(f2), levels=3,
                                  normalize="sqrt_channels")
    ref = _naive_pyramid(f1, f2, 3)
    assert [p.shape for p in pyr] == [r.shape for r in ref] == [
        (2, 3, 4, 9, 11), (2, 3, 4, 4, 5), (2, 3, 4, 2, 2)]
    for got, want in zip(pyr, ref):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_lookup_matches_naive():
    f1, f2 = _random((2, 3, 4, 5), 4), _random((2, 8, 10, 5), 5)
    ref_pyr = _naive_pyramid(f1, f2, 3)
    coords = _coords(2, 3, 4, 6, spread=9.0)
    pyr = ops.correlation_pyramid(jnp.asarray(f1), jnp.asarray(f2), levels=3,
                                  normalize="sqrt_channels")
    got = _lookup(pyr, jnp.asarray(coords, jnp.float32), radius=2)
    want = _naive_lookup(ref_pyr, coords, 2)
    assert got.shape == (2, 3, 4, 3 * 25)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("chunk", [7, 4096])  # lax.map over chunks with a remainder; one go
def test_on_the_fly_equals_lookup(chunk):
    f1, f2 = _random((2, 5, 6, 8), 7), _random((2, 9, 12, 8), 8)
    coords = jnp.asarray(_coords(2, 5, 6, 9, spread=12.0), jnp.float32)
    pyr = ops.correlation_pyramid(jnp.asarray(f1), jnp.asarray(f2), levels=3,
                                  normalize="sqrt_channels")
    want = _lookup(pyr, coords, radius=3)
    got = _on_the_fly(jnp.asarray(f1), ops.feature_pyramid(jnp.asarray(f2), levels=3), coords,
                      radius=3, normalize="sqrt_channels", chunk=chunk)
    assert got.shape == want.shape == (2, 5, 6, 3 * 49)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_far_outside_reads_zero():
    f1, f2 = _random((1, 2, 2, 3), 10), _random((1, 4, 4, 3), 11)
    pyr = ops.correlation_pyramid(jnp.asarray(f1), jnp.asarray(f2), levels=2, normalize="none")
    coords = jnp.asarray([[[[1e9, 0.0], [-1e9, 1.0]], [[2.0, jnp.inf], [40.0, -40.0]]]])
    out = _lookup(pyr, coords, radius=1)
    np.testing.assert_array_equal(out, 0)
    otf = _on_the_fly(jnp.asarray(f1), ops.feature_pyramid(jnp.asarray(f2), levels=2), coords,
                      radius=1, normalize="none")
    np.testing.assert_array_equal(otf, 0)


# ----------------------------------------------------------------- jit, gradients, errors


def test_jit_equals_eager():
    f1, f2 = jnp.asarray(_random((1, 3, 4, 4), 12)), jnp.asarray(_random((1, 8, 8, 4), 13))
    coords = jnp.asarray(_coords(1, 3, 4, 14), jnp.float32)

    def both(f1, f2, coords):
        pyr = ops.correlation_pyramid(f1, f2, levels=3, normalize="sqrt_channels")
        a = ops.lookup_correlation_pyramid(pyr, coords, radius=2)
        b = ops.lookup_correlation_on_the_fly(
            f1, ops.feature_pyramid(f2, levels=3), coords, radius=2, normalize="sqrt_channels",
            chunk=5)
        return a, b

    for eager, jitted in zip(both(f1, f2, coords), jax.jit(both)(f1, f2, coords)):
        np.testing.assert_allclose(eager, jitted, rtol=1e-6, atol=1e-6)


def test_gradients_float64():
    with jax.enable_x64(True):
        f1 = jnp.asarray(_random((1, 2, 3, 3), 15, np.float64))
        f2 = jnp.asarray(_random((1, 4, 5, 3), 16, np.float64))
        # Centres away from integers (the interpolant has kinks there).
        coords = jnp.asarray(np.floor(_coords(1, 2, 3, 17, spread=3.0)) + 0.3)

        def volume_lookup(f1, f2, coords):
            pyr = ops.correlation_pyramid(f1, f2, levels=2, normalize="sqrt_channels")
            return ops.lookup_correlation_pyramid(pyr, coords, radius=1)

        def on_the_fly(f1, f2, coords):
            return ops.lookup_correlation_on_the_fly(
                f1, ops.feature_pyramid(f2, levels=2), coords, radius=1,
                normalize="sqrt_channels", chunk=4)

        for fn in (volume_lookup, on_the_fly):
            check_grads(jax.jit(fn), (f1, f2, coords), order=1, modes=("rev",), eps=1e-4,
                        atol=1e-6, rtol=1e-6)


def test_bad_inputs():
    f1, f2 = jnp.zeros((1, 2, 2, 3)), jnp.zeros((1, 4, 4, 3))
    with pytest.raises(ValueError, match="levels"):
        ops.correlation_pyramid(f1, f2, levels=4, normalize="none")  # 4x4 has 3 levels
    pyr = ops.correlation_pyramid(f1, f2, levels=2, normalize="none")
    with pytest.raises(ValueError, match=r"coords must have shape \(B, H, W, 2\)"):
        ops.lookup_correlation_pyramid(pyr, jnp.zeros((1, 2, 3, 2)), radius=1)
    with pytest.raises(ValueError, match="radius"):
        ops.lookup_correlation_pyramid(pyr, jnp.zeros((1, 2, 2, 2)), radius=-1)
    with pytest.raises(ValueError, match="f2_pyramid level 0"):
        ops.lookup_correlation_on_the_fly(f1, [jnp.zeros((1, 4, 4, 5))], jnp.zeros((1, 2, 2, 2)),
                                          radius=1, normalize="none")
    with pytest.raises(ValueError, match="normalize"):
        ops.lookup_correlation_on_the_fly(f1, [f2], jnp.zeros((1, 2, 2, 2)), radius=1,
                                          normalize="sqrt")
