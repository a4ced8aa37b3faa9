"""flowlib.io -- Reading and writing flow / disparity by extension.

Independent references: files are built with ``struct`` and pypng's own ``png.Writer``
(:mod:`tests._io_helpers`), and files flowlib writes are decoded with ``png.Reader`` /
``np.frombuffer``, so no test checks flowlib against itself only.
"""

from __future__ import annotations

import numpy as np
import pytest

from flowlib import io


@pytest.mark.parametrize("ext", [".flo", ".png", ".pfm", ".FLO", ".Png"])
def test_flow_dispatch_round_trip(tmp_path, ext):
    flow = (np.arange(24).reshape(3, 4, 2) / 64 - 0.1875).astype(np.float32)
    valid = np.ones((3, 4), bool)
    valid[1, 2] = False
    io.write_flow(tmp_path / f"f{ext}", flow, valid=valid)
    back, back_valid = io.read_flow(tmp_path / f"f{ext}")
    np.testing.assert_array_equal(back_valid, valid)
    np.testing.assert_array_equal(back, np.where(valid[..., None], flow, 0))


def test_flow_pfm_is_three_channel_with_inf_for_invalid(tmp_path):
    flow = np.ones((2, 2, 2), np.float32)
    valid = np.array([[True, False], [True, True]])
    io.write_flow(tmp_path / "f.pfm", flow, valid=valid)
    stored = io.read_pfm(tmp_path / "f.pfm")
    assert stored.shape == (2, 2, 3) and not stored[..., 2].any()
    assert np.isinf(stored[0, 1, :2]).all()
    # FlyingThings-style file with a NaN: invalid at that pixel only
    stored[1, 1, 0] = np.nan
    io.write_pfm(tmp_path / "g.pfm", stored)
    assert io.read_flow(tmp_path / "g.pfm")[1].tolist() == [[True, False], [True, False]]
    io.write_pfm(tmp_path / "one.pfm", np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="3-channel"):
        io.read_flow(tmp_path / "one.pfm")


@pytest.mark.parametrize("ext", [".pfm", ".png"])
def test_disparity_dispatch_round_trip(tmp_path, ext):
    disp = (np.arange(12).reshape(3, 4) / 256 + 3).astype(np.float32)
    valid = np.ones((3, 4), bool)
    valid[0, 1] = False
    io.write_disparity(tmp_path / f"d{ext}", disp, valid=valid)
    back, back_valid = io.read_disparity(tmp_path / f"d{ext}")
    np.testing.assert_array_equal(back_valid, valid)
    np.testing.assert_array_equal(back, np.where(valid, disp, 0))


def test_disparity_pfm_inf_is_invalid_and_three_channels_rejected(tmp_path):
    io.write_pfm(tmp_path / "d.pfm", np.array([[1.5, np.inf], [-np.inf, np.nan]], np.float32))
    disp, valid = io.read_disparity(tmp_path / "d.pfm")
    assert valid.tolist() == [[True, False], [False, False]] and disp.tolist() == [[1.5, 0], [0, 0]]
    io.write_pfm(tmp_path / "c.pfm", np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError, match="1-channel"):
        io.read_disparity(tmp_path / "c.pfm")


def test_unknown_extensions_list_the_supported_ones(tmp_path):
    f = tmp_path / "x.xyz"
    for call, supported in [
        (lambda: io.read_flow(f), ".flo, .pfm, .png"),
        (lambda: io.write_flow(f, np.zeros((2, 2, 2))), ".flo, .pfm, .png"),
        (lambda: io.read_disparity(f), ".pfm, .png"),
        (lambda: io.write_disparity(f, np.zeros((2, 2))), ".pfm, .png"),
    ]:
        with pytest.raises(ValueError, match=f"'.xyz'; supported: {supported}") as err:
            call()
        assert str(f) in str(err.value)
    assert not list(tmp_path.iterdir())


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        io.read_flow(tmp_path / "missing.flo")
