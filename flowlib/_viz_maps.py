"""Disparity and error colour maps, colour bars and the flow legend; part of
:mod:`flowlib.viz`."""

from __future__ import annotations

from typing import Any

import numpy as np

from flowlib._viz_colour import UNKNOWN_FLOW, check_flow, check_mask, check_max, colorwheel_legend
from flowlib._viz_layout import agg_figure, render

# KITTI-style error colours ([CF] utils/visualization.py gen_error_colormap, = KITTI devkit):
# (lower bound of the normalised error, RGB). Interval i is [bound_i, bound_{i+1}).
ERROR_COLORS = (
    (0.0, (49, 54, 149)),
    (0.0625, (69, 117, 180)),
    (0.125, (116, 173, 209)),
    (0.25, (171, 217, 233)),
    (0.5, (224, 243, 248)),
    (1.0, (254, 224, 144)),
    (2.0, (253, 174, 97)),
    (4.0, (244, 109, 67)),
    (8.0, (215, 48, 39)),
    (16.0, (165, 0, 38)),
)


def disparity_range(disp: Any, valid: Any = None, *, percentiles: tuple[float, float] = (1, 99)
                    ) -> tuple[float, float]:
    """A robust colour range for a disparity map: its 1st and 99th percentiles.

    A few far-out estimates (or one near object) then do not leave the rest of the map dark.

    Args:
      disp: ``(..., H, W)`` disparity.
      valid: optional boolean mask of the same shape; non-finite values are always ignored.
      percentiles: the lower and upper percentile.

    Returns:
      ``(low, high)`` with ``high > low`` (``(0, 1)`` for an empty or constant map near 0).
    """
    disp = np.asarray(disp, np.float64)
    known = np.isfinite(disp)
    if valid is not None:
        known &= check_mask(valid, disp.shape)
    if not known.any():
        return 0.0, 1.0
    low, high = (float(x) for x in np.percentile(disp[known], percentiles))
    if high - low < 1e-6:
        low, high = max(0.0, low - 0.5), low + 0.5
    return low, high


_DPI = 64.0


def label_px(height: int) -> float:
    """Text height (em, pixels) of a key's labels beside an image ``height`` pixels tall:
    1/30 of it, between 11 and 32 px (at most a quarter of a very short panel), so the labels
    stay readable when a large picture is shown scaled down."""
    return float(min(np.clip(height / 30.0, 11.0, 32.0), height / 4.0))


def _points(px: float) -> float:
    return px * 72.0 / _DPI


def colorbar(height: int, low: float, high: float, *, cmap: str = "magma", unit: str = "px",
             width: int | None = None) -> np.ndarray:
    """A vertical colour bar with tick labels: the key to :func:`disparity_to_rgb`.

    The labels are :func:`label_px` high; the unit is written above the bar, inside the panel.

    Args:
      height: panel height in pixels (that of the image it goes beside, >= 32).
      low, high: the values at the bottom and the top of the colour map.
      cmap: the matplotlib colour map.
      unit: written above the bar.
      width: panel width in pixels; default: room for the bar and its labels (6.5 em, >= 72).

    Returns:
      ``(height, width, 3)`` uint8 RGB on white.
    """
    import matplotlib

    if int(height) < 32:
        raise ValueError(f"a colour bar needs a height of at least 32 px, got {height}")
    height = int(height)
    text = label_px(height)
    width = max(72, round(6.5 * text)) if width is None else int(width)
    fig = agg_figure(width, height, _DPI)
    fig.patch.set_facecolor("white")
    top, bottom = 1.5 * text + 4, 0.6 * text + 2  # the unit above; half a label below
    left, bar = 6.0, max(12.0, 1.2 * text)
    ax = fig.add_axes((left / width, bottom / height, bar / width, 1 - (top + bottom) / height))
    ramp = np.linspace(high, low, 256)[:, None]
    ax.imshow(ramp, aspect="auto", cmap=matplotlib.colormaps[cmap], vmin=low, vmax=high,
              extent=(0, 1, low, high))
    ax.set_xticks([])
    ax.yaxis.tick_right()
    ax.tick_params(labelsize=_points(text), length=max(2.0, text / 5), pad=1)
    ticks = ax.get_yticks()
    ax.set_yticks([t for t in ticks if low <= t <= high] or [low, high])
    ax.set_yticklabels([f"{t:g}" for t in ax.get_yticks()])
    fig.text(left / width, 1 - 2 / height, unit, ha="left", va="top", fontsize=_points(text))
    return render(fig)


