"""Visualisation of flow, disparity and errors as ``uint8`` RGB arrays (numpy only).

* :func:`flow_to_rgb`: the Middlebury colour coding of Baker et al., "A Database and
  Evaluation Methodology for Optical Flow" (IJCV 2011), after D. Scharstein's C++
  ``computeColor`` and the Matlab code by D. Sun, as also used by RAFT and torchvision
  (Baker et al., IJCV 2011). Hue gives the direction, saturation the magnitude: white = no motion.
* :func:`colorwheel_legend`: the key to that coding.
* :func:`disparity_to_rgb`: a matplotlib colour map over disparity.
* :func:`flow_picture`, :func:`disparity_picture`: either coding with its key beside it.
* :func:`error_to_rgb`: the KITTI-style log-scaled error colours (KITTI devkit).
* :func:`draw_arrows`, :func:`comparison_figure`: matplotlib renderings (Agg, no screen),
  matplotlib imported lazily.
* :func:`tile`, :func:`save_png`: layout and atomic PNG writing.

Convention:
  Flow ``(H, W, 2)`` or ``(B, H, W, 2)``, channel 0 = u (+x right), 1 = v (+y down), in
  pixels. Images are RGB ``uint8`` ``(..., H, W, 3)``. Unknown or invalid pixels are black.
"""

from __future__ import annotations

from flowlib._viz_colour import colorwheel_legend, flow_to_rgb, make_colorwheel
from flowlib._viz_figures import arrow_scale, comparison_figure, draw_arrows, stereo_figure
from flowlib._viz_layout import save_png, tile
from flowlib._viz_maps import (
    ERROR_COLORS,
    colorbar,
    disparity_range,
    disparity_to_rgb,
    error_to_rgb,
    flow_legend,
)
from flowlib._viz_pictures import disparity_picture, flow_picture

__all__ = [
    "make_colorwheel",
    "flow_to_rgb",
    "colorwheel_legend",
    "flow_legend",
    "disparity_to_rgb",
    "disparity_range",
    "colorbar",
    "flow_picture",
    "disparity_picture",
    "arrow_scale",
    "error_to_rgb",
    "ERROR_COLORS",
    "draw_arrows",
    "comparison_figure",
    "stereo_figure",
    "tile",
    "save_png",
]


def __dir__() -> list[str]:
    return list(__all__)  # the API only, not the private modules it comes from
