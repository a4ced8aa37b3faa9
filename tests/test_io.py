"""flowlib.io: hand-made byte strings, bit-exact round trips, real benchmark files, corruption.

Independent references: files are built with ``struct`` and pypng's own ``png.Writer`` here,
and files flowlib writes are decoded with ``png.Reader`` / ``np.frombuffer`` here, so no test
checks flowlib against itself only.
"""

from __future__ import annotations

import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
import png
import pytest
from PIL import Image

from flowlib import io

# --------------------------------------------------------------------------------------------
# independent helpers
# --------------------------------------------------------------------------------------------


def _png_write(path, array, *, bitdepth, palette=None):
    """Encode with pypng's Writer: (H, W) grey/indices, (H, W, 2|3|4) grey+alpha/RGB/RGBA."""
    array = np.asarray(array)
    h, w = array.shape[:2]
    planes = 1 if array.ndim == 2 else array.shape[2]
    writer = png.Writer(w, h, greyscale=palette is None and planes in (1, 2),
                        alpha=planes in (2, 4), bitdepth=bitdepth, palette=palette)
    with open(path, "wb") as f:
        writer.write(f, array.reshape(h, -1).tolist())
    return Path(path)


def _png_read(path):
    """pypng decode to (H, W, planes) plus its info dict."""
    w, h, rows, info = png.Reader(bytes=Path(path).read_bytes()).read()  # filename= leaks the file
    return np.array([list(r) for r in rows]).reshape(h, w, info["planes"]), info


def _flo_bytes(w, h, values):
    return struct.pack("<fii", 202021.25, w, h) + struct.pack(f"<{len(values)}f", *values)


def _bits(a):
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


