"""Trainable building blocks shared by two or more models (Flax Linen).

Every layer here reproduces the PyTorch layer the official checkpoints were trained
with, so that converted weights give the same numbers:

* ``Conv``: ``nn.Conv`` with PyTorch's explicit symmetric padding and dilation.
* ``ConvTranspose``: PyTorch ``ConvTranspose{2,3}d`` (stride, padding, output_padding).
  The kernel is stored as PyTorch's ``(in, out, *k)`` transposed to ``(*k, in, out)``.
* ``BatchNorm``: PyTorch ``BatchNorm{2,3}d`` defaults (eps 1e-5, momentum 0.1, which is
  Flax momentum 0.9).
* ``leaky_relu`` with FlowNet's slope 0.1 and ``mish`` as CFNet computes it.

Fast formulations on XLA:CPU (same parameters, same results up to float rounding; the
plain ``lax`` formulations are the reference in ``tests/models/test_layers.py``). XLA:CPU
runs 3-D and input-dilated convolutions far below its 2-D speed, so:

* A 3-D transposed convolution with stride ``s`` is computed by sub-pixel phases
  (:func:`conv_transpose`): each of the ``prod(s)`` output parity classes is an ordinary
  stride-1 convolution of the undilated input with a ``ceil(k / s)`` sub-kernel of the
  flipped kernel; all phases come out of one convolution with ``prod(s)`` times the output
  channels, which are then interleaved onto the fine grid and cropped. The input-dilated
  formulation multiplies the inserted zeros too (``prod(s)`` times the work) and XLA:CPU
  has no fast 3-D kernel for it. 2-D transposed convolutions (FlowNet) stay input-dilated:
  XLA:CPU runs those as fast as the phases.
* A 3-D convolution (:func:`conv3d`) with stride 1 is a 2-D convolution of the depth taps
  stacked on the channels, depth folded into the batch; with one output channel (CFNet's
  cost heads) it is a dot over the channels giving every tap's contribution, summed at
  the taps' shifts (XLA:CPU runs 1-channel convolutions far below its speed for wide
  ones). Strided and 1x1x1 ones stay ``lax`` convolutions: the rewrites tried for them
  (space-to-depth; strided depth taps, summed or stacked; 1x1 2-D) were no faster.
* A 2-D layer with very few output channels may ask for an FFT overlap-add convolution
  (:class:`Conv` ``method="fft"``; :mod:`flowlib.models._fft_conv`).

The layers choose per lowering platform (:func:`on_cpu`, ``jax.lax.platform_dependent``):
these routes where XLA compiles for a CPU, the plain ``lax`` convolution (input-dilated for
transposed ones) on every other platform, where the vendor's convolution kernels are the fast
path. So a model exported or compiled for a GPU or TPU holds only ``lax`` convolutions
(``tests/models/test_platforms.py``), whatever machine traced it. The functions
:func:`conv3d`, :func:`conv_transpose` (``method="phases"``) and
:func:`~flowlib.models._fft_conv.fft_conv2d` themselves always compute their route. Every
route timed against ``lax`` on the same shapes: ``python -m benchmarks.conv_routes``
(sections ``volume`` and ``conv``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flowlib.models._fft_conv import fft_conv2d
from flowlib.models._spec import compute_dtype

__all__ = ["Conv", "ConvTranspose", "BatchNorm", "leaky_relu", "mish", "conv3d",
           "conv_transpose", "on_cpu"]


def leaky_relu(x: jax.Array) -> jax.Array:
    """LeakyReLU with slope 0.1 (FlowNet; Flax's default is 0.01)."""
    return jnp.where(x >= 0, x, 0.1 * x)


def mish(x: jax.Array) -> jax.Array:
    """Mish, x * tanh(softplus(x)); softplus is the identity above 20 as in PyTorch.

    Computed with one ``exp``: with ``e = exp(x)``, ``tanh(log(1 + e)) = n / (n + 2)``
    for ``n = e (e + 2)``. Same values as the ``tanh(log1p(exp))`` form within 2e-6
    relative (``tests/models/test_layers.py``) with one transcendental instead of three
    (CFNet applies it to every 3-D volume).
    """
    e = jnp.exp(jnp.minimum(x, 20.0))
    n = e * (e + 2.0)
    return jnp.where(x > 20.0, x, x * (n / (n + 2.0)))


def _tuple(v: int | Sequence[int], n: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v),) * n


