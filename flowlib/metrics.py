"""Optical-flow and stereo error metrics: per-pixel maps and explicit masked reductions.

Three layers, kept apart so that the *aggregation policy* is always visible at the call
site (benchmarks disagree on it):

* **Per-pixel maps** (:func:`epe_map`, :func:`angular_error_map`, :func:`fl_outlier_map`,
  :func:`disparity_error_map`, :func:`d1_outlier_map`, :func:`bad_n_map`). Pure
  element-wise functions over any leading batch shape; they take and return numpy arrays,
  or ``jax.numpy`` arrays when given a ``jax.Array`` (also under ``jax.jit``).
* **Masked reducers** whose names say how they aggregate: :func:`masked_sum_count`
  (one image -> ``(sum, count)``), :func:`pixel_mean` (pooled over every pixel of every
  image), :func:`image_mean` (mean of per-image means), :func:`pooled_mean` (from
  ``(sum, count)`` pairs). RAFT's evaluate.py pools Sintel EPE over pixels but averages
  per-image means for KITTI EPE, while the KITTI devkit pools both error sums and pixel
  counts over the split; this module implements both and lets the evaluator choose.
* **Convenience summaries** (:func:`flow_metrics`, :func:`kitti_flow_metrics`,
  :func:`disparity_metrics`, :func:`sintel_breakdown`) over one image or one batch,
  pooled over the pixels they are given (numpy, host side).

Empty masks: a mean over zero pixels is ``nan`` (returned without a RuntimeWarning), never
an exception, because empty subsets are legitimate (a Sintel frame without occlusions has
no "unmatched" pixels, a slow frame has no ``s40+`` pixels). ``(sum, count)`` pairs with
``count == 0`` pool correctly.

The per-pixel maps and the input checks live in :mod:`flowlib._error_maps` and are
re-exported here; this module holds the reducers and summaries.

Convention:
  Flow ``(..., H, W, 2)`` with channel 0 = u (+x right), 1 = v (+y down), in pixels;
  disparity ``(..., H, W)``. Masks are boolean ``(..., H, W)``; ``True`` = counted.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from flowlib._error_maps import (  # the per-pixel maps live there; documented here
    KITTI_ABS_THRESHOLD,  # noqa: F401  (flowlib.metrics attribute, as before the split)
    KITTI_REL_THRESHOLD,  # noqa: F401
    UNKNOWN_FLOW_THRESHOLD,
    angular_error_map,
    array_namespace,
    bad_n_map,
    check_disp_pair,
    check_flow_pair,
    d1_outlier_map,
    disparity_error_map,
    epe_map,
    fl_outlier_map,
    known_flow_mask,
)

__all__ = [
    "UNKNOWN_FLOW_THRESHOLD",
    "epe_map",
    "angular_error_map",
    "fl_outlier_map",
    "disparity_error_map",
    "d1_outlier_map",
    "bad_n_map",
    "known_flow_mask",
    "masked_sum_count",
    "masked_mean",
    "pixel_mean",
    "image_mean",
    "pooled_mean",
    "flow_metrics",
    "kitti_flow_metrics",
    "disparity_metrics",
    "occlusion_distance",
    "sintel_breakdown",
]

SINTEL_SPEED_BINS = {"s0-10": (0.0, 10.0), "s10-40": (10.0, 40.0), "s40+": (40.0, math.inf)}
SINTEL_DISTANCE_BINS = {"d0-10": (0.0, 10.0), "d10-60": (10.0, 60.0), "d60-140": (60.0, 140.0)}


# --------------------------------------------------------------------------------------
# Masked reductions
# --------------------------------------------------------------------------------------


def _nan_safe_ratio(total: float, count: float) -> float:
    return float(total) / float(count) if count > 0 else math.nan


def masked_sum_count(values: Any, mask: Any = None) -> tuple[Any, Any]:
    """Return ``(sum of values where mask, number of pixels in mask)`` for one array.

    Values outside the mask never enter the sum, even NaN or inf ones (invalid ground
    truth is often NaN). Boolean values (outlier maps) sum to the number of outliers.

    Args:
      values: per-pixel values ``(..., H, W)`` (float or bool), numpy or jax.
      mask: boolean ``(..., H, W)`` of the same shape, or None for every pixel.

    Returns:
      ``(sum, count)``. numpy input: Python ``(float, int)``, the sum accumulated in float64.
      jax input: two jax scalars (usable under ``jax.jit``).
    """
    xp = array_namespace(values, mask)
    values = xp.asarray(values)
    if mask is None:
        mask = xp.ones(values.shape, bool)
    mask = xp.asarray(mask)
    if mask.shape != values.shape:
        raise ValueError(f"mask must have the shape of values {values.shape}, got {mask.shape}")
    if mask.dtype != bool:
        raise ValueError(f"mask must be boolean, got dtype {mask.dtype}")
    if xp is np:
        selected = values[mask].astype(np.float64)
        return float(selected.sum()), int(mask.sum())
    acc = xp.where(mask, values.astype(xp.result_type(values.dtype, xp.float32)), 0)
    return xp.sum(acc), xp.sum(mask)


def masked_mean(values: Any, mask: Any = None) -> float:
    """Return the mean of ``values`` over ``mask`` (one array); ``nan`` if the mask is empty.

    Args:
      values: ``(..., H, W)`` float or bool (numpy or jax; reduced on the host).
      mask: boolean, same shape, or None for every pixel.

    Returns:
      Python float.
    """
    total, count = masked_sum_count(np.asarray(values), None if mask is None else np.asarray(mask))
    return _nan_safe_ratio(total, count)


def _pairs(values_list: Iterable[Any], masks_list: Iterable[Any] | None) -> list[tuple[float, int]]:
    values_list = list(values_list)
    if masks_list is None:
        masks_list = [None] * len(values_list)
    masks_list = list(masks_list)
    if len(masks_list) != len(values_list):
        raise ValueError(f"got {len(values_list)} value arrays but {len(masks_list)} masks")
    return [
        masked_sum_count(np.asarray(v), None if m is None else np.asarray(m))
        for v, m in zip(values_list, masks_list)
    ]


def pixel_mean(values_list: Iterable[Any], masks_list: Iterable[Any] | None = None) -> float:
    """Return the **pixel-pooled** mean: sum over all images / number of masked pixels.

    Every pixel weighs the same, so large or densely labelled images weigh more (Sintel
    EPE in RAFT's evaluate.py; KITTI Fl-all and the devkit's pooled counts).

    Args:
      values_list: sequence of per-pixel arrays ``(H_i, W_i)`` (sizes may differ), or one
        stacked ``(B, H, W)`` array.
      masks_list: matching boolean masks, or None for every pixel.

    Returns:
      Python float; ``nan`` if no pixel is masked in any image.
    """
    pairs = _pairs(values_list, masks_list)
    return pooled_mean(pairs)


def image_mean(values_list: Iterable[Any], masks_list: Iterable[Any] | None = None) -> float:
    """Return the **image-averaged** mean: the mean over images of each image's masked mean.

    Every image weighs the same whatever its number of valid pixels (KITTI EPE in RAFT's
    evaluate.py). An image whose mask is empty has mean ``nan`` and makes the result
    ``nan``: drop such images explicitly if they should not count.

    Args:
      values_list: sequence of per-pixel arrays ``(H_i, W_i)``, or one ``(B, H, W)`` array.
      masks_list: matching boolean masks, or None for every pixel.

    Returns:
      Python float; ``nan`` for an empty sequence or if any image has an empty mask.
    """
    pairs = _pairs(values_list, masks_list)
    if not pairs:
        return math.nan
    return float(np.mean([_nan_safe_ratio(s, c) for s, c in pairs]))


def pooled_mean(sum_count_pairs: Iterable[tuple[float, float]]) -> float:
    """Return ``sum(sums) / sum(counts)`` of ``(sum, count)`` pairs (pixel-pooled).

    Args:
      sum_count_pairs: e.g. one :func:`masked_sum_count` result per image, or one entry of
        :func:`sintel_breakdown` per frame.

    Returns:
      Python float; ``nan`` if the total count is 0.
    """
    total, count = 0.0, 0
    for s, c in sum_count_pairs:
        total += float(s)
        count += c
    return _nan_safe_ratio(total, count)


# --------------------------------------------------------------------------------------
# Convenience summaries (numpy, pooled over the given pixels)
# --------------------------------------------------------------------------------------


def _flow_inputs(flow: Any, gt: Any, valid: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    flow = np.asarray(flow, np.float64)
    gt = np.asarray(gt, np.float64)
    check_flow_pair(flow, gt)
    mask = known_flow_mask(gt)
    if valid is not None:
        valid = np.asarray(valid)
        if valid.shape != gt.shape[:-1]:
            raise ValueError(f"valid must have shape {gt.shape[:-1]} (flow without the last axis), "
                             f"got {valid.shape}")
        mask &= valid.astype(bool)
    # Unknown GT pixels are excluded; zero them so no inf/NaN arithmetic happens on them.
    gt = np.where(mask[..., None], gt, 0.0)
    return flow, gt, mask


def flow_metrics(flow: Any, gt: Any, valid: Any) -> dict[str, float]:
    """Summarise flow errors over the valid pixels of one image or one batch (pixel-pooled).

    Args:
      flow: estimated flow ``(..., H, W, 2)``.
      gt: ground truth, same shape. Pixels with unknown GT (non-finite or ``|.| > 1e9``)
        are never counted.
      valid: boolean ``(..., H, W)`` mask of pixels to count, or None for every pixel with
        known GT.

    Returns:
      Dict of Python floats: ``epe`` (mean EPE), ``1px``/``3px``/``5px`` (fraction of pixels
      with EPE **< 1, 3, 5**, as RAFT prints them), ``fl`` (fraction of KITTI outliers,
      :func:`fl_outlier_map`), ``angular_error`` (mean, degrees), ``count`` (pixels
      counted). Means over zero pixels are ``nan``.
    """
    flow, gt, mask = _flow_inputs(flow, gt, valid)
    epe = epe_map(flow, gt)[mask]
    n = epe.size
    out = {"epe": _nan_safe_ratio(epe.sum(), n)}
    for k in (1, 3, 5):
        out[f"{k}px"] = _nan_safe_ratio(np.count_nonzero(epe < k), n)
    out["fl"] = _nan_safe_ratio(np.count_nonzero(fl_outlier_map(flow, gt)[mask]), n)
    out["angular_error"] = _nan_safe_ratio(angular_error_map(flow, gt)[mask].sum(), n)
    out["count"] = float(n)
    return out


def kitti_flow_metrics(flow: Any, gt: Any, valid: Any, *, obj_map: Any = None) -> dict[str, float]:
    """KITTI flow figures over one image or a batch, pooled over valid pixels like the devkit.

    The KITTI 2015 devkit pools both the EPE sum and the outlier count over all pixels of
    all images; RAFT's evaluate.py instead reports EPE as the mean of per-image means (use
    :func:`image_mean` over :func:`epe_map` for that).

    Args:
      flow: estimated flow ``(..., H, W, 2)``.
      gt: ground truth (``flow_occ`` for "All", ``flow_noc`` for "Noc"), same shape.
      valid: the GT validity mask ``(..., H, W)`` (PNG blue channel > 0), or None for every
        pixel with known GT.
      obj_map: optional KITTI 2015 ``obj_map`` ``(..., H, W)``: 0 = background, > 0 =
        foreground; adds ``fl_bg`` and ``fl_fg``.

    Returns:
      Dict of Python floats: ``epe``, ``fl_all`` (fraction of outliers, EPE > 3 px and
      > 5 %), ``out_2`` ... ``out_5`` (KITTI 2012 Out-n: fraction with EPE > n px),
      ``count``; plus ``fl_bg``/``fl_fg`` with ``obj_map``. Fractions, not percent.
    """
    flow, gt, mask = _flow_inputs(flow, gt, valid)
    epe = epe_map(flow, gt)
    outlier = fl_outlier_map(flow, gt)
    n = int(mask.sum())
    out = {"epe": _nan_safe_ratio(epe[mask].sum(), n),
           "fl_all": _nan_safe_ratio(np.count_nonzero(outlier[mask]), n)}
    for k in (2, 3, 4, 5):
        out[f"out_{k}"] = _nan_safe_ratio(np.count_nonzero(epe[mask] > k), n)
    if obj_map is not None:
        obj = np.asarray(obj_map)
        if obj.shape != mask.shape:
            raise ValueError(f"obj_map must have shape {mask.shape}, got {obj.shape}")
        for name, region in (("fl_bg", obj == 0), ("fl_fg", obj > 0)):
            sel = mask & region
            out[name] = _nan_safe_ratio(np.count_nonzero(outlier[sel]), sel.sum())
    out["count"] = float(n)
    return out


def disparity_metrics(disp: Any, gt: Any, valid: Any, *, obj_map: Any = None) -> dict[str, float]:
    """Summarise disparity errors over valid pixels of one image or a batch (pixel-pooled).

    Args:
      disp: estimated disparity ``(..., H, W)``.
      gt: ground-truth disparity, same shape. Non-finite GT (Middlebury stores +inf for
        unknown) is never counted.
      valid: boolean mask, same shape, or None for ``gt > 0`` (KITTI and CFNet: 0 =
        invalid).
      obj_map: optional KITTI ``obj_map`` (0 = background); adds ``d1_bg``/``d1_fg``.

    Returns:
      Dict of Python floats: ``epe`` (mean absolute error), ``d1`` (fraction of KITTI
      outliers, :func:`d1_outlier_map`), ``bad_0.5``, ``bad_1``, ``bad_2``, ``bad_3``,
      ``bad_4``, ``bad_5`` (fraction with ``|err| > n``), ``count``; plus ``d1_bg``/``d1_fg``
      with ``obj_map``. Fractions, not percent.
    """
    disp = np.asarray(disp, np.float64)
    gt = np.asarray(gt, np.float64)
    check_disp_pair(disp, gt)
    mask = np.isfinite(gt)
    if valid is None:
        mask &= np.where(mask, gt, 0.0) > 0
    else:
        valid = np.asarray(valid)
        if valid.shape != gt.shape:
            raise ValueError(f"valid must have the shape of gt {gt.shape}, got {valid.shape}")
        mask &= valid.astype(bool)
    gt = np.where(mask, gt, 0.0)
    err = disparity_error_map(disp, gt)
    d1 = d1_outlier_map(disp, gt)
    n = int(mask.sum())
    out = {"epe": _nan_safe_ratio(err[mask].sum(), n),
           "d1": _nan_safe_ratio(np.count_nonzero(d1[mask]), n)}
    for k in (0.5, 1, 2, 3, 4, 5):
        out[f"bad_{k}"] = _nan_safe_ratio(np.count_nonzero(err[mask] > k), n)
    if obj_map is not None:
        obj = np.asarray(obj_map)
        if obj.shape != mask.shape:
            raise ValueError(f"obj_map must have shape {mask.shape}, got {obj.shape}")
        for name, region in (("d1_bg", obj == 0), ("d1_fg", obj > 0)):
            sel = mask & region
            out[name] = _nan_safe_ratio(np.count_nonzero(d1[sel]), sel.sum())
    out["count"] = float(n)
    return out


# --------------------------------------------------------------------------------------
# MPI-Sintel breakdown
# --------------------------------------------------------------------------------------


def occlusion_distance(occluded: Any) -> np.ndarray:
    """Return each pixel's Euclidean distance (pixels) to the nearest occluded pixel.

    Boundary definition used by :func:`sintel_breakdown`: the occlusion boundary is the
    set of occluded pixels, so a non-occluded (matched) pixel's distance to the boundary is
    its distance to the nearest occluded pixel -- the nearest one always lies on the rim of
    an occluded region. Matched pixels therefore have distance >= 1, occluded pixels 0.
    The official Sintel definition is **unverified**; this is the reading of
    a third-party reimplementation. A frame without occluded pixels has no boundary: every
    distance is ``inf``.

    Args:
      occluded: boolean ``(H, W)`` (True = occluded), or ``(B, H, W)``.

    Returns:
      float64 array of the same shape.
    """
    from scipy import ndimage

    occluded = np.asarray(occluded).astype(bool)
    if occluded.ndim not in (2, 3):
        raise ValueError(f"expected occluded of shape (H, W) or (B, H, W), got {occluded.shape}")
    if occluded.ndim == 3:
        return np.stack([occlusion_distance(o) for o in occluded])
    if not occluded.any():
        # distance_transform_edt has no background to measure from and returns garbage.
        return np.full(occluded.shape, np.inf)
    # EDT gives, for each non-zero pixel, the distance to the nearest zero pixel.
    return ndimage.distance_transform_edt(~occluded)


def sintel_breakdown(
    flow: Any, gt: Any, *, valid: Any = None, occluded: Any = None
) -> dict[str, tuple[float, int]]:
    """Return MPI-Sintel's EPE breakdown of one frame (or batch) as ``(EPE sum, pixel count)``.

    Returning sums and counts (not means) lets an evaluator pool over a split exactly as
    the Sintel server does (pixel-pooled), with :func:`pooled_mean`.

    Regions (each also restricted to ``valid`` pixels with known GT):

    * ``all``: every pixel; ``matched``: not occluded; ``unmatched``: occluded.
    * ``s0-10``, ``s10-40``, ``s40+``: GT flow magnitude in ``[0, 10)``, ``[10, 40)``,
      ``[40, inf)`` px (half-open, over all valid pixels, occluded included).
    * ``d0-10``, ``d10-60``, ``d60-140``: matched pixels whose distance to the nearest
      occlusion boundary (:func:`occlusion_distance`: nearest occluded pixel, so matched
      distances start at 1) is in ``[0, 10)``, ``[10, 60)``, ``[60, 140)``. Evaluating on
      matched pixels follows a third-party reimplementation; the official definition is
      unverified.

    Args:
      flow: estimated flow ``(H, W, 2)`` or ``(B, H, W, 2)``.
      gt: ground truth, same shape.
      valid: boolean ``(H, W)``/``(B, H, W)`` (e.g. not in Sintel's ``invalid/`` mask), or
        None for every pixel with known GT.
      occluded: boolean, same shape as ``valid`` (Sintel ``occlusions/`` PNG > 0). Without
        it the ``matched``, ``unmatched`` and ``d*`` entries are absent.

    Returns:
      Dict ``name -> (sum of EPE as float, pixel count as int)``.
    """
    flow, gt, mask = _flow_inputs(flow, gt, valid)
    if flow.ndim not in (3, 4):
        raise ValueError(f"expected flow of shape (H, W, 2) or (B, H, W, 2), got {flow.shape}")
    epe = epe_map(flow, gt)
    speed = np.sqrt(np.sum(gt**2, axis=-1))

    def part(region: np.ndarray) -> tuple[float, int]:
        sel = mask & region
        return float(epe[sel].sum()), int(sel.sum())

    out = {"all": part(np.ones_like(mask))}
    if occluded is not None:
        occ = np.asarray(occluded)
        if occ.shape != mask.shape:
            raise ValueError(f"occluded must have shape {mask.shape}, got {occ.shape}")
        occ = occ.astype(bool)
        out["matched"] = part(~occ)
        out["unmatched"] = part(occ)
    for name, (lo, hi) in SINTEL_SPEED_BINS.items():
        out[name] = part((speed >= lo) & (speed < hi))
    if occluded is not None:
        dist = occlusion_distance(occ)
        for name, (lo, hi) in SINTEL_DISTANCE_BINS.items():
            out[name] = part(~occ & (dist >= lo) & (dist < hi))
    return out

