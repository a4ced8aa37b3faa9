"""File formats for optical flow, disparity and images (numpy only, no jax).

Formats (SPECS §6.3-6.6):

* Middlebury ``.flo``: :func:`read_flo`, :func:`write_flo`.
* PFM (FlyingThings3D, Middlebury 2014): :func:`read_pfm`, :func:`write_pfm`.
* KITTI 16-bit flow PNG: :func:`read_kitti_flow`, :func:`write_kitti_flow`.
* KITTI 16-bit disparity PNG: :func:`read_kitti_disparity`, :func:`write_kitti_disparity`.
* Images (PNG of any bit depth and colour type, binary PPM/PGM, JPEG, BMP, ...):
  :func:`read_image`, :func:`read_image_raw`, :func:`read_grey`, :func:`write_image`.
* By extension: :func:`read_flow`, :func:`write_flow`, :func:`read_disparity`,
  :func:`write_disparity`.

Convention:
  Flow ``(H, W, 2)`` float32, channel 0 = u (+x right), 1 = v (+y down), in pixels; every flow
  or disparity reader returns ``(values, valid)`` with ``valid`` a bool ``(H, W)`` mask and the
  values set to 0 where ``valid`` is False. Images are RGB ``(H, W, 3)``.

Readers check magic numbers, header fields and the exact file length before they allocate
anything, and raise ``ValueError`` naming the file and the problem for truncated, corrupted or
wrong-format files (a missing file is still ``FileNotFoundError``). PNG chunks are CRC-checked.

Writers validate their arrays first, then write atomically: the bytes go to a temporary file
in the destination folder, which is fsync'ed and renamed over the destination, so a reader
never sees a half-written file and a failed write leaves any previous file untouched.

Pillow and imageio decode 16-bit RGB PNGs (KITTI flow ground truth) as 8-bit without any
error, so 16-bit, low-bit-depth and palette PNGs are decoded with pypng (pure Python,
lossless); plain 8-bit PNGs go through Pillow, which is ~15x faster and exact for them.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from io import BytesIO
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from flowlib._files import atomic_write

__all__ = [
    "read_flo",
    "write_flo",
    "read_pfm",
    "write_pfm",
    "read_kitti_flow",
    "write_kitti_flow",
    "read_kitti_disparity",
    "write_kitti_disparity",
    "read_image",
    "read_image_raw",
    "read_grey",
    "write_image",
    "read_flow",
    "write_flow",
    "read_disparity",
    "write_disparity",
]


def __dir__() -> list[str]:
    return list(__all__)  # the API only, not np, os, struct, zlib or the private helpers


PathLike = str | os.PathLike

# Middlebury flowIO.h: the float32 202021.25 whose little-endian bytes spell "PIEH".
_FLO_MAGIC = b"PIEH"
# flowIO.h "official threshold": a component with |value| > 1e9 is unknown flow; its writers
# store 1e10 there. (The Middlebury GT files use 1.6666668e9.)
_FLO_UNKNOWN_THRESHOLD = 1e9
_FLO_UNKNOWN_VALUE = 1e10

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# colour type -> (name, samples per pixel, allowed bit depths), PNG spec table 11.1.
_PNG_COLOR_TYPES = {
    0: ("grey", 1, (1, 2, 4, 8, 16)),
    2: ("RGB", 3, (8, 16)),
    3: ("palette", 1, (1, 2, 4, 8)),
    4: ("grey+alpha", 2, (8, 16)),
    6: ("RGBA", 4, (8, 16)),
}
# Deflate cannot expand its input by more than ~1032:1 (a 258-byte match costs >= 2 bits), so
# an IHDR whose pixels could not fit in the compressed data is corrupt: checking this bounds
# every allocation by the file size (no decompression bombs).
_DEFLATE_MAX_RATIO = 1032
# KITTI: u = (R - 2**15) / 64 (1/64 px steps), disparity d = value / 256 (devkit io_flow.h,
# io_disp.h).
_KITTI_FLOW_SCALE = 64.0
_KITTI_FLOW_OFFSET = 32768.0
_KITTI_DISP_SCALE = 256.0

# Pillow is used for everything that is neither PNG nor binary PPM/PGM; the list keeps
# guessy plugins (TGA, SPIDER, ...) from claiming arbitrary bytes.
# TIFF is left out: Pillow has no 16-bit RGB mode, so it could not read such TIFFs losslessly.
_PILLOW_FORMATS = ("JPEG", "BMP", "PPM", "GIF", "WEBP")
_IMAGE_WRITE_EXTENSIONS = (".png", ".ppm", ".pgm", ".jpg", ".jpeg", ".bmp")


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def _error(path: PathLike, message: str) -> ValueError:
    return ValueError(f"{os.fspath(path)}: {message}")


def _describe(e: Exception) -> str:
    text = str(e)  # pypng's messages already start with the class name
    return text if text.startswith(type(e).__name__) else f"{type(e).__name__}: {text}"


def _read_bytes(path: PathLike) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _extension(path: PathLike) -> str:
    return Path(path).suffix.lower()


def _check_real_array(path: PathLike, name: str, array: Any) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.kind not in "fiu":
        raise _error(path, f"{name} must be a real float or integer array, got dtype {array.dtype}")
    return array


def _check_image_shape(path: PathLike, name: str, array: np.ndarray, shape: str) -> None:
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise _error(path, f"{name} must be non-empty {shape}, got shape {array.shape}")


def _check_valid(path: PathLike, valid: Any, hw: tuple[int, int]) -> np.ndarray:
    if valid is None:
        return np.ones(hw, bool)
    valid = np.asarray(valid)
    if valid.dtype != np.bool_:
        raise _error(path, f"valid must be a bool (H, W) mask, got dtype {valid.dtype}")
    if valid.shape != hw:
        raise _error(path, f"valid must have shape (H, W) = {hw}, got {valid.shape}")
    return valid


def _to_float32(path: PathLike, name: str, values: np.ndarray, where: np.ndarray, *,
                scope: str = " on valid pixels",
                hint: str = "; mark such pixels with valid=False") -> np.ndarray:
    """Cast to float32; values at ``where`` must be finite before and after the cast."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = values.astype(np.float32)
    bad = ~np.isfinite(out) & where
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        overflow = np.isfinite(values[index])
        why = f"{values[index]} exceeds the float32 range" if overflow else f"{values[index]}"
        raise _error(
            path,
            f"{name} must be finite in float32{scope}: {int(bad.sum())} value(s) are not, first "
            f"at index {index} ({why}){hint}",
        )
    return out


