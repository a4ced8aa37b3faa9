"""The Middlebury flow colour coding (Baker et al., IJCV 2011) and its key; part of :mod:`flowlib.viz`."""

from __future__ import annotations

from typing import Any

import numpy as np

# Colour-wheel segments (number of hues between the six primaries), Baker et al. / Middlebury
# C++: chosen for perceptual similarity, hence the uneven counts.
_SEGMENTS = (("RY", 15), ("YG", 6), ("GC", 4), ("CB", 11), ("BM", 13), ("MR", 6))

# Middlebury flowIO.h "official threshold": |u| or |v| above it means unknown flow.
UNKNOWN_FLOW = 1e9


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


def check_flow(flow: Any, name: str = "flow") -> np.ndarray:
    flow = np.asarray(flow)
    if flow.ndim not in (3, 4) or flow.shape[-1] != 2:
        raise ValueError(f"expected {name} of shape (H, W, 2) or (B, H, W, 2), got {flow.shape}")
    if not (np.issubdtype(flow.dtype, np.floating) or np.issubdtype(flow.dtype, np.integer)):
        raise ValueError(f"expected a real-valued {name}, got dtype {flow.dtype}")
    return flow.astype(np.float64)


def check_mask(valid: Any, shape: tuple[int, ...], name: str = "valid") -> np.ndarray:
    valid = np.asarray(valid)
    if valid.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {valid.shape}")
    return valid.astype(bool)


def check_max(value: Any, name: str) -> float:
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
    flow = check_flow(flow)
    known = np.all(np.abs(flow) <= UNKNOWN_FLOW, axis=-1)  # NaN compares False
    if valid is not None:
        known &= check_mask(valid, flow.shape[:-1])
    flow = np.where(known[..., None], flow, 0.0)
    rad = np.sqrt(np.sum(flow**2, axis=-1))
    if max_norm is not None:
        scale = np.full(flow.shape[:-3] + (1, 1), check_max(max_norm, "max_norm"))
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
