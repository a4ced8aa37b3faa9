"""Matplotlib renderings: flow arrows and the comparison / stereo figures; part of
:mod:`flowlib.viz`."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from flowlib._viz_colour import UNKNOWN_FLOW, check_flow, check_mask, check_max, flow_to_rgb
from flowlib._viz_layout import agg_figure, image_uint8, render, save_png
from flowlib._viz_maps import disparity_to_rgb, error_to_rgb


def draw_arrows(
    image: Any,
    flow: Any,
    *,
    step: int = 16,
    scale: float | None = None,
    color: Any = "black",
    width: float = 1.5,
    valid: Any = None,
) -> np.ndarray:
    """Draw the flow as arrows (a quiver plot) over an image.

    One arrow every ``step`` pixels, starting at ``step // 2``, from the pixel centre
    ``(x, y)`` to ``(x + scale*u, y + scale*v)`` in image pixels. The arrows are rendered by
    matplotlib (Agg) on a transparent canvas of exactly the image's size and alpha-composited
    onto it, so pixels away from the arrows keep their exact input values. Unknown flow
    (NaN, ``|.| > 1e9``, ``valid`` False) gets no arrow; zero flow draws a dot.

    Args:
      image: ``(H, W, 3)`` RGB or ``(H, W)`` grey, uint8 or float in [0, 1].
      flow: ``(H, W, 2)`` flow in pixels.
      step: grid spacing in pixels (>= 1).
      scale: arrow length per pixel of flow (> 0); None = :func:`arrow_scale`, so that the
        longer arrows (95th percentile of the drawn ones) are 0.9 ``step`` long: tiny motion
        stays visible and large motion does not draw long overlapping lines.
      color: any matplotlib colour ("black", "#ff0000", (1, 0, 0)).
      width: shaft width in pixels (> 0).
      valid: optional boolean ``(H, W)`` mask.

    Returns:
      ``(H, W, 3)`` uint8 RGB.
    """
    base = image_uint8(image)
    flow = check_flow(flow)
    if flow.ndim != 3 or flow.shape[:2] != base.shape[:2]:
        raise ValueError(f"flow must have shape {base.shape[:2] + (2,)} to match the image, got {flow.shape}")
    if int(step) != step or step < 1:
        raise ValueError(f"step must be an integer >= 1, got {step}")
    width = check_max(width, "width")
    h, w = base.shape[:2]
    known = np.all(np.abs(flow) <= UNKNOWN_FLOW, axis=-1)
    if valid is not None:
        known &= check_mask(valid, (h, w))
    ys, xs = np.mgrid[step // 2 : h : step, step // 2 : w : step]
    keep = known[ys, xs]
    xs, ys = xs[keep], ys[keep]
    u, v = flow[ys, xs, 0], flow[ys, xs, 1]
    if scale is None:
        scale = arrow_scale(np.hypot(u, v), step)
    scale = check_max(scale, "scale")

    # dpi 64 (a power of two) makes W/dpi*dpi exact, so the canvas is exactly W x H pixels.
    dpi = 64.0
    fig = agg_figure(w, h, dpi)
    fig.patch.set_alpha(0.0)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    ax.patch.set_alpha(0.0)
    # Data coordinates = pixel centres, y down, as in imshow.
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    if xs.size:
        ax.quiver(xs, ys, u, v, angles="xy", scale_units="xy", scale=1.0 / scale, units="dots",
                  width=width, color=color)
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    if rgba.shape[:2] != (h, w):  # pragma: no cover - guarded by the dpi choice above
        raise RuntimeError(f"matplotlib rendered {rgba.shape[:2]} instead of {(h, w)}")
    alpha = rgba[..., 3:4].astype(np.float64) / 255.0
    # matplotlib's Agg buffer holds straight (not premultiplied) alpha.
    out = alpha * rgba[..., :3] + (1.0 - alpha) * base
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def arrow_scale(magnitudes: Any, step: int) -> float:
    """Arrow length per pixel of flow that makes the longer arrows ``0.9 * step`` long.

    "Longer" is the 95th percentile of ``magnitudes`` (the flow lengths at the arrow
    positions), so a few outliers do not shrink every arrow; no motion gives 1.

    Args:
      magnitudes: flow lengths in pixels (any shape; non-finite values ignored).
      step: arrow spacing in pixels.

    Returns:
      The scale (> 0).
    """
    magnitudes = np.asarray(magnitudes, np.float64)
    magnitudes = magnitudes[np.isfinite(magnitudes)]
    top = float(np.percentile(magnitudes, 95)) if magnitudes.size else 0.0
    return 0.9 * step / top if top > 1e-6 else 1.0


def comparison_figure(
    image: Any,
    flow: Any,
    gt: Any = None,
    *,
    valid: Any = None,
    max_norm: float | None = None,
    path: str | os.PathLike | None = None,
    dpi: float = 100.0,
) -> np.ndarray:
    """Render image, estimated flow, ground truth and error side by side (matplotlib Agg).

    Flow and ground truth share one normalisation (``max_norm``, or the largest known GT
    magnitude, else the estimate's), so equal colours mean equal motion. The error panel is
    :func:`error_to_rgb`, titled with the mean EPE and KITTI Fl over the valid pixels.

    Args:
      image: ``(H, W, 3)`` RGB or ``(H, W)`` grey (uint8 or float in [0, 1]), or None to
        leave out the image panel.
      flow: estimated flow ``(H, W, 2)``.
      gt: optional ground-truth flow ``(H, W, 2)``; adds the GT and error panels.
      valid: optional boolean ``(H, W)`` GT validity mask.
      max_norm: fixed colour normalisation in pixels (finite, > 0), or None.
      path: if given, the figure is also written there as PNG (atomically, :func:`save_png`).
      dpi: rendering resolution; each panel is 4 inches wide.

    Returns:
      uint8 RGB of the whole figure, ``(round((4 H / W + 0.35) dpi), round(4 n dpi), 3)`` for
      ``n`` panels.
    """
    flow = check_flow(flow)
    if flow.ndim != 3:
        raise ValueError(f"expected flow of shape (H, W, 2), got {flow.shape}")
    h, w = flow.shape[:2]
    panels = _image_panel(image, h, w, "image", "flow")
    if gt is not None:
        gt = check_flow(gt, "gt")
        if gt.shape != flow.shape:
            raise ValueError(f"gt must have the flow's shape {flow.shape}, got {gt.shape}")
        known = np.all(np.abs(gt) <= UNKNOWN_FLOW, axis=-1)
        if valid is not None:
            known &= check_mask(valid, (h, w))
    if max_norm is None:
        ref = gt if gt is not None and known.any() else flow
        ref_known = known if ref is gt else np.all(np.abs(flow) <= UNKNOWN_FLOW, axis=-1)
        rad = np.sqrt(np.sum(np.where(ref_known[..., None], ref, 0.0) ** 2, axis=-1))
        max_norm = float(rad.max()) if rad.max() > 0 else 1.0
    else:
        max_norm = check_max(max_norm, "max_norm")
    panels.append((f"flow (max {max_norm:.3g} px)", flow_to_rgb(flow, max_norm=max_norm)))
    if gt is not None:
        panels.append(("ground truth", flow_to_rgb(gt, max_norm=max_norm, valid=known)))
        gt0 = np.where(known[..., None], gt, 0.0)
        epe = np.sqrt(np.sum((flow - gt0) ** 2, axis=-1))[known]
        mag = np.sqrt(np.sum(gt0**2, axis=-1))[known]
        if epe.size:
            fl = np.mean((epe > 3.0) & (epe > 0.05 * mag))
            title = f"error (EPE {epe.mean():.3g}, Fl {100 * fl:.3g} %)"
        else:
            title = "error (no valid pixel)"
        panels.append((title, error_to_rgb(flow, gt, known)))

    return _panel_figure(panels, h, w, path=path, dpi=dpi)


def _image_panel(image: Any, h: int, w: int, title: str, like: str) -> list[tuple[str, np.ndarray]]:
    """The figure's first panel list: ``[(title, uint8 image)]``, or ``[]`` for None."""
    if image is None:
        return []
    img = image_uint8(image)
    if img.shape[:2] != (h, w):
        raise ValueError(f"image must be {h}x{w} like the {like}, got {img.shape}")
    return [(title, img)]


def _panel_figure(panels: list[tuple[str, np.ndarray]], h: int, w: int, *,
                  path: str | os.PathLike | None, dpi: float) -> np.ndarray:
    """Titled ``h x w`` panels in one row, each 4 inches wide (see comparison_figure)."""
    panel_in = 4.0
    title_in = 0.35
    fig_w = panel_in * len(panels)
    fig_h = panel_in * h / w + title_in
    # Agg truncates the figure size in pixels; a quarter pixel extra makes the size
    # round(...) and not one short when inches * dpi lands just below an integer.
    fig = agg_figure(round(fig_w * dpi) + 0.25, round(fig_h * dpi) + 0.25, dpi)
    for i, (title, rgb) in enumerate(panels):
        ax = fig.add_axes((i / len(panels), 0.0, 1.0 / len(panels), 1.0 - title_in / fig_h))
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    out = render(fig)
    if path is not None:
        save_png(path, out)
    return out


def stereo_figure(
    image: Any,
    disparity: Any,
    gt: Any = None,
    *,
    valid: Any = None,
    max_disp: float | None = None,
    path: str | os.PathLike | None = None,
    dpi: float = 100.0,
) -> np.ndarray:
    """Render left image, estimated disparity, ground truth and error side by side.

    The stereo counterpart of :func:`comparison_figure`: disparity and ground truth share
    one colour scale (``max_disp``, or the largest valid GT disparity, else the
    estimate's); the error panel is :func:`error_to_rgb`, titled with the EPE and D1 (KITTI
    rule: error > 3 px and > 5 % of the GT) over the valid pixels.

    Args:
      image: ``(H, W, 3)`` RGB or ``(H, W)`` grey left image, or None.
      disparity: estimated ``(H, W)`` disparity in pixels.
      gt: optional ground truth ``(H, W)`` (non-finite or <= 0 = unknown, unless ``valid``).
      valid: optional boolean ``(H, W)`` mask of pixels with ground truth.
      max_disp: fixed colour scale in pixels (finite, > 0), or None.
      path: if given, also written there as PNG (atomically).
      dpi: rendering resolution; each panel is 4 inches wide.

    Returns:
      uint8 RGB of the whole figure (sizes as :func:`comparison_figure`).
    """
    disparity = np.asarray(disparity, np.float64)
    if disparity.ndim != 2:
        raise ValueError(f"expected disparity of shape (H, W), got {disparity.shape}")
    h, w = disparity.shape
    panels = _image_panel(image, h, w, "left image", "disparity")
    if gt is not None:
        gt = np.asarray(gt, np.float64)
        if gt.shape != disparity.shape:
            raise ValueError(f"gt must have the disparity's shape {disparity.shape}, got {gt.shape}")
        known = np.isfinite(gt) & (gt > 0) if valid is None else np.isfinite(gt) & check_mask(valid, (h, w))
    if max_disp is None:
        ref = np.where(known, gt, 0.0) if gt is not None and known.any() else np.where(
            np.isfinite(disparity), disparity, 0.0)
        top = float(ref.max())
        max_disp = top if top > 0 else 1.0
    else:
        max_disp = check_max(max_disp, "max_disp")
    panels.append((f"disparity (max {max_disp:.3g} px)", disparity_to_rgb(disparity, max_disp=max_disp)))
    if gt is not None:
        panels.append(("ground truth", disparity_to_rgb(gt, max_disp=max_disp, valid=known)))
        err = np.abs(disparity - np.where(known, gt, 0.0))[known]
        mag = np.abs(gt[known])
        if err.size:
            d1 = np.mean((err > 3.0) & (err > 0.05 * mag))
            title = f"error (EPE {err.mean():.3g}, D1 {100 * d1:.3g} %)"
        else:
            title = "error (no valid pixel)"
        panels.append((title, error_to_rgb(disparity, np.where(known, gt, 0.0), known)))
    return _panel_figure(panels, h, w, path=path, dpi=dpi)