# --------------------------------------------------------------------------------------------
# Middlebury .flo
# --------------------------------------------------------------------------------------------


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
    data = _read_bytes(path)
    if len(data) < 12:
        raise _error(path, f"truncated .flo file: {len(data)} bytes, the header alone is 12")
    if data[:4] != _FLO_MAGIC:
        raise _error(
            path,
            f"not a Middlebury .flo file: expected magic 202021.25 (bytes b'PIEH'), found "
            f"{data[:4]!r}",
        )
    width, height = struct.unpack("<ii", data[4:12])
    if width <= 0 or height <= 0:
        raise _error(path, f"invalid .flo header: width {width}, height {height} (must be > 0)")
    expected = 12 + 8 * width * height
    if len(data) != expected:
        raise _error(
            path,
            f".flo size mismatch: header says {width}x{height}, i.e. {expected} bytes, but the "
            f"file has {len(data)} bytes ({'truncated' if len(data) < expected else 'extra data'})",
        )
    flow = np.frombuffer(data, dtype="<f4", offset=12).reshape(height, width, 2).astype(np.float32)
    valid = ~(np.isnan(flow) | (np.abs(flow) > _FLO_UNKNOWN_THRESHOLD)).any(axis=-1)
    flow[~valid] = 0.0
    return flow, valid


def _encode_flo(path: PathLike, flow: Any, valid: Any) -> bytes:
    flow = _check_real_array(path, "flow", flow)
    if flow.ndim != 3 or flow.shape[-1] != 2:
        raise _error(path, f"flow must have shape (H, W, 2), got {flow.shape}")
    _check_image_shape(path, "flow", flow, "(H, W, 2)")
    height, width = flow.shape[:2]
    valid = _check_valid(path, valid, (height, width))
    out = _to_float32(path, "flow", flow, valid[..., None])
    with np.errstate(invalid="ignore"):
        too_big = (np.abs(out) > _FLO_UNKNOWN_THRESHOLD) & valid[..., None]
    if too_big.any():
        index = tuple(int(i) for i in np.argwhere(too_big)[0])
        raise _error(
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


# --------------------------------------------------------------------------------------------
# PFM
# --------------------------------------------------------------------------------------------

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
    data = _read_bytes(path)
    match = _PFM_HEADER.match(data, 0, 128)
    if match is None:
        found = data[:20]
        raise _error(
            path,
            "not a PFM file: expected a header 'PF' or 'Pf', width, height and scale separated "
            f"by whitespace and ending in one newline; file starts with {found!r}",
        )
    kind, width, height, scale_token = match.groups()
    width, height = int(width), int(height)
    try:
        scale = float(scale_token)
    except ValueError:
        raise _error(path, f"invalid PFM scale {scale_token!r} (expected a number)") from None
    if not np.isfinite(scale) or scale == 0.0:
        raise _error(path, f"invalid PFM scale {scale} (must be finite and non-zero; its sign "
                           "gives the byte order)")
    if width <= 0 or height <= 0:
        raise _error(path, f"invalid PFM size {width}x{height} (must be > 0)")
    channels = 3 if kind == b"PF" else 1
    expected = width * height * channels * 4
    have = len(data) - match.end()
    if have != expected:
        raise _error(
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
    array = _check_real_array(path, "array", array)
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 3)):
        raise _error(path, f"PFM data must have shape (H, W) or (H, W, 3), got {array.shape}")
    _check_image_shape(path, "array", array, "(H, W) or (H, W, 3)")
    # Non-finite values are legal in PFM (Middlebury marks unknown disparity with +inf); only a
    # finite value that float32 cannot hold is an error.
    out = _to_float32(path, "array", array, np.isfinite(array), scope="", hint="")
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