def _layout(ndim: int) -> tuple[str, str, str]:
    """Channels-last ``lax`` dimension numbers for ``ndim`` (1..3) spatial dimensions."""
    if not 1 <= ndim <= 3:
        raise ValueError(f"expected 1, 2 or 3 spatial dimensions, got {ndim}")
    spatial = "DHW"[-ndim:]
    return f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"


def _pad_axes(x: jax.Array, pads: dict[int, tuple[int, int]]) -> jax.Array:
    """Zero-pad (negative: crop) the given axes, ``{axis: (low, high)}``."""
    config = [(*pads.get(a, (0, 0)), 0) for a in range(x.ndim)]
    return jax.lax.pad(x, jnp.zeros((), x.dtype), config)


def _conv3d_stride1(x: jax.Array, kernel: jax.Array, padding: Sequence[tuple[int, int]],
                    precision: jax.lax.PrecisionLike = None,
                    preferred_element_type: jnp.dtype | None = None) -> jax.Array:
    """Stride-1 3-D convolution as one 2-D convolution over the stacked depth taps.

    ``y[d] = sum_dz conv2d(x_pad[d + dz], kernel[dz])``: the ``kd`` depth-shifted inputs are
    concatenated on the channels (tap-major) and the depth folded into the batch, so the
    kernel becomes ``(kh, kw, kd * in, out)``.
    """
    kd, kh, kw, cin, cout = kernel.shape
    x = _pad_axes(x, {1: tuple(padding[0])})
    n, depth = x.shape[:2]
    out_depth = depth - kd + 1
    stacked = jnp.concatenate(
        [jax.lax.slice_in_dim(x, dz, dz + out_depth, axis=1) for dz in range(kd)], axis=-1)
    stacked = stacked.reshape(n * out_depth, *stacked.shape[2:])
    kernel2d = jnp.moveaxis(kernel, 0, 2).reshape(kh, kw, kd * cin, cout)
    y = jax.lax.conv_general_dilated(
        stacked, kernel2d, (1, 1), [tuple(p) for p in padding[1:]],
        dimension_numbers=_layout(2), precision=precision,
        preferred_element_type=preferred_element_type)
    return y.reshape(n, out_depth, *y.shape[1:])


def _conv3d_output_taps(x: jax.Array, kernel: jax.Array, padding: Sequence[tuple[int, int]],
                        precision: jax.lax.PrecisionLike = None,
                        preferred_element_type: jnp.dtype | None = None) -> jax.Array:
    """Stride-1 3-D convolution with one output channel: one dot gives every tap's
    contribution ``z[..., t] = x . kernel[t]`` (K = C, N = taps), then the taps are summed
    at their shifts, ``y[p] = sum_t z_pad[p + t, t]`` (CFNet's cost heads: XLA:CPU runs
    1-output-channel convolutions slowly)."""
    kd, kh, kw, cin, _ = kernel.shape
    taps = jnp.moveaxis(kernel[..., 0].reshape(kd * kh * kw, cin), 0, 1)  # (C, taps)
    z = jnp.einsum("ndhwc,ct->ndhwt", x, taps, precision=precision,
                   preferred_element_type=preferred_element_type)
    z = _pad_axes(z, {1 + a: tuple(p) for a, p in enumerate(padding)})
    out = [z.shape[1 + a] - k + 1 for a, k in enumerate((kd, kh, kw))]
    y = 0
    for t, (a, b, c) in enumerate(np.ndindex(kd, kh, kw)):
        y = y + z[:, a:a + out[0], b:b + out[1], c:c + out[2], t]
    return y[..., None]


