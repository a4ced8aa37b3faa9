"""KITTI 16-bit flow and disparity PNGs (devkit io_flow.h, io_disp.h)."""

from __future__ import annotations

from typing import Any

import numpy as np

from flowlib._files import atomic_write
from flowlib.io._common import (
    PathLike,
    check_image_shape,
    check_real_array,
    check_valid,
    error,
    to_float32,
)
from flowlib.io._png import encode_png, read_png_exact

# KITTI: u = (R - 2**15) / 64 (1/64 px steps), disparity d = value / 256 (devkit io_flow.h,
# io_disp.h).
_KITTI_FLOW_SCALE = 64.0
_KITTI_FLOW_OFFSET = 32768.0
_KITTI_DISP_SCALE = 256.0




def read_kitti_flow(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a KITTI 2012/2015 flow PNG (16-bit RGB), decoded losslessly.

    u = (R - 2^15) / 64, v = (G - 2^15) / 64, valid = B > 0 (KITTI devkit io_flow.h).

    Args:
      path: the PNG file.

    Returns:
      ``(flow, valid)``: float32 ``(H, W, 2)`` (0 at invalid pixels) and bool ``(H, W)``.

    Raises:
      ValueError: not a PNG, corrupted, or not 16-bit RGB (the message says what was found).
    """
    raw = read_png_exact(path, 2, "KITTI flow")
    valid = raw[..., 2] > 0
    flow = (raw[..., :2].astype(np.float32) - np.float32(_KITTI_FLOW_OFFSET)) / np.float32(
        _KITTI_FLOW_SCALE)
    flow[~valid] = 0.0
    return flow, valid


def _encode_kitti_flow(path: PathLike, flow: Any, valid: Any) -> bytes:
    flow = check_real_array(path, "flow", flow)
    if flow.ndim != 3 or flow.shape[-1] != 2:
        raise error(path, f"flow must have shape (H, W, 2), got {flow.shape}")
    check_image_shape(path, "flow", flow, "(H, W, 2)")
    valid = check_valid(path, valid, flow.shape[:2])
    flow32 = np.where(valid[..., None], to_float32(path, "flow", flow, valid[..., None]), 0)
    # Devkit writeFlowField, in float32 like its 64.0f/32768.0f literals:
    # (uint16_t)max(min(u*64 + 32768, 65535), 0).
    with np.errstate(over="ignore"):
        encoded = flow32 * np.float32(_KITTI_FLOW_SCALE) + np.float32(_KITTI_FLOW_OFFSET)
    encoded = np.clip(encoded, np.float32(0), np.float32(65535)).astype(np.uint16)
    rgb = np.zeros((*flow.shape[:2], 3), np.uint16)  # devkit: invalid pixels are (0, 0, 0)
    rgb[..., :2] = np.where(valid[..., None], encoded, 0)
    rgb[..., 2] = valid
    return encode_png(rgb)


def write_kitti_flow(path: PathLike, flow: Any, *, valid: Any = None) -> None:
    """Write a KITTI flow PNG atomically, exactly as the KITTI devkit's ``writeFlowField``.

    Valid pixels get R = (uint16) clamp(u * 64 + 32768, 0, 65535) computed in float32 (so
    flow is representable in 1/64 px steps within [-512, 512)), G likewise for v, B = 1;
    invalid pixels are (0, 0, 0).

    Args:
      path: destination file (its folder must exist).
      flow: ``(H, W, 2)`` real array; finite on valid pixels.
      valid: optional bool ``(H, W)``; ``None`` = all valid.

    Returns:
      None.

    Raises:
      ValueError: wrong shape or dtype, or non-finite values on valid pixels.
    """
    atomic_write(path, _encode_kitti_flow(path, flow, valid))


def read_kitti_disparity(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a KITTI disparity PNG (16-bit grey): d = value / 256, value 0 = invalid.

    Args:
      path: the PNG file.

    Returns:
      ``(disparity, valid)``: float32 ``(H, W)`` (0 where invalid) and bool ``(H, W)``.

    Raises:
      ValueError: not a PNG, corrupted, or not 16-bit grey (the message says what was found).
    """
    raw = read_png_exact(path, 0, "KITTI disparity")[..., 0]
    return raw.astype(np.float32) / np.float32(_KITTI_DISP_SCALE), raw > 0


def _encode_kitti_disparity(path: PathLike, disparity: Any, valid: Any) -> bytes:
    disparity = check_real_array(path, "disparity", disparity)
    if disparity.ndim != 2:
        raise error(path, f"disparity must have shape (H, W), got {disparity.shape}")
    check_image_shape(path, "disparity", disparity, "(H, W)")
    valid = check_valid(path, valid, disparity.shape)
    disp32 = np.where(valid, to_float32(path, "disparity", disparity, valid), 0)
    # Devkit writeDisparityMap: isValid is d >= 0, then (uint16_t)max(d * 256.0, 1.0) in double
    # (so valid d = 0 is stored as 1). The devkit has no upper clamp (the cast overflows);
    # here d >= 256 saturates at 65535.
    written = valid & (disp32 >= 0)
    value = np.clip(disp32.astype(np.float64) * _KITTI_DISP_SCALE, 1.0, 65535.0).astype(np.uint16)
    return encode_png(np.where(written, value, 0).astype(np.uint16)[..., None])


def write_kitti_disparity(path: PathLike, disparity: Any, *, valid: Any = None) -> None:
    """Write a KITTI disparity PNG atomically, as the KITTI devkit's ``writeDisparityMap``.

    Valid pixels store (uint16) max(d * 256, 1) (so d = 0 stays valid); negative disparities
    are written as invalid (0), as the devkit's ``isValid`` (d >= 0) does; d >= 256 saturates
    at 65535.

    Args:
      path: destination file (its folder must exist).
      disparity: ``(H, W)`` real array; finite on valid pixels.
      valid: optional bool ``(H, W)``; ``None`` = all valid.

    Returns:
      None.

    Raises:
      ValueError: wrong shape or dtype, or non-finite values on valid pixels.
    """
    atomic_write(path, _encode_kitti_disparity(path, disparity, valid))
