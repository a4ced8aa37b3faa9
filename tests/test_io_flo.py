"""flowlib.io -- Middlebury .flo: hand-made bytes, bit-exact round trips, real benchmark files.

Independent references: files are built with ``struct`` and pypng's own ``png.Writer``
(:mod:`tests._io_helpers`), and files flowlib writes are decoded with ``png.Reader`` /
``np.frombuffer``, so no test checks flowlib against itself only.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from flowlib import io
from tests._io_helpers import bits, flo_bytes, no_temp_files


def test_flo_hand_made_bytes(tmp_path):
    # 2 wide x 1 high: pixel (0, 0) = (1.5, -2.25); pixel (0, 1) has u = 1e10: unknown flow
    path = tmp_path / "a.flo"
    path.write_bytes(flo_bytes(2, 1, [1.5, -2.25, 1e10, 0.5]))
    flow, valid = io.read_flo(path)
    assert flow.shape == (1, 2, 2) and flow.dtype == np.float32 and valid.dtype == np.bool_
    assert flow[0, 0].tolist() == [1.5, -2.25] and flow[0, 1].tolist() == [0.0, 0.0]
    assert valid.tolist() == [[True, False]]
    # 1 wide x 2 high: row-major, so the second pixel is the second row
    path.write_bytes(flo_bytes(1, 2, [1.0, 2.0, 3.0, 4.0]))
    flow, valid = io.read_flo(path)
    assert flow.shape == (2, 1, 2) and flow[:, 0].tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert valid.all()
    assert flow.flags.writeable and flow.flags.c_contiguous


def test_flo_unknown_threshold_is_strictly_above_1e9(tmp_path):
    above = float(np.nextafter(np.float32(1e9), np.float32(np.inf)))
    values = [1e9, -1e9, above, 0.0, 0.0, -above, np.nan, 1.0, 1.0, -np.inf, 1.6666668e9, 2.0]
    path = tmp_path / "t.flo"
    path.write_bytes(flo_bytes(6, 1, values))
    flow, valid = io.read_flo(path)
    assert valid.tolist() == [[True, False, False, False, False, False]]
    assert flow[0, 0].tolist() == [1e9, -1e9] and not flow[0, 1:].any()


@pytest.mark.parametrize("with_mask", [False, True])
def test_flo_round_trip_is_bit_exact(tmp_path, with_mask):
    rng = np.random.default_rng(0)
    flow = (rng.standard_normal((7, 5, 2)) * 10 ** rng.uniform(-8, 8, (7, 5, 2))).astype(np.float32)
    special = [0.0, -0.0, 1e9, -1e9, 1e-45, -1e-45, 1.17549435e-38, 0.1, -123.456, 3e-20]
    flow.flat[: len(special)] = special
    valid = rng.random((7, 5)) < 0.7 if with_mask else None
    if with_mask:
        flow[~valid] = np.nan  # anything at invalid pixels: it is replaced by the marker
    path = tmp_path / "r.flo"
    io.write_flo(path, flow, valid=valid)
    back, back_valid = io.read_flo(path)
    expect_valid = np.ones((7, 5), bool) if valid is None else valid
    np.testing.assert_array_equal(back_valid, expect_valid)
    np.testing.assert_array_equal(bits(back[expect_valid]), bits(flow[expect_valid]))
    assert not back[~expect_valid].any()
    stored = np.frombuffer(path.read_bytes(), "<f4", offset=12).reshape(7, 5, 2)
    assert (stored[~expect_valid] == np.float32(1e10)).all()  # the Middlebury writer's marker
    assert path.read_bytes()[:12] == b"PIEH" + struct.pack("<ii", 5, 7)


def test_flo_float64_input_is_rounded_to_float32(tmp_path):
    flow = np.full((1, 1, 2), 0.1, np.float64)
    io.write_flo(tmp_path / "d.flo", flow)
    assert io.read_flo(tmp_path / "d.flo")[0][0, 0, 0] == np.float32(0.1)


@pytest.mark.parametrize(
    "flow, valid, message",
    [
        (np.zeros((3, 4, 3), np.float32), None, r"\(H, W, 2\)"),
        (np.zeros((3, 4), np.float32), None, r"\(H, W, 2\)"),
        (np.zeros((0, 4, 2), np.float32), None, "non-empty"),
        (np.zeros((3, 4, 2), np.complex64), None, "dtype complex64"),
        (np.zeros((3, 4, 2), bool), None, "dtype bool"),
        (np.full((3, 4, 2), np.nan, np.float32), None, "finite"),
        (np.full((3, 4, 2), 2e9, np.float32), None, "exceeds 1e9"),
        (np.full((3, 4, 2), 1e39, np.float64), None, "float32 range"),
        (np.zeros((3, 4, 2), np.float32), np.ones((4, 3), bool), r"shape \(H, W\)"),
        (np.zeros((3, 4, 2), np.float32), np.ones((3, 4), np.uint8), "bool"),
    ],
)
def test_write_flo_rejects(tmp_path, flow, valid, message):
    path = tmp_path / "bad.flo"
    with pytest.raises(ValueError, match=message) as err:
        io.write_flo(path, flow, valid=valid)
    assert str(path) in str(err.value)
    assert not path.exists() and not no_temp_files(tmp_path)


def test_write_flo_accepts_nonfinite_on_invalid_pixels(tmp_path):
    flow = np.array([[[np.inf, np.nan], [1.0, 2.0]]], np.float32)
    io.write_flo(tmp_path / "m.flo", flow, valid=np.array([[False, True]]))
    back, valid = io.read_flo(tmp_path / "m.flo")
    assert valid.tolist() == [[False, True]] and back.tolist() == [[[0, 0], [1, 2]]]






def _independent_flo(path):
    data = Path(path).read_bytes()
    w, h = struct.unpack("<ii", data[4:12])
    return np.frombuffer(data, "<f4", offset=12).reshape(h, w, 2)


@pytest.mark.parametrize(
    "relpath, shape, invalid",
    [
        ("middlebury-flow/other-gt-flow/RubberWhale/flow10.flo", (388, 584), 3622),
        ("middlebury-flow/other-gt-flow/Venus/flow10.flo", (380, 420), 0),
        ("sintel/training/flow/alley_1/frame_0002.flo", (436, 1024), 0),
        ("flyingchairs/data/00001_flow.flo", (384, 512), 0),
        ("tiny-crops/00001_flow.flo", (50, 50), 0),
        ("tiny-crops/0000000-flow_01.flo", (50, 50), 0),
    ],
)
def test_real_flo_files(data, relpath, shape, invalid):
    flow, valid = io.read_flow(data / relpath)
    stored = _independent_flo(data / relpath)
    assert flow.shape == (*shape, 2) and (~valid).sum() == invalid
    np.testing.assert_array_equal(flow[valid], stored[valid])
    if invalid:  # Middlebury's unknown marker is 1.6666668e9, not NaN
        assert np.unique(stored[~valid]).tolist() == [np.float32(1.6666668e9)]
        assert not flow[~valid].any()


def test_sintel_flo_known_values(data):
    flow, _ = io.read_flo(data / "sintel/training/flow/alley_1/frame_0002.flo")
    assert flow[0, 0].tolist() == [np.float32(-1.7834561), np.float32(9.4193406e-04)]
    assert flow[-1, -1].tolist() == [np.float32(-1.6135806), np.float32(0.24000652)]
    assert -10.7 < flow[..., 0].min() < -10.6 and 4.6 < flow.max() < 4.7