def _no_temp_files(folder):
    return [p.name for p in Path(folder).iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------------------------
# Middlebury .flo
# --------------------------------------------------------------------------------------------


def test_flo_hand_made_bytes(tmp_path):
    # 2 wide x 1 high: pixel (0, 0) = (1.5, -2.25); pixel (0, 1) has u = 1e10: unknown flow
    path = tmp_path / "a.flo"
    path.write_bytes(_flo_bytes(2, 1, [1.5, -2.25, 1e10, 0.5]))
    flow, valid = io.read_flo(path)
    assert flow.shape == (1, 2, 2) and flow.dtype == np.float32 and valid.dtype == np.bool_
    assert flow[0, 0].tolist() == [1.5, -2.25] and flow[0, 1].tolist() == [0.0, 0.0]
    assert valid.tolist() == [[True, False]]
    # 1 wide x 2 high: row-major, so the second pixel is the second row
    path.write_bytes(_flo_bytes(1, 2, [1.0, 2.0, 3.0, 4.0]))
    flow, valid = io.read_flo(path)
    assert flow.shape == (2, 1, 2) and flow[:, 0].tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert valid.all()
    assert flow.flags.writeable and flow.flags.c_contiguous


def test_flo_unknown_threshold_is_strictly_above_1e9(tmp_path):
    above = float(np.nextafter(np.float32(1e9), np.float32(np.inf)))
    values = [1e9, -1e9, above, 0.0, 0.0, -above, np.nan, 1.0, 1.0, -np.inf, 1.6666668e9, 2.0]
    path = tmp_path / "t.flo"
    path.write_bytes(_flo_bytes(6, 1, values))
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
    np.testing.assert_array_equal(_bits(back[expect_valid]), _bits(flow[expect_valid]))
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
    assert not path.exists() and not _no_temp_files(tmp_path)


def test_write_flo_accepts_nonfinite_on_invalid_pixels(tmp_path):
    flow = np.array([[[np.inf, np.nan], [1.0, 2.0]]], np.float32)
    io.write_flo(tmp_path / "m.flo", flow, valid=np.array([[False, True]]))
    back, valid = io.read_flo(tmp_path / "m.flo")
    assert valid.tolist() == [[False, True]] and back.tolist() == [[[0, 0], [1, 2]]]


# --------------------------------------------------------------------------------------------
# PFM
# --------------------------------------------------------------------------------------------


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
    np.testing.assert_array_equal(_bits(b), _bits(a))
    kind = b"PF" if len(shape) == 3 else b"Pf"
    header = kind + f"\n{shape[1]} {shape[0]}\n{-1 if little_endian else 1}\n".encode()
    data = path.read_bytes()
    assert data.startswith(header)
    stored = np.frombuffer(data, "<f4" if little_endian else ">f4", offset=len(header))
    np.testing.assert_array_equal(_bits(stored.reshape(shape)[::-1]), _bits(a))


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


# --------------------------------------------------------------------------------------------
# KITTI flow PNG
# --------------------------------------------------------------------------------------------


def test_kitti_flow_hand_made_png(tmp_path):
    raw = np.array(
        [[[32768 + 64, 32768 - 32, 1], [0, 65535, 1]],
         [[12345, 54321, 0], [32768, 32768 + 1, 7]]], np.uint16)
    path = _png_write(tmp_path / "f.png", raw, bitdepth=16)
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
    raw, info = _png_read(path)
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
    path = _png_write(tmp_path / "w.png", array, bitdepth=bitdepth)
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
    original, ours = io.read_image_raw(png_path), _png_read(tmp_path / "re.png")[0]
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


# --------------------------------------------------------------------------------------------
# KITTI disparity PNG
# --------------------------------------------------------------------------------------------


def test_kitti_disparity_hand_made_png(tmp_path):
    raw = np.array([[0, 1, 256], [65535, 384, 0]], np.uint16)
    path = _png_write(tmp_path / "d.png", raw, bitdepth=16)
    disp, valid = io.read_kitti_disparity(path)
    assert disp.dtype == np.float32 and valid.dtype == np.bool_
    assert disp.tolist() == [[0, 1 / 256, 1.0], [65535 / 256, 1.5, 0]]
    assert valid.tolist() == [[False, True, True], [True, True, False]]


def test_kitti_disparity_writer_matches_devkit(tmp_path):
    # devkit writeDisparityMap: isValid = d >= 0; (uint16_t)max(d * 256.0, 1.0); else 0
    d = np.array([[0.0, 0.001, 1.5, 1.999, -0.5, 300.0, 255.99609375, 7.0]], np.float32)
    valid = np.array([[True] * 7 + [False]])
    io.write_kitti_disparity(tmp_path / "d.png", d, valid=valid)
    raw, info = _png_read(tmp_path / "d.png")
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
    path = _png_write(tmp_path / "d8.png", np.zeros((2, 2), np.uint8), bitdepth=8)
    with pytest.raises(ValueError, match="16-bit grey PNG, found 8-bit grey"):
        io.read_kitti_disparity(path)
    with pytest.raises(ValueError, match="found 8-bit grey"):  # Middlebury 2001 is not KITTI
        io.read_disparity(data / "middlebury-stereo/venus/groundtruth.png")
    with pytest.raises(ValueError, match="found 16-bit RGB"):
        io.read_disparity(data / "kitti2015/training/flow_noc/000000_10.png")


def test_kitti2015_disparity(data):
    path = data / "kitti2015/training/disp_occ_0/000000_10.png"
    disp, valid = io.read_kitti_disparity(path)
    raw = _png_read(path)[0][..., 0]
    assert disp.shape == (375, 1242)
    assert valid.sum() == 88975 and valid.mean() == pytest.approx(0.19104, abs=1e-5)
    np.testing.assert_array_equal(disp, raw / 256)
    assert disp[valid].min() == 4.62109375 and disp.max() == 64.0859375
    assert not disp[~valid].any()


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bitdepth", [1, 2, 4, 8, 16])
def test_read_grey_png_every_bit_depth(tmp_path, bitdepth):
    top = 2**bitdepth - 1
    stored = np.array([[0, top], [top // 2, 1]])
    path = _png_write(tmp_path / "g.png", stored, bitdepth=bitdepth)
    # 1/2/4-bit grey expands to 8 bits by x * 255 / (2^b - 1), as libpng/Pillow/OpenCV do
    level = stored * (255 // top) if bitdepth < 8 else stored
    grey = io.read_grey(path)
    assert grey.dtype == (np.uint16 if bitdepth == 16 else np.uint8)
    np.testing.assert_array_equal(grey, level)
    maxval = 65535 if bitdepth == 16 else 255
    rgb = io.read_image(path)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.float32
    expect = np.repeat((level / maxval).astype(np.float32)[..., None], 3, -1)
    np.testing.assert_array_equal(rgb, expect)
    if bitdepth < 16:  # Pillow agrees on the expansion of low bit depths
        np.testing.assert_array_equal(np.asarray(Image.open(path).convert("L")), grey)


@pytest.mark.parametrize("bitdepth", [8, 16])
@pytest.mark.parametrize("planes", [2, 3, 4])
def test_read_image_colour_types(tmp_path, bitdepth, planes):
    rng = np.random.default_rng(planes * bitdepth)
    stored = rng.integers(0, 2**bitdepth, (3, 4, planes))
    path = _png_write(tmp_path / "c.png", stored, bitdepth=bitdepth)
    maxval = 2**bitdepth - 1
    rgb_stored = np.repeat(stored[..., :1], 3, -1) if planes == 2 else stored[..., :3]
    np.testing.assert_array_equal(io.read_image(path), (rgb_stored / maxval).astype(np.float32))
    u8 = io.read_image(path, dtype="uint8")
    assert u8.dtype == np.uint8
    np.testing.assert_array_equal(u8, np.floor(rgb_stored * 255 / maxval + 0.5).astype(np.uint8))
    np.testing.assert_array_equal(io.read_image_raw(path), stored)


def test_16_bit_to_uint8_rounds_half_up_of_x_over_257(tmp_path):
    # x = 257 k + r rounds down iff r <= 128 (257 is odd, so no exact halves)
    x = np.array([[0, 128, 129, 257, 385, 386, 65406, 65407, 65535]])
    path = _png_write(tmp_path / "r.png", np.stack([x, x, x], -1), bitdepth=16)
    assert io.read_image(path, dtype="uint8")[0, :, 0].tolist() == [0, 0, 1, 1, 1, 2, 254, 255, 255]
    assert io.read_image(path, dtype=np.uint8).dtype == np.uint8
    with pytest.raises(ValueError, match="'float32' or 'uint8'"):
        io.read_image(path, dtype="float64")
    with pytest.raises(ValueError, match="'float32' or 'uint8'"):
        io.read_image(path, dtype="no-such-dtype")


@pytest.mark.parametrize("bitdepth", [1, 2, 4, 8])
@pytest.mark.parametrize("transparent", [False, True])
def test_palette_png(tmp_path, bitdepth, transparent):
    n = 2**bitdepth
    palette = [(i * 37 % 256, i * 91 % 256, 255 - i) for i in range(n)]
    if transparent:
        palette = [p + (i * 13 % 256,) for i, p in enumerate(palette)]
    index = np.arange(12).reshape(3, 4) % n
    path = _png_write(tmp_path / "p.png", index, bitdepth=bitdepth, palette=palette)
    expect = np.array(palette, np.uint8)[index]
    np.testing.assert_array_equal(io.read_image_raw(path), expect)
    np.testing.assert_array_equal(io.read_image(path, dtype="uint8"), expect[..., :3])
    np.testing.assert_array_equal(io.read_image(path, dtype="uint8"),
                                  np.asarray(Image.open(path).convert("RGBA"))[..., :3])


def test_tsukuba_palette_ground_truth_gives_grey_levels(data):
    # A 4-bit palette PNG: Pillow returns the palette *indices* 0..7; the grey levels are in
    # the palette, and disparity = level / 16 (info.txt line 1).
    path = data / "middlebury-stereo/tsukuba/groundtruth.png"
    grey = io.read_grey(path)
    assert grey.shape == (288, 384) and grey.dtype == np.uint8
    assert np.unique(np.asarray(Image.open(path))).tolist() == list(range(8))
    levels = np.unique(grey).tolist()
    assert levels == [0, 80, 96, 112, 128, 160, 176, 224]
    assert all(v % 16 == 0 for v in levels) and max(levels) // 16 <= 15  # info.txt: max 15
    np.testing.assert_array_equal(grey, np.asarray(Image.open(path).convert("L")))
    scale = int((data / "middlebury-stereo/tsukuba/info.txt").read_text().split()[0])
    assert scale == 16
    np.testing.assert_array_equal(io.read_image_raw(path), np.repeat(grey[..., None], 3, -1))
    # 1-bit palette masks: 0 / 255
    nonocc = io.read_grey(data / "middlebury-stereo/tsukuba/nonocc.png")
    assert np.unique(nonocc).tolist() == [0, 255]


def test_middlebury_venus_grey_ground_truth(data):
    path = data / "middlebury-stereo/venus/groundtruth.png"
    grey = io.read_grey(path)
    np.testing.assert_array_equal(grey, np.asarray(Image.open(path)))
    assert grey.shape == (383, 434) and grey.max() // 8 <= 19  # info.txt: scale 8, max 19


def test_read_grey_rejects_colour_and_accepts_equal_channels(tmp_path, data):
    occ = io.read_grey(data / "tiny-crops/0000000-occ_01.png")  # stored as RGB, R = G = B
    assert occ.shape == (50, 50) and np.unique(occ).tolist() == [0, 255]
    with pytest.raises(ValueError, match="expected a grey image") as err:
        io.read_grey(data / "tiny-crops/0000000-img_0.png")
    assert "0000000-img_0.png" in str(err.value)


@pytest.mark.parametrize(
    "relpath, shape",
    [
        ("kitti2015/training/image_2/000000_10.png", (375, 1242)),
        ("sintel/training/final/alley_1/frame_0002.png", (436, 1024)),
        ("sintel/training/occlusions/alley_1/frame_0002.png", (436, 1024)),
        ("tiny-crops/0000000-img_0.png", (50, 50)),
        ("flyingthings3d/frames_cleanpass/TRAIN/A/0000/left/0006.png", (540, 960)),
    ],
)
def test_real_8_bit_pngs_match_pypng(data, relpath, shape):
    # 8-bit PNGs take the fast Pillow path; pypng is the independent lossless reference.
    stored, info = _png_read(data / relpath)
    assert info["bitdepth"] == 8
    rgb = stored if stored.shape[-1] == 3 else np.repeat(stored, 3, -1)
    u8 = io.read_image(data / relpath, dtype="uint8")
    assert u8.shape == (*shape, 3)
    np.testing.assert_array_equal(u8, rgb)
    np.testing.assert_array_equal(io.read_image(data / relpath), (rgb / 255).astype(np.float32))


@pytest.mark.parametrize("relpath, shape", [("flyingchairs/data/00001_img1.ppm", (384, 512)),
                                            ("tiny-crops/00001_img2.ppm", (50, 50))])
def test_flyingchairs_ppm(data, relpath, shape):
    u8 = io.read_image(data / relpath, dtype="uint8")
    assert u8.shape == (*shape, 3) and u8.dtype == np.uint8
    raw = (data / relpath).read_bytes()
    np.testing.assert_array_equal(u8.reshape(-1), np.frombuffer(raw[-u8.size:], np.uint8))
    np.testing.assert_array_equal(u8, np.asarray(Image.open(data / relpath)))


def test_netpbm_hand_made_with_comments_and_16_bit(tmp_path):
    path = tmp_path / "a.ppm"
    path.write_bytes(b"P6\n# made by hand\n2 1 # trailing\n255\n" + bytes([1, 2, 3, 250, 251, 252]))
    assert io.read_image(path, dtype="uint8").tolist() == [[[1, 2, 3], [250, 251, 252]]]
    path = tmp_path / "b.pgm"
    path.write_bytes(b"P5 3 1 1023\n" + struct.pack(">3H", 0, 512, 1023))
    assert io.read_grey(path).tolist() == [[0, 512, 1023]]  # netpbm keeps its own maxval
    np.testing.assert_array_equal(io.read_image(path)[0, :, 0],
                                  np.array([0, 512, 1023], np.float32) / np.float32(1023))
    assert io.read_image(path, dtype="uint8")[0, :, 0].tolist() == [0, 128, 255]  # 127.6 -> 128
    path.write_bytes(b"P5 1 1 100\n" + bytes([101]))
    with pytest.raises(ValueError, match="sample 101 > maxval 100"):
        io.read_image(path)


@pytest.mark.parametrize("ext", [".png", ".ppm", ".bmp"])
def test_write_image_uint8_round_trip(tmp_path, ext):
    rgb = np.random.default_rng(4).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    io.write_image(tmp_path / f"i{ext}", rgb)
    np.testing.assert_array_equal(io.read_image(tmp_path / f"i{ext}", dtype="uint8"), rgb)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / f"i{ext}")), rgb)


@pytest.mark.parametrize("ext, shape", [(".png", (5, 7)), (".pgm", (5, 7)), (".png", (5, 7, 2)),
                                        (".png", (5, 7, 4)), (".ppm", (5, 7, 3)),
                                        (".png", (5, 7, 3))])
def test_write_image_16_bit_round_trip(tmp_path, ext, shape):
    a = np.random.default_rng(5).integers(0, 65536, shape, dtype=np.uint16)
    a.flat[:3] = [0, 65535, 257]
    io.write_image(tmp_path / f"i{ext}", a)
    np.testing.assert_array_equal(io.read_image_raw(tmp_path / f"i{ext}"), a)
    if ext == ".png":  # independent decoder
        np.testing.assert_array_equal(_png_read(tmp_path / "i.png")[0].reshape(a.shape), a)


def test_write_image_float_and_grey_and_jpeg(tmp_path):
    x = np.array([[0.0, 1 / 510 - 1e-9, 1 / 510 + 1e-9, 0.5, 1.0]])
    io.write_image(tmp_path / "f.png", np.stack([x, x, x], -1))
    assert io.read_image(tmp_path / "f.png", dtype="uint8")[0, :, 0].tolist() == [0, 0, 1, 128, 255]
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    io.write_image(tmp_path / "g.png", grey)
    np.testing.assert_array_equal(_png_read(tmp_path / "g.png")[0][..., 0], grey)
    np.testing.assert_array_equal(io.read_grey(tmp_path / "g.png"), grey)
    smooth = np.broadcast_to(np.linspace(0, 255, 32).astype(np.uint8)[None, :, None], (16, 32, 3))
    io.write_image(tmp_path / "j.jpg", smooth)
    back = io.read_image(tmp_path / "j.jpg", dtype="uint8").astype(int)
    assert np.abs(back - smooth).mean() < 2  # lossy, quality 95


@pytest.mark.parametrize(
    "name, image, message",
    [
        ("a.gif", np.zeros((2, 2, 3), np.uint8), "unknown image extension '.gif'; supported: .png"),
        ("a.png", np.full((2, 2, 3), 1.5), r"\[0, 1\], found 1.5"),
        ("a.png", np.full((2, 2, 3), np.nan), r"\[0, 1\], found nan"),
        ("a.png", np.zeros((2, 2, 3), bool), "dtype bool"),
        ("a.png", np.zeros((2, 2, 5), np.uint8), r"\(H, W, 4\)"),
        ("a.ppm", np.zeros((2, 2, 4), np.uint8), "RGB"),
        ("a.pgm", np.zeros((2, 2, 3), np.uint8), "grey"),
        ("a.jpg", np.zeros((2, 2, 3), np.uint16), "8-bit"),
    ],
)
def test_write_image_rejects(tmp_path, name, image, message):
    with pytest.raises(ValueError, match=message) as err:
        io.write_image(tmp_path / name, image)
    assert str(tmp_path / name) in str(err.value)
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------
# Real .flo / .pfm files
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Dispatchers
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Corrupted, truncated and wrong-format files
# --------------------------------------------------------------------------------------------


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
    _png_write(folder / "p.png", np.arange(30).reshape(6, 5) % 4, bitdepth=2,
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


# --------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------

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
    assert path.read_bytes() != b"previous content" and not _no_temp_files(tmp_path)


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
