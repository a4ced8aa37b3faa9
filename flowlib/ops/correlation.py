"""Correlation layers: FlowNet-style local correlation and RAFT-style all-pairs correlation.

``local_correlation`` compares each pixel of frame 1 with a (2R+1) x (2R+1) grid of
displaced pixels of frame 2 (FlowNetC, PWC-Net); ``all_pairs_correlation`` compares it
with every pixel of frame 2 (RAFT).

Three interchangeable implementations of ``local_correlation`` are selected by
``impl=``. They compute the same sums (float32 accumulation; equal up to rounding order)
and differ in speed and memory; ``python -m benchmarks.ops`` times each (compile time,
forward and forward+backward, peak memory) at the FlowNetC conv3 size (1, 48, 64, 256),
max displacement 20, stride 2 (441 channels), and at the Sintel size (1, 55, 128, 256):

* ``"banded"`` (the default through ``"auto"``): per dy, dense matmuls of column tiles
  of f1 with the band of f2 columns they can reach, diagonals cut out by a reshape
  (see `_banded`). The fastest on XLA:CPU, forward and backward.
* ``"shifted"``: pad f2 once, then one static slice + multiply + channel sum per
  displacement, unrolled. No matmul (exact whatever the precision), but XLA:CPU
  materialises the products and reduces along the minor axis slowly, and compiling the
  441 unrolled displacements takes long.
* ``"patches"``: per dy, ``lax.conv_general_dilated_patches`` extracts the 2R+1
  horizontal windows and one per-pixel ``einsum`` contracts them with f1. Slower forward,
  and its backward pass (the transpose of the one-hot patch convolution) is far slower.
  Kept as the textbook patches formulation and a cross-check.

Untested on GPU/TPU: there ``"shifted"`` may well be competitive (it is memory-bound and
fuses), so measure with the benchmark before changing the default.
"""

from __future__ import annotations

import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["all_pairs_correlation", "local_correlation"]

Normalize = Literal["channels", "sqrt_channels", "none"]
LocalImpl = Literal["auto", "banded", "shifted", "patches"]

_NORMALIZE = ("channels", "sqrt_channels", "none")
_LOCAL_IMPLS = ("auto", "banded", "shifted", "patches")


def _accumulation_dtype(dtype: jnp.dtype) -> jnp.dtype:
    # bf16/f16 products are summed in float32 (a bf16 running sum stops growing at 256
    # ones); float64 stays float64 for gradient checks.
    return jnp.dtype(jnp.float64) if jnp.dtype(dtype) == jnp.float64 else jnp.dtype(jnp.float32)


def _check_features(f1: jax.Array, f2: jax.Array, *, same_shape: bool) -> None:
    for name, f in (("f1", f1), ("f2", f2)):
        if f.ndim != 4:
            raise ValueError(f"{name} must have shape (B, H, W, C), got {f.shape}")
        if not jnp.issubdtype(f.dtype, jnp.floating):
            raise ValueError(f"{name} must be a floating-point array, got dtype {f.dtype}")
    if same_shape and f1.shape != f2.shape:
        raise ValueError(
            f"f1 and f2 must have the same shape (B, H, W, C), got {f1.shape} and {f2.shape}"
        )
    if not same_shape and (f1.shape[0] != f2.shape[0] or f1.shape[3] != f2.shape[3]):
        raise ValueError(
            f"f1 (B, H, W, C) and f2 (B, H2, W2, C) must agree in B and C, "
            f"got {f1.shape} and {f2.shape}"
        )


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_normalize(normalize: str) -> None:
    if normalize not in _NORMALIZE:
        raise ValueError(f"normalize must be one of {_NORMALIZE}, got {normalize!r}")


def _scale(normalize: str, count: int) -> float:
    if normalize == "channels":
        return 1.0 / count
    if normalize == "sqrt_channels":
        return 1.0 / math.sqrt(count)
    return 1.0


