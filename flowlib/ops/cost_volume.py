"""Stereo cost volumes over disparity (GwcNet / CFNet) and soft-argmin regression.

Volumes are ``(B, D, H, W, C)``: disparity axis after the batch, channels last, ready
for 3-D convolutions. Disparity is referenced to the left image: the right-image pixel
matching left pixel x is x - d, and entries whose x - d falls left of the image are 0
(GwcNet/CFNet ``build_gwc_volume`` / ``build_concat_volume`` leave them at their zero
initialisation).

``groupwise_cost_volume`` has two implementations (``impl=``), equal up to float32
rounding of the group mean:

* ``"shifted"``: one product + group mean per disparity on the overlapping columns
  ``x >= d`` (upstream's loop), zero-padded back to W. Default through ``"auto"``: it
  never materialises the shifted right volume, and is the faster one forward and
  forward+backward on XLA:CPU at the CFNet gw4 size ((1, 48, 156, 160), D = 32, 40
  groups), as ``python -m benchmarks.ops`` times them.
* ``"stacked"``: builds the (B, D, H, W, C) volume of shifted right features once (the
  one ``concat_cost_volume`` needs too) and reduces it with ``groupwise_correlation``.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "concat_cost_volume",
    "disparity_regression",
    "disparity_variance",
    "gather_by_integer_disparity",
    "groupwise_correlation",
    "groupwise_cost_volume",
]

GroupwiseImpl = Literal["auto", "shifted", "stacked"]
_GROUPWISE_IMPLS = ("auto", "shifted", "stacked")


def _accumulation_dtype(dtype: jnp.dtype) -> jnp.dtype:
    # Group means of bf16 products are taken in float32; float64 stays float64.
    return jnp.dtype(jnp.float64) if jnp.dtype(dtype) == jnp.float64 else jnp.dtype(jnp.float32)


def _check_feature(x: jax.Array, name: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (B, H, W, C), got {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name} must be a floating-point array, got dtype {x.dtype}")


def _check_pair(left: jax.Array, right: jax.Array) -> None:
    _check_feature(left, "left")
    _check_feature(right, "right")
    if left.shape != right.shape:
        raise ValueError(
            f"left and right must have the same shape (B, H, W, C), "
            f"got {left.shape} and {right.shape}"
        )


def _check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _check_groups(groups: object, channels: int) -> int:
    groups = _check_positive_int(groups, "groups")
    if channels % groups:
        raise ValueError(
            f"the channel count C={channels} must be divisible by groups={groups} "
            f"(groups of C/groups consecutive channels)"
        )
    return groups


def _group_mean(product: jax.Array, groups: int) -> jax.Array:
    """Mean over each group of C/G consecutive channels (last axis)."""
    *lead, channels = product.shape
    return jnp.mean(product.reshape(*lead, groups, channels // groups), axis=-1)


def _shifted_right(right: jax.Array, max_disparity: int) -> jax.Array:
    """(B, D, H, W, C) with ``out[:, d, :, x] = right[:, :, x - d]``, 0 for x < d."""
    width = right.shape[2]
    # Pad D - 1 zero columns on the left; disparity d then reads columns D-1-d ... .
    padded = jnp.pad(right, ((0, 0), (0, 0), (max_disparity - 1, 0), (0, 0)))
    start = max_disparity - 1
    return jnp.stack(
        [
            lax.slice_in_dim(padded, start - d, start - d + width, axis=2)
            for d in range(max_disparity)
        ],
        axis=1,
    )


def _columns_at_least_d(max_disparity: int, width: int) -> jax.Array:
    """(1, D, 1, W, 1) mask of x >= d."""
    x = jnp.arange(width)[None, :]
    d = jnp.arange(max_disparity)[:, None]
    return (x >= d)[None, :, None, :, None]


def groupwise_cost_volume(
    left: jax.Array,
    right: jax.Array,
    *,
    max_disparity: int,
    groups: int,
    impl: GroupwiseImpl = "auto",
) -> jax.Array:
    """Group-wise correlation volume (GwcNet, CFNet).

    ``out[b, d, y, x, g] = mean_{c in group g} left[b, y, x, c] * right[b, y, x - d, c]``
    for ``x >= d``, else 0.

    Args:
      left: ``(b, h, w, c)`` left-image features.
      right: ``(b, h, w, c)`` right-image features.
      max_disparity: number D of disparities 0 ... D-1 (CFNet: maxdisp / 8 at 1/8).
      groups: number G of groups of ``c / G`` consecutive channels (CFNet: 40).
      impl: ``"shifted"`` (default through ``"auto"``) or ``"stacked"``; same values
        (see the module docstring).

    Returns:
      ``(b, D, h, w, G)`` in the inputs' dtype, averaged in float32 (float64 for
      float64 inputs).

    Convention:
      Disparity d pairs left column x with right column x - d; columns x < d (no
      partner) are 0. Group g holds channels ``g*c/G ... (g+1)*c/G - 1``
      ([CF] ``build_gwc_volume``, layout (B, G, D, H, W) there).
    """
    _check_pair(left, right)
    max_disparity = _check_positive_int(max_disparity, "max_disparity")
    groups = _check_groups(groups, left.shape[-1])
    if impl not in _GROUPWISE_IMPLS:
        raise ValueError(f"impl must be one of {_GROUPWISE_IMPLS}, got {impl!r}")
    out_dtype = jnp.result_type(left, right)
    acc = _accumulation_dtype(out_dtype)
    left, right = left.astype(acc), right.astype(acc)
    if impl == "stacked":
        return groupwise_correlation(
            left, _shifted_right(right, max_disparity), groups=groups
        ).astype(out_dtype)
    batch, height, width, _ = left.shape
    planes = []
    for d in range(max_disparity):
        if d >= width:
            planes.append(jnp.zeros((batch, height, width, groups), acc))
            continue
        overlap = _group_mean(left[:, :, d:] * right[:, :, : width - d], groups)
        planes.append(jnp.pad(overlap, ((0, 0), (0, 0), (d, 0), (0, 0))))
    return jnp.stack(planes, axis=1).astype(out_dtype)


def concat_cost_volume(left: jax.Array, right: jax.Array, *, max_disparity: int) -> jax.Array:
    """Concatenation volume ``[left(x), right(x - d)]`` (GC-Net style, CFNet).

    Args:
      left: ``(b, h, w, c)`` left-image features.
      right: ``(b, h, w, c)`` right-image features.
      max_disparity: number D of disparities 0 ... D-1.

    Returns:
      ``(b, D, h, w, 2c)``: channels ``:c`` the left features, ``c:`` the right
      features shifted by d; both halves are 0 at columns x < d.

    Convention:
      As [CF] ``build_concat_volume``: only ``[:, :, d, :, d:]`` is written, so the left
      half is zeroed where the right partner is missing.
    """
    _check_pair(left, right)
    max_disparity = _check_positive_int(max_disparity, "max_disparity")
    width = left.shape[2]
    shifted = _shifted_right(right, max_disparity)
    left_part = jnp.where(
        _columns_at_least_d(max_disparity, width), left[:, None], jnp.zeros((), left.dtype)
    )
    return jnp.concatenate([left_part, shifted.astype(left_part.dtype)], axis=-1)


def gather_by_integer_disparity(right: jax.Array, disparities: jax.Array) -> jax.Array:
    """Gather right features at column x - d for per-pixel integer hypotheses (CFNet).

    Args:
      right: ``(b, h, w, c)`` right-image features.
      disparities: ``(b, D, h, w)`` hypotheses, integer or float. Floats are truncated
        toward zero first, as CFNet's sampler does (``.long()``) before its
        SpatialTransformer sees them. Values may be negative or exceed ``w - 1``.

    Returns:
      ``(b, D, h, w, c)``: ``right[b, y, x - d]``, and 0 where ``x - d < 0`` or
      ``x - d > w - 1``. Differentiable with respect to ``right`` only.

    Convention:
      [CF] ``SpatialTransformer``: coordinate x - d, gathered at the index clamped to
      [0, w - 1], then multiplied by 0 outside the image (so a hypothesis pointing
      off-image never reads a border pixel).
    """
    _check_feature(right, "right")
    batch, height, width, _ = right.shape
    if disparities.ndim != 4 or (disparities.shape[0], *disparities.shape[2:]) != (
        batch,
        height,
        width,
    ):
        raise ValueError(
            f"disparities must have shape (B, D, H, W) = ({batch}, D, {height}, {width}) to match "
            f"right {right.shape}, got {disparities.shape}"
        )
    if not (
        jnp.issubdtype(disparities.dtype, jnp.integer)
        or jnp.issubdtype(disparities.dtype, jnp.floating)
    ):
        raise ValueError(
            f"disparities must be an integer or float array, got dtype {disparities.dtype}"
        )
    d = lax.stop_gradient(disparities)
    if jnp.issubdtype(d.dtype, jnp.floating):
        d = jnp.trunc(d)
    column = jnp.arange(width, dtype=jnp.int32) - d.astype(jnp.int32)  # (b, D, h, w)
    inside = (column >= 0) & (column <= width - 1)
    index = jnp.clip(column, 0, width - 1)
    gathered = jax.vmap(  # over the D hypotheses, sharing `right`
        lambda idx: jnp.take_along_axis(right, idx[..., None], axis=2), in_axes=1, out_axes=1
    )(index)
    return jnp.where(inside[..., None], gathered, jnp.zeros((), right.dtype))


def groupwise_correlation(left: jax.Array, right_volume: jax.Array, *, groups: int) -> jax.Array:
    """Group-wise correlation of left features with a volume of warped right features.

    Args:
      left: ``(b, h, w, c)`` left-image features.
      right_volume: ``(b, D, h, w, c)`` right features already aligned per hypothesis
        (e.g. from :func:`gather_by_integer_disparity`).
      groups: number G of groups of ``c / G`` consecutive channels.

    Returns:
      ``(b, D, h, w, G)``: the mean over each group of ``left * right_volume`` (left
      broadcast over D), in the inputs' dtype, averaged in float32 (float64 for float64).

    Convention:
      [CF] ``groupwise_correlation_4D`` (and, with D = 1, ``groupwise_correlation``).
    """
    _check_feature(left, "left")
    if right_volume.ndim != 5 or (right_volume.shape[0], *right_volume.shape[2:]) != left.shape:
        raise ValueError(
            f"right_volume must have shape (B, D, H, W, C) with (B, H, W, C) = {left.shape} "
            f"of left, got {right_volume.shape}"
        )
    if not jnp.issubdtype(right_volume.dtype, jnp.floating):
        raise ValueError(
            f"right_volume must be a floating-point array, got dtype {right_volume.dtype}"
        )
    groups = _check_groups(groups, left.shape[-1])
    out_dtype = jnp.result_type(left, right_volume)
    acc = _accumulation_dtype(out_dtype)
    product = left.astype(acc)[:, None] * right_volume.astype(acc)
    return _group_mean(product, groups).astype(out_dtype)


def _check_prob_and_values(prob: jax.Array, disparities: jax.Array) -> jax.Array:
    if prob.ndim != 4:
        raise ValueError(f"prob must have shape (B, D, H, W), got {prob.shape}")
    if not jnp.issubdtype(prob.dtype, jnp.floating):
        raise ValueError(f"prob must be a floating-point array, got dtype {prob.dtype}")
    disparities = jnp.asarray(disparities)
    if disparities.ndim == 1 and disparities.shape[0] == prob.shape[1]:
        return disparities.reshape(1, -1, 1, 1)
    if disparities.shape == prob.shape:
        return disparities
    raise ValueError(
        f"disparities must have shape (D,) = ({prob.shape[1]},) or (B, D, H, W) = {prob.shape} "
        f"to match prob, got {disparities.shape}"
    )


def disparity_regression(prob: jax.Array, disparities: jax.Array) -> jax.Array:
    """Soft-argmin: the expected disparity under ``prob``.

    Args:
      prob: ``(b, D, h, w)`` probabilities over the D hypotheses (softmax of a cost).
      disparities: ``(D,)`` hypothesis values shared by all pixels (e.g. ``arange(D)``)
        or ``(b, D, h, w)`` per-pixel hypotheses (CFNet cascade stages).

    Returns:
      ``(b, h, w)``: ``sum_d prob * disparities``, summed in float32 (float64 for float64).

    Convention:
      [CF] ``disparity_regression(x, maxdisp)`` is the ``(D,) = arange(maxdisp)`` case.
    """
    values = _check_prob_and_values(prob, disparities)
    out_dtype = jnp.result_type(prob, values)
    if not jnp.issubdtype(out_dtype, jnp.floating):
        out_dtype = prob.dtype
    acc = _accumulation_dtype(out_dtype)
    return jnp.sum(prob.astype(acc) * values.astype(acc), axis=1).astype(out_dtype)


def disparity_variance(prob: jax.Array, disparities: jax.Array, mean: jax.Array) -> jax.Array:
    """Variance of the disparity under ``prob`` about ``mean`` (CFNet's uncertainty squared).

    Args:
      prob: ``(b, D, h, w)`` probabilities over the D hypotheses.
      disparities: ``(D,)`` shared hypothesis values or ``(b, D, h, w)`` per pixel.
      mean: ``(b, h, w)`` centre, normally :func:`disparity_regression` of the same
        inputs. Upstream detaches it before this call; do so with
        ``jax.lax.stop_gradient`` where training must match.

    Returns:
      ``(b, h, w)``: ``sum_d prob * (disparities - mean)^2``; CFNet's uncertainty is its
      square root.

    Convention:
      [CF] ``disparity_variance`` (``(D,)`` = ``arange(maxdisp)``) and
      ``disparity_variance_confidence`` (per-pixel hypotheses).
    """
    values = _check_prob_and_values(prob, disparities)
    batch, _, height, width = prob.shape
    if mean.shape != (batch, height, width):
        raise ValueError(
            f"mean must have shape (B, H, W) = {(batch, height, width)}, got {mean.shape}"
        )
    out_dtype = jnp.result_type(prob, mean)
    acc = _accumulation_dtype(out_dtype)
    deviation = values.astype(acc) - mean.astype(acc)[:, None]
    return jnp.sum(prob.astype(acc) * deviation * deviation, axis=1).astype(out_dtype)
