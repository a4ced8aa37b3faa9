"""Independent encoders/decoders for the flowlib.io tests (pypng, struct), not flowlib's own."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import png


def png_write(path, array, *, bitdepth, palette=None):
    """Encode with pypng's Writer: (H, W) grey/indices, (H, W, 2|3|4) grey+alpha/RGB/RGBA."""
    array = np.asarray(array)
    h, w = array.shape[:2]
    planes = 1 if array.ndim == 2 else array.shape[2]
    writer = png.Writer(w, h, greyscale=palette is None and planes in (1, 2),
                        alpha=planes in (2, 4), bitdepth=bitdepth, palette=palette)
    with open(path, "wb") as f:
        writer.write(f, array.reshape(h, -1).tolist())
    return Path(path)


def png_read(path):
    """pypng decode to (H, W, planes) plus its info dict."""
    w, h, rows, info = png.Reader(bytes=Path(path).read_bytes()).read()  # filename= leaks the file
    return np.array([list(r) for r in rows]).reshape(h, w, info["planes"]), info


def flo_bytes(w, h, values):
    return struct.pack("<fii", 202021.25, w, h) + struct.pack(f"<{len(values)}f", *values)


def bits(a):
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


def no_temp_files(folder):
    return [p.name for p in Path(folder).iterdir() if p.name.endswith(".tmp")]
