"""flowlib.io -- Images: PNG of every bit depth and colour type, palettes, netpbm, Pillow formats.

Independent references: files are built with ``struct`` and pypng's own ``png.Writer``
(:mod:`tests._io_helpers`), and files flowlib writes are decoded with ``png.Reader`` /
``np.frombuffer``, so no test checks flowlib against itself only.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from PIL import Image

from flowlib import io
from tests._io_helpers import png_read, png_write


@pytest.mark.parametrize("bitdepth", [1, 2, 4, 8, 16])
def test_read_grey_png_every_bit_depth(tmp_path, bitdepth):
    top = 2**bitdepth - 1
    stored = np.array([[0, top], [top // 2, 1]])
    path = png_write(tmp_path / "g.png", stored, bitdepth=bitdepth)
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
    path = png_write(tmp_path / "c.png", stored, bitdepth=bitdepth)
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
    path = png_write(tmp_path / "r.png", np.stack([x, x, x], -1), bitdepth=16)
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
    path = png_write(tmp_path / "p.png", index, bitdepth=bitdepth, palette=palette)
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
    stored, info = png_read(data / relpath)
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
        np.testing.assert_array_equal(png_read(tmp_path / "i.png")[0].reshape(a.shape), a)


def test_write_image_float_and_grey_and_jpeg(tmp_path):
    x = np.array([[0.0, 1 / 510 - 1e-9, 1 / 510 + 1e-9, 0.5, 1.0]])
    io.write_image(tmp_path / "f.png", np.stack([x, x, x], -1))
    assert io.read_image(tmp_path / "f.png", dtype="uint8")[0, :, 0].tolist() == [0, 0, 1, 128, 255]
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    io.write_image(tmp_path / "g.png", grey)
    np.testing.assert_array_equal(png_read(tmp_path / "g.png")[0][..., 0], grey)
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


def test_a_text_file_named_png_says_what_it_starts_with(tmp_path):
    from flowlib import io as fio

    path = tmp_path / "notes.png"
    path.write_text("hello, not an image\n")
    with pytest.raises(ValueError) as err:
        fio.read_image(path)
    message = str(err.value)
    assert "notes.png" in message and "b'hello, n'" in message and "BytesIO" not in message


def _stored_picture() -> np.ndarray:
    """16x24 (H x W) RGB: left half red, right half blue, a green top row (every turn differs)."""
    a = np.zeros((16, 24, 3), np.uint8)
    a[:, :12, 0] = 255
    a[:, 12:, 2] = 255
    a[0] = (0, 255, 0)
    return a


def _with_orientation(path, picture, orientation, fmt):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(picture).save(path, format=fmt, exif=exif.tobytes(), **(
        {"quality": 95} if fmt == "JPEG" else {}))


def test_orientation_6_jpeg_is_read_upright(tmp_path):
    from PIL import ImageOps

    path = tmp_path / "portrait.jpg"
    _with_orientation(path, _stored_picture(), 6, "JPEG")  # a phone's portrait photo
    rgb = io.read_image(path, dtype="uint8")
    assert rgb.shape == (24, 16, 3)  # turned 90 degrees clockwise, as viewers show it
    # stored left (red) is now the top, stored right (blue) the bottom, green row the right
    assert rgb[3:9, 3:12, 0].min() > 200 and rgb[3:9, 3:12, 2].max() < 60
    assert rgb[15:21, 3:12, 2].min() > 200 and rgb[15:21, 3:12, 0].max() < 60
    assert rgb[3:21, -1, 1].min() > 150
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    np.testing.assert_array_equal(rgb, expected)
    assert io.read_image_raw(path).shape == (24, 16, 3)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillows_exif_transpose(tmp_path, fmt, orientation):
    from PIL import ImageOps

    path = tmp_path / f"o.{fmt.lower()}"
    _with_orientation(path, _stored_picture(), orientation, fmt)
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    np.testing.assert_array_equal(io.read_image(path, dtype="uint8"), expected)
    if fmt == "PNG":  # lossless: the exact turn of the stored pixels
        assert (orientation in (5, 6, 7, 8)) == (expected.shape[:2] == (24, 16))


def test_a_folder_of_turned_and_upright_frames_has_one_size(tmp_path):
    from flowlib import video

    upright = np.ascontiguousarray(np.rot90(_stored_picture(), -1))
    _with_orientation(tmp_path / "f0.png", _stored_picture(), 6, "PNG")
    Image.fromarray(upright).save(tmp_path / "f1.png")
    video.open_frames(tmp_path).check_sizes()  # both are 16 wide, 24 tall when shown
    np.testing.assert_array_equal(io.read_image(tmp_path / "f0.png", dtype="uint8"), upright)
