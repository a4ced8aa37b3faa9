"""flowlib.io -- PFM: hand-made headers and rasters, round trips, real FlyingThings3D files.

Independent references: files are built with ``struct`` and pypng's own ``png.Writer``
(:mod:`tests._io_helpers`), and files flowlib writes are decoded with ``png.Reader`` /
``np.frombuffer``, so no test checks flowlib against itself only.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from flowlib import io
from tests._io_helpers import bits


def test_pfm_hand_made_little_endian_rows_bottom_to_top(tmp_path):
    path = tmp_path / "a.pfm"
    path.write_bytes(b"Pf\n2 2\n-1\n" + struct.pack("<4f", 1, 2, 3, 4))
    a = io.read_pfm(path)
    assert a.dtype == np.float32 and a.tolist() == [[3, 4], [1, 2]]  # first stored row = bottom


def test_pfm_hand_made_big_endian_three_channels_and_loose_spacing(tmp_path):
    path = tmp_path / "b.pfm"
    # the FlyingThings3D writer puts spaces before the newlines ("Pf \n960 540 \n-1.0\n")
    path.write_bytes(b"PF \n2 1 \n1.0\n" + struct.pack(">6f", 1, 2, 3, -4, -5.5, 6))
    a = io.read_pfm(path)
    assert a.shape == (1, 2, 3) and a.tolist() == [[[1, 2, 3], [-4, -5.5, 6]]]


@pytest.mark.parametrize("little_endian", [True, False])
@pytest.mark.parametrize("shape", [(3, 5), (4, 2, 3)])
def test_pfm_round_trip_is_bit_exact(tmp_path, shape, little_endian):
    rng = np.random.default_rng(1)
    a = (rng.standard_normal(shape) * 1e3).astype(np.float32)
    a.flat[:6] = [np.inf, -np.inf, np.nan, -0.0, 1e-45, 3.4028235e38]
    path = tmp_path / "r.pfm"
    io.write_pfm(path, a, little_endian=little_endian)
    b = io.read_pfm(path)
    assert b.shape == shape and b.dtype == np.float32
    np.testing.assert_array_equal(bits(b), bits(a))
    kind = b"PF" if len(shape) == 3 else b"Pf"
    header = kind + f"\n{shape[1]} {shape[0]}\n{-1 if little_endian else 1}\n".encode()
    data = path.read_bytes()
    assert data.startswith(header)
    stored = np.frombuffer(data, "<f4" if little_endian else ">f4", offset=len(header))
    np.testing.assert_array_equal(bits(stored.reshape(shape)[::-1]), bits(a))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"PX\n1 1\n-1\n" + bytes(4), "expected a header 'PF' or 'Pf'"),
        (b"Pf\n1 1\n0\n" + bytes(4), "non-zero"),
        (b"Pf\n1 1\nnan\n" + bytes(4), "finite"),
        (b"Pf\n1 1\n-1x\n" + bytes(4), "expected a number"),
        (b"Pf\n0 1\n-1\n", "must be > 0"),
        (b"Pf\n2 2\n-1\n" + bytes(12), "16 data bytes .* has 12 .truncated"),
        (b"Pf\n1 1\n-1\n" + bytes(5), "extra data"),
        (b"PF\n1 1\n-1\n" + bytes(4), "12 data bytes"),
        (b"Pf\n99999 99999\n-1\n" + bytes(4), "39999200004 data bytes"),
        (b"Pf\n1 1\n-1 \n" + bytes(4), "size mismatch"),
    ],
)
def test_pfm_rejects(tmp_path, content, message):
    path = tmp_path / "bad.pfm"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as err:
        io.read_pfm(path)
    assert str(path) in str(err.value)


def test_write_pfm_rejects(tmp_path):
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, 3\)"):
        io.write_pfm(tmp_path / "x.pfm", np.zeros((2, 2, 2), np.float32))
    with pytest.raises(ValueError, match="float32 range"):
        io.write_pfm(tmp_path / "x.pfm", np.full((2, 2), 1e300))
    with pytest.raises(ValueError, match="dtype object"):
        io.write_pfm(tmp_path / "x.pfm", np.array([[None]]))
    assert not list(tmp_path.iterdir())




def test_flyingthings_disparity_pfm(data):
    path = data / "flyingthings3d/disparity/TRAIN/A/0000/left/0006.pfm"
    assert path.read_bytes().startswith(b"Pf \n960 540 \n-1.0\n")  # note the spaces
    disp, valid = io.read_disparity(path)
    assert disp.shape == (540, 960) and disp.dtype == np.float32 and valid.all()
    raw = np.frombuffer(path.read_bytes(), "<f4", offset=18).reshape(540, 960)
    np.testing.assert_array_equal(disp, raw[::-1])
    assert disp.min() == np.float32(1.2060915) and disp.max() == np.float32(152.1189)
    assert disp[0, 0] == np.float32(1.6492904) and disp[-1, -1] == np.float32(43.865097)


def test_tiny_crops_pfm_and_pngs(data):
    w = io.read_pfm(data / "tiny-crops/0000000-occ_weights_01.pfm")
    assert w.shape == (50, 50) and np.unique(w).tolist() == [0.0, 1.0]
    occ = io.read_grey(data / "tiny-crops/0000000-occ_01.png") > 0
    assert occ.shape == (50, 50)
    for name in ("0000000-img_0.png", "0000000-img_1.png"):
        assert io.read_image(data / "tiny-crops" / name).shape == (50, 50, 3)