def conv3d(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
           padding: Sequence[tuple[int, int]],
           precision: jax.lax.PrecisionLike = None,
           preferred_element_type: jnp.dtype | None = None) -> jax.Array:
    """3-D convolution, NDHWC x DHWIO, explicit padding; fast on XLA:CPU.

    Equals ``lax.conv_general_dilated(x, kernel, strides, padding,
    dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))`` up to float rounding. With stride 1:
    one output channel is a dot over the channels and a shifted sum of the taps
    (:func:`_conv3d_output_taps`); otherwise, with more than one depth tap, the depth taps
    are stacked on the channels of one 2-D convolution (module docstring). Everything else
    is that ``lax`` call.

    Args:
      x: ``(N, D, H, W, C)`` input.
      kernel: ``(kd, kh, kw, C, F)``.
      strides: three window strides.
      padding: three ``(low, high)`` zero paddings (negative values crop).
      precision, preferred_element_type: passed to ``lax.conv_general_dilated``.

    Returns:
      ``(N, D', H', W', F)``.
    """
    if x.ndim != 5 or kernel.ndim != 5 or x.shape[-1] != kernel.shape[3]:
        raise ValueError(f"expected x (N, D, H, W, C) and kernel (kd, kh, kw, C, F), got "
                         f"{x.shape} and {kernel.shape}")
    strides = tuple(int(s) for s in strides)
    padding = [tuple(int(v) for v in p) for p in padding]
    if len(strides) != 3 or len(padding) != 3 or min(strides) < 1:
        raise ValueError(f"expected 3 positive strides and 3 (low, high) paddings, got "
                         f"{strides} and {padding}")
    out = [(n + lo + hi - ki) // s + 1
           for n, (lo, hi), ki, s in zip(x.shape[1:4], padding, kernel.shape[:3], strides)]
    if min(out) < 1:
        raise ValueError(f"convolution output would be empty: {out} for input {x.shape}, "
                         f"kernel {kernel.shape[:3]}, padding {padding}")
    if strides == (1, 1, 1) and kernel.shape[-1] == 1:
        return _conv3d_output_taps(x, kernel, padding, precision, preferred_element_type)
    if strides == (1, 1, 1) and kernel.shape[0] > 1:
        return _conv3d_stride1(x, kernel, padding, precision, preferred_element_type)
    # Strided (space-to-depth, strided depth taps) and 1x1x1 rewrites measured no faster.
    return jax.lax.conv_general_dilated(x, kernel, strides, padding,
                                        dimension_numbers=_layout(3), precision=precision,
                                        preferred_element_type=preferred_element_type)


def _plain_conv(ndim, lhs, rhs, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                feature_group_count, batch_group_count) -> bool:
    """Whether ``nn.Conv``'s ``conv_general_dilated`` call is an ``ndim``-d channels-last
    convolution with explicit padding, no dilation and no groups (what the rewrites here
    compute)."""
    return (
        lhs.ndim == ndim + 2
        and not isinstance(padding, str)
        and all(d == 1 for d in (lhs_dilation or (1,) * ndim))
        and all(d == 1 for d in (rhs_dilation or (1,) * ndim))
        and feature_group_count == 1
        and batch_group_count == 1
        and dimension_numbers
        == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _layout(ndim))
    )


def _conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                          rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                          batch_group_count=1, precision=None, preferred_element_type=None):
    """``lax.conv_general_dilated`` for ``nn.Conv``: 3-D channels-last convolutions without
    dilation or groups go to :func:`conv3d` where XLA compiles for a CPU; everything else,
    and every other platform, to ``lax``."""
    def plain(lhs: jax.Array, rhs: jax.Array) -> jax.Array:
        return jax.lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count, batch_group_count=batch_group_count,
            precision=precision, preferred_element_type=preferred_element_type)

    def cpu(lhs: jax.Array, rhs: jax.Array) -> jax.Array:
        return conv3d(lhs, rhs, window_strides, padding, precision, preferred_element_type)

    if _plain_conv(3, lhs, rhs, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                   feature_group_count, batch_group_count):
        return on_cpu(cpu, plain, lhs, rhs)
    return plain(lhs, rhs)


