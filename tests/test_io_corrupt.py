"""flowlib.io -- Corrupted, truncated and wrong-format files; writes that fail leave nothing behind.

Independent references: files are built with ``struct`` and pypng's own ``png.Writer``
(:mod:`tests._io_helpers`), and files flowlib writes are decoded with ``png.Reader`` /
``np.frombuffer``, so no test checks flowlib against itself only.
"""

from __future__ import annotations

import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from flowlib import io
from tests._io_helpers import no_temp_files, png_write


def _samples(folder):
    """One small valid file per reader: name -> (path, reader)."""
    folder = Path(folder)
    rng = np.random.default_rng(6)
    flow = (rng.integers(-500, 500, (6, 5, 2)) / 64).astype(np.float32)
    io.write_flo(folder / "s.flo", flow)
    io.write_pfm(folder / "s.pfm", flow[..., 0])
    io.write_kitti_flow(folder / "s.png", flow)
    io.write_kitti_disparity(folder / "d.png", np.abs(flow[..., 0]))
    io.write_image(folder / "i.png", rng.integers(0, 256, (6, 5, 3), dtype=np.uint8))
    png_write(folder / "p.png", np.arange(30).reshape(6, 5) % 4, bitdepth=2,
               palette=[(0, 0, 0), (9, 9, 9), (200, 1, 2), (3, 4, 5)])
    io.write_image(folder / "i.ppm", rng.integers(0, 256, (6, 5, 3), dtype=np.uint8))
    return {
        "flo": (folder / "s.flo", io.read_flo),
        "pfm": (folder / "s.pfm", io.read_pfm),
        "kitti_flow": (folder / "s.png", io.read_kitti_flow),
        "kitti_disp": (folder / "d.png", io.read_kitti_disparity),
        "png8": (folder / "i.png", io.read_image),
        "palette": (folder / "p.png", io.read_image),
        "ppm": (folder / "i.ppm", io.read_image),
    }


_SAMPLE_NAMES = ["flo", "pfm", "kitti_flow", "kitti_disp", "png8", "palette", "ppm"]


@pytest.mark.parametrize("name", _SAMPLE_NAMES)
def test_truncated_files_raise_value_error_naming_the_file(tmp_path, name):
    path, reader = _samples(tmp_path)[name]
    reader(path)  # the intact file reads
    data = path.read_bytes()
    for cut in sorted({0, 1, 2, 4, 7, 8, 11, 12, 16, 20, 33, len(data) // 2, len(data) - 12,
                       len(data) - 1}):
        bad = tmp_path / f"cut{cut}{path.suffix}"
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError) as err:
            reader(bad)
        assert str(bad) in str(err.value), (cut, str(err.value))


@pytest.mark.parametrize("name", _SAMPLE_NAMES)
def test_flipped_magic_and_appended_bytes(tmp_path, name):
    path, reader = _samples(tmp_path)[name]
    data = path.read_bytes()
    bad = tmp_path / f"bad{path.suffix}"
    bad.write_bytes(bytes([data[0] ^ 0x20]) + data[1:])
    with pytest.raises(ValueError, match="expected|not a|cannot decode") as err:
        reader(bad)
    assert str(bad) in str(err.value)
    if name in ("flo", "pfm", "ppm"):  # exact-length formats
        bad.write_bytes(data + b"\0")
        with pytest.raises(ValueError, match="extra data|size mismatch"):
            reader(bad)


@pytest.mark.parametrize("name", ["kitti_flow", "kitti_disp", "png8", "palette"])
def test_png_bit_flip_is_caught_by_crc(tmp_path, name):
    path, reader = _samples(tmp_path)[name]
    data = bytearray(path.read_bytes())
    for pos in (17, 30, len(data) // 2, len(data) - 20):  # IHDR fields, IDAT, near the end
        flipped = bytearray(data)
        flipped[pos] ^= 0x04
        bad = tmp_path / f"flip{pos}.png"
        bad.write_bytes(bytes(flipped))
        with pytest.raises(ValueError, match="CRC mismatch") as err:
            reader(bad)
        assert str(bad) in str(err.value)


def test_wrong_content_for_the_extension(tmp_path):
    samples = _samples(tmp_path)
    flo_bytes, png_bytes = samples["flo"][0].read_bytes(), samples["kitti_flow"][0].read_bytes()
    (tmp_path / "png.flo").write_bytes(png_bytes)
    (tmp_path / "flo.png").write_bytes(flo_bytes)
    (tmp_path / "flo.pfm").write_bytes(flo_bytes)
    with pytest.raises(ValueError, match=r"expected magic 202021.25 \(bytes b'PIEH'\)"):
        io.read_flow(tmp_path / "png.flo")
    with pytest.raises(ValueError, match="not a PNG file: expected signature"):
        io.read_flow(tmp_path / "flo.png")
    with pytest.raises(ValueError, match="not a PNG file"):
        io.read_disparity(tmp_path / "flo.png")
    with pytest.raises(ValueError, match="not a PFM file"):
        io.read_flow(tmp_path / "flo.pfm")
    with pytest.raises(ValueError, match="cannot decode image") as err:
        io.read_image(tmp_path / "flo.png")
    assert str(tmp_path / "flo.png") in str(err.value)
    # images are recognised by content, not extension
    assert io.read_image(tmp_path / "png.flo").shape == (6, 5, 3)


def test_absurd_header_sizes_are_rejected_before_allocating(tmp_path):
    path = tmp_path / "huge.flo"
    path.write_bytes(b"PIEH" + struct.pack("<ii", 2**30, 2**30) + bytes(16))
    with pytest.raises(ValueError, match=r"1073741824x1073741824.*28 bytes"):
        io.read_flo(path)
    path.write_bytes(b"PIEH" + struct.pack("<ii", -3, 5) + bytes(16))
    with pytest.raises(ValueError, match="must be > 0"):
        io.read_flo(path)
    # A PNG whose IHDR (with a valid CRC) claims 100000 x 100000 pixels over a tiny IDAT.
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 16, 2, 0, 0, 0)
    idat = zlib.compress(bytes(100))

    def chunk(t, b):
        return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b))

    path = tmp_path / "huge.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))
    for reader in (io.read_kitti_flow, io.read_image, io.read_grey):
        with pytest.raises(ValueError, match="cannot be stored in"):
            reader(path)


