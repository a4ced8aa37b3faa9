"""flowlib.io -- Reading and writing flow / disparity by extension.

Independent references: files are built with ``struct`` and pypng's own ``png.Writer``
(:mod:`tests._io_helpers`), and files flowlib writes are decoded with ``png.Reader`` /
``np.frombuffer``, so no test checks flowlib against itself only.
"""

from __future__ import annotations

import numpy as np
import pytest

from flowlib import io


@pytest.mark.parametrize("ext", [".flo", ".png", ".pfm", ".npy", ".FLO", ".Png"])
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


@pytest.mark.parametrize("ext", [".pfm", ".png", ".npy"])
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
        (lambda: io.read_flow(f), ".flo, .pfm, .png, .npy"),
        (lambda: io.write_flow(f, np.zeros((2, 2, 2))), ".flo, .pfm, .png, .npy"),
        (lambda: io.read_disparity(f), ".pfm, .png, .npy"),
        (lambda: io.write_disparity(f, np.zeros((2, 2))), ".pfm, .png, .npy"),
        (lambda: io.read_map(f), ".flo, .pfm, .png, .npy"),
    ]:
        with pytest.raises(ValueError, match=f"'.xyz'; supported: {supported}") as err:
            call()
        assert str(f) in str(err.value)
    assert not list(tmp_path.iterdir())


def test_npy_is_the_float32_array_with_nan_where_invalid(tmp_path):
    flow = np.array([[[1.5, -2.0], [0.25, 3.0]]], np.float64)  # (1, 2, 2)
    io.write_flow(tmp_path / "f.npy", flow, valid=np.array([[True, False]]))
    stored = np.load(tmp_path / "f.npy")  # numpy's own reader
    assert stored.dtype == np.float32 and stored.shape == (1, 2, 2)
    assert stored[0, 0].tolist() == [1.5, -2.0] and np.isnan(stored[0, 1]).all()
    io.write_disparity(tmp_path / "d.npy", np.full((2, 3), 7, np.uint8))
    assert np.load(tmp_path / "d.npy").tolist() == [[7.0] * 3] * 2
    # A flow with one NaN channel is invalid at that pixel; values there read as 0.
    np.save(tmp_path / "g.npy", np.array([[[np.nan, 1.0], [2.0, 3.0]]], np.float32))
    back, valid = io.read_flow(tmp_path / "g.npy")
    assert valid.tolist() == [[False, True]] and back.tolist() == [[[0, 0], [2, 3]]]


@pytest.mark.parametrize("content, message", [
    (np.zeros((2, 2, 3), np.float32), r"expected an \(H, W\) disparity or \(H, W, 2\) flow"),
    (np.zeros((2, 0), np.float32), "got shape"),
    (np.array([["a", "b"]]), "real float or integer array, found dtype <U1"),
])
def test_npy_of_another_array_is_refused(tmp_path, content, message):
    np.save(tmp_path / "x.npy", content)
    for read in (io.read_flow, io.read_disparity, io.read_map):
        with pytest.raises(ValueError, match=message):
            read(tmp_path / "x.npy")
    (tmp_path / "x.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match="x.npy: not a readable .npy array"):
        io.read_flow(tmp_path / "x.npy")
    np.save(tmp_path / "d.npy", np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"a flow .npy holds an \(H, W, 2\) array, got shape"):
        io.read_flow(tmp_path / "d.npy")


def test_read_map_tells_flow_from_disparity_by_content(tmp_path):
    flow = np.full((3, 4, 2), 1.25, np.float32)
    disp = np.full((3, 4), 2.5, np.float32)
    for ext in (".flo", ".pfm", ".png", ".npy"):
        io.write_flow(tmp_path / f"f{ext}", flow)
        kind, values, valid = io.read_map(tmp_path / f"f{ext}")
        assert kind == "flow" and valid.all()
        np.testing.assert_array_equal(values, flow)
        assert io.read_map(tmp_path / f"f{ext}", kind="flow")[0] == "flow"
    for ext in (".pfm", ".png", ".npy"):
        io.write_disparity(tmp_path / f"d{ext}", disp)
        kind, values, valid = io.read_map(tmp_path / f"d{ext}")
        assert kind == "disparity" and valid.all()
        np.testing.assert_array_equal(values, disp)


@pytest.mark.parametrize("name, kind, holds", [
    ("f.flo", "disparity", "is a .flo file, which holds flow only"),
    ("f.npy", "disparity", r"holds flow \(shape \(3, 4, 2\)\)"),
    ("f.pfm", "disparity", "holds flow"),
    ("f.png", "disparity", "holds flow"),
    ("d.npy", "flow", "holds disparity"),
    ("d.png", "flow", "holds disparity"),
])
def test_read_map_of_the_other_kind_names_what_the_file_holds(tmp_path, name, kind, holds):
    io.write_flow(tmp_path / "f.flo", np.zeros((3, 4, 2)))
    io.write_flow(tmp_path / "f.npy", np.zeros((3, 4, 2)))
    io.write_flow(tmp_path / "f.pfm", np.zeros((3, 4, 2)))
    io.write_flow(tmp_path / "f.png", np.zeros((3, 4, 2)))
    io.write_disparity(tmp_path / "d.npy", np.zeros((3, 4)))
    io.write_disparity(tmp_path / "d.png", np.zeros((3, 4)))
    with pytest.raises(ValueError, match=f"{name}: expected {kind}, but the file {holds}"):
        io.read_map(tmp_path / name, kind=kind)
    with pytest.raises(ValueError, match="kind must be 'flow', 'disparity' or None"):
        io.read_map(tmp_path / name, kind="depth")


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        io.read_flow(tmp_path / "missing.flo")
