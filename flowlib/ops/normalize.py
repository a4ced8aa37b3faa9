"""L2 normalisation of feature vectors (optionally with a learned per-channel scale)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["l2_normalize"]


def l2_normalize(
    x: jax.Array, *, axis: int, eps: float = 1e-12, scale: jax.Array | None = None
) -> jax.Array:
    """Divide ``x`` by its L2 norm along ``axis``; optionally multiply by a learned scale.

    Args:
      x: floating-point array of any shape.
      axis: the axis holding the vectors (e.g. -1 for NHWC channels).
      eps: lower bound on the norm, as in ``torch.nn.functional.normalize``:
        ``x / max(||x||, eps)``. All-zero vectors map to zero.
      scale: optional ``(x.shape[axis],)`` weights broadcast along ``axis`` and
        multiplied in after normalising ("L2 Scale Normalization", Liu et al.,
        ParseNet / SSD's ``L2Norm``).

    Returns:
      Array of the shape and dtype of ``x``.

    Convention:
      ``max(||x||, eps)`` is computed as ``sqrt(max(sum x^2, eps^2))`` (same value, and
      a finite gradient at zero vectors); float16/bfloat16 inputs are reduced in float32.
    """
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"x must be a floating-point array, got dtype {x.dtype}")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(
            f"axis must be in [-{x.ndim}, {x.ndim}) for x of shape {x.shape}, got {axis}"
        )
    axis = axis % x.ndim
    compute = jnp.promote_types(x.dtype, jnp.float32)
    xc = x.astype(compute)
    squared = jnp.sum(xc * xc, axis=axis, keepdims=True)
    out = xc / jnp.sqrt(jnp.maximum(squared, jnp.asarray(eps, compute) ** 2))
    if scale is not None:
        if scale.shape != (x.shape[axis],):
            raise ValueError(
                f"scale must have shape ({x.shape[axis]},) = (x.shape[axis],) for x of shape "
                f"{x.shape} and axis {axis}, got {scale.shape}"
            )
        shape = [1] * x.ndim
        shape[axis] = x.shape[axis]
        out = out * scale.reshape(shape).astype(compute)
    return out.astype(x.dtype)
