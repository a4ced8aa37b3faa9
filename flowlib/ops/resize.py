"""Resizing, flow upsampling and average pooling with PyTorch's exact semantics.

The source positions and interpolation weights are computed once per call, at trace
time, in NumPy with the same float arithmetic as ATen's CPU kernels
(``area_pixel_compute_source_index``, ``nearest_idx``); the arrays are then resized one
axis at a time with two static gathers and a lerp. Against per-axis (out, in) weight
matrices (einsum) the gathers are faster forward on XLA:CPU, need no matmul precision flag
(TF32) on GPUs, and keep an ``inf`` local instead of turning whole rows into NaN
(0 * inf); matrices are faster only in the backward pass of many-channel inputs.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "resize_bilinear",
    "resize_trilinear",
    "resize_nearest",
    "upsample_flow",
    "avg_pool",
    "image_pyramid",
]


def _check_size(size: Sequence[int], n: int, names: str) -> tuple[int, ...]:
    if isinstance(size, (str, bytes)) or not isinstance(size, Sequence) or len(size) != n:
        raise ValueError(f"size must be {n} ints {names}, got {size!r}")
    out = []
    for s in size:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)) or s < 1:
            raise ValueError(f"size must be {n} positive ints {names}, got {size!r}")
        out.append(int(s))
    return tuple(out)


def _check_array(x: jax.Array, ndim: int, layout: str, *, floating: bool) -> None:
    if x.ndim != ndim:
        raise ValueError(f"x must have shape {layout}, got {x.shape}")
    if floating and not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"x must be a floating-point array, got dtype {x.dtype}")


def _opmath(dtype: jnp.dtype) -> type:
    # ATen computes positions and weights in float ("opmath") for float32 and lower
    # precision inputs, in double for float64.
    return np.float64 if jnp.dtype(dtype) == jnp.float64 else np.float32


def _linear_taps(
    n_in: int, n_out: int, align_corners: bool, dtype: type
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ATen's per-output (index0, index1, lambda1) for 1-D linear interpolation."""
    dst = np.arange(n_out, dtype=dtype)
    if align_corners:
        # (in - 1) / (out - 1); one output pixel reads the first input pixel.
        scale = dtype(n_in - 1) / dtype(n_out - 1) if n_out > 1 else dtype(0)
        src = scale * dst
    else:
        # Half-pixel centres; ATen clamps negative positions (first output pixels when
        # upsampling) to 0 for linear modes. ATen's CPU kernels are compiled with FMA
        # contraction, so scale * (dst + 0.5) - 0.5 is rounded once: evaluate it in
        # float64 and round (halves the deviation from the PyTorch fixtures).
        scale = dtype(n_in) / dtype(n_out)
        src = (np.float64(scale) * (dst + dtype(0.5)).astype(np.float64) - 0.5).astype(dtype)
        src = np.maximum(src, dtype(0))
    index0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    lambda1 = np.clip(src - index0.astype(dtype), 0, 1).astype(dtype)
    # The last input pixel interpolates with itself.
    index1 = index0 + (index0 < n_in - 1)
    return index0, index1, lambda1


def _lerp_axis(x: jax.Array, axis: int, n_out: int, align_corners: bool) -> jax.Array:
    n_in = x.shape[axis]
    if n_in == n_out:
        # ATen's identity path (also exact for align_corners=True, where it would be anyway).
        return x
    index0, index1, lambda1 = _linear_taps(n_in, n_out, align_corners, _opmath(x.dtype))
    shape = [1] * x.ndim
    shape[axis] = n_out
    w1 = jnp.asarray(lambda1.reshape(shape), x.dtype)
    w0 = jnp.asarray((1 - lambda1).reshape(shape), x.dtype)
    take = dict(axis=axis, mode="clip", indices_are_sorted=True)
    return jnp.take(x, index0, **take) * w0 + jnp.take(x, index1, **take) * w1


