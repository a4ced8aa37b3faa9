"""Visualisation of flow, disparity and errors as ``uint8`` RGB arrays (numpy only).

* :func:`flow_to_rgb`: the Middlebury colour coding of Baker et al., "A Database and
  Evaluation Methodology for Optical Flow" (IJCV 2011), after D. Scharstein's C++
  ``computeColor`` and the Matlab code by D. Sun, as also used by RAFT and torchvision
  (SPECS §7.1). Hue gives the direction, saturation the magnitude: white = no motion.
* :func:`colorwheel_legend`: the key to that coding.
* :func:`disparity_to_rgb`: a matplotlib colour map over disparity.
* :func:`error_to_rgb`: the KITTI-style log-scaled error colours (SPECS §7.2).
* :func:`draw_arrows`, :func:`comparison_figure`: matplotlib renderings (Agg, no screen),
  matplotlib imported lazily.
* :func:`tile`, :func:`save_png`: layout and atomic PNG writing.

Convention:
  Flow ``(H, W, 2)`` or ``(B, H, W, 2)``, channel 0 = u (+x right), 1 = v (+y down), in
  pixels. Images are RGB ``uint8`` ``(..., H, W, 3)``. Unknown or invalid pixels are black.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from flowlib._files import atomic_open

__all__ = [
    "make_colorwheel",
    "flow_to_rgb",
    "colorwheel_legend",
    "flow_legend",
    "disparity_to_rgb",
    "disparity_range",
    "colorbar",
    "arrow_scale",
    "error_to_rgb",
    "ERROR_COLORS",
    "draw_arrows",
    "comparison_figure",
    "stereo_figure",
    "tile",
    "save_png",
]

# Colour-wheel segments (number of hues between the six primaries), Baker et al. / Middlebury
# C++: chosen for perceptual similarity, hence the uneven counts.
_SEGMENTS = (("RY", 15), ("YG", 6), ("GC", 4), ("CB", 11), ("BM", 13), ("MR", 6))

# Middlebury flowIO.h "official threshold": |u| or |v| above it means unknown flow.
_UNKNOWN_FLOW = 1e9

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


def make_colorwheel() -> np.ndarray:
    """Return the 55-colour Middlebury colour wheel.

    Six segments RY 15, YG 6, GC 4, CB 11, BM 13, MR 6; within a segment one channel ramps
    by ``floor(255 * i / n)`` (the C++ integer division), starting at red = index 0.

    Returns:
      ``(55, 3)`` uint8 RGB table.
    """
    rows = []
    for name, n in _SEGMENTS:
        ramp = (255 * np.arange(n)) // n
        full, zero = np.full(n, 255), np.zeros(n, int)
        rows.append({
            "RY": (full, ramp, zero),
            "YG": (255 - ramp, full, zero),
            "GC": (zero, full, ramp),
            "CB": (zero, 255 - ramp, full),
            "BM": (ramp, zero, full),
            "MR": (full, zero, 255 - ramp),
        }[name])
    return np.concatenate([np.stack(r, axis=-1) for r in rows]).astype(np.uint8)


_WHEEL = make_colorwheel().astype(np.float64) / 255.0


def _check_flow(flow: Any, name: str = "flow") -> np.ndarray:
    flow = np.asarray(flow)
    if flow.ndim not in (3, 4) or flow.shape[-1] != 2:
        raise ValueError(f"expected {name} of shape (H, W, 2) or (B, H, W, 2), got {flow.shape}")
    if not (np.issubdtype(flow.dtype, np.floating) or np.issubdtype(flow.dtype, np.integer)):
        raise ValueError(f"expected a real-valued {name}, got dtype {flow.dtype}")
    return flow.astype(np.float64)


def _check_mask(valid: Any, shape: tuple[int, ...], name: str = "valid") -> np.ndarray:
    valid = np.asarray(valid)
    if valid.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {valid.shape}")
    return valid.astype(bool)


def _check_max(value: Any, name: str) -> float:
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def _wheel_colors(u: np.ndarray, v: np.ndarray, rad: np.ndarray) -> np.ndarray:
    """Middlebury ``computeColor`` on normalised flow ``(u, v)`` of radius ``rad``; RGB in [0, 1]."""
    # atan2(-v, -u): the sign of zero matters (v = +0.0 -> -pi -> index 0, red;
    # v = -0.0 -> +pi -> index 54), exactly as in the C++ and numpy/torch ports.
    a = np.arctan2(-v, -u) / np.pi
    fk = (a + 1.0) / 2.0 * (len(_WHEEL) - 1)
    k0 = np.floor(fk).astype(np.int64)
    k1 = (k0 + 1) % len(_WHEEL)
    f = (fk - k0)[..., None]
    col = (1.0 - f) * _WHEEL[k0] + f * _WHEEL[k1]
    r = rad[..., None]
    # Inside the unit disc saturation grows with radius (white at 0); beyond it the colour
    # is darkened by 0.75 to flag out-of-range motion.
    return np.where(r <= 1.0, 1.0 - r * (1.0 - col), 0.75 * col)


def _to_uint8(col: np.ndarray) -> np.ndarray:
    # floor(255 * col) as the C++ (int) cast; the clip only guards rounding below 0.
    return np.clip(np.floor(255.0 * col), 0, 255).astype(np.uint8)


def flow_to_rgb(flow: Any, *, max_norm: float | None = None, valid: Any = None) -> np.ndarray:
    """Colour-code flow with the Middlebury colour wheel (Baker et al.).

    Normalisation (Middlebury C++ ``motim2rgb``): flow is divided by ``max_norm``; when it
    is None, by the largest flow magnitude over the known pixels of *each image* (or 1 when
    that is 0, so zero flow is white). A fixed ``max_norm`` makes colours comparable across
    frames of a video or across methods, and makes every pixel's colour independent of the
    others. Magnitudes above ``max_norm`` are drawn at 0.75 brightness ("out of range").
    Unlike RAFT's ``flow_to_image`` no 1e-5 is added to the maximum, so the fastest pixel is
    fully saturated.

    Unknown pixels (NaN, inf, a component with ``|.| > 1e9``, or ``valid`` False) are black
    and do not enter the maximum.

    The sign of zero is kept: ``(u, -0.0)`` with ``u > 0`` lands on the last wheel colour
    (255, 0, 43) side, ``(u, +0.0)`` on pure red, as in the C++ and numpy ports. Integer
    flow is converted to float first, so its zeros are ``+0.0``.

    Args:
      flow: ``(H, W, 2)`` or ``(B, H, W, 2)`` float flow in pixels.
      max_norm: fixed normalisation radius in pixels (finite, > 0), or None (per image).
      valid: optional boolean mask ``(H, W)`` / ``(B, H, W)``.

    Returns:
      ``(H, W, 3)`` or ``(B, H, W, 3)`` uint8 RGB.
    """
    flow = _check_flow(flow)
    known = np.all(np.abs(flow) <= _UNKNOWN_FLOW, axis=-1)  # NaN compares False
    if valid is not None:
        known &= _check_mask(valid, flow.shape[:-1])
    flow = np.where(known[..., None], flow, 0.0)
    rad = np.sqrt(np.sum(flow**2, axis=-1))
    if max_norm is not None:
        scale = np.full(flow.shape[:-3] + (1, 1), _check_max(max_norm, "max_norm"))
    else:
        scale = np.max(rad, axis=(-2, -1), keepdims=True, initial=0.0)
        scale = np.where(scale > 0, scale, 1.0)
    # The radius is divided, not recomputed from u/scale and v/scale: the fastest pixel
    # then has radius exactly 1 (recomputing can give 1 + 1 ulp and the 0.75 dimming).
    u = flow[..., 0] / scale
    v = flow[..., 1] / scale
    rgb = _to_uint8(_wheel_colors(u, v, rad / scale))
    rgb[~known] = 0
    return rgb


def colorwheel_legend(size: int = 256) -> np.ndarray:
    """Return the key to :func:`flow_to_rgb`: the colour of every flow inside the unit disc.

    Pixel ``(x, y)`` shows the flow ``((x - c) / c, (y - c) / c)`` with ``c = (size-1)/2``
    (so motion to the right is red, down is yellow-orange, left is cyan, up is blue-violet;
    the centre is white); outside the disc it is black.

    Args:
      size: side length in pixels (>= 2).

    Returns:
      ``(size, size, 3)`` uint8 RGB.
    """
    if int(size) != size or size < 2:
        raise ValueError(f"size must be an integer >= 2, got {size}")
    size = int(size)
    c = (size - 1) / 2.0
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    flow = np.stack([(x - c) / c, (y - c) / c], axis=-1)
    inside = np.sum(flow**2, axis=-1) <= 1.0
    return flow_to_rgb(flow, max_norm=1.0, valid=inside)


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
        known &= _check_mask(valid, disp.shape)
    if not known.any():
        return 0.0, 1.0
    low, high = (float(x) for x in np.percentile(disp[known], percentiles))
    if high - low < 1e-6:
        low, high = max(0.0, low - 0.5), low + 0.5
    return low, high


def colorbar(height: int, low: float, high: float, *, cmap: str = "magma", unit: str = "px",
             width: int = 72) -> np.ndarray:
    """A vertical colour bar with tick labels: the key to :func:`disparity_to_rgb`.

    Args:
      height: panel height in pixels (that of the image it goes beside, >= 32).
      low, high: the values at the bottom and the top of the colour map.
      cmap: the matplotlib colour map.
      unit: appended to the top label.
      width: panel width in pixels.

    Returns:
      ``(height, width, 3)`` uint8 RGB on white.
    """
    import matplotlib

    if int(height) < 32:
        raise ValueError(f"a colour bar needs a height of at least 32 px, got {height}")
    height, dpi = int(height), 64.0
    fig = _agg_figure(width, height, dpi)
    ax = fig.add_axes((0.08, 6 / height, 0.22, 1 - 12 / height))
    ramp = np.linspace(high, low, 256)[:, None]
    ax.imshow(ramp, aspect="auto", cmap=matplotlib.colormaps[cmap], vmin=low, vmax=high,
              extent=(0, 1, low, high))
    ax.set_xticks([])
    ax.yaxis.tick_right()
    ax.tick_params(labelsize=7, length=2, pad=1)
    ticks = ax.get_yticks()
    ax.set_yticks([t for t in ticks if low <= t <= high] or [low, high])
    ax.set_yticklabels([f"{t:g}" for t in ax.get_yticks()])
    ax.set_title(unit, fontsize=7, pad=1, loc="left")
    return _render(fig)


def flow_legend(height: int, max_norm: float, *, size: int | None = None) -> np.ndarray:
    """The colour-wheel key on white with its scale: "max |flow| N px" under the wheel.

    Args:
      height: panel height in pixels (that of the flow image it goes beside, >= 16).
      max_norm: the flow magnitude at the rim of the wheel (the normalisation used).
      size: wheel diameter in pixels; default ``min(height - 16, 256)``, at least 16.

    Returns:
      ``(height, max(size, 96), 3)`` uint8 RGB.
    """
    height = int(height)
    if height < 16:
        raise ValueError(f"a legend needs a height of at least 16 px, got {height}")
    side = size if size is not None else max(16, min(height - 16, 256))
    width = max(side, 96)
    fig = _agg_figure(width, height, 64.0)
    fig.patch.set_facecolor("white")
    wheel = colorwheel_legend(side)
    outside = ~np.any(wheel > 0, axis=-1)
    wheel[outside] = 255
    panel = np.full((height, width, 3), 255, np.uint8)
    top = max(0, (height - side - 14) // 2)
    left = (width - side) // 2
    rows = min(side, height - top)
    panel[top:top + rows, left:left + side] = wheel[:rows]
    fig.figimage(panel, 0, 0, origin="upper")
    fig.text(0.5, 1 - min(height, top + side + 2) / height, f"max |flow| {max_norm:.3g} px",
             ha="center", va="top", fontsize=7)
    return _render(fig)


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
        known &= _check_mask(valid, disp.shape)
    disp = np.where(known, disp, 0.0)
    low = float(min_disp)
    if not np.isfinite(low):
        raise ValueError(f"min_disp must be finite, got {min_disp}")
    if max_disp is not None:
        if not float(max_disp) > low:
            raise ValueError(f"max_disp must be larger than min_disp ({low:g}), got {max_disp}")
        top = np.full(disp.shape[:-2] + (1, 1), _check_max(max_disp, "max_disp"))
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
        _check_flow(est, "est")
        known = np.all(np.abs(gt) <= _UNKNOWN_FLOW, axis=-1)
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
        known &= _check_mask(valid, err.shape)
    err = np.where(np.isfinite(err), err, np.inf)
    rel = np.divide(err, 0.05 * mag, out=np.full(err.shape, np.inf), where=mag > 0)
    rel[err == 0] = 0.0
    e = np.minimum(err / 3.0, rel)
    bounds = np.array([b for b, _ in ERROR_COLORS[1:]])
    colors = np.array([c for _, c in ERROR_COLORS], np.uint8)
    rgb = colors[np.searchsorted(bounds, e, side="right")]
    rgb[~known] = 0
    return rgb


def _image_uint8(image: Any) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3) or grey (H, W), got {image.shape}")
    if image.dtype == np.uint8:
        return image
    if np.issubdtype(image.dtype, np.floating):
        if not np.all(np.isfinite(image)) or image.min() < 0 or image.max() > 1:
            raise ValueError("a float image must hold finite values in [0, 1]")
        return np.round(image * 255.0).astype(np.uint8)
    raise ValueError(f"expected a uint8 or float [0, 1] image, got dtype {image.dtype}")


def _agg_figure(width_px: int, height_px: int, dpi: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _render(fig: Any) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


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
    base = _image_uint8(image)
    flow = _check_flow(flow)
    if flow.ndim != 3 or flow.shape[:2] != base.shape[:2]:
        raise ValueError(f"flow must have shape {base.shape[:2] + (2,)} to match the image, got {flow.shape}")
    if int(step) != step or step < 1:
        raise ValueError(f"step must be an integer >= 1, got {step}")
    width = _check_max(width, "width")
    h, w = base.shape[:2]
    known = np.all(np.abs(flow) <= _UNKNOWN_FLOW, axis=-1)
    if valid is not None:
        known &= _check_mask(valid, (h, w))
    ys, xs = np.mgrid[step // 2 : h : step, step // 2 : w : step]
    keep = known[ys, xs]
    xs, ys = xs[keep], ys[keep]
    u, v = flow[ys, xs, 0], flow[ys, xs, 1]
    if scale is None:
        scale = arrow_scale(np.hypot(u, v), step)
    scale = _check_max(scale, "scale")

    # dpi 64 (a power of two) makes W/dpi*dpi exact, so the canvas is exactly W x H pixels.
    dpi = 64.0
    fig = _agg_figure(w, h, dpi)
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
    flow = _check_flow(flow)
    if flow.ndim != 3:
        raise ValueError(f"expected flow of shape (H, W, 2), got {flow.shape}")
    h, w = flow.shape[:2]
    panels = _image_panel(image, h, w, "image", "flow")
    if gt is not None:
        gt = _check_flow(gt, "gt")
        if gt.shape != flow.shape:
            raise ValueError(f"gt must have the flow's shape {flow.shape}, got {gt.shape}")
        known = np.all(np.abs(gt) <= _UNKNOWN_FLOW, axis=-1)
        if valid is not None:
            known &= _check_mask(valid, (h, w))
    if max_norm is None:
        ref = gt if gt is not None and known.any() else flow
        ref_known = known if ref is gt else np.all(np.abs(flow) <= _UNKNOWN_FLOW, axis=-1)
        rad = np.sqrt(np.sum(np.where(ref_known[..., None], ref, 0.0) ** 2, axis=-1))
        max_norm = float(rad.max()) if rad.max() > 0 else 1.0
    else:
        max_norm = _check_max(max_norm, "max_norm")
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
    img = _image_uint8(image)
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
    fig = _agg_figure(round(fig_w * dpi) + 0.25, round(fig_h * dpi) + 0.25, dpi)
    for i, (title, rgb) in enumerate(panels):
        ax = fig.add_axes((i / len(panels), 0.0, 1.0 / len(panels), 1.0 - title_in / fig_h))
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    out = _render(fig)
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
        known = np.isfinite(gt) & (gt > 0) if valid is None else np.isfinite(gt) & _check_mask(valid, (h, w))
    if max_disp is None:
        ref = np.where(known, gt, 0.0) if gt is not None and known.any() else np.where(
            np.isfinite(disparity), disparity, 0.0)
        top = float(ref.max())
        max_disp = top if top > 0 else 1.0
    else:
        max_disp = _check_max(max_disp, "max_disp")
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


def tile(images: Sequence[Any], *, columns: int | None = None, padding: int = 0) -> np.ndarray:
    """Arrange equally sized uint8 images in a grid (row-major), black between and after.

    Args:
      images: sequence of ``(H, W, 3)`` uint8 images, or one ``(B, H, W, 3)`` array.
      columns: images per row; None = all in one row.
      padding: black pixels between neighbouring images.

    Returns:
      ``(rows*H + (rows-1)*padding, columns*W + (columns-1)*padding, 3)`` uint8.
    """
    images = [np.asarray(im) for im in images]
    if not images:
        raise ValueError("tile needs at least one image")
    shape = images[0].shape
    for im in images:
        if im.shape != shape or im.ndim != 3 or im.shape[-1] != 3 or im.dtype != np.uint8:
            raise ValueError(f"tile needs uint8 (H, W, 3) images of one shape, got {im.shape} {im.dtype}"
                             f" next to {shape}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    columns = len(images) if columns is None else int(columns)
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    rows = -(-len(images) // columns)
    h, w = shape[:2]
    out = np.zeros((rows * h + (rows - 1) * padding, columns * w + (columns - 1) * padding, 3), np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, columns)
        out[r * (h + padding) : r * (h + padding) + h, c * (w + padding) : c * (w + padding) + w] = im
    return out


def save_png(path: str | os.PathLike, rgb: Any) -> None:
    """Write a uint8 image as PNG atomically (temporary file in the same folder + rename).

    A reader never sees a half-written file, and an interrupted write leaves any previous
    file intact.

    Args:
      path: destination file; its folder must exist.
      rgb: ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA or ``(H, W)`` grey uint8.
    """
    import png

    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:
        raise ValueError(f"save_png needs a uint8 image, got dtype {rgb.dtype} (for {path})")
    if rgb.ndim == 2:
        planes = 1
    elif rgb.ndim == 3 and rgb.shape[-1] in (3, 4):
        planes = rgb.shape[-1]
    else:
        raise ValueError(f"save_png needs (H, W), (H, W, 3) or (H, W, 4), got {rgb.shape} (for {path})")
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"save_png needs a non-empty image, got {rgb.shape} (for {path})")
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder of {path} does not exist")
    writer = png.Writer(width=rgb.shape[1], height=rgb.shape[0], greyscale=planes == 1,
                        alpha=planes == 4, bitdepth=8)
    with atomic_open(path) as f:
        writer.write(f, (row.tobytes() for row in np.ascontiguousarray(rgb).reshape(rgb.shape[0], -1)))