def test_png_structure_errors(tmp_path):
    def chunk(t, b):
        return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b))

    sig = b"\x89PNG\r\n\x1a\n"
    ok_ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
    idat = chunk(b"IDAT", zlib.compress(b"\x00\x07"))
    cases = {
        "no_iend": (sig + ok_ihdr + idat, "no IEND"),
        "first_not_ihdr": (sig + idat + ok_ihdr + chunk(b"IEND", b""), "first chunk must be"),
        "bad_depth": (sig + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 16, 3, 0, 0, 0)) + idat
                      + chunk(b"IEND", b""), "bit depth 16 with colour type 3"),
        "no_plte": (sig + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 3, 0, 0, 0)) + idat
                    + chunk(b"IEND", b""), "without a PLTE"),
        "bad_zlib": (sig + ok_ihdr + chunk(b"IDAT", b"garbage!") + chunk(b"IEND", b""),
                     "cannot decode PNG"),
    }
    (tmp_path / "ok.png").write_bytes(sig + ok_ihdr + idat + chunk(b"IEND", b""))
    assert io.read_grey(tmp_path / "ok.png").tolist() == [[7]]
    for name, (content, message) in cases.items():
        path = tmp_path / f"{name}.png"
        path.write_bytes(content)
        with pytest.raises(ValueError, match=message) as err:
            io.read_grey(path)
        assert str(path) in str(err.value), name





_WRITERS = [
    ("f.flo", lambda p, bad: io.write_flo(p, np.full((2, 2, 2), np.nan if bad else 1.0))),
    ("f.png", lambda p, bad: io.write_kitti_flow(p, np.full((2, 2, 2), np.nan if bad else 1.0))),
    ("d.png", lambda p, bad: io.write_kitti_disparity(p, np.full((2, 2), np.inf if bad else 1.0))),
    ("a.pfm", lambda p, bad: io.write_pfm(p, np.zeros((2, 2, 2) if bad else (2, 2)))),
    ("i.png", lambda p, bad: io.write_image(p, np.full((2, 2, 3), 2.0 if bad else 0.5))),
    ("i.jpg", lambda p, bad: io.write_image(p, np.zeros((2, 2, 3), "u2" if bad else "u1"))),
    ("f.pfm", lambda p, bad: io.write_flow(p, np.zeros((2, 2, 3) if bad else (2, 2, 2)))),
    ("d.pfm", lambda p, bad: io.write_disparity(p, np.full((2, 2), np.nan if bad else 1.0))),
]


@pytest.mark.parametrize("name, write", _WRITERS, ids=[w[0] for w in _WRITERS])
def test_invalid_array_leaves_previous_file_untouched(tmp_path, name, write):
    path = tmp_path / name
    path.write_bytes(b"previous content")
    with pytest.raises(ValueError) as err:
        write(path, True)
    assert str(path) in str(err.value)
    assert path.read_bytes() == b"previous content"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    write(path, False)
    assert path.read_bytes() != b"previous content" and not no_temp_files(tmp_path)


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failure_mid_write_removes_the_temporary_file(tmp_path, monkeypatch, failing):
    path = tmp_path / "f.flo"
    path.write_bytes(b"previous content")
    seen = []

    def boom(*args):
        seen.append([p.name for p in tmp_path.iterdir()])  # the temp file exists right now
        raise OSError("disk on fire")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(OSError, match="disk on fire"):
        io.write_flo(path, np.zeros((2, 2, 2), np.float32))
    monkeypatch.undo()
    assert len(seen[0]) == 2 and any(n.endswith(".tmp") for n in seen[0])
    assert path.read_bytes() == b"previous content"
    assert [p.name for p in tmp_path.iterdir()] == ["f.flo"]


def test_written_files_get_normal_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    io.write_flo(tmp_path / "new.flo", np.zeros((1, 1, 2)))
    assert stat.S_IMODE(os.stat(tmp_path / "new.flo").st_mode) == 0o666 & ~umask
    os.chmod(tmp_path / "new.flo", 0o640)
    io.write_flo(tmp_path / "new.flo", np.ones((1, 1, 2)))  # overwrite keeps the mode
    assert stat.S_IMODE(os.stat(tmp_path / "new.flo").st_mode) == 0o640
    assert io.read_flo(tmp_path / "new.flo")[0].tolist() == [[[1.0, 1.0]]]


def test_writer_into_missing_folder_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        io.write_flo(tmp_path / "no" / "f.flo", np.zeros((1, 1, 2)))