def flow_legend(height: int, max_norm: float, *, size: int | None = None) -> np.ndarray:
    """The colour-wheel key on white with its scale: "max |flow| N px" under the wheel.

    The label is :func:`label_px` high.

    Args:
      height: panel height in pixels (that of the flow image it goes beside, >= 16).
      max_norm: the flow magnitude at the rim of the wheel (the normalisation used).
      size: wheel diameter in pixels; default: what the height leaves under the label room,
        at most 256, at least 16.

    Returns:
      ``(height, max(size, 96, label width), 3)`` uint8 RGB.
    """
    height = int(height)
    if height < 16:
        raise ValueError(f"a legend needs a height of at least 16 px, got {height}")
    text = label_px(height)
    label = f"max |flow| {max_norm:.3g} px"
    room = round(1.4 * text + 4)  # the label's line under the wheel
    side = size if size is not None else max(16, min(height - room, 256))
    width = max(side, 96, round(0.62 * text * len(label)) + 8)
    fig = agg_figure(width, height, _DPI)
    fig.patch.set_facecolor("white")
    wheel = colorwheel_legend(side)
    outside = ~np.any(wheel > 0, axis=-1)
    wheel[outside] = 255
    panel = np.full((height, width, 3), 255, np.uint8)
    top = max(0, (height - side - room) // 2)
    left = (width - side) // 2
    rows = min(side, height - top)
    panel[top:top + rows, left:left + side] = wheel[:rows]
    fig.figimage(panel, 0, 0, origin="upper")
    fig.text(0.5, 1 - min(height - text, top + side + 2) / height, label,
             ha="center", va="top", fontsize=_points(text))
    return render(fig)


def disparity_to_rgb(
    disp: Any, *, max_disp: float | None = None, valid: Any = None, cmap: str = "magma",
    min_disp: float = 0.0,
) -> np.ndarray:
    """Colour-code disparity with a matplotlib colour map (large disparity = near = bright).

    Args:
      disp: ``(H, W)`` or ``(B, H, W)`` disparity in pixels.
      max_disp: disparity mapped to the top of the colour map (finite, > min_disp); None =
        the largest valid disparity of each image (1 if that is <= 0). Values are clipped to
        ``[min_disp, max_disp]``; :func:`disparity_range` gives a robust range.
      valid: optional boolean mask, same shape. Non-finite disparities are always invalid.
        Invalid pixels are black.
      cmap: any matplotlib colour-map name.
      min_disp: disparity mapped to the bottom of the colour map (default 0).

    Returns:
      ``(H, W, 3)`` or ``(B, H, W, 3)`` uint8 RGB.
    """
    import matplotlib

    disp = np.asarray(disp)
    if disp.ndim not in (2, 3):
        raise ValueError(f"expected disp of shape (H, W) or (B, H, W), got {disp.shape}")
    disp = disp.astype(np.float64)
    known = np.isfinite(disp)
    if valid is not None:
        known &= check_mask(valid, disp.shape)
    disp = np.where(known, disp, 0.0)
    low = float(min_disp)
    if not np.isfinite(low):
        raise ValueError(f"min_disp must be finite, got {min_disp}")
    if max_disp is not None:
        if not float(max_disp) > low:
            raise ValueError(f"max_disp must be larger than min_disp ({low:g}), got {max_disp}")
        top = np.full(disp.shape[:-2] + (1, 1), check_max(max_disp, "max_disp"))
    else:
        top = np.max(disp, axis=(-2, -1), keepdims=True, initial=0.0)
        top = np.where(top > low, top, low + 1.0)
    try:
        colormap = matplotlib.colormaps[cmap]
    except KeyError:
        raise ValueError(f"unknown matplotlib colour map {cmap!r}") from None
    rgb = colormap(np.clip((disp - low) / (top - low), 0.0, 1.0), bytes=True)[..., :3]
    rgb[~known] = 0
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def error_to_rgb(est: Any, gt: Any, valid: Any) -> np.ndarray:
    """Colour-code errors KITTI-style: blue = well inside the 3 px / 5 % rule, red = far out.

    Normalised error ``e = min(err / 3, (err / |gt|) / 0.05)``, so ``e <= 1`` exactly for
    KITTI inliers; ``|gt| = 0`` gives ``e = err / 3`` (no division by zero). Colours by
    interval of ``e`` are :data:`ERROR_COLORS` ([0, 1/16) dark blue ... [16, inf) dark red).
    ``err`` is the EPE for flow and ``|d - d_gt|`` for disparity. A non-finite estimate
    gets the last (worst) colour. Unlike the KITTI devkit image, no 3x3 dilation and no
    dimming of occluded pixels is applied.

    Args:
      est: flow ``(H, W, 2)``/``(B, H, W, 2)`` or disparity ``(H, W)``/``(B, H, W)``. A 3-D
        array whose last axis is 2 is taken as flow.
      gt: ground truth of the same shape.
      valid: boolean ``(H, W)``/``(B, H, W)`` mask of pixels with ground truth, or None:
        known flow (finite, ``|.| <= 1e9``) resp. finite ``d_gt > 0`` (KITTI: 0 = no GT).
        Pixels without ground truth are black.

    Returns:
      ``(..., H, W, 3)`` uint8 RGB.
    """
    est = np.asarray(est, np.float64)
    gt = np.asarray(gt, np.float64)
    if est.shape != gt.shape:
        raise ValueError(f"est and gt must have the same shape, got {est.shape} and {gt.shape}")
    is_flow = est.ndim == 4 or (est.ndim == 3 and est.shape[-1] == 2)
    if is_flow:
        check_flow(est, "est")
        known = np.all(np.abs(gt) <= UNKNOWN_FLOW, axis=-1)
        gt = np.where(known[..., None], gt, 0.0)
        err = np.sqrt(np.sum((est - gt) ** 2, axis=-1))
        mag = np.sqrt(np.sum(gt**2, axis=-1))
    elif est.ndim in (2, 3):
        known = np.isfinite(gt)
        gt = np.where(known, gt, 0.0)
        if valid is None:
            known &= gt > 0
        err = np.abs(est - gt)
        mag = np.abs(gt)
    else:
        raise ValueError(f"expected flow (..., H, W, 2) or disparity (H, W)/(B, H, W), got {est.shape}")
    if valid is not None:
        known &= check_mask(valid, err.shape)
    err = np.where(np.isfinite(err), err, np.inf)
    rel = np.divide(err, 0.05 * mag, out=np.full(err.shape, np.inf), where=mag > 0)
    rel[err == 0] = 0.0
    e = np.minimum(err / 3.0, rel)
    bounds = np.array([b for b, _ in ERROR_COLORS[1:]])
    colors = np.array([c for _, c in ERROR_COLORS], np.uint8)
    rgb = colors[np.searchsorted(bounds, e, side="right")]
    rgb[~known] = 0
    return rgb
