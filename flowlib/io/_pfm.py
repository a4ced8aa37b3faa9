"""PFM (Portable Float Map): FlyingThings3D flow/disparity, Middlebury 2014 disparity."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from flowlib._files import atomic_write
from flowlib.io._common import (
    PathLike,
    check_image_shape,
    check_real_array,
    error,
    read_bytes,
    to_float32,
)

# "PF"/"Pf", width, height, scale separated by whitespace, then exactly one whitespace byte
# (the spec's 0x0a) before the raster. Writers differ in extra spaces ("Pf \n960 540 \n").
_PFM_HEADER = re.compile(rb"(P[Ff])\s+(\d{1,10})\s+(\d{1,10})\s+(\S{1,40})\s")


def read_pfm(path: PathLike) -> np.ndarray:
    """Read a PFM file (FlyingThings3D / Middlebury 2014 / ETH3D ground truth).

    Header: ``PF`` (3 channels) or ``Pf`` (1 channel), ``width height``, scale; a negative
    scale means little-endian float32 data, a positive one big-endian (its magnitude is not
    applied, as in every reference reader). Rows are stored bottom-to-top.

    Args:
      path: the ``.pfm`` file.

    Returns:
      float32 ``(H, W)`` for ``Pf`` or ``(H, W, 3)`` for ``PF``, top row first. Non-finite
      values are returned as stored.

    Raises:
      ValueError: bad header, zero or non-finite scale, or a data length other than
        ``W * H * channels * 4``; the message names the file.
    """
    data = read_bytes(path)
    match = _PFM_HEADER.match(data, 0, 128)
    if match is None:
        found = data[:20]
        raise error(
            path,
            "not a PFM file: expected a header 'PF' or 'Pf', width, height and scale separated "
            f"by whitespace and ending in one newline; file starts with {found!r}",
        )
    kind, width, height, scale_token = match.groups()
    width, height = int(width), int(height)
    try:
        scale = float(scale_token)
    except ValueError:
        raise error(path, f"invalid PFM scale {scale_token!r} (expected a number)") from None
    if not np.isfinite(scale) or scale == 0.0:
        raise error(path, f"invalid PFM scale {scale} (must be finite and non-zero; its sign "
                           "gives the byte order)")
    if width <= 0 or height <= 0:
        raise error(path, f"invalid PFM size {width}x{height} (must be > 0)")
    channels = 3 if kind == b"PF" else 1
    expected = width * height * channels * 4
    have = len(data) - match.end()
    if have != expected:
        raise error(
            path,
            f"PFM size mismatch: header says {width}x{height}x{channels} float32, i.e. {expected} "
            f"data bytes after the {match.end()}-byte header, but the file has {have} "
            f"({'truncated' if have < expected else 'extra data'})",
        )
    dtype = "<f4" if scale < 0 else ">f4"
    shape = (height, width, channels) if channels == 3 else (height, width)
    array = np.frombuffer(data, dtype=dtype, offset=match.end()).reshape(shape)
    return np.ascontiguousarray(array[::-1], dtype=np.float32)


def _encode_pfm(path: PathLike, array: Any, little_endian: bool) -> bytes:
    array = check_real_array(path, "array", array)
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 3)):
        raise error(path, f"PFM data must have shape (H, W) or (H, W, 3), got {array.shape}")
    check_image_shape(path, "array", array, "(H, W) or (H, W, 3)")
    # Non-finite values are legal in PFM (Middlebury marks unknown disparity with +inf); only a
    # finite value that float32 cannot hold is an error.
    out = to_float32(path, "array", array, np.isfinite(array), scope="", hint="")
    height, width = array.shape[:2]
    kind = "PF" if array.ndim == 3 else "Pf"
    header = f"{kind}\n{width} {height}\n{-1 if little_endian else 1}\n"
    raster = out[::-1].astype("<f4" if little_endian else ">f4")
    return header.encode("ascii") + raster.tobytes()


def write_pfm(path: PathLike, array: Any, *, little_endian: bool = True) -> None:
    """Write a PFM file atomically (rows bottom-to-top, as the format requires).

    Args:
      path: destination file (its folder must exist).
      array: ``(H, W)`` (written as ``Pf``) or ``(H, W, 3)`` (``PF``) real array, stored as
        float32; inf and NaN are stored as they are. Reads back bit-exactly.
      little_endian: byte order; written as scale -1 (little) or 1 (big).

    Returns:
      None.

    Raises:
      ValueError: wrong shape or dtype, or finite values outside the float32 range.
    """
    atomic_write(path, _encode_pfm(path, array, little_endian))
