"""2-D convolution by FFT overlap-add, for layers with few output channels.

XLA:CPU runs a convolution with 2 output channels far below its speed for wide ones:
SpyNet's last 7x7 layer (16 -> 2 channels) costs about as much as its 32 -> 16 layer with 8x
the multiplies. In the frequency domain the same layer needs ~4 C F real multiplies per
output instead of k^2 C F, and XLA's FFT is fast enough for that to pay when F is small; for
wide layers it does not. So it is opt-in per layer (:class:`flowlib.models._layers.Conv`
``method="fft"``, which takes it only where XLA compiles for a CPU). ``python -m
benchmarks.conv_routes --only conv`` times it against ``lax`` on SpyNet's layers.

Method: the padded input is cut into non-overlapping ``tile - k + 1`` blocks, each
zero-padded to ``tile`` and convolved with the flipped kernel (a full linear
convolution, no wrap-around); the ``tile``-sized results are added where they overlap
and the valid part is cropped. The channel mixing per frequency is one real batched dot
([Re X, Im X] against [[Re K, Im K], [-Im K, Re K]], K = 2 C). Results equal
``lax.conv_general_dilated`` within float32 rounding (~1e-6 relative).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

__all__ = ["fft_conv2d", "fft_tile"]


def fft_tile(kernel_size: int, height: int, width: int) -> int:
    """FFT tile side: 64, or the smallest power of two >= ``2 k - 2`` that covers the
    input when that is smaller (a coarse pyramid level is one small tile)."""
    tile = 64
    while tile // 2 >= max(2 * kernel_size - 2, 8) and tile // 2 - kernel_size + 1 >= max(
            height, width):
        tile //= 2
    return max(tile, 2 * kernel_size - 2)


def _overlap_add(z: jax.Array, axis: int, block: int) -> jax.Array:
    """Merge axes ``axis`` (blocks) and ``axis + 1`` (tiles of ``t`` samples whose last
    ``t - block <= block`` overlap the next block) into ``(nb + 1) * block`` samples."""
    nb, t = z.shape[axis], z.shape[axis + 1]
    core = jax.lax.slice_in_dim(z, 0, block, axis=axis + 1)
    tail = jax.lax.slice_in_dim(z, block, t, axis=axis + 1)
    core_pads = [(0, 0)] * z.ndim
    tail_pads = [(0, 0)] * z.ndim
    core_pads[axis] = (0, 1)
    tail_pads[axis], tail_pads[axis + 1] = (1, 0), (0, 2 * block - t)
    merged = jnp.pad(core, core_pads) + jnp.pad(tail, tail_pads)
    return merged.reshape(*z.shape[:axis], (nb + 1) * block, *z.shape[axis + 2:])


def fft_conv2d(x: jax.Array, kernel: jax.Array,
               padding: Sequence[tuple[int, int]] = ((0, 0), (0, 0)), *,
               tile: int | None = None) -> jax.Array:
    """Stride-1 2-D convolution (cross-correlation, as ``lax``), NHWC x HWIO.

    Equals ``lax.conv_general_dilated(x, kernel, (1, 1), padding,
    dimension_numbers=("NHWC", "HWIO", "NHWC"))`` within float32 rounding.

    Args:
      x: ``(N, H, W, C)``; computed in float32 (bfloat16 inputs are widened), or float64
        for float64 inputs.
      kernel: ``(kh, kw, C, F)``.
      padding: ``((top, bottom), (left, right))`` zero padding (non-negative).
      tile: FFT tile side, at least ``2 * max(kh, kw) - 2``; default :func:`fft_tile`.

    Returns:
      ``(N, H + top + bottom - kh + 1, W + left + right - kw + 1, F)``, float32 (float64
      for float64 inputs).
    """
    if x.ndim != 4 or kernel.ndim != 4 or x.shape[-1] != kernel.shape[2]:
        raise ValueError(f"expected x (N, H, W, C) and kernel (kh, kw, C, F), got {x.shape} "
                         f"and {kernel.shape}")
    (top, bottom), (left, right) = (tuple(int(v) for v in p) for p in padding)
    if min(top, bottom, left, right) < 0:
        raise ValueError(f"padding must be non-negative, got {padding}")
    dtype = jnp.promote_types(jnp.promote_types(x.dtype, kernel.dtype), jnp.float32)
    x = jnp.pad(x.astype(dtype), ((0, 0), (top, bottom), (left, right), (0, 0)))
    kernel = kernel.astype(dtype)
    n, h, width, c = x.shape
    kh, kw, _, f = kernel.shape
    out_h, out_w = h - kh + 1, width - kw + 1
    if min(out_h, out_w) < 1:
        raise ValueError(f"convolution output would be empty: input {x.shape[1:3]} (padded), "
                         f"kernel {(kh, kw)}")
    k = max(kh, kw)
    tile = fft_tile(k, h, width) if tile is None else int(tile)
    if tile < 2 * k - 2:  # the overlap (k - 1) must not reach past the next block
        raise ValueError(f"FFT tile {tile} too small for a {kh}x{kw} kernel "
                         f"(needs >= {2 * k - 2})")
    block, v = tile - k + 1, tile // 2 + 1
    nbh, nbw = -(-h // block), -(-width // block)
    xb = jnp.pad(x, ((0, 0), (0, nbh * block - h), (0, nbw * block - width), (0, 0)))
    xb = xb.reshape(n, nbh, block, nbw, block, c).transpose(0, 1, 3, 5, 2, 4)
    spec = jnp.fft.rfft2(xb, s=(tile, tile))  # n, bh, bw, c, tile, v
    spec = jnp.concatenate([spec.real, spec.imag], axis=3)
    spec = spec.reshape(-1, 2 * c, tile * v).transpose(2, 0, 1)  # freq, tiles, 2c
    flipped = jnp.transpose(kernel[::-1, ::-1], (2, 3, 0, 1))  # c, f, kh, kw
    kspec = jnp.fft.rfft2(flipped, s=(tile, tile)).reshape(c, f, tile * v).transpose(2, 0, 1)
    mix = jnp.concatenate([jnp.concatenate([kspec.real, kspec.imag], -1),
                           jnp.concatenate([-kspec.imag, kspec.real], -1)], 1)  # freq, 2c, 2f
    out = jnp.einsum("btc,bcf->btf", spec, mix, precision=jax.lax.Precision.HIGHEST)
    out = jax.lax.complex(out[..., :f], out[..., f:]).transpose(1, 2, 0)
    z = jnp.fft.irfft2(out.reshape(n, nbh, nbw, f, tile, v), s=(tile, tile))
    z = z.transpose(0, 1, 4, 2, 5, 3)  # n, bh, tile, bw, tile, f
    z = _overlap_add(_overlap_add(z, 1, block), 2, block)
    # Full convolution index p + k - 1 is the valid correlation output p.
    return z[:, kh - 1:kh - 1 + out_h, kw - 1:kw - 1 + out_w]