def on_cpu(cpu: Callable[..., jax.Array], default: Callable[..., jax.Array],
           *args: jax.Array) -> jax.Array:
    """``cpu(*args)`` where XLA compiles for a CPU, ``default(*args)`` on every other
    platform. ``jax.lax.platform_dependent`` makes the choice per lowering platform, not by
    the default backend at trace time: traced on a CPU and exported for a GPU, the
    computation holds only ``default``."""
    return jax.lax.platform_dependent(*args, cpu=cpu, default=default)


def conv_transpose(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
                   padding: Sequence[int], output_padding: Sequence[int],
                   precision: jax.lax.PrecisionLike = None, *,
                   method: str = "auto",
                   preferred_element_type: jnp.dtype | None = None) -> jax.Array:
    """PyTorch ``conv_transpose{n}d`` (no bias), channels last.

    ``method="phases"``: sub-pixel phases. For output ``o`` with ``q = o + padding = m s +
    r``: ``y[o] = sum_j x[m - j] w[r + j s]`` (PyTorch's scatter ``q = i s + t`` regrouped
    by the phase ``r = q mod s``). Each phase is a stride-1 correlation of the input
    (``T - 1 = ceil(k / s) - 1`` zeros before it) with the sub-kernel ``w[r + (T - 1 - u)
    s]``, ``u < T`` (zero where that is ``>= k``); the ``prod(s)`` phases are the output
    channels of one convolution (3-D: :func:`conv3d`), phase-major, which are interleaved
    into the ``s``-times finer grid and cropped to ``[padding, padding + out)``.
    ``method="dilated"``: the flipped kernel over the input dilated by ``s`` (``lax``'s
    ``lhs_dilation``), padded by ``k - 1 - padding`` (+ ``output_padding`` at the end).
    ``"auto"``: phases in 3-D where XLA compiles for a CPU (XLA:CPU runs 3-D input-dilated
    convolutions far slower than the phases, 2-D ones as fast), dilated otherwise.

    Args:
      x: ``(N, *spatial, C)``, 1 to 3 spatial dimensions.
      kernel: ``(*k, C, F)`` = PyTorch's ``(C, F, *k)`` with the two leading axes moved to
        the end, not flipped.
      strides, padding, output_padding: per spatial dimension, as in PyTorch.
      precision, preferred_element_type: passed to the convolution.
      method: ``"auto"``, ``"phases"`` or ``"dilated"``.

    Returns:
      ``(N, *out, F)``, ``out = (in - 1) * s - 2 * padding + k + output_padding``.
    """
    nd = x.ndim - 2
    if not 1 <= nd <= 3 or kernel.ndim != nd + 2 or x.shape[-1] != kernel.shape[-2]:
        raise ValueError(f"expected x (N, *spatial, C) with 1 to 3 spatial dims and kernel "
                         f"(*k, C, F) with the same dims and C, got {x.shape} and {kernel.shape}")
    if method not in ("auto", "phases", "dilated"):
        raise ValueError(f"method must be 'auto', 'phases' or 'dilated', got {method!r}")
    k = kernel.shape[:nd]
    strides, padding, output_padding = (tuple(int(v) for v in a)
                                        for a in (strides, padding, output_padding))
    if not len(strides) == len(padding) == len(output_padding) == nd:
        raise ValueError(f"expected {nd} strides, paddings and output paddings, got "
                         f"{strides}, {padding}, {output_padding}")
    size = x.shape[1:-1]
    out = [(n - 1) * s - 2 * p + ki + op
           for n, s, p, ki, op in zip(size, strides, padding, k, output_padding)]
    if min(out) < 1:
        raise ValueError(f"transposed convolution output would be empty: {out}")

    def dilated(x: jax.Array, kernel: jax.Array) -> jax.Array:
        return jax.lax.conv_general_dilated(
            x, jnp.flip(kernel, axis=tuple(range(nd))), (1,) * nd,
            [(ki - 1 - p, ki - 1 - p + op) for ki, p, op in zip(k, padding, output_padding)],
            lhs_dilation=strides, dimension_numbers=_layout(nd), precision=precision,
            preferred_element_type=preferred_element_type)

    def phases(x: jax.Array, kernel: jax.Array) -> jax.Array:
        return _phases(x, kernel, strides, padding, out, precision, preferred_element_type)

    if method == "dilated" or (method == "auto" and nd != 3):
        return dilated(x, kernel)
    if method == "auto":
        return on_cpu(phases, dilated, x, kernel)
    return phases(x, kernel)


