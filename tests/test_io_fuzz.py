"""Random and mutated bytes fed to every flowlib.io reader: only ValueError may escape.

Seeds are small valid files of every format; mutations flip bits, overwrite bytes and
header-sized integers, truncate, insert and delete. PNG CRCs are optionally recomputed after
mutating, so that corrupt IHDR/IDAT contents reach the decoders (pypng, Pillow) instead of
stopping at the CRC check.
"""

from __future__ import annotations

import random
import struct
import zlib
from io import BytesIO
from pathlib import Path

import numpy as np
import png
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from flowlib import io
from tests.conftest import FUZZ_CAMPAIGN, fuzz_examples


def _fix_png_crcs(data: bytes) -> bytes:
    """Recompute every chunk CRC that the (possibly mutated) chunk lengths still allow."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data
    out, pos = bytearray(data), 8
    while pos + 12 <= len(out):
        (length,) = struct.unpack(">I", out[pos:pos + 4])
        end = pos + 12 + length
        if end > len(out):
            break
        out[end - 4:end] = struct.pack(">I", zlib.crc32(bytes(out[pos + 4:end - 4])))
        pos = end
    return bytes(out)


def _png(array, **kwargs) -> bytes:
    array = np.asarray(array)
    h, w = array.shape[:2]
    buffer = BytesIO()
    png.Writer(w, h, **kwargs).write(buffer, array.reshape(h, -1).tolist())
    return buffer.getvalue()


def _pillow(array, fmt) -> bytes:
    buffer = BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def _seeds(folder: Path) -> list[bytes]:
    rng = np.random.default_rng(0)
    flow = (rng.integers(-300, 300, (4, 3, 2)) / 64).astype(np.float32)
    rgb = rng.integers(0, 256, (4, 3, 3), dtype=np.uint8)
    io.write_flo(folder / "a.flo", flow, valid=rng.random((4, 3)) < 0.8)
    io.write_pfm(folder / "a.pfm", flow[..., 0])
    io.write_pfm(folder / "b.pfm", np.concatenate([flow, flow[..., :1]], -1), little_endian=False)
    io.write_kitti_flow(folder / "a.png", flow)
    io.write_kitti_disparity(folder / "d.png", np.abs(flow[..., 0]))
    io.write_image(folder / "i.png", rgb)
    io.write_image(folder / "i.ppm", rgb)
    io.write_image(folder / "g.pgm", rgb[..., 0].astype(np.uint16) * 200)
    files = [(folder / n).read_bytes() for n in ("a.flo", "a.pfm", "b.pfm", "a.png", "d.png",
                                                  "i.png", "i.ppm", "g.pgm")]
    return files + [
        _png(rng.integers(0, 2, (5, 9)), greyscale=True, bitdepth=1),
        _png(rng.integers(0, 4, (4, 3)), bitdepth=2, palette=[(0, 0, 0, 0), (1, 2, 3, 4),
                                                              (9, 9, 9, 9), (255, 0, 0, 255)]),
        _png(rng.integers(0, 65536, (4, 3, 4)), greyscale=False, alpha=True, bitdepth=16),
        _png(rng.integers(0, 256, (9, 7, 2)), greyscale=True, alpha=True, bitdepth=8,
             interlace=True),
        _pillow(rgb, "JPEG"),
        _pillow(rgb, "BMP"),
        b"P3\n1 1\n255\n1 2 3\n",
    ]


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> list[bytes]:
    return _seeds(tmp_path_factory.mktemp("seeds"))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


_INTERESTING_INT32 = [0, 1, -1, 2, 255, 256, 65535, 65536, 2**31 - 1, -(2**31), 10**6]


@st.composite
def _mutated(draw, seeds: list[bytes], preferred: slice) -> bytes:
    # Mostly mutate files of the reader's own format, so that the mutants get past the magic
    # check. (Hypothesis favours the first element of sampled_from.)
    source = draw(st.sampled_from(["own", "own", "own", "any", "random"]))
    if source == "random":
        return draw(st.binary(max_size=300))
    data = bytearray(draw(st.sampled_from(seeds[preferred] if source == "own" else seeds)))
    uniform = random.Random(draw(st.integers(0, 2**32 - 1)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "int32", "truncate", "insert", "delete"]))
        # Positions come from a seeded uniform generator: hypothesis' own integers favour
        # small values, which would mostly hit the magic bytes.
        pos = uniform.randrange(max(len(data), 1))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "int32":
            value = draw(st.sampled_from(_INTERESTING_INT32))
            data[pos:pos + 4] = struct.pack(draw(st.sampled_from(["<i", ">i"])), value)
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
    if draw(st.booleans()):
        data = bytearray(_fix_png_crcs(bytes(data)))
    return bytes(data)


# seed slices per format (see _seeds): .flo, .pfm, KITTI PNGs, all images
_FLO, _PFM, _KITTI, _IMAGES = slice(0, 1), slice(1, 3), slice(3, 5), slice(3, None)
_READERS = [
    ("read_flo", ".flo", io.read_flo, _FLO),
    ("read_pfm", ".pfm", io.read_pfm, _PFM),
    ("read_kitti_flow", ".png", io.read_kitti_flow, _KITTI),
    ("read_kitti_disparity", ".png", io.read_kitti_disparity, _KITTI),
    ("read_image", ".png", io.read_image, _IMAGES),
    ("read_image_uint8", ".jpg", lambda p: io.read_image(p, dtype="uint8"), _IMAGES),
    ("read_image_raw", ".png", io.read_image_raw, _IMAGES),
    ("read_grey", ".png", io.read_grey, _IMAGES),
    ("read_flow_flo", ".flo", io.read_flow, _FLO),
    ("read_flow_pfm", ".pfm", io.read_flow, _PFM),
    ("read_flow_png", ".png", io.read_flow, _KITTI),
    ("read_disparity_pfm", ".pfm", io.read_disparity, _PFM),
    ("read_disparity_png", ".png", io.read_disparity, _KITTI),
]


@pytest.mark.parametrize("name, ext, reader, preferred", _READERS, ids=[r[0] for r in _READERS])
def test_readers_raise_only_value_error(seeds, work, name, ext, reader, preferred):
    path = work / f"{name}{ext}"

    @settings(max_examples=fuzz_examples(200), deadline=None, derandomize=not FUZZ_CAMPAIGN, database=None)
    @given(data=_mutated(seeds, preferred))
    def check(data):
        path.write_bytes(data)
        try:
            reader(path)
        except ValueError as e:
            assert str(path) in str(e)

    check()


def test_seeds_are_valid(seeds, work):
    # The mutations start from files the readers accept (else the fuzzing only tests headers).
    readers = [io.read_flo, io.read_pfm, io.read_pfm] + [io.read_image_raw] * (len(seeds) - 3)
    for i, (data, reader) in enumerate(zip(seeds, readers)):
        path = work / f"seed{i}"
        path.write_bytes(data)
        reader(path)