def resize_bilinear(x: jax.Array, size: Sequence[int], *, align_corners: bool) -> jax.Array:
    """Resize ``(b, h, w, c)`` to ``(b, *size, c)`` like ``F.interpolate(mode="bilinear")``.

    Args:
      x: ``(b, h, w, c)`` floating-point array.
      size: ``(h_out, w_out)``.
      align_corners: PyTorch's flag. False: half-pixel centres, source position
        ``(dst + 0.5) * in/out - 0.5`` clamped below at 0. True: corner pixel centres
        aligned, ``dst * (in - 1)/(out - 1)``.

    Returns:
      ``(b, h_out, w_out, c)``, dtype of ``x``.

    Convention:
      No antialiasing when downsampling (PyTorch's default; unlike
      ``jax.image.resize``). Matches ``F.interpolate(size=...)``; for
      ``scale_factor=s`` calls the result is the same whenever ``in * s`` is an integer.
      Weights are computed as ATen does (float32), and the lerp order is ATen's (width
      first, then height), so float32 results agree to an ulp or two.
    """
    _check_array(x, 4, "(B, H, W, C)", floating=True)
    h, w = _check_size(size, 2, "(height, width)")
    x = _lerp_axis(x, 2, w, align_corners)
    return _lerp_axis(x, 1, h, align_corners)


def resize_trilinear(x: jax.Array, size: Sequence[int], *, align_corners: bool) -> jax.Array:
    """Resize ``(b, d, h, w, c)`` to ``(b, *size, c)`` like ``F.interpolate(mode="trilinear")``.

    Args:
      x: ``(b, d, h, w, c)`` floating-point array (e.g. a cost volume).
      size: ``(d_out, h_out, w_out)``.
      align_corners: as in :func:`resize_bilinear`, per axis.

    Returns:
      ``(b, d_out, h_out, w_out, c)``, dtype of ``x``.

    Convention:
      Separable: width, then height, then depth (ATen's nesting), no antialiasing.
    """
    _check_array(x, 5, "(B, D, H, W, C)", floating=True)
    d, h, w = _check_size(size, 3, "(depth, height, width)")
    x = _lerp_axis(x, 3, w, align_corners)
    x = _lerp_axis(x, 2, h, align_corners)
    return _lerp_axis(x, 1, d, align_corners)


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    dst = np.arange(n_out)
    # ATen `nearest_idx`: exact shortcuts for equal and doubled sizes, otherwise
    # floor(dst * float32(in/out)) in float32, clamped to the last pixel.
    if n_out == n_in:
        return dst
    if n_out == 2 * n_in:
        return dst >> 1
    scale = np.float32(n_in) / np.float32(n_out)
    return np.minimum(np.floor(dst.astype(np.float32) * scale).astype(np.int64), n_in - 1)


def resize_nearest(x: jax.Array, size: Sequence[int]) -> jax.Array:
    """Resize ``(b, h, w, c)`` to ``(b, *size, c)`` like PyTorch ``mode="nearest"``.

    Args:
      x: ``(b, h, w, c)`` array of any dtype.
      size: ``(h_out, w_out)``.

    Returns:
      ``(b, h_out, w_out, c)``, dtype of ``x``.

    Convention:
      Output pixel ``dst`` copies input pixel ``floor(dst * in/out)`` (PyTorch's legacy
      "nearest", not "nearest-exact"; ``nn.Upsample(scale_factor=2)`` in CFNet's decoder
      repeats every pixel twice). The product is evaluated in float32 as ATen does.
    """
    _check_array(x, 4, "(B, H, W, C)", floating=False)
    h, w = _check_size(size, 2, "(height, width)")
    take = dict(mode="clip", indices_are_sorted=True)
    x = jnp.take(x, _nearest_index(x.shape[2], w), axis=2, **take)
    return jnp.take(x, _nearest_index(x.shape[1], h), axis=1, **take)