# --------------------------------------------------------------------------------------------
# PNG: chunk check, decoding (pypng / Pillow), encoding
# --------------------------------------------------------------------------------------------


class _PngHeader(NamedTuple):
    width: int
    height: int
    bitdepth: int
    color_type: int

    @property
    def kind(self) -> str:
        return _PNG_COLOR_TYPES[self.color_type][0]

    @property
    def planes(self) -> int:
        return _PNG_COLOR_TYPES[self.color_type][1]

    def describe(self) -> str:
        return f"{self.bitdepth}-bit {self.kind}"


def _check_png(path: PathLike, data: bytes) -> _PngHeader:
    """Walk the chunks: signature, lengths, CRCs, IHDR fields, IEND; return the header."""
    if not data.startswith(_PNG_SIGNATURE):
        raise _error(path, f"not a PNG file: expected signature {_PNG_SIGNATURE!r}, found "
                           f"{data[:8]!r}")
    pos, header, has_palette, idat_bytes = len(_PNG_SIGNATURE), None, False, 0
    while True:
        if pos + 12 > len(data):
            raise _error(path, f"truncated PNG: no IEND chunk before the end of the file "
                               f"({len(data)} bytes)")
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > len(data):
            raise _error(path, f"truncated PNG: chunk {ctype!r} at byte {pos} claims {length} "
                               f"bytes, the file has {len(data)} bytes")
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[end - 4:end])
        if zlib.crc32(ctype + body) != crc:
            raise _error(path, f"corrupted PNG: CRC mismatch in chunk {ctype!r} at byte {pos}")
        if header is None:
            if ctype != b"IHDR" or length != 13:
                raise _error(path, f"corrupted PNG: first chunk must be a 13-byte IHDR, found "
                                   f"{ctype!r} of {length} bytes")
            width, height, bitdepth, color_type, compression, filt, interlace = struct.unpack(
                ">IIBBBBB", body)
            if not (0 < width < 2**31 and 0 < height < 2**31):
                raise _error(path, f"corrupted PNG: size {width}x{height}")
            allowed = _PNG_COLOR_TYPES.get(color_type, (None, None, ()))[2]
            if bitdepth not in allowed:
                raise _error(path, f"corrupted PNG: bit depth {bitdepth} with colour type "
                                   f"{color_type} is not allowed")
            if compression != 0 or filt != 0 or interlace not in (0, 1):
                raise _error(path, f"corrupted PNG: compression {compression}, filter {filt}, "
                                   f"interlace {interlace}")
            header = _PngHeader(width, height, bitdepth, color_type)
        elif ctype == b"PLTE":
            has_palette = True
        elif ctype == b"IDAT":
            idat_bytes += length
        elif ctype == b"IEND":
            break
        pos = end
    if header.color_type == 3 and not has_palette:
        raise _error(path, "corrupted PNG: palette image without a PLTE chunk")
    pixel_bytes = header.width * header.height * header.planes * header.bitdepth // 8
    if pixel_bytes > _DEFLATE_MAX_RATIO * idat_bytes + 1024:
        raise _error(
            path,
            f"corrupted PNG: {header.width}x{header.height} {header.describe()} pixels "
            f"({pixel_bytes} bytes) cannot be stored in {idat_bytes} bytes of compressed data",
        )
    return header


