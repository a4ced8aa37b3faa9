"""RAFT's correlation pyramid and its radius-r lookup, materialised or on the fly.

RAFT (Teed and Deng, ECCV 2020) correlates every pixel of frame 1 with every pixel of
frame 2 (:func:`~flowlib.ops.all_pairs_correlation`), average-pools the frame-2 axes of
that 4-D volume into a pyramid (:func:`correlation_pyramid`), and at every update reads a
``(2r+1) x (2r+1)`` window of each level around the current match position
(:func:`lookup_correlation_pyramid`).

:func:`lookup_correlation_on_the_fly` gives the same features without the volume (RAFT's
"alternate" correlation): pooling the frame-2 axes of ``f1 . f2`` is ``f1 . pool(f2)``,
so each level's window is a dot product of ``f1`` with the pooled frame-2 features at the
window's pixels. Its memory is linear in the number of pixels (the volume is quadratic:
``(HW)^2`` values, 4.3 GB in float32 for RAFT's 1/8 grid of a 1920x1080 frame); its time
is ``levels * (2r+2)^2 * C`` multiply-adds per pixel and update instead of a gather.

Both lookups evaluate the bilinear samples the same way: every offset of a window is an
integer, so all ``(2r+1)^2`` samples share the fractional part of the centre and are
weighted sums of one ``(2r+2) x (2r+2)`` block of integer positions (one gather of that
block instead of four per sample). Values outside the frame-2 grid are zero
(``grid_sample(padding_mode="zeros", align_corners=True)``).
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from flowlib.ops.correlation import Normalize, _accumulation_dtype, _check_normalize, _scale
from flowlib.ops.correlation import all_pairs_correlation
from flowlib.ops.resize import avg_pool

__all__ = [
    "correlation_pyramid",
    "lookup_correlation_pyramid",
    "lookup_correlation_on_the_fly",
    "feature_pyramid",
]


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_levels_fit(height: int, width: int, levels: int, what: str) -> None:
    if min(height, width) >> (levels - 1) < 1:
        raise ValueError(
            f"{levels} levels need the frame-2 grid to be at least {2 ** (levels - 1)} "
            f"pixels on each side, got {what} {height} x {width}"
        )


def correlation_pyramid(
    f1: jax.Array,
    f2: jax.Array,
    *,
    levels: int,
    normalize: Normalize,
    precision: lax.PrecisionLike = None,
) -> list[jax.Array]:
    """All-pairs correlation volume and its average-pooled pyramid (RAFT ``CorrBlock``).

    Args:
      f1: ``(b, h, w, c)`` features of frame 1.
      f2: ``(b, h2, w2, c)`` features of frame 2.
      levels: number of levels (RAFT: 4), each ``>= 1`` pixel on each side.
      normalize: as :func:`~flowlib.ops.all_pairs_correlation` (RAFT: ``"sqrt_channels"``).
      precision: ``lax.Precision`` of the contraction.

    Returns:
      ``levels`` arrays; level k is ``(b, h, w, h2_k, w2_k)`` with ``h2_k = floor(h2_{k-1}
      / 2)``: the volume with its frame-2 axes 2x2-average-pooled k times (floor mode,
      ``F.avg_pool2d(kernel_size=2, stride=2)``), dtype of the inputs.

    Convention:
      ``out[0][b, y, x, y2, x2] = s * sum_c f1[b, y, x, c] f2[b, y2, x2, c]``; axes 1-2
      index the frame-1 pixel, axes 3-4 the frame-2 pixel. Level k is computed as the
      correlation of ``f1`` with :func:`feature_pyramid` level k of ``f2`` (the same
      values up to float rounding: pooling is linear).
    """
    levels = _check_int(levels, "levels", 1)
    corr = functools.partial(all_pairs_correlation, normalize=normalize, precision=precision)
    pyramid = [corr(f1, f2)]
    # Pooling the volume's frame-2 axes pools f2 (the correlation is linear in f2): each
    # level is f1 correlated with the pooled features, so the volume is written once and
    # never read back to be pooled.
    for level in feature_pyramid(f2, levels=levels)[1:]:
        pyramid.append(corr(f1, level))
    return pyramid


def feature_pyramid(f2: jax.Array, *, levels: int) -> list[jax.Array]:
    """Frame-2 features 2x2-average-pooled ``levels - 1`` times, finest first.

    The input of :func:`lookup_correlation_on_the_fly`: level k correlated with ``f1``
    is level k of :func:`correlation_pyramid` (pooling is linear).

    Args:
      f2: ``(b, h2, w2, c)`` features of frame 2.
      levels: number of levels including ``f2`` (>= 1).

    Returns:
      ``levels`` arrays ``(b, h2_k, w2_k, c)``, ``h2_k = floor(h2_{k-1} / 2)``.
    """
    levels = _check_int(levels, "levels", 1)
    if f2.ndim != 4 or not jnp.issubdtype(f2.dtype, jnp.floating):
        raise ValueError(f"f2 must be a floating-point (B, H, W, C) array, got {f2.shape} {f2.dtype}")
    _check_levels_fit(f2.shape[1], f2.shape[2], levels, "f2 of")
    out = [f2]
    for _ in range(levels - 1):
        out.append(avg_pool(out[-1], 2, count_include_pad=False))
    return out


def _check_coords(coords: jax.Array, batch: int, height: int, width: int) -> None:
    if coords.shape != (batch, height, width, 2):
        raise ValueError(
            f"coords must have shape (B, H, W, 2) = {(batch, height, width, 2)} holding (x, y) "
            f"positions in frame 2, got {coords.shape}"
        )
    if not jnp.issubdtype(coords.dtype, jnp.floating):
        raise ValueError(f"coords must be a floating-point array, got dtype {coords.dtype}")


def _block_indices(coords: jax.Array, radius: int, h2: int, w2: int):
    """Integer block around each centre and the shared bilinear fractions.

    Returns ``(index, inside, fx, fy)``: ``index`` ``(..., 2r+2, 2r+2)`` flat positions
    ``y * w2 + x`` (clipped into range), rows = y offsets ``-r .. r+1``, columns = x
    offsets; ``inside`` where the position is on the grid; ``fx, fy`` ``(...)``.
    """
    side = 2 * radius + 2
    # Far outside, the whole block is zero; clipping keeps the int32 conversion in range.
    cx = jnp.clip(coords[..., 0], -side - 1, w2 + side)
    cy = jnp.clip(coords[..., 1], -side - 1, h2 + side)
    x0f, y0f = jnp.floor(cx), jnp.floor(cy)
    fx, fy = cx - x0f, cy - y0f
    offsets = jnp.arange(-radius, radius + 2, dtype=jnp.int32)
    xs = x0f.astype(jnp.int32)[..., None] + offsets  # (..., side)
    ys = y0f.astype(jnp.int32)[..., None] + offsets
    inside = ((ys >= 0) & (ys < h2))[..., :, None] & ((xs >= 0) & (xs < w2))[..., None, :]
    index = (jnp.clip(ys, 0, h2 - 1) * w2)[..., :, None] + jnp.clip(xs, 0, w2 - 1)[..., None, :]
    return index, inside, fx, fy


def _interpolate(block: jax.Array, fx: jax.Array, fy: jax.Array) -> jax.Array:
    """``(..., 2r+2, 2r+2)`` integer-position values (rows y, columns x) -> the
    ``(2r+1)^2`` bilinear samples, flattened x-offset-major as RAFT orders them."""
    fx = fx[..., None, None].astype(block.dtype)
    fy = fy[..., None, None].astype(block.dtype)
    top, bottom = block[..., :-1, :], block[..., 1:, :]
    rows = top + fy * (bottom - top)  # (..., 2r+1 y, 2r+2 x)
    left, right = rows[..., :-1], rows[..., 1:]
    samples = left + fx * (right - left)  # (..., 2r+1 y, 2r+1 x)
    samples = jnp.swapaxes(samples, -1, -2)  # x offset major, y offset minor
    return samples.reshape(*samples.shape[:-2], -1)


def lookup_correlation_pyramid(
    pyramid: Sequence[jax.Array], coords: jax.Array, *, radius: int
) -> jax.Array:
    """Bilinear ``(2r+1) x (2r+1)`` windows of every pyramid level (RAFT ``index_pyramid``).

    Args:
      pyramid: levels from :func:`correlation_pyramid`, ``(b, h, w, h2_k, w2_k)``.
      coords: ``(b, h, w, 2)`` positions ``(x, y)`` in level-0 frame-2 pixels, one per
        frame-1 pixel (RAFT's ``coords1``).
      radius: r (RAFT: 4; RAFT-small: 3).

    Returns:
      ``(b, h, w, levels * (2r+1)^2)``, dtype of the pyramid. Channel
      ``k * (2r+1)^2 + (dx + r) * (2r+1) + (dy + r)`` holds level k sampled at
      ``coords / 2^k + (dx, dy)`` (x offset major: torchvision's and RAFT's order).

    Convention:
      Pixel centres at integers; samples outside the level's grid read zeros
      (``grid_sample(..., mode="bilinear", padding_mode="zeros", align_corners=True)`` on
      absolute coordinates). Differentiable w.r.t. the pyramid and ``coords``.
    """
    radius = _check_int(radius, "radius", 0)
    if len(pyramid) < 1:
        raise ValueError("pyramid must hold at least one level")
    batch, height, width = pyramid[0].shape[:3]
    _check_coords(coords, batch, height, width)
    features = []
    for k, level in enumerate(pyramid):
        if level.ndim != 5 or level.shape[:3] != (batch, height, width):
            raise ValueError(
                f"pyramid level {k} must have shape (B, H, W, H2, W2) with (B, H, W) = "
                f"{(batch, height, width)}, got {level.shape}"
            )
        h2, w2 = level.shape[3:]
        centre = coords / (2**k)
        index, inside, fx, fy = _block_indices(centre, radius, h2, w2)
        flat = jnp.asarray(level).reshape(batch * height * width, h2 * w2)
        gathered = jax.vmap(lambda row, idx: row.at[idx].get(mode="promise_in_bounds"))(
            flat, index.reshape(batch * height * width, -1)
        ).reshape(index.shape)
        block = jnp.where(inside, gathered, 0).astype(level.dtype)
        features.append(_interpolate(block, fx, fy))
    return jnp.concatenate(features, axis=-1)


def lookup_correlation_on_the_fly(
    f1: jax.Array,
    f2_pyramid: Sequence[jax.Array],
    coords: jax.Array,
    *,
    radius: int,
    normalize: Normalize,
    chunk: int = 2048,
    precision: lax.PrecisionLike = None,
) -> jax.Array:
    """:func:`lookup_correlation_pyramid` of :func:`correlation_pyramid`'s output, computed
    without the volume (RAFT's "alternate" correlation).

    Args:
      f1: ``(b, h, w, c)`` features of frame 1.
      f2_pyramid: :func:`feature_pyramid` of the frame-2 features, ``(b, h2_k, w2_k, c)``.
      coords: ``(b, h, w, 2)`` positions ``(x, y)`` in level-0 frame-2 pixels.
      radius: r.
      normalize: as :func:`correlation_pyramid`.
      chunk: frame-1 pixels processed together (a ``lax.map`` batch): peak memory is about
        ``chunk * (2r+2)^2 * c`` values.
      precision: ``lax.Precision`` of the dot products.

    Returns:
      ``(b, h, w, levels * (2r+1)^2)`` in ``f1``'s dtype, same layout and convention as
      :func:`lookup_correlation_pyramid`; equal to it up to float rounding (dot products
      summed in another order, float32 accumulation).
    """
    radius = _check_int(radius, "radius", 0)
    chunk = _check_int(chunk, "chunk", 1)
    _check_normalize(normalize)
    if f1.ndim != 4 or not jnp.issubdtype(f1.dtype, jnp.floating):
        raise ValueError(f"f1 must be a floating-point (B, H, W, C) array, got {f1.shape} {f1.dtype}")
    if len(f2_pyramid) < 1:
        raise ValueError("f2_pyramid must hold at least one level")
    batch, height, width, channels = f1.shape
    for k, level in enumerate(f2_pyramid):
        if level.ndim != 4 or level.shape[0] != batch or level.shape[3] != channels:
            raise ValueError(
                f"f2_pyramid level {k} must have shape (B, H2, W2, C) with B = {batch}, "
                f"C = {channels} (from f1 {f1.shape}), got {level.shape}"
            )
    _check_coords(coords, batch, height, width)
    out_dtype = f1.dtype
    acc = _accumulation_dtype(out_dtype)
    scale = _scale(normalize, channels)
    n = batch * height * width
    batch_of = jnp.repeat(jnp.arange(batch, dtype=jnp.int32), height * width)

    def one_pixel(args):
        feats, centre, b = args  # (c,), (2,), ()
        out = []
        for k, level in enumerate(f2_pyramid):
            h2, w2 = level.shape[1:3]
            index, inside, fx, fy = _block_indices(centre / (2**k), radius, h2, w2)
            flat = jnp.asarray(level).reshape(batch * h2 * w2, channels)
            rows = flat.at[index + b * (h2 * w2)].get(mode="promise_in_bounds")
            dots = jnp.einsum("c,ijc->ij", feats, rows, precision=precision,
                              preferred_element_type=acc)
            if scale != 1.0:
                dots = dots * jnp.asarray(scale, acc)
            block = jnp.where(inside, dots, 0)
            out.append(_interpolate(block, fx, fy))
        return jnp.concatenate(out, axis=-1).astype(out_dtype)

    xs = (f1.reshape(n, channels), coords.reshape(n, 2), batch_of)
    if n <= chunk:
        result = jax.vmap(one_pixel)(xs)
    else:
        result = lax.map(one_pixel, xs, batch_size=chunk)
    return result.reshape(batch, height, width, -1)