def _shifted(f1: jax.Array, f2p: jax.Array, radius: int, stride: int, pad: int) -> jax.Array:
    """Channel sums of f1(y, x) * f2(y + dy, x + dx), dy-major, one slice per displacement."""
    batch, height, width, channels = f1.shape
    sums = []
    for dy in range(-radius * stride, radius * stride + 1, stride):
        for dx in range(-radius * stride, radius * stride + 1, stride):
            f2_shifted = lax.slice(
                f2p,
                (0, pad + dy, pad + dx, 0),
                (batch, pad + dy + height, pad + dx + width, channels),
            )
            sums.append(jnp.sum(f1 * f2_shifted, axis=-1))
    return jnp.stack(sums, axis=-1)


def _patches(
    f1: jax.Array,
    f2p: jax.Array,
    radius: int,
    stride: int,
    pad: int,
    precision: lax.PrecisionLike,
    acc: jnp.dtype,
) -> jax.Array:
    """Same sums as `_shifted`, one window extraction + contraction per row of displacements."""
    batch, height, width, channels = f1.shape
    window = 2 * radius + 1
    rows = []
    for dy in range(-radius * stride, radius * stride + 1, stride):
        band = lax.slice(
            f2p, (0, pad + dy, 0, 0), (batch, pad + dy + height, f2p.shape[2], channels)
        )
        # Columns x + dx, dx = -R*stride ... R*stride step stride, are the 1 x (2R+1)
        # windows of the padded band with rhs dilation `stride`. The extraction is a
        # convolution with a one-hot kernel: HIGHEST keeps it an exact copy on GPUs/TPUs.
        windows = lax.conv_general_dilated_patches(
            band,
            filter_shape=(1, window),
            window_strides=(1, 1),
            padding="VALID",
            rhs_dilation=(1, stride),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=lax.Precision.HIGHEST,
        )
        # The patch features are flattened channel-major: (C, window).
        windows = windows.reshape(batch, height, width, channels, window)
        rows.append(
            jnp.einsum(
                "bhwc,bhwck->bhwk",
                f1,
                windows,
                precision=precision,
                preferred_element_type=acc,
            )
        )
    return jnp.concatenate(rows, axis=-1)


def _skew(m: jax.Array, count: int) -> jax.Array:
    """``out[..., t, j] = m[..., t, t + j]`` for j < count, from m of shape (..., T, V).

    Row t of the (T, V) matrix, read with a row pitch of V + 1 instead of V, starts at
    column t: pad the flattened matrix by T elements and reshape to (T, V + 1).
    Only pad / reshape / slice, so the transpose (backward pass) is as cheap.
    """
    *lead, rows, cols = m.shape
    flat = m.reshape(*lead, rows * cols)
    flat = jnp.pad(flat, [(0, 0)] * len(lead) + [(0, rows)])
    return flat.reshape(*lead, rows, cols + 1)[..., :count]