def _decode_png_pypng(path: PathLike, data: bytes, header: _PngHeader) -> np.ndarray:
    """Stored samples ``(H, W, planes)`` (uint8 or uint16; palette indices, unscaled grey)."""
    import png

    try:
        width, height, pixels, info = png.Reader(bytes=data).read_flat()
    # pypng raises png.FormatError/ChunkError, zlib.error and, on some corrupt streams,
    # IndexError/ValueError from its row unpacking; all mean the same thing here.
    except Exception as e:
        raise _error(path, f"cannot decode PNG ({_describe(e)})") from e
    dtype = np.uint16 if header.bitdepth == 16 else np.uint8
    samples = np.frombuffer(pixels, dtype=dtype)
    if (width, height) != (header.width, header.height) or samples.size != (
            header.width * header.height * header.planes):
        raise _error(path, f"cannot decode PNG: got {samples.size} samples for a "
                           f"{header.width}x{header.height} {header.describe()} image")
    samples = samples.reshape(header.height, header.width, header.planes).copy()
    if header.color_type == 3:
        palette = np.array([tuple(entry) + (255,) * (4 - len(entry)) for entry in info["palette"]],
                           dtype=np.uint8)
        if samples.max() >= len(palette):
            raise _error(path, f"corrupted PNG: palette index {int(samples.max())} but the palette "
                               f"has {len(palette)} entries")
        has_alpha = any(len(entry) == 4 for entry in info["palette"])
        samples = palette[:, : 4 if has_alpha else 3][samples[..., 0]]
    elif header.bitdepth < 8:
        # 1/2/4-bit grey expanded to 8 bits, as libpng, Pillow and OpenCV do (x * 255/(2^b-1)).
        samples = samples * np.uint8(255 // (2**header.bitdepth - 1))
    return samples


def _decode_png_pillow(path: PathLike, data: bytes, header: _PngHeader) -> np.ndarray | None:
    """Decode a plain 8-bit PNG with Pillow; None if Pillow's mode is not the expected one."""
    from PIL import Image

    expected_mode = {0: "L", 2: "RGB", 4: "LA", 6: "RGBA"}[header.color_type]
    try:
        with Image.open(BytesIO(data), formats=["PNG"]) as im:
            im.load()
            if im.mode != expected_mode:
                return None
            array = np.array(im)
    except Exception as e:  # Pillow: OSError, SyntaxError, ValueError, zlib.error, ...
        raise _error(path, f"cannot decode PNG ({_describe(e)})") from e
    return array.reshape(header.height, header.width, header.planes)


def _decode_png(path: PathLike, data: bytes) -> tuple[np.ndarray, int]:
    header = _check_png(path, data)
    samples = None
    if header.bitdepth == 8 and header.color_type != 3:
        samples = _decode_png_pillow(path, data, header)
    if samples is None:
        samples = _decode_png_pypng(path, data, header)
    return samples, 65535 if header.bitdepth == 16 else 255


def _encode_png(samples: np.ndarray) -> bytes:
    """PNG bytes of ``(H, W, C)`` uint8/uint16 samples (C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA).

    Every row uses the "Up" filter (byte-wise difference to the row above), which compresses
    photographs and flow maps well and is a single numpy subtraction.
    """
    height, width, planes = samples.shape
    bitdepth = 16 if samples.dtype == np.uint16 else 8
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[planes]
    raw = samples.astype(">u2" if bitdepth == 16 else np.uint8).reshape(height, -1).view(np.uint8)
    filtered = np.empty((height, raw.shape[1] + 1), np.uint8)
    filtered[:, 0] = 2  # filter type Up
    filtered[0, 1:] = raw[0]
    np.subtract(raw[1:], raw[:-1], out=filtered[1:, 1:])  # uint8 arithmetic wraps mod 256

    def chunk(ctype: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(ctype + body))
        return struct.pack(">I", len(body)) + ctype + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, bitdepth, color_type, 0, 0, 0)
    idat = zlib.compress(filtered.tobytes(), 6)
    return _PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _read_png_exact(path: PathLike, color_type: int, what: str) -> np.ndarray:
    """Decode a 16-bit PNG of the given colour type losslessly (pypng), else ValueError."""
    data = _read_bytes(path)
    header = _check_png(path, data)
    if header.bitdepth != 16 or header.color_type != color_type:
        expected = _PngHeader(1, 1, 16, color_type).describe()
        raise _error(path, f"{what} must be a {expected} PNG, found {header.describe()}")
    return _decode_png_pypng(path, data, header)


# --------------------------------------------------------------------------------------------
# KITTI flow and disparity PNGs
# --------------------------------------------------------------------------------------------


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
    raw = _read_png_exact(path, 2, "KITTI flow")
    valid = raw[..., 2] > 0
    flow = (raw[..., :2].astype(np.float32) - np.float32(_KITTI_FLOW_OFFSET)) / np.float32(
        _KITTI_FLOW_SCALE)
    flow[~valid] = 0.0
    return flow, valid


