"""Trainable building blocks shared by two or more models (Flax Linen).

Every layer here reproduces the PyTorch layer the official checkpoints were trained
with, so that converted weights give the same numbers:

* ``Conv``: ``nn.Conv`` with PyTorch's explicit symmetric padding and dilation.
* ``ConvTranspose``: PyTorch ``ConvTranspose{2,3}d`` (stride, padding, output_padding).
  The kernel is stored as PyTorch's ``(in, out, *k)`` transposed to ``(*k, in, out)``;
  the layer flips it spatially and runs the equivalent input-dilated convolution.
* ``BatchNorm``: PyTorch ``BatchNorm{2,3}d`` defaults (eps 1e-5, momentum 0.1, which is
  Flax momentum 0.9).
* ``leaky_relu`` with FlowNet's slope 0.1 and ``mish`` as CFNet computes it.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["Conv", "ConvTranspose", "BatchNorm", "leaky_relu", "mish"]


def leaky_relu(x: jax.Array) -> jax.Array:
    """LeakyReLU with slope 0.1 (FlowNet; Flax's default is 0.01)."""
    return jnp.where(x >= 0, x, 0.1 * x)


def mish(x: jax.Array) -> jax.Array:
    """Mish, x * tanh(softplus(x)); softplus is the identity above 20 as in PyTorch."""
    softplus = jnp.where(x > 20.0, x, jnp.log1p(jnp.exp(jnp.minimum(x, 20.0))))
    return x * jnp.tanh(softplus)


def _tuple(v: int | Sequence[int], n: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v),) * n


class Conv(nn.Module):
    """PyTorch-style N-d convolution (channels last); ``ndim`` spatial dimensions."""

    features: int
    kernel_size: int | Sequence[int]
    stride: int | Sequence[int] = 1
    padding: int | Sequence[int] = 0
    dilation: int | Sequence[int] = 1
    use_bias: bool = True
    ndim: int = 2
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        pad = _tuple(self.padding, self.ndim)
        return nn.Conv(
            self.features,
            kernel_size=_tuple(self.kernel_size, self.ndim),
            strides=_tuple(self.stride, self.ndim),
            padding=[(p, p) for p in pad],
            kernel_dilation=_tuple(self.dilation, self.ndim),
            use_bias=self.use_bias,
            dtype=self.dtype,
            name="conv",
        )(x)


class ConvTranspose(nn.Module):
    """PyTorch ``ConvTranspose{n}d`` as an input-dilated convolution (channels last).

    Output size per dim: (in - 1) * stride - 2 * padding + kernel + output_padding.
    Kernel parameter layout: ``(*kernel, in, out)`` = PyTorch ``(in, out, *kernel)``
    with its leading two axes moved to the end (no flip; the flip happens here).
    """

    features: int
    kernel_size: int | Sequence[int]
    stride: int | Sequence[int] = 1
    padding: int | Sequence[int] = 0
    output_padding: int | Sequence[int] = 0
    use_bias: bool = True
    ndim: int = 2
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = _tuple(self.kernel_size, self.ndim)
        s = _tuple(self.stride, self.ndim)
        p = _tuple(self.padding, self.ndim)
        op = _tuple(self.output_padding, self.ndim)
        in_features = x.shape[-1]
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (*k, in_features, self.features)
        )
        dtype = self.dtype or x.dtype
        kernel = jnp.flip(kernel.astype(dtype), axis=tuple(range(self.ndim)))
        spatial = "DHW"[-self.ndim :] if self.ndim <= 3 else None
        dn = jax.lax.conv_dimension_numbers(
            x.shape, kernel.shape, (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")
        )
        y = jax.lax.conv_general_dilated(
            x.astype(dtype),
            kernel,
            window_strides=(1,) * self.ndim,
            padding=[(ki - 1 - pi, ki - 1 - pi + oi) for ki, pi, oi in zip(k, p, op)],
            lhs_dilation=s,
            dimension_numbers=dn,
        )
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros, (self.features,))
            y = y + bias.astype(dtype)
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
