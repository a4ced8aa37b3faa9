"""Colour-coded flow and disparity with their keys beside them, as ``flowlib viz`` writes
them; part of :mod:`flowlib.viz`."""

from __future__ import annotations

from typing import Any

import numpy as np

from flowlib._viz_colour import flow_to_rgb
from flowlib._viz_layout import beside
from flowlib._viz_maps import colorbar, disparity_range, disparity_to_rgb, flow_legend


def flow_picture(flow: Any, *, valid: Any = None, max_norm: float | None = None,
                 legend: bool = False) -> np.ndarray:
    """:func:`flow_to_rgb`, with the colour-wheel key and its scale to the right.

    Args:
      flow: ``(H, W, 2)`` flow in pixels.
      valid: optional bool ``(H, W)`` mask; invalid pixels are black.
      max_norm: the magnitude at full saturation (> 0); None = the largest valid magnitude.
      legend: append :func:`flow_legend` (at least 64 px high; a shorter picture is padded
        with white below).

    Returns:
      ``(H, W, 3)`` uint8 RGB, or ``(max(H, 64), W + key width, 3)`` with the legend.
    """
    rgb = flow_to_rgb(flow, max_norm=max_norm, valid=valid)
    if not legend:
        return rgb
    if max_norm is None:
        flow = np.asarray(flow)
        known = np.ones(flow.shape[:2], bool) if valid is None else np.asarray(valid, bool)
        norms = np.linalg.norm(flow[known], axis=-1)
        max_norm = float(norms.max()) if norms.size and norms.max() > 0 else 1.0
    return beside(rgb, flow_legend(max(rgb.shape[0], 64), max_norm))


def disparity_picture(disp: Any, *, valid: Any = None, min_disp: float | None = None,
                      max_disp: float | None = None, legend: bool = False) -> np.ndarray:
    """:func:`disparity_to_rgb` over a robust range, with a colour bar to the right.

    Args:
      disp: ``(H, W)`` disparity in pixels.
      valid: optional bool ``(H, W)`` mask; invalid pixels are black.
      min_disp, max_disp: the disparities at the bottom and the top of the colour map; None =
        the 1st and the 99th percentile of the valid disparities (:func:`disparity_range`).
      legend: append :func:`colorbar` (at least 96 px high; a shorter picture is padded with
        white below).

    Returns:
      ``(H, W, 3)`` uint8 RGB, or ``(max(H, 96), W + bar width, 3)`` with the legend.

    Raises:
      ValueError: the range is empty (``min_disp >= max_disp``).
    """
    low, high = disparity_range(disp, valid)
    low = low if min_disp is None else float(min_disp)
    high = high if max_disp is None else float(max_disp)
    if high <= low:
        raise ValueError(f"the colour range is empty: min {low:g} >= max {high:g}")
    rgb = disparity_to_rgb(disp, valid=valid, min_disp=low, max_disp=high)
    if legend:
        rgb = beside(rgb, colorbar(max(rgb.shape[0], 96), low, high))
    return rgb