def _phases(x: jax.Array, kernel: jax.Array, strides: tuple[int, ...],
            padding: tuple[int, ...], out: list[int], precision: jax.lax.PrecisionLike,
            preferred_element_type: jnp.dtype | None) -> jax.Array:
    """:func:`conv_transpose` by sub-pixel phases (see its docstring)."""
    nd = x.ndim - 2
    k = kernel.shape[:nd]
    cin, cout = kernel.shape[nd:]
    size = x.shape[1:-1]
    taps = [-(-ki // s) for ki, s in zip(k, strides)]
    # Phase rows needed: the fine grid [0, m * s) must cover [padding, padding + out).
    rows = [-(-(p + o) // s) for p, o, s in zip(padding, out, strides)]
    # Kernel: zero-pad each axis to T * s taps, split t = j * s + r, flip j (u = T-1-j),
    # and move the phases r next to the output channels.
    kernel = _pad_axes(kernel, {a: (0, t * s - ki)
                                for a, (ki, s, t) in enumerate(zip(k, strides, taps))})
    kshape = []
    for t, s in zip(taps, strides):
        kshape += [t, s]
    kernel = kernel.reshape(*kshape, cin, cout)
    kernel = jnp.flip(kernel, axis=tuple(range(0, 2 * nd, 2)))
    perm = [*range(0, 2 * nd, 2), 2 * nd, *range(1, 2 * nd, 2), 2 * nd + 1]
    kernel = kernel.transpose(perm).reshape(*taps, cin, -1)
    pads = [(t - 1, max(0, m - n)) for t, m, n in zip(taps, rows, size)]
    if nd == 3:
        z = conv3d(x, kernel, (1, 1, 1), pads, precision, preferred_element_type)
    else:
        z = jax.lax.conv_general_dilated(x, kernel, (1,) * nd, pads,
                                         dimension_numbers=_layout(nd), precision=precision,
                                         preferred_element_type=preferred_element_type)
    grid = z.shape[1:-1]
    z = z.reshape(z.shape[0], *grid, *strides, cout)
    perm = [0]
    for a in range(nd):
        perm += [1 + a, 1 + nd + a]
    z = z.transpose(*perm, 1 + 2 * nd).reshape(
        z.shape[0], *[g * s for g, s in zip(grid, strides)], cout)
    return z[(slice(None), *[slice(p, p + o) for p, o in zip(padding, out)])]


def _mixed_conv(conv: Callable[..., jax.Array],
                dtype: jnp.dtype | None) -> Callable[..., jax.Array]:
    """``conv`` (a ``lax.conv_general_dilated``-like function) with its two operands cast to
    ``dtype`` and the products accumulated into a float32 result.

    Accelerators run such a convolution on their bfloat16 units. XLA:CPU (jax 0.10.2) does
    not: its optimised HLO converts both operands back to float32 and runs a float32
    convolution (``convert_convert_fusion`` feeding ``convolution``), so on a CPU this only
    rounds the operands and is no faster (``benchmarks.models`` prints "bf16 convs ... run").
    """
    if dtype is None:
        return conv

    def mixed(lhs: jax.Array, rhs: jax.Array, *args: Any, **kwargs: Any) -> jax.Array:
        kwargs["preferred_element_type"] = jnp.float32
        return conv(lhs.astype(dtype), rhs.astype(dtype), *args, **kwargs)

    return mixed


def _fft_conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                              rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                              batch_group_count=1, precision=None, preferred_element_type=None):
    """``lax.conv_general_dilated`` for ``nn.Conv`` computed by :func:`fft_conv2d` (2-D,
    stride 1, no dilation or groups, channels last); float32 result."""
    del precision, preferred_element_type  # the FFT path always computes in float32
    if tuple(window_strides) != (1, 1) or not _plain_conv(
            2, lhs, rhs, padding, lhs_dilation, rhs_dilation, dimension_numbers,
            feature_group_count, batch_group_count):
        raise ValueError("method='fft' needs a 2-D, stride-1, undilated, ungrouped, "
                         "explicitly padded convolution")
    return fft_conv2d(lhs, rhs, padding)


def _fft_on_cpu(lhs, rhs, *args, **kwargs):
    """:func:`_fft_conv_general_dilated` where XLA compiles for a CPU, ``lax`` elsewhere."""
    return on_cpu(lambda lhs, rhs: _fft_conv_general_dilated(lhs, rhs, *args, **kwargs),
                  lambda lhs, rhs: jax.lax.conv_general_dilated(lhs, rhs, *args, **kwargs),
                  lhs, rhs)


_CONV_METHODS = ("lax", "fft")


class Conv(nn.Module):
    """PyTorch-style N-d convolution (channels last); ``ndim`` spatial dimensions.

    Parameters are ``nn.Conv``'s (``conv/kernel`` ``(*k, in, out)``, ``conv/bias``), always
    float32; 3-D convolutions without dilation run through :func:`conv3d`. ``dtype`` is the
    compute dtype of the products (:func:`~flowlib.models._spec.compute_dtype`): with
    bfloat16, input and kernel are rounded to bfloat16, the sums, the bias and the output
    stay float32.
    ``method="fft"`` (2-D, stride 1 only) computes it by FFT overlap-add
    (:func:`flowlib.models._fft_conv.fft_conv2d`) where XLA compiles for a CPU, and as a
    ``lax`` convolution on other platforms: same parameters and results within float32
    rounding, faster on XLA:CPU for layers with very few output channels.
    """

    features: int
    kernel_size: int | Sequence[int]
    stride: int | Sequence[int] = 1
    padding: int | Sequence[int] = 0
    dilation: int | Sequence[int] = 1
    use_bias: bool = True
    ndim: int = 2
    dtype: Any = None
    method: str = "lax"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        pad = _tuple(self.padding, self.ndim)
        if self.method not in _CONV_METHODS:
            raise ValueError(f"method must be one of {_CONV_METHODS}, got {self.method!r}")
        if self.method == "fft":
            base = _fft_on_cpu
        else:
            base = _conv_general_dilated if self.ndim == 3 else jax.lax.conv_general_dilated
        return nn.Conv(
            self.features,
            kernel_size=_tuple(self.kernel_size, self.ndim),
            strides=_tuple(self.stride, self.ndim),
            padding=[(p, p) for p in pad],
            kernel_dilation=_tuple(self.dilation, self.ndim),
            use_bias=self.use_bias,
            conv_general_dilated=_mixed_conv(base, compute_dtype(self.dtype)),
            name="conv",
        )(x)


class ConvTranspose(nn.Module):
    """PyTorch ``ConvTranspose{n}d`` (channels last), computed by :func:`conv_transpose`.

    Output size per dim: (in - 1) * stride - 2 * padding + kernel + output_padding.
    Kernel parameter layout: ``(*kernel, in, out)`` = PyTorch ``(in, out, *kernel)``
    with its leading two axes moved to the end (not flipped). ``dtype``: as :class:`Conv`.
    """

    features: int
    kernel_size: int | Sequence[int]
    stride: int | Sequence[int] = 1
    padding: int | Sequence[int] = 0
    output_padding: int | Sequence[int] = 0
    use_bias: bool = True
    ndim: int = 2
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = _tuple(self.kernel_size, self.ndim)
        in_features = x.shape[-1]
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (*k, in_features, self.features)
        )
        y = _mixed_conv(conv_transpose, compute_dtype(self.dtype))(
            x, kernel, _tuple(self.stride, self.ndim), _tuple(self.padding, self.ndim),
            _tuple(self.output_padding, self.ndim))
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros, (self.features,))
            y = y + bias
        return y


class BatchNorm(nn.Module):
    """PyTorch BatchNorm (eps 1e-5, momentum 0.1) over the last axis."""

    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        return nn.BatchNorm(
            use_running_average=not train,
            momentum=0.9,
            epsilon=1e-5,
            dtype=self.dtype,
            name="bn",
        )(x)