def _encode_kitti_flow(path: PathLike, flow: Any, valid: Any) -> bytes:
    flow = _check_real_array(path, "flow", flow)
    if flow.ndim != 3 or flow.shape[-1] != 2:
        raise _error(path, f"flow must have shape (H, W, 2), got {flow.shape}")
    _check_image_shape(path, "flow", flow, "(H, W, 2)")
    valid = _check_valid(path, valid, flow.shape[:2])
    flow32 = np.where(valid[..., None], _to_float32(path, "flow", flow, valid[..., None]), 0)
    # Devkit writeFlowField, in float32 like its 64.0f/32768.0f literals:
    # (uint16_t)max(min(u*64 + 32768, 65535), 0).
    with np.errstate(over="ignore"):
        encoded = flow32 * np.float32(_KITTI_FLOW_SCALE) + np.float32(_KITTI_FLOW_OFFSET)
    encoded = np.clip(encoded, np.float32(0), np.float32(65535)).astype(np.uint16)
    rgb = np.zeros((*flow.shape[:2], 3), np.uint16)  # devkit: invalid pixels are (0, 0, 0)
    rgb[..., :2] = np.where(valid[..., None], encoded, 0)
    rgb[..., 2] = valid
    return _encode_png(rgb)


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
    raw = _read_png_exact(path, 0, "KITTI disparity")[..., 0]
    return raw.astype(np.float32) / np.float32(_KITTI_DISP_SCALE), raw > 0


def _encode_kitti_disparity(path: PathLike, disparity: Any, valid: Any) -> bytes:
    disparity = _check_real_array(path, "disparity", disparity)
    if disparity.ndim != 2:
        raise _error(path, f"disparity must have shape (H, W), got {disparity.shape}")
    _check_image_shape(path, "disparity", disparity, "(H, W)")
    valid = _check_valid(path, valid, disparity.shape)
    disp32 = np.where(valid, _to_float32(path, "disparity", disparity, valid), 0)
    # Devkit writeDisparityMap: isValid is d >= 0, then (uint16_t)max(d * 256.0, 1.0) in double
    # (so valid d = 0 is stored as 1). The devkit has no upper clamp (the cast overflows);
    # here d >= 256 saturates at 65535.
    written = valid & (disp32 >= 0)
    value = np.clip(disp32.astype(np.float64) * _KITTI_DISP_SCALE, 1.0, 65535.0).astype(np.uint16)
    return _encode_png(np.where(written, value, 0).astype(np.uint16)[..., None])


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


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def _parse_netpbm(path: PathLike, data: bytes) -> tuple[np.ndarray, int]:
    """Binary PGM (P5) / PPM (P6): header tokens with '#' comments, one whitespace, raster."""
    channels = 1 if data[:2] == b"P5" else 3
    fields, pos = [], 2
    while len(fields) < 3:
        start = pos
        while pos < len(data) and pos - start < 4096:
            if data[pos] in b" \t\r\n\v\f":
                pos += 1
            elif data[pos] == ord("#"):
                newline = data.find(b"\n", pos, pos + 4096)
                pos = len(data) if newline < 0 else newline + 1
            else:
                break
        token_start = pos
        while pos < len(data) and pos - token_start <= 10 and data[pos] in b"0123456789":
            pos += 1
        token = data[token_start:pos]
        if not token or pos >= len(data) or data[pos] not in b" \t\r\n\v\f#":
            raise _error(path, f"corrupted {'PGM' if channels == 1 else 'PPM'} header: expected "
                               f"width, height and maxval, found {data[:32]!r}")
        fields.append(int(token))
    width, height, maxval = fields
    if data[pos] == ord("#"):
        raise _error(path, "corrupted netpbm header: a comment directly after maxval")
    pos += 1  # the single whitespace byte that ends the header
    if width <= 0 or height <= 0 or not 0 < maxval < 65536:
        raise _error(path, f"invalid netpbm header: {width}x{height}, maxval {maxval}")
    itemsize = 1 if maxval < 256 else 2
    expected = width * height * channels * itemsize
    if len(data) - pos != expected:
        raise _error(
            path,
            f"netpbm size mismatch: header says {width}x{height}x{channels} with maxval {maxval}, "
            f"i.e. {expected} data bytes, but the file has {len(data) - pos}",
        )
    samples = np.frombuffer(data, dtype=">u2" if itemsize == 2 else np.uint8, offset=pos)
    if samples.max() > maxval:
        raise _error(path, f"corrupted netpbm data: sample {int(samples.max())} > maxval {maxval}")
    dtype = np.uint16 if itemsize == 2 else np.uint8
    return samples.reshape(height, width, channels).astype(dtype), maxval