def _banded(
    f1: jax.Array,
    f2: jax.Array,
    radius: int,
    stride: int,
    precision: lax.PrecisionLike,
    acc: jnp.dtype,
    tile: int = 32,
) -> jax.Array:
    """Same sums as `_shifted` from dense matmuls of column tiles, one per dy.

    Columns x = stride * k + rho only ever meet f2 columns of the same residue rho
    (dx is a multiple of stride), so each residue is a stride-1 problem on a 1/stride
    subsampled grid. A tile of ``tile`` such columns of f1 is multiplied with the
    ``tile + 2R`` columns of f2 it can reach (one (tile x C) @ (C x (tile + 2R)) matmul per
    row, residue and dy); the 2R + 1 diagonals wanted are cut out with `_skew`. The extra
    ``(tile + 2R) / (2R + 1)`` flops buy dense matmul throughput.
    """
    batch, height, width, channels = f1.shape
    pad = radius * stride
    sub = -(-width // stride)  # columns per residue
    tile = min(tile, sub)
    n_tiles = -(-sub // tile)
    cols = n_tiles * tile * stride  # padded width, a multiple of tile * stride
    span = tile + 2 * radius
    f1t = jnp.pad(f1, ((0, 0), (0, 0), (0, cols - width), (0, 0)))
    f1t = f1t.reshape(batch, height, n_tiles, tile, stride, channels)
    # f2 padded by `pad` on each side (+ the tail of the last tile); padded column
    # stride * (k + i) + rho is original column stride * (k + i - R) + rho.
    f2p = jnp.pad(f2, ((0, 0), (pad, pad), (pad, pad + cols - width), (0, 0)))
    f2p = f2p.reshape(batch, height + 2 * pad, cols // stride + 2 * radius, stride, channels)
    windows = jnp.stack(
        [lax.slice_in_dim(f2p, t * tile, t * tile + span, axis=2) for t in range(n_tiles)], axis=2
    )  # (B, H + 2 pad, n_tiles, span, stride, C)
    rows = []
    for dy in range(-pad, pad + 1, stride):
        band = lax.slice_in_dim(windows, pad + dy, pad + dy + height, axis=1)
        products = jnp.einsum(
            "bhntrc,bhnvrc->bhnrtv",
            f1t,
            band,
            precision=precision,
            preferred_element_type=acc,
        )
        diagonals = _skew(products, 2 * radius + 1)  # (B, H, n, stride, tile, 2R+1)
        diagonals = jnp.moveaxis(diagonals, 3, 4).reshape(batch, height, cols, 2 * radius + 1)
        rows.append(diagonals[:, :, :width])
    return jnp.concatenate(rows, axis=-1)


def local_correlation(
    f1: jax.Array,
    f2: jax.Array,
    *,
    max_displacement: int,
    stride: int = 1,
    kernel_size: int = 1,
    normalize: Normalize,
    precision: lax.PrecisionLike = None,
    impl: LocalImpl = "auto",
) -> jax.Array:
    """Correlate each pixel of ``f1`` with a grid of displaced pixels of ``f2`` (FlowNetC).

    ``out[b, y, x, k] = s * sum_{|j|,|i| <= r} sum_c f1[b, y+j, x+i, c] * f2[b, y+j+dy, x+i+dx, c]``
    with ``(dy, dx) = (tj * stride, ti * stride)``, ``tj, ti in [-R, R]``,
    ``R = max_displacement // stride``, ``r = (kernel_size - 1) // 2`` and
    ``k = (tj + R) * (2R + 1) + (ti + R)``.

    Args:
      f1: ``(b, h, w, c)`` features of frame 1.
      f2: ``(b, h, w, c)`` features of frame 2.
      max_displacement: largest |dy|, |dx| in pixels; a multiple of ``stride``.
      stride: step between tested displacements (FlowNet's ``stride2``; FlowNetC uses 2).
        The output is always computed at every pixel (``stride1 = 1``).
      kernel_size: odd side K of the patch compared around each pixel (FlowNet uses 1).
      normalize: ``"channels"`` divides by ``K^2 * c`` (FlowNetC, PWC-Net: the mean over
        channels), ``"sqrt_channels"`` by ``sqrt(K^2 * c)``, ``"none"`` gives raw sums.
      precision: ``lax.Precision`` of the matmuls of ``impl="banded"`` / ``"patches"``.
        JAX's default lets GPUs/TPUs use TF32/bf16 passes for float32 inputs; pass
        ``"highest"`` (or set ``jax_default_matmul_precision``) for float32-exact sums.
        ``"shifted"`` has no matmul and is always exact.
      impl: ``"auto"`` (= ``"banded"``, the fastest measured), ``"banded"``,
        ``"shifted"`` or ``"patches"``; all compute the same sums (module docstring).

    Returns:
      ``(b, h, w, (2R+1)^2)`` correlations in the dtype of the inputs; products are
      accumulated in float32 (float64 for float64 inputs).

    Convention:
      Channel order is dy-major: channel 0 is (dy, dx) = (-R*stride, -R*stride), channel
      ``R*(2R+1) + R`` is (0, 0), channel ``2R+1`` is (-R*stride + stride, -R*stride).
      Pixels of either frame outside the image count as 0 (FlowNet zero padding), and
      the output has the input's size with each patch centred on its pixel. This equals
      NV ``Correlation(pad_size=max_displacement, kernel_size=1, max_displacement,
      stride1=1, stride2=stride)`` and PCE ``spatial_correlation_sample(kernel_size=K,
      patch_size=2R+1, padding=r, dilation_patch=stride)`` (divided by ``K^2 c`` for
      ``"channels"``; PCE returns raw sums, i.e. ``"none"``).
    """
    _check_features(f1, f2, same_shape=True)
    _check_normalize(normalize)
    max_displacement = _check_int(max_displacement, "max_displacement", 0)
    stride = _check_int(stride, "stride", 1)
    kernel_size = _check_int(kernel_size, "kernel_size", 1)
    if max_displacement % stride:
        raise ValueError(
            f"max_displacement must be a multiple of stride (displacements are -R*stride ... "
            f"R*stride), got max_displacement={max_displacement}, stride={stride}"
        )
    if kernel_size % 2 == 0:
        raise ValueError(
            f"kernel_size must be odd (a patch centred on its pixel), got {kernel_size}"
        )
    if impl not in _LOCAL_IMPLS:
        raise ValueError(f"impl must be one of {_LOCAL_IMPLS}, got {impl!r}")

    out_dtype = jnp.result_type(f1, f2)
    acc = _accumulation_dtype(out_dtype)
    radius = max_displacement // stride
    channels = f1.shape[-1]
    pad = max_displacement
    if impl == "shifted":
        f2p = jnp.pad(f2.astype(acc), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        sums = _shifted(f1.astype(acc), f2p, radius, stride, pad)
    elif impl == "patches":
        # The contractions take the inputs as they are (bf16 stays bf16 for the matrix
        # units) and accumulate in `acc`: bf16 x bf16 products are exact in float32.
        f2p = jnp.pad(f2, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        sums = _patches(f1, f2p, radius, stride, pad, precision, acc)
    else:
        sums = _banded(f1, f2, radius, stride, precision, acc)
    if kernel_size > 1:
        # sum_{j,i} P_d(y+j, x+i) of the per-pixel products P_d, zero outside the image
        # (f1 is zero there), is a K x K box sum of the K = 1 result.
        r = kernel_size // 2
        sums = lax.reduce_window(
            sums,
            # A concrete (NumPy) zero lets JAX recognise a window *sum* and use its
            # transpose rule; a jnp zero is a tracer under jit and has no reverse mode.
            np.zeros((), acc),
            lax.add,
            (1, kernel_size, kernel_size, 1),
            (1, 1, 1, 1),
            ((0, 0), (r, r), (r, r), (0, 0)),
        )
    scale = _scale(normalize, kernel_size * kernel_size * channels)
    if scale != 1.0:
        sums = sums * jnp.asarray(scale, acc)
    return sums.astype(out_dtype)


def all_pairs_correlation(
    f1: jax.Array,
    f2: jax.Array,
    *,
    normalize: Normalize,
    precision: lax.PrecisionLike = None,
) -> jax.Array:
    """Correlate every pixel of ``f1`` with every pixel of ``f2`` (RAFT's 4-D volume).

    ``out[b, y, x, y2, x2] = s * sum_c f1[b, y, x, c] * f2[b, y2, x2, c]``.

    Args:
      f1: ``(b, h, w, c)`` features of frame 1.
      f2: ``(b, h2, w2, c)`` features of frame 2.
      normalize: ``"sqrt_channels"`` divides by ``sqrt(c)`` (RAFT), ``"channels"`` by
        ``c``, ``"none"`` gives raw dot products.
      precision: ``lax.Precision`` of the contraction.

    Returns:
      ``(b, h, w, h2, w2)`` in the dtype of the inputs, accumulated in float32 (float64
      for float64 inputs); ``s`` multiplies ``f1`` before the contraction (exact when
      ``s`` is a power of two, as for ``c = 4^n`` with ``"sqrt_channels"``).

    Convention:
      The frame-1 pixel indexes axes 1-2, the frame-2 pixel axes 3-4 (RAFT's
      ``corr(i, j, k, l)``; its pyramid pools the last two axes).
    """
    _check_features(f1, f2, same_shape=False)
    _check_normalize(normalize)
    out_dtype = jnp.result_type(f1, f2)
    acc = _accumulation_dtype(out_dtype)
    scale = _scale(normalize, f1.shape[-1])
    if scale != 1.0:
        # Scaling f1 (h * w * c values) costs less than scaling the volume (h * w * h2 * w2).
        f1 = f1 * jnp.asarray(scale, f1.dtype)
    corr = jnp.einsum("bhwc,bijc->bhwij", f1, f2, precision=precision, preferred_element_type=acc)
    return corr.astype(out_dtype)
