"""flowlib.io -- KITTI 16-bit flow and disparity PNGs: devkit arithmetic, round trips, real files.

Independent references: files are built with ``struct`` and pypng's own ``png.Writer``
(:mod:`tests._io_helpers`), and files flowlib writes are decoded with ``png.Reader`` /
``np.frombuffer``, so no test checks flowlib against itself only.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from flowlib import io
from tests._io_helpers import png_read, png_write


def test_kitti_flow_hand_made_png(tmp_path):
    raw = np.array(
        [[[32768 + 64, 32768 - 32, 1], [0, 65535, 1]],
         [[12345, 54321, 0], [32768, 32768 + 1, 7]]], np.uint16)
    path = png_write(tmp_path / "f.png", raw, bitdepth=16)
    flow, valid = io.read_kitti_flow(path)
    assert flow.dtype == np.float32 and flow.shape == (2, 2, 2)
    assert valid.tolist() == [[True, True], [False, True]]  # B > 0, any positive value
    assert flow[0, 0].tolist() == [1.0, -0.5]
    assert flow[0, 1].tolist() == [-512.0, 511.984375]
    assert flow[1, 0].tolist() == [0.0, 0.0]  # invalid -> 0 whatever R, G hold
    assert flow[1, 1].tolist() == [0.0, 1 / 64]
    np.testing.assert_array_equal(io.read_image_raw(path), raw)


def test_kitti_flow_writer_matches_devkit_arithmetic(tmp_path):
    # devkit writeFlowField: (uint16_t)max(min(u*64.0f + 32768.0f, 65535.0f), 0.0f), float32
    below_one = np.nextafter(np.float32(1), np.float32(0))  # 0.99999994
    u = np.array([1 / 64, -512, 600, -600, 1 / 128, -1 / 128, below_one / 64, 511.99, 0.0, -0.0],
                 np.float32)
    expect_r = [32769, 0, 65535, 0, 32768, 32767, 32769, 65535, 32768, 32768]
    # below_one/64: exact arithmetic would truncate 32768.99999994 to 32768, but in float32
    # the sum rounds to 32769.0 first, as in the devkit.
    flow = np.stack([u, -u], axis=-1)[None]
    valid = np.ones((1, len(u)), bool)
    valid[0, -1] = False
    path = tmp_path / "w.png"
    io.write_kitti_flow(path, flow, valid=valid)
    raw, info = png_read(path)
    assert info["bitdepth"] == 16 and info["planes"] == 3 and not info["greyscale"]
    assert raw[0, :-1, 0].tolist() == expect_r[:-1]
    assert raw[0, -1].tolist() == [0, 0, 0]  # devkit: invalid pixels are (0, 0, 0)
    assert raw[0, :-1, 2].tolist() == [1] * (len(u) - 1)
    neg = np.floor(np.clip(-u[:-1] * np.float32(64) + np.float32(32768), 0, 65535))
    assert raw[0, :-1, 1].tolist() == neg.astype(int).tolist()


@pytest.mark.parametrize("with_mask", [False, True])
def test_kitti_flow_round_trip_is_exact_on_the_1_64_grid(tmp_path, with_mask):
    rng = np.random.default_rng(2)
    flow = (rng.integers(-32768, 32768, (9, 11, 2)) / 64).astype(np.float32)
    flow[0, 0] = [-512, 511.984375]
    valid = rng.random((9, 11)) < 0.6 if with_mask else None
    io.write_kitti_flow(tmp_path / "k.png", flow, valid=valid)
    back, back_valid = io.read_kitti_flow(tmp_path / "k.png")
    expect_valid = np.ones((9, 11), bool) if valid is None else valid
    np.testing.assert_array_equal(back_valid, expect_valid)
    np.testing.assert_array_equal(back, np.where(expect_valid[..., None], flow, 0))


def test_kitti_flow_writer_rejects(tmp_path):
    with pytest.raises(ValueError, match="finite"):
        io.write_kitti_flow(tmp_path / "x.png", np.full((2, 2, 2), np.nan))
    with pytest.raises(ValueError, match=r"\(H, W, 2\)"):
        io.write_kitti_flow(tmp_path / "x.png", np.zeros((2, 2)))
    io.write_kitti_flow(tmp_path / "y.png", np.full((2, 2, 2), np.nan),
                        valid=np.zeros((2, 2), bool))
    assert io.read_kitti_flow(tmp_path / "y.png")[1].sum() == 0


@pytest.mark.parametrize(
    "array, bitdepth, found",
    [
        (np.zeros((2, 2, 3), np.uint8), 8, "found 8-bit RGB"),
        (np.zeros((2, 2, 4), np.uint16), 16, "found 16-bit RGBA"),
        (np.zeros((2, 2), np.uint16), 16, "found 16-bit grey"),
    ],
)
def test_kitti_flow_reader_names_the_wrong_png_kind(tmp_path, array, bitdepth, found):
    path = png_write(tmp_path / "w.png", array, bitdepth=bitdepth)
    with pytest.raises(ValueError, match=f"16-bit RGB PNG, {found}") as err:
        io.read_kitti_flow(path)
    assert str(path) in str(err.value)


def test_kitti2015_flow_matches_the_independent_decoding(data):
    png_path = data / "kitti2015/training/flow_noc/000000_10.png"
    ref = np.load(data / "reference/kitti2015_000000_flow_noc.decoded.npz")
    flow, valid = io.read_kitti_flow(png_path)
    assert flow.shape == (375, 1242, 2)
    np.testing.assert_array_equal(flow, ref["flow"])
    np.testing.assert_array_equal(valid, ref["valid"])
    np.testing.assert_array_equal(io.read_image_raw(png_path), ref["raw_uint16"])
    assert valid.sum() == 75453


def test_kitti2015_flow_reencodes_identically_on_valid_pixels(data, tmp_path):
    png_path = data / "kitti2015/training/flow_noc/000000_10.png"
    flow, valid = io.read_kitti_flow(png_path)
    io.write_kitti_flow(tmp_path / "re.png", flow, valid=valid)
    back, back_valid = io.read_kitti_flow(tmp_path / "re.png")
    np.testing.assert_array_equal(back, flow)
    np.testing.assert_array_equal(back_valid, valid)
    original, ours = io.read_image_raw(png_path), png_read(tmp_path / "re.png")[0]
    np.testing.assert_array_equal(ours[valid], original[valid])
    # The published GT stores zero flow (32768, 32768, 0) at invalid pixels; the devkit
    # writer (and this one) stores (0, 0, 0). Readers ignore R, G there, so both decode alike.
    assert (original[~valid] == [32768, 32768, 0]).all() and not ours[~valid].any()


@pytest.mark.parametrize("name", ["flow_gt", "flow_est"])
def test_kitti_flow_pair_matches_its_decodings(data, name):
    ref = np.load(data / f"kitti-flow-pair/{name}.decoded.npz")
    flow, valid = io.read_flow(data / f"kitti-flow-pair/{name}.png")
    assert flow.shape == (370, 1226, 2)
    np.testing.assert_array_equal(flow, ref["flow"])
    np.testing.assert_array_equal(valid, ref["valid"])
    np.testing.assert_array_equal(io.read_image_raw(data / f"kitti-flow-pair/{name}.png"),
                                  ref["raw_uint16"])
    assert valid.sum() == {"flow_gt": 162583, "flow_est": 453620}[name]


def test_pillow_and_imageio_lose_kitti_16_bit_flow(data):
    # Why flowlib decodes 16-bit PNGs with pypng: Pillow and imageio return 8 bits, silently.
    import imageio.v3 as iio

    png_path = data / "kitti2015/training/flow_noc/000000_10.png"
    raw = np.load(data / "reference/kitti2015_000000_flow_noc.decoded.npz")["raw_uint16"]
    for decoded in (np.asarray(Image.open(png_path)), iio.imread(png_path)):
        assert decoded.dtype == np.uint8 and decoded.shape == raw.shape
        np.testing.assert_array_equal(decoded, raw >> 8)  # only the high byte survives
    assert ((raw & 0xFF) != 0).mean() > 0.1  # ... and the low byte carries real information
    # B = 1 marks valid pixels: its high byte is 0, so the 8-bit decode has no valid pixel ...
    valid = raw[..., 2] > 0
    assert valid.any() and not (raw[..., 2] >> 8).any()
    # ... and the flow is off by up to 4 px (255/64)
    flow8 = ((raw[..., :2] >> 8).astype(np.float32) * 256 - 32768) / 64
    assert np.abs(flow8 - io.read_kitti_flow(png_path)[0])[valid].max() > 3.0






def test_kitti_disparity_hand_made_png(tmp_path):
    raw = np.array([[0, 1, 256], [65535, 384, 0]], np.uint16)
    path = png_write(tmp_path / "d.png", raw, bitdepth=16)
    disp, valid = io.read_kitti_disparity(path)
    assert disp.dtype == np.float32 and valid.dtype == np.bool_
    assert disp.tolist() == [[0, 1 / 256, 1.0], [65535 / 256, 1.5, 0]]
    assert valid.tolist() == [[False, True, True], [True, True, False]]


def test_kitti_disparity_writer_matches_devkit(tmp_path):
    # devkit writeDisparityMap: isValid = d >= 0; (uint16_t)max(d * 256.0, 1.0); else 0
    d = np.array([[0.0, 0.001, 1.5, 1.999, -0.5, 300.0, 255.99609375, 7.0]], np.float32)
    valid = np.array([[True] * 7 + [False]])
    io.write_kitti_disparity(tmp_path / "d.png", d, valid=valid)
    raw, info = png_read(tmp_path / "d.png")
    assert info["bitdepth"] == 16 and info["greyscale"] and info["planes"] == 1
    assert raw[0, :, 0].tolist() == [1, 1, 384, 511, 0, 65535, 65535, 0]


def test_kitti_disparity_round_trip_is_exact_on_the_1_256_grid(tmp_path):
    rng = np.random.default_rng(3)
    disp = (rng.integers(1, 65536, (6, 7)) / 256).astype(np.float32)
    valid = rng.random((6, 7)) < 0.5
    io.write_disparity(tmp_path / "d.png", disp, valid=valid)
    back, back_valid = io.read_disparity(tmp_path / "d.png")
    np.testing.assert_array_equal(back_valid, valid)
    np.testing.assert_array_equal(back, np.where(valid, disp, 0))


def test_kitti_disparity_rejects_8_bit(tmp_path, data):
    path = png_write(tmp_path / "d8.png", np.zeros((2, 2), np.uint8), bitdepth=8)
    with pytest.raises(ValueError, match="16-bit grey PNG, found 8-bit grey"):
        io.read_kitti_disparity(path)
    with pytest.raises(ValueError, match="found 8-bit grey"):  # Middlebury 2001 is not KITTI
        io.read_disparity(data / "middlebury-stereo/venus/groundtruth.png")
    with pytest.raises(ValueError, match="found 16-bit RGB"):
        io.read_disparity(data / "kitti2015/training/flow_noc/000000_10.png")


def test_kitti2015_disparity(data):
    path = data / "kitti2015/training/disp_occ_0/000000_10.png"
    disp, valid = io.read_kitti_disparity(path)
    raw = png_read(path)[0][..., 0]
    assert disp.shape == (375, 1242)
    assert valid.sum() == 88975 and valid.mean() == pytest.approx(0.19104, abs=1e-5)
    np.testing.assert_array_equal(disp, raw / 256)
    assert disp[valid].min() == 4.62109375 and disp.max() == 64.0859375
    assert not disp[~valid].any()