def _decode_pillow(path: PathLike, data: bytes) -> tuple[np.ndarray, int]:
    from PIL import Image

    try:
        with Image.open(BytesIO(data), formats=list(_PILLOW_FORMATS)) as im:
            im.load()
            mode = im.mode
            if mode in ("1", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                has_alpha = mode == "PA" or (mode == "P" and "transparency" in im.info)
                im = im.convert("RGBA" if has_alpha else ("L" if mode == "1" else "RGB"))
                mode = im.mode
            array = np.array(im)
    except Exception as e:  # Pillow: UnidentifiedImageError, OSError, SyntaxError, ...
        raise _error(path, f"cannot decode image (not PNG, PPM/PGM, JPEG, BMP, GIF or WebP; "
                           f"{_describe(e)})") from e
    if mode in ("L", "LA", "RGB", "RGBA"):
        return array.reshape(*array.shape[:2], -1), 255
    if mode.startswith("I;16"):
        return array.astype(np.uint16)[..., None], 65535
    raise _error(path, f"unsupported pixel mode {mode!r} (expected 8/16-bit grey or colour)")


def _load_samples(path: PathLike) -> tuple[np.ndarray, int]:
    """Stored samples ``(H, W, C)`` (C: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) and their maxval."""
    data = _read_bytes(path)
    if data.startswith(_PNG_SIGNATURE):
        return _decode_png(path, data)
    if data[:2] in (b"P5", b"P6"):
        return _parse_netpbm(path, data)
    return _decode_pillow(path, data)


def read_image_raw(path: PathLike) -> np.ndarray:
    """Read the stored samples of an image without converting them.

    PNGs are decoded losslessly at any bit depth. A palette image returns its palette colours
    (so Middlebury tsukuba's 4-bit palette ground truth gives grey levels 0, 80 ... 224, not
    indices 0 ... 7); 1/2/4-bit grey is expanded to 8 bits (x * 255 / (2^b - 1)) as every
    PNG decoder does.

    Args:
      path: PNG, binary PPM/PGM, JPEG, BMP, ... file.

    Returns:
      uint8 (8-bit and lower) or uint16 array, ``(H, W)`` for grey, else ``(H, W, C)`` with C
      = 2 (grey + alpha), 3 (RGB) or 4 (RGBA). Netpbm files keep their own maxval.

    Raises:
      ValueError: unreadable, truncated or corrupted file (the message names it).
    """
    samples, _ = _load_samples(path)
    return samples[..., 0] if samples.shape[-1] == 1 else samples


def read_grey(path: PathLike) -> np.ndarray:
    """Read a single-channel image (mask, Middlebury disparity PNG) without rescaling.

    Alpha is dropped. Colour images are accepted only if their R, G and B are equal (masks
    saved as RGB, grey palettes), and then give that common value.

    Args:
      path: image file.

    Returns:
      ``(H, W)`` uint8 or uint16 grey levels, as :func:`read_image_raw` (palette -> level).

    Raises:
      ValueError: corrupted file, or a colour image whose channels differ.
    """
    samples, _ = _load_samples(path)
    if samples.shape[-1] in (1, 2):
        return samples[..., 0].copy()
    rgb = samples[..., :3]
    if not ((rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])).all():
        raise _error(path, "expected a grey image, found colour (R, G and B differ)")
    return rgb[..., 0].copy()