def upsample_flow(flow: jax.Array, size: Sequence[int], *, align_corners: bool) -> jax.Array:
    """Resize a flow field bilinearly and rescale its vectors to the new pixel grid.

    Args:
      flow: ``(b, h, w, 2)`` flow ``(u, v)`` in pixels of the ``h x w`` grid.
      size: ``(h_out, w_out)``.
      align_corners: as in :func:`resize_bilinear` (SpyNet's x2 steps: True; SpyNet's
        resize back to the input size and FlowNet's output upsampling: False).

    Returns:
      ``(b, h_out, w_out, 2)`` flow in pixels of the output grid: u multiplied by
      ``w_out / w`` and v by ``h_out / h`` (SpyNet's ``* 2.0`` for a doubling).

    Convention:
      Flow channel 0 = u (x), 1 = v (y). The factors are the plain size ratios, as
      upstream uses them, for either ``align_corners`` value.
    """
    if flow.ndim != 4 or flow.shape[-1] != 2:
        raise ValueError(f"flow must have shape (B, H, W, 2) holding (u, v), got {flow.shape}")
    h, w = _check_size(size, 2, "(height, width)")
    _, h_in, w_in, _ = flow.shape
    resized = resize_bilinear(flow, (h, w), align_corners=align_corners)
    # Python float ratios, rounded once to the array dtype (as torch's `tensor *= float`).
    factors = jnp.asarray([w / w_in, h / h_in], resized.dtype)
    return resized * factors


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif isinstance(value, Sequence) and len(value) == 2:
        pair = tuple(int(v) for v in value)
    else:
        raise ValueError(f"{name} must be an int or 2 ints (height, width), got {value!r}")
    if min(pair) < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return pair  # type: ignore[return-value]


def avg_pool(
    x: jax.Array,
    window: int | Sequence[int],
    *,
    stride: int | Sequence[int] | None = None,
    count_include_pad: bool,
) -> jax.Array:
    """Average pooling without padding, floor mode (``F.avg_pool2d(padding=0)``).

    Args:
      x: ``(b, h, w, c)`` floating-point array.
      window: kernel ``(kh, kw)`` or one int for both.
      stride: ``(sh, sw)``, one int, or None for ``stride = window`` (PyTorch default).
      count_include_pad: PyTorch's flag, required for explicitness. Without padding every
        window lies inside the image, so both values divide by ``kh * kw``.

    Returns:
      ``(b, (h - kh)//sh + 1, (w - kw)//sw + 1, c)``: windows that do not fit are dropped
      (an odd last row/column with a 2x2 window, as in SpyNet's pyramid).

    Convention:
      Window ``(i, j)`` covers rows ``i*sh .. i*sh + kh - 1`` and columns
      ``j*sw .. j*sw + kw - 1``.
    """
    _check_array(x, 4, "(B, H, W, C)", floating=True)
    del count_include_pad  # No padding here, so it cannot change the result.
    kh, kw = _pair(window, "window")
    sh, sw = (kh, kw) if stride is None else _pair(stride, "stride")
    batch, height, width, channels = x.shape
    if kh > height or kw > width:
        raise ValueError(f"window {(kh, kw)} must fit in x of shape (B, H, W, C) = {x.shape}")
    out_h = (height - kh) // sh + 1
    out_w = (width - kw) // sw + 1
    if (sh, sw) == (kh, kw):
        # Non-overlapping windows: a crop and a reshape, which XLA turns into one
        # fused reduction (reduce_window is slower on CPU).
        blocks = x[:, : out_h * kh, : out_w * kw].reshape(batch, out_h, kh, out_w, kw, channels)
        return jnp.mean(blocks, axis=(2, 4))
    summed = lax.reduce_window(
        x, jnp.zeros((), x.dtype), lax.add, (1, kh, kw, 1), (1, sh, sw, 1), "VALID"
    )
    return summed / jnp.asarray(kh * kw, x.dtype)


def image_pyramid(x: jax.Array, *, levels: int) -> list[jax.Array]:
    """Pyramid of 2x2 average poolings, finest first.

    Args:
      x: ``(b, h, w, c)`` floating-point image.
      levels: number of levels including ``x`` itself (>= 1).

    Returns:
      ``levels`` arrays; level k has shape ``(b, h_k, w_k, c)`` with
      ``h_k = floor(h_{k-1} / 2)`` (odd rows/columns dropped).

    Convention:
      Same as SpyNet (``avg_pool2d(kernel_size=2, stride=2, count_include_pad=False)``
      applied repeatedly from the full-resolution image).
    """
    _check_array(x, 4, "(B, H, W, C)", floating=True)
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
        raise ValueError(f"levels must be an int >= 1, got {levels!r}")
    _, height, width, _ = x.shape
    if min(height, width) >> (levels - 1) < 1:
        raise ValueError(
            f"{levels} levels need H, W >= {2 ** (levels - 1)}, got x of shape (B, H, W, C) = "
            f"{x.shape}"
        )
    pyramid = [x]
    for _ in range(levels - 1):
        pyramid.append(avg_pool(pyramid[-1], 2, count_include_pad=False))
    return pyramid
