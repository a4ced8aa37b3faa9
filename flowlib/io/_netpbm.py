"""Binary netpbm: PGM (P5) and PPM (P6), 8 or 16 bit."""

from __future__ import annotations

import numpy as np

from flowlib.io._common import PathLike, error


def parse_netpbm(path: PathLike, data: bytes) -> tuple[np.ndarray, int]:
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
            raise error(path, f"corrupted {'PGM' if channels == 1 else 'PPM'} header: expected "
                               f"width, height and maxval, found {data[:32]!r}")
        fields.append(int(token))
    width, height, maxval = fields
    if data[pos] == ord("#"):
        raise error(path, "corrupted netpbm header: a comment directly after maxval")
    pos += 1  # the single whitespace byte that ends the header
    if width <= 0 or height <= 0 or not 0 < maxval < 65536:
        raise error(path, f"invalid netpbm header: {width}x{height}, maxval {maxval}")
    itemsize = 1 if maxval < 256 else 2
    expected = width * height * channels * itemsize
    if len(data) - pos != expected:
        raise error(
            path,
            f"netpbm size mismatch: header says {width}x{height}x{channels} with maxval {maxval}, "
            f"i.e. {expected} data bytes, but the file has {len(data) - pos}",
        )
    samples = np.frombuffer(data, dtype=">u2" if itemsize == 2 else np.uint8, offset=pos)
    if samples.max() > maxval:
        raise error(path, f"corrupted netpbm data: sample {int(samples.max())} > maxval {maxval}")
    dtype = np.uint16 if itemsize == 2 else np.uint8
    return samples.reshape(height, width, channels).astype(dtype), maxval
