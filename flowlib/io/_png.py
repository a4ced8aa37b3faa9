"""PNG: chunk walk with CRC and size checks, lossless decoding (pypng, or Pillow for plain
8-bit), and a small encoder.
"""

from __future__ import annotations

import struct
import zlib
from io import BytesIO
from typing import NamedTuple

import numpy as np

from flowlib.io._common import PathLike, describe, error, read_bytes

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
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
    if not data.startswith(PNG_SIGNATURE):
        raise error(path, f"not a PNG file: expected signature {PNG_SIGNATURE!r}, found "
                           f"{data[:8]!r}")
    pos, header, has_palette, idat_bytes = len(PNG_SIGNATURE), None, False, 0
    while True:
        if pos + 12 > len(data):
            raise error(path, f"truncated PNG: no IEND chunk before the end of the file "
                               f"({len(data)} bytes)")
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > len(data):
            raise error(path, f"truncated PNG: chunk {ctype!r} at byte {pos} claims {length} "
                               f"bytes, the file has {len(data)} bytes")
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[end - 4:end])
        if zlib.crc32(ctype + body) != crc:
            raise error(path, f"corrupted PNG: CRC mismatch in chunk {ctype!r} at byte {pos}")
        if header is None:
            if ctype != b"IHDR" or length != 13:
                raise error(path, f"corrupted PNG: first chunk must be a 13-byte IHDR, found "
                                   f"{ctype!r} of {length} bytes")
            width, height, bitdepth, color_type, compression, filt, interlace = struct.unpack(
                ">IIBBBBB", body)
            if not (0 < width < 2**31 and 0 < height < 2**31):
                raise error(path, f"corrupted PNG: size {width}x{height}")
            allowed = _PNG_COLOR_TYPES.get(color_type, (None, None, ()))[2]
            if bitdepth not in allowed:
                raise error(path, f"corrupted PNG: bit depth {bitdepth} with colour type "
                                   f"{color_type} is not allowed")
            if compression != 0 or filt != 0 or interlace not in (0, 1):
                raise error(path, f"corrupted PNG: compression {compression}, filter {filt}, "
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
        raise error(path, "corrupted PNG: palette image without a PLTE chunk")
    pixel_bytes = header.width * header.height * header.planes * header.bitdepth // 8
    if pixel_bytes > _DEFLATE_MAX_RATIO * idat_bytes + 1024:
        raise error(
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
        raise error(path, f"cannot decode PNG ({describe(e)})") from e
    dtype = np.uint16 if header.bitdepth == 16 else np.uint8
    samples = np.frombuffer(pixels, dtype=dtype)
    if (width, height) != (header.width, header.height) or samples.size != (
            header.width * header.height * header.planes):
        raise error(path, f"cannot decode PNG: got {samples.size} samples for a "
                           f"{header.width}x{header.height} {header.describe()} image")
    samples = samples.reshape(header.height, header.width, header.planes).copy()
    if header.color_type == 3:
        palette = np.array([tuple(entry) + (255,) * (4 - len(entry)) for entry in info["palette"]],
                           dtype=np.uint8)
        if samples.max() >= len(palette):
            raise error(path, f"corrupted PNG: palette index {int(samples.max())} but the palette "
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
        raise error(path, f"cannot decode PNG ({describe(e)})") from e
    return array.reshape(header.height, header.width, header.planes)


def png_chunk(data: bytes, ctype: bytes) -> bytes | None:
    """The body of the first ``ctype`` chunk of a PNG already checked by :func:`decode_png`
    (None if there is none)."""
    pos = len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == ctype:
            return data[pos + 8:pos + 8 + length]
        if kind == b"IEND":
            return None
        pos += 12 + length
    return None


def decode_png(path: PathLike, data: bytes) -> tuple[np.ndarray, int]:
    header = _check_png(path, data)
    samples = None
    if header.bitdepth == 8 and header.color_type != 3:
        samples = _decode_png_pillow(path, data, header)
    if samples is None:
        samples = _decode_png_pypng(path, data, header)
    return samples, 65535 if header.bitdepth == 16 else 255


def encode_png(samples: np.ndarray) -> bytes:
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
    return PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def read_png_exact(path: PathLike, color_type: int, what: str) -> np.ndarray:
    """Decode a 16-bit PNG of the given colour type losslessly (pypng), else ValueError."""
    data = read_bytes(path)
    header = _check_png(path, data)
    if header.bitdepth != 16 or header.color_type != color_type:
        expected = _PngHeader(1, 1, 16, color_type).describe()
        raise error(path, f"{what} must be a {expected} PNG, found {header.describe()}")
    return _decode_png_pypng(path, data, header)
