"""Middlebury ``.flo`` optical flow (flowIO.h)."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from flowlib._files import atomic_write
from flowlib.io._common import (
    PathLike,
    check_image_shape,
    check_real_array,
    check_valid,
    error,
    read_bytes,
    to_float32,
)

# Middlebury flowIO.h: the float32 202021.25 whose little-endian bytes spell "PIEH".
_FLO_MAGIC = b"PIEH"
# flowIO.h "official threshold": a component with |value| > 1e9 is unknown flow; its writers
# store 1e10 there. (The Middlebury GT files use 1.6666668e9.)
_FLO_UNKNOWN_THRESHOLD = 1e9
_FLO_UNKNOWN_VALUE = 1e10




def read_flo(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a Middlebury ``.flo`` optical-flow file.

    Layout (little-endian): float32 magic 202021.25 (bytes ``PIEH``), int32 width, int32
    height, then height x width x 2 float32, row-major, (u, v) interleaved per pixel.

    Args:
      path: the ``.flo`` file.

    Returns:
      ``(flow, valid)``: flow float32 ``(H, W, 2)`` in pixels and a bool ``(H, W)`` mask. A
      pixel is invalid ("unknown flow") when a component is NaN or |value| > 1e9 (Middlebury's
      threshold; its GT uses 1.6666668e9); its flow is set to 0.

    Raises:
      ValueError: wrong magic, non-positive size, or a file length other than
        ``12 + 8 * W * H``; the message names the file.
    """
    data = read_bytes(path)
    if len(data) < 12:
        raise error(path, f"truncated .flo file: {len(data)} bytes, the header alone is 12")
    if data[:4] != _FLO_MAGIC:
        raise error(
            path,
            f"not a Middlebury .flo file: expected magic 202021.25 (bytes b'PIEH'), found "
            f"{data[:4]!r}",
        )
    width, height = struct.unpack("<ii", data[4:12])
    if width <= 0 or height <= 0:
        raise error(path, f"invalid .flo header: width {width}, height {height} (must be > 0)")
    expected = 12 + 8 * width * height
    if len(data) != expected:
        raise error(
            path,
            f".flo size mismatch: header says {width}x{height}, i.e. {expected} bytes, but the "
            f"file has {len(data)} bytes ({'truncated' if len(data) < expected else 'extra data'})",
        )
    flow = np.frombuffer(data, dtype="<f4", offset=12).reshape(height, width, 2).astype(np.float32)
    valid = ~(np.isnan(flow) | (np.abs(flow) > _FLO_UNKNOWN_THRESHOLD)).any(axis=-1)
    flow[~valid] = 0.0
    return flow, valid


def _encode_flo(path: PathLike, flow: Any, valid: Any) -> bytes:
    flow = check_real_array(path, "flow", flow)
    if flow.ndim != 3 or flow.shape[-1] != 2:
        raise error(path, f"flow must have shape (H, W, 2), got {flow.shape}")
    check_image_shape(path, "flow", flow, "(H, W, 2)")
    height, width = flow.shape[:2]
    valid = check_valid(path, valid, (height, width))
    out = to_float32(path, "flow", flow, valid[..., None])
    with np.errstate(invalid="ignore"):
        too_big = (np.abs(out) > _FLO_UNKNOWN_THRESHOLD) & valid[..., None]
    if too_big.any():
        index = tuple(int(i) for i in np.argwhere(too_big)[0])
        raise error(
            path,
            f"flow component {out[index]} at index {index} exceeds 1e9 and would read back as "
            "unknown flow; mark it with valid=False",
        )
    out = np.where(valid[..., None], out, np.float32(_FLO_UNKNOWN_VALUE))
    return _FLO_MAGIC + struct.pack("<ii", width, height) + out.astype("<f4").tobytes()


def write_flo(path: PathLike, flow: Any, *, valid: Any = None) -> None:
    """Write a Middlebury ``.flo`` file atomically.

    Args:
      path: destination file (its folder must exist).
      flow: ``(H, W, 2)`` real array (stored as float32); must be finite with |value| <= 1e9
        on valid pixels. Valid float32 values read back bit-exactly.
      valid: optional bool ``(H, W)``; invalid pixels are written as 1e10 (the Middlebury
        writers' unknown-flow marker). ``None`` = all valid.

    Returns:
      None.

    Raises:
      ValueError: wrong shape or dtype, or non-finite / too large values on valid pixels.
    """
    atomic_write(path, _encode_flo(path, flow, valid))
