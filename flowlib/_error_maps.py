"""The per-pixel error maps of :mod:`flowlib.metrics` and the input handling they share.

:mod:`flowlib.metrics` re-exports everything public here and is the documented home (see
its docstring for the conventions); its reducers and summaries use the helpers
:func:`array_namespace`, :func:`as_float`, :func:`check_flow_pair` and
:func:`check_disp_pair` as well. Like :mod:`flowlib.metrics`, this module never imports jax.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

# Middlebury flowIO.h: a component with |value| > 1e9 marks unknown flow (writers use 1e10;
# the Middlebury GT files store 1.6666668e9).
UNKNOWN_FLOW_THRESHOLD = 1e9

# KITTI 2015 outlier rule (devkit flowErrorsOutlier / disparityErrorsOutlier).
KITTI_ABS_THRESHOLD = 3.0
KITTI_REL_THRESHOLD = 0.05


def array_namespace(*arrays: Any) -> Any:
    """``jax.numpy`` if any input is a jax Array (or tracer), else numpy.

    jax is looked up in ``sys.modules`` rather than imported, so numpy-only users of the
    metrics never pay for JAX start-up: a jax Array cannot exist unless jax is imported.
    """
    jax = sys.modules.get("jax")
    if jax is not None and any(isinstance(a, jax.Array) for a in arrays):
        import jax.numpy as jnp

        return jnp
    return np


def as_float(xp: Any, x: Any) -> Any:
    x = xp.asarray(x)
    return x if xp.issubdtype(x.dtype, xp.floating) else x.astype(xp.float32)


def check_flow_pair(flow: Any, gt: Any, name: str = "flow") -> None:
    if flow.shape != gt.shape:
        raise ValueError(f"{name} and gt must have the same shape, got {flow.shape} and {gt.shape}")
    if flow.ndim < 1 or flow.shape[-1] != 2:
        raise ValueError(f"expected {name} of shape (..., H, W, 2) with (u, v) last, got {flow.shape}")


def check_disp_pair(disp: Any, gt: Any) -> None:
    if disp.shape != gt.shape:
        raise ValueError(f"disp and gt must have the same shape (..., H, W), got {disp.shape} and {gt.shape}")


# --------------------------------------------------------------------------------------
# Per-pixel maps
# --------------------------------------------------------------------------------------


def epe_map(flow: Any, gt: Any) -> Any:
    """Return the end-point error ``||flow - gt||_2`` at every pixel.

    Args:
      flow: estimated flow ``(..., H, W, 2)``, numpy or jax.
      gt: ground-truth flow, same shape.

    Returns:
      ``(..., H, W)`` floating array of the same kind (numpy / jax) as the inputs.
    """
    xp = array_namespace(flow, gt)
    flow, gt = as_float(xp, flow), as_float(xp, gt)
    check_flow_pair(flow, gt)
    return xp.sqrt(xp.sum((flow - gt) ** 2, axis=-1))


def angular_error_map(flow: Any, gt: Any) -> Any:
    """Return the Baker et al. (Middlebury) angular error in degrees at every pixel.

    The angle between the space-time direction vectors ``(u, v, 1)`` and
    ``(u_gt, v_gt, 1)``; Baker et al. define it as ``arccos`` of their normalised dot
    product. It is computed here as ``atan2(|a x b|, a . b)``, the same angle without
    ``arccos``'s loss of precision near 0 (in float32 ``arccos`` cannot resolve angles
    below ~0.03 deg).

    Args:
      flow: estimated flow ``(..., H, W, 2)``, numpy or jax.
      gt: ground-truth flow, same shape.

    Returns:
      ``(..., H, W)`` angles in degrees, in ``[0, 180)``.
    """
    xp = array_namespace(flow, gt)
    flow, gt = as_float(xp, flow), as_float(xp, gt)
    check_flow_pair(flow, gt)
    u, v = flow[..., 0], flow[..., 1]
    ug, vg = gt[..., 0], gt[..., 1]
    # (u, v, 1) x (ug, vg, 1) = (v - vg, ug - u, u*vg - v*ug)
    cross = xp.sqrt((v - vg) ** 2 + (ug - u) ** 2 + (u * vg - v * ug) ** 2)
    dot = u * ug + v * vg + 1
    return xp.degrees(xp.arctan2(cross, dot))


def fl_outlier_map(
    flow: Any,
    gt: Any,
    *,
    abs_threshold: float = KITTI_ABS_THRESHOLD,
    rel_threshold: float = KITTI_REL_THRESHOLD,
) -> Any:
    """Return the KITTI 2015 flow outlier mask: EPE > 3 px **and** EPE > 5 % of ``|gt|``.

    Zero ground-truth magnitude: the relative test is written multiplicatively,
    ``EPE > rel_threshold * |gt|`` (the devkit's ``EPE / |gt| > 0.05`` for ``|gt| > 0``),
    so at ``|gt| = 0`` it reads ``EPE > 0`` and the pixel is an outlier iff EPE > 3 px.
    No division happens, so there is no division-by-zero warning or NaN.

    Args:
      flow: estimated flow ``(..., H, W, 2)``, numpy or jax.
      gt: ground-truth flow, same shape.
      abs_threshold: absolute end-point-error threshold in pixels (KITTI: 3).
      rel_threshold: threshold relative to the ground-truth magnitude (KITTI: 0.05).

    Returns:
      ``(..., H, W)`` boolean array (not yet masked by validity).
    """
    xp = array_namespace(flow, gt)
    flow, gt = as_float(xp, flow), as_float(xp, gt)
    check_flow_pair(flow, gt)
    err = xp.sqrt(xp.sum((flow - gt) ** 2, axis=-1))
    mag = xp.sqrt(xp.sum(gt**2, axis=-1))
    return (err > abs_threshold) & (err > rel_threshold * mag)


def disparity_error_map(disp: Any, gt: Any) -> Any:
    """Return the absolute disparity error ``|disp - gt|`` at every pixel.

    Args:
      disp: estimated disparity ``(..., H, W)``, numpy or jax.
      gt: ground-truth disparity, same shape.

    Returns:
      ``(..., H, W)`` non-negative floating array.
    """
    xp = array_namespace(disp, gt)
    disp, gt = as_float(xp, disp), as_float(xp, gt)
    check_disp_pair(disp, gt)
    return xp.abs(disp - gt)


def d1_outlier_map(
    disp: Any,
    gt: Any,
    *,
    abs_threshold: float = KITTI_ABS_THRESHOLD,
    rel_threshold: float = KITTI_REL_THRESHOLD,
) -> Any:
    """Return the KITTI 2015 D1 outlier mask: ``|err| > 3`` px **and** ``|err| > 5 % |gt|``.

    Same zero-magnitude rule as :func:`fl_outlier_map`: at ``gt = 0`` a pixel is an outlier
    iff ``|err| > 3``; computed without division.

    Args:
      disp: estimated disparity ``(..., H, W)``, numpy or jax.
      gt: ground-truth disparity, same shape.
      abs_threshold: absolute threshold in pixels (KITTI: 3).
      rel_threshold: threshold relative to ``|gt|`` (KITTI: 0.05).

    Returns:
      ``(..., H, W)`` boolean array (not yet masked by validity).
    """
    xp = array_namespace(disp, gt)
    disp, gt = as_float(xp, disp), as_float(xp, gt)
    check_disp_pair(disp, gt)
    err = xp.abs(disp - gt)
    return (err > abs_threshold) & (err > rel_threshold * xp.abs(gt))


def bad_n_map(disp: Any, gt: Any, n: float) -> Any:
    """Return the "bad-n" mask ``|disp - gt| > n`` (Middlebury bad-n, KITTI 2012 Out-n).

    Args:
      disp: estimated disparity ``(..., H, W)``, numpy or jax.
      gt: ground-truth disparity, same shape.
      n: threshold in pixels (strict inequality, as Middlebury and KITTI count errors).

    Returns:
      ``(..., H, W)`` boolean array.
    """
    xp = array_namespace(disp, gt)
    disp, gt = as_float(xp, disp), as_float(xp, gt)
    check_disp_pair(disp, gt)
    return xp.abs(disp - gt) > n


def known_flow_mask(flow: Any) -> Any:
    """Return where a flow field is *known*: both components finite and ``|.| <= 1e9``.

    Middlebury's rule (flowIO.h): a component with ``|value| > 1e9`` means "unknown";
    NaN and infinities are treated as unknown as well.

    Args:
      flow: ``(..., H, W, 2)``, numpy or jax.

    Returns:
      ``(..., H, W)`` boolean array.
    """
    xp = array_namespace(flow)
    flow = as_float(xp, flow)
    if flow.ndim < 1 or flow.shape[-1] != 2:
        raise ValueError(f"expected flow of shape (..., H, W, 2), got {flow.shape}")
    # NaN compares False, so `abs <= threshold` also rejects NaN; inf exceeds the threshold.
    return xp.all(xp.abs(flow) <= UNKNOWN_FLOW_THRESHOLD, axis=-1)