def read_image(path: PathLike, *, dtype: Any = "float32") -> np.ndarray:
    """Read an image as RGB.

    Accepts PNG (1-16 bit; grey, grey+alpha, RGB, RGBA, palette), binary PPM/PGM (FlyingChairs
    ``.ppm``), JPEG, BMP, GIF, WebP. Grey is replicated to three channels, alpha dropped.

    Args:
      path: image file (format detected from its content, not its extension).
      dtype: ``"float32"`` -> values x / maxval in [0, 1] (maxval 255, or 65535 for 16-bit);
        ``"uint8"`` -> 8-bit data unchanged, deeper data rounded to round(x * 255 / maxval)
        (16-bit: round(x / 257)).

    Returns:
      ``(H, W, 3)`` float32 or uint8.

    Raises:
      ValueError: unknown dtype, or unreadable, truncated or corrupted file.
    """
    try:
        out_dtype = np.dtype(dtype)
    except TypeError:
        out_dtype = None
    if out_dtype not in (np.dtype(np.float32), np.dtype(np.uint8)):
        raise ValueError(f"read_image dtype must be 'float32' or 'uint8', got {dtype!r}")
    samples, maxval = _load_samples(path)
    planes = samples.shape[-1]
    rgb = samples[..., :3] if planes >= 3 else np.repeat(samples[..., :1], 3, axis=-1)
    if out_dtype == np.uint8:
        if maxval == 255:
            return np.ascontiguousarray(rgb, dtype=np.uint8)
        # round half up of x * 255 / maxval, in exact integer arithmetic
        return ((rgb.astype(np.uint32) * 510 + maxval) // (2 * maxval)).astype(np.uint8)
    return rgb.astype(np.float32) / np.float32(maxval)


def _image_to_samples(path: PathLike, image: Any) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 2, 3, 4):
        raise _error(path, f"image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got "
                           f"{image.shape}")
    _check_image_shape(path, "image", image, "(H, W[, C])")
    if image.dtype in (np.uint8, np.uint16):
        return image
    if image.dtype.kind != "f":
        raise _error(path, f"image must be uint8, uint16 or float in [0, 1], got dtype "
                           f"{image.dtype}")
    with np.errstate(invalid="ignore"):
        outside = ~((image >= 0) & (image <= 1))
    if outside.any():
        index = tuple(int(i) for i in np.argwhere(outside)[0])
        raise _error(path, f"float image values must lie in [0, 1], found {image[index]} at "
                           f"index {index}")
    return np.rint(image.astype(np.float64) * 255.0).astype(np.uint8)


def write_image(path: PathLike, image: Any) -> None:
    """Write an image atomically; the format follows the extension.

    ``.png`` (8 or 16 bit; grey, grey+alpha, RGB, RGBA), ``.ppm`` (RGB) / ``.pgm`` (grey)
    binary netpbm (8 or 16 bit), ``.jpg``/``.jpeg`` (8-bit grey/RGB, quality 95), ``.bmp``
    (8-bit grey/RGB/RGBA).

    Args:
      path: destination file (its folder must exist).
      image: ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``: uint8, uint16, or
        float in [0, 1] (stored as uint8 round(x * 255)).

    Returns:
      None.

    Raises:
      ValueError: unknown extension, shape, dtype or value range, or a combination the
        format cannot store.
    """
    ext = _extension(path)
    if ext not in _IMAGE_WRITE_EXTENSIONS:
        raise _error(path, f"unknown image extension {ext!r}; supported: "
                           f"{', '.join(_IMAGE_WRITE_EXTENSIONS)}")
    samples = _image_to_samples(path, image)
    planes = samples.shape[-1]
    if ext == ".png":
        payload = _encode_png(samples)
    elif ext in (".ppm", ".pgm"):
        want = 3 if ext == ".ppm" else 1
        if planes != want:
            raise _error(path, f"{ext} stores {'RGB (H, W, 3)' if want == 3 else 'grey (H, W)'} "
                               f"images, got {planes} channel(s)")
        maxval = 65535 if samples.dtype == np.uint16 else 255
        header = f"{'P6' if want == 3 else 'P5'}\n{samples.shape[1]} {samples.shape[0]}\n{maxval}\n"
        payload = header.encode("ascii") + samples.astype(
            ">u2" if maxval == 65535 else np.uint8).tobytes()
    else:
        from PIL import Image

        fmt = "JPEG" if ext in (".jpg", ".jpeg") else "BMP"
        if samples.dtype != np.uint8 or planes == 2 or (fmt == "JPEG" and planes == 4):
            raise _error(path, f"{fmt} stores 8-bit grey or RGB{'A' if fmt == 'BMP' else ''} "
                               f"images, got {planes} channel(s) of {samples.dtype}")
        buffer = BytesIO()
        options = {"quality": 95} if fmt == "JPEG" else {}
        Image.fromarray(samples[..., 0] if planes == 1 else samples).save(buffer, format=fmt,
                                                                          **options)
        payload = buffer.getvalue()
    atomic_write(path, payload)


# --------------------------------------------------------------------------------------------
# Dispatch by extension
# --------------------------------------------------------------------------------------------


def _unknown_extension(path: PathLike, what: str, supported: tuple[str, ...]) -> ValueError:
    return _error(path, f"unknown {what} file extension {_extension(path)!r}; supported: "
                        f"{', '.join(supported)}")


def read_flow(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read optical flow by extension: ``.flo`` (Middlebury), ``.pfm``, ``.png`` (KITTI).

    A ``.pfm`` must be 3-channel (FlyingThings3D stores (u, v, 0)); its first two channels are
    the flow, valid wherever both are finite.

    Args:
      path: flow file.

    Returns:
      ``(flow, valid)``: float32 ``(H, W, 2)`` (0 at invalid pixels) and bool ``(H, W)``.

    Raises:
      ValueError: unknown extension or unreadable file.
    """
    ext = _extension(path)
    if ext == ".flo":
        return read_flo(path)
    if ext == ".png":
        return read_kitti_flow(path)
    if ext == ".pfm":
        array = read_pfm(path)
        if array.ndim != 3:
            raise _error(path, "a flow PFM must be 3-channel ('PF': u, v, 0), found 1-channel 'Pf'")
        flow = np.ascontiguousarray(array[..., :2])
        valid = np.isfinite(flow).all(axis=-1)
        flow[~valid] = 0.0
        return flow, valid
    raise _unknown_extension(path, "flow", (".flo", ".pfm", ".png"))


def write_flow(path: PathLike, flow: Any, *, valid: Any = None) -> None:
    """Write optical flow by extension: ``.flo``, ``.png`` (KITTI), ``.pfm``.

    ``.pfm`` stores (u, v, 0) as 3-channel float32 with invalid pixels as +inf (they read back
    invalid through :func:`read_flow`).

    Args:
      path: destination file (its folder must exist).
      flow: ``(H, W, 2)`` real array, finite on valid pixels.
      valid: optional bool ``(H, W)``; ``None`` = all valid.

    Returns:
      None.

    Raises:
      ValueError: unknown extension, or invalid array (see the per-format writers).
    """
    ext = _extension(path)
    if ext == ".flo":
        write_flo(path, flow, valid=valid)
    elif ext == ".png":
        write_kitti_flow(path, flow, valid=valid)
    elif ext == ".pfm":
        flow = _check_real_array(path, "flow", flow)
        if flow.ndim != 3 or flow.shape[-1] != 2:
            raise _error(path, f"flow must have shape (H, W, 2), got {flow.shape}")
        _check_image_shape(path, "flow", flow, "(H, W, 2)")
        valid = _check_valid(path, valid, flow.shape[:2])
        flow32 = _to_float32(path, "flow", flow, valid[..., None])
        out = np.zeros((*flow.shape[:2], 3), np.float32)
        out[..., :2] = np.where(valid[..., None], flow32, np.float32(np.inf))
        write_pfm(path, out)
    else:
        raise _unknown_extension(path, "flow", (".flo", ".pfm", ".png"))


def read_disparity(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a disparity map by extension: ``.png`` (KITTI 16-bit) or ``.pfm``.

    A ``.pfm`` must be 1-channel; non-finite values (Middlebury's +inf) are invalid. Other
    values, negative ones included, are returned as stored (FlyingThings3D's are positive).
    Middlebury 2001 8-bit PNGs are not KITTI PNGs: read them with :func:`read_grey` and
    divide by their scale.

    Args:
      path: disparity file.

    Returns:
      ``(disparity, valid)``: float32 ``(H, W)`` (0 at invalid pixels) and bool ``(H, W)``.

    Raises:
      ValueError: unknown extension or unreadable file.
    """
    ext = _extension(path)
    if ext == ".png":
        return read_kitti_disparity(path)
    if ext == ".pfm":
        disparity = read_pfm(path)
        if disparity.ndim != 2:
            raise _error(path, "a disparity PFM must be 1-channel ('Pf'), found 3-channel 'PF'")
        valid = np.isfinite(disparity)
        disparity[~valid] = 0.0
        return disparity, valid
    raise _unknown_extension(path, "disparity", (".pfm", ".png"))


def write_disparity(path: PathLike, disparity: Any, *, valid: Any = None) -> None:
    """Write a disparity map by extension: ``.png`` (KITTI, see :func:`write_kitti_disparity`)
    or ``.pfm`` (1-channel float32, invalid pixels stored as +inf like Middlebury's GT).

    Args:
      path: destination file (its folder must exist).
      disparity: ``(H, W)`` real array, finite on valid pixels.
      valid: optional bool ``(H, W)``; ``None`` = all valid.

    Returns:
      None.

    Raises:
      ValueError: unknown extension, or invalid array.
    """
    ext = _extension(path)
    if ext == ".png":
        write_kitti_disparity(path, disparity, valid=valid)
    elif ext == ".pfm":
        disparity = _check_real_array(path, "disparity", disparity)
        if disparity.ndim != 2:
            raise _error(path, f"disparity must have shape (H, W), got {disparity.shape}")
        _check_image_shape(path, "disparity", disparity, "(H, W)")
        valid = _check_valid(path, valid, disparity.shape)
        disp32 = _to_float32(path, "disparity", disparity, valid)
        write_pfm(path, np.where(valid, disp32, np.float32(np.inf)))
    else:
        raise _unknown_extension(path, "disparity", (".pfm", ".png"))
