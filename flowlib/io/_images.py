"""Images: PNG of any bit depth and colour type, binary PPM/PGM, and JPEG/BMP/GIF/WebP
through Pillow. An EXIF orientation tag (JPEG, WebP, a PNG's ``eXIf`` chunk) is applied, so
the pixels are the picture every viewer shows (a phone's portrait JPEG is read upright).
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

import numpy as np

from flowlib._files import atomic_write
from flowlib.io._common import PathLike, check_image_shape, describe, error, extension, read_bytes
from flowlib.io._netpbm import parse_netpbm
from flowlib.io._png import PNG_SIGNATURE, decode_png, encode_png, png_chunk

# Pillow is used for everything that is neither PNG nor binary PPM/PGM; the list keeps
# guessy plugins (TGA, SPIDER, ...) from claiming arbitrary bytes.
# TIFF is left out: Pillow has no 16-bit RGB mode, so it could not read such TIFFs losslessly.
_PILLOW_FORMATS = ("JPEG", "BMP", "PPM", "GIF", "WEBP")
_IMAGE_WRITE_EXTENSIONS = (".png", ".ppm", ".pgm", ".jpg", ".jpeg", ".bmp")
#: The EXIF tag that says how the stored pixels are to be turned for display.
EXIF_ORIENTATION = 0x0112


def orient(samples: np.ndarray, orientation: int) -> np.ndarray:
    """Stored samples ``(H, W, ...)`` turned as EXIF ``orientation`` says (1 = as stored;
    2 mirror; 3 rotate 180; 4 flip; 5 transpose; 6 rotate 90 clockwise; 7 transverse;
    8 rotate 90 counter-clockwise), as Pillow's ``ImageOps.exif_transpose``. Any other value
    is treated as 1."""
    turns = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }
    turn = turns.get(orientation)
    return samples if turn is None else np.ascontiguousarray(turn(samples))


def _exif_orientation(exif: bytes | None) -> int:
    """The orientation in raw EXIF bytes (a PNG ``eXIf`` chunk); 1 when absent or unreadable
    (metadata that cannot be parsed leaves the pixels as stored, as viewers do)."""
    if not exif:
        return 1
    from PIL import Image

    try:
        reader = Image.Exif()
        reader.load(exif)
        return int(reader.get(EXIF_ORIENTATION, 1))
    except Exception:  # Pillow: struct.error, SyntaxError, ValueError, ... on bad metadata
        return 1


def _decode_pillow(path: PathLike, data: bytes) -> tuple[np.ndarray, int]:
    from PIL import Image

    try:
        with Image.open(BytesIO(data), formats=list(_PILLOW_FORMATS)) as im:
            im.load()
            try:
                orientation = int(im.getexif().get(EXIF_ORIENTATION, 1))
            except Exception:  # unreadable metadata: the pixels as stored, as viewers do
                orientation = 1
            mode = im.mode
            if mode in ("1", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                has_alpha = mode == "PA" or (mode == "P" and "transparency" in im.info)
                im = im.convert("RGBA" if has_alpha else ("L" if mode == "1" else "RGB"))
                mode = im.mode
            array = np.array(im)
    except Image.UnidentifiedImageError as e:
        # Pillow's message names its in-memory buffer (<_io.BytesIO object at 0x...>): useless.
        raise error(path, f"cannot decode image: not PNG, PPM/PGM, JPEG, BMP, GIF or WebP "
                          f"(the file starts with {data[:8]!r})") from e
    except Exception as e:  # Pillow: OSError, SyntaxError, ...
        raise error(path, f"cannot decode image (not PNG, PPM/PGM, JPEG, BMP, GIF or WebP; "
                           f"{describe(e)})") from e
    if mode in ("L", "LA", "RGB", "RGBA"):
        return orient(array.reshape(*array.shape[:2], -1), orientation), 255
    if mode.startswith("I;16"):
        return orient(array.astype(np.uint16)[..., None], orientation), 65535
    raise error(path, f"unsupported pixel mode {mode!r} (expected 8/16-bit grey or colour)")


def _load_samples(path: PathLike) -> tuple[np.ndarray, int]:
    """Samples ``(H, W, C)`` (C: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA), turned upright by the
    file's EXIF orientation, and their maxval."""
    data = read_bytes(path)
    if data.startswith(PNG_SIGNATURE):
        samples, maxval = decode_png(path, data)
        return orient(samples, _exif_orientation(png_chunk(data, b"eXIf"))), maxval
    if data[:2] in (b"P5", b"P6"):
        return parse_netpbm(path, data)
    return _decode_pillow(path, data)


def read_image_raw(path: PathLike) -> np.ndarray:
    """Read the stored samples of an image without converting them (but turned upright by
    its EXIF orientation, as :func:`read_image`).

    PNGs are decoded losslessly at any bit depth. A palette image returns its palette colours
    (so Middlebury tsukuba's 4-bit palette ground truth gives grey levels 0, 80 ... 224, not
    indices 0 ... 7); 1/2/4-bit grey is expanded to 8 bits (x * 255 / (2^b - 1)) as every
    PNG decoder does.

    Args:
      path: PNG, binary PPM/PGM, JPEG, BMP, ... file.

    Returns:
      uint8 (8-bit and lower) or uint16 array, ``(H, W)`` for grey, else ``(H, W, C)`` with C
      = 2 (grey + alpha), 3 (RGB) or 4 (RGBA). Netpbm files keep their own maxval.

    Raises:
      ValueError: unreadable, truncated or corrupted file (the message names it).
    """
    samples, _ = _load_samples(path)
    return samples[..., 0] if samples.shape[-1] == 1 else samples


def read_grey(path: PathLike) -> np.ndarray:
    """Read a single-channel image (mask, Middlebury disparity PNG) without rescaling.

    Alpha is dropped. Colour images are accepted only if their R, G and B are equal (masks
    saved as RGB, grey palettes), and then give that common value.

    Args:
      path: image file.

    Returns:
      ``(H, W)`` uint8 or uint16 grey levels, as :func:`read_image_raw` (palette -> level).

    Raises:
      ValueError: corrupted file, or a colour image whose channels differ.
    """
    samples, _ = _load_samples(path)
    if samples.shape[-1] in (1, 2):
        return samples[..., 0].copy()
    rgb = samples[..., :3]
    if not ((rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])).all():
        raise error(path, "expected a grey image, found colour (R, G and B differ)")
    return rgb[..., 0].copy()


def read_image(path: PathLike, *, dtype: Any = "float32") -> np.ndarray:
    """Read an image as RGB.

    Accepts PNG (1-16 bit; grey, grey+alpha, RGB, RGBA, palette), binary PPM/PGM (FlyingChairs
    ``.ppm``), JPEG, BMP, GIF, WebP. Grey is replicated to three channels, alpha dropped.
    An EXIF orientation tag (JPEG, WebP, a PNG's ``eXIf`` chunk) is applied: the array is
    the picture as viewers show it (a portrait photo stored sideways is read upright).

    Args:
      path: image file (format detected from its content, not its extension).
      dtype: ``"float32"`` -> values x / maxval in [0, 1] (maxval 255, or 65535 for 16-bit);
        ``"uint8"`` -> 8-bit data unchanged, deeper data rounded to round(x * 255 / maxval)
        (16-bit: round(x / 257)).

    Returns:
      ``(H, W, 3)`` float32 or uint8.

    Raises:
      ValueError: unknown dtype, or unreadable, truncated or corrupted file.
    """
    try:
        out_dtype = np.dtype(dtype)
    except TypeError:
        out_dtype = None
    if out_dtype not in (np.dtype(np.float32), np.dtype(np.uint8)):
        raise ValueError(f"read_image dtype must be 'float32' or 'uint8', got {dtype!r}")
    samples, maxval = _load_samples(path)
    planes = samples.shape[-1]
    rgb = samples[..., :3] if planes >= 3 else np.repeat(samples[..., :1], 3, axis=-1)
    if out_dtype == np.uint8:
        if maxval == 255:
            return np.ascontiguousarray(rgb, dtype=np.uint8)
        # round half up of x * 255 / maxval, in exact integer arithmetic
        return ((rgb.astype(np.uint32) * 510 + maxval) // (2 * maxval)).astype(np.uint8)
    return rgb.astype(np.float32) / np.float32(maxval)


def _image_to_samples(path: PathLike, image: Any) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 2, 3, 4):
        raise error(path, f"image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got "
                           f"{image.shape}")
    check_image_shape(path, "image", image, "(H, W[, C])")
    if image.dtype in (np.uint8, np.uint16):
        return image
    if image.dtype.kind != "f":
        raise error(path, f"image must be uint8, uint16 or float in [0, 1], got dtype "
                           f"{image.dtype}")
    with np.errstate(invalid="ignore"):
        outside = ~((image >= 0) & (image <= 1))
    if outside.any():
        index = tuple(int(i) for i in np.argwhere(outside)[0])
        raise error(path, f"float image values must lie in [0, 1], found {image[index]} at "
                           f"index {index}")
    return np.rint(image.astype(np.float64) * 255.0).astype(np.uint8)


def write_image(path: PathLike, image: Any) -> None:
    """Write an image atomically; the format follows the extension.

    ``.png`` (8 or 16 bit; grey, grey+alpha, RGB, RGBA), ``.ppm`` (RGB) / ``.pgm`` (grey)
    binary netpbm (8 or 16 bit), ``.jpg``/``.jpeg`` (8-bit grey/RGB, quality 95), ``.bmp``
    (8-bit grey/RGB/RGBA).

    Args:
      path: destination file (its folder must exist).
      image: ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``: uint8, uint16, or
        float in [0, 1] (stored as uint8 round(x * 255)).

    Returns:
      None.

    Raises:
      ValueError: unknown extension, shape, dtype or value range, or a combination the
        format cannot store.
    """
    ext = extension(path)
    if ext not in _IMAGE_WRITE_EXTENSIONS:
        raise error(path, f"unknown image extension {ext!r}; supported: "
                           f"{', '.join(_IMAGE_WRITE_EXTENSIONS)}")
    samples = _image_to_samples(path, image)
    planes = samples.shape[-1]
    if ext == ".png":
        payload = encode_png(samples)
    elif ext in (".ppm", ".pgm"):
        want = 3 if ext == ".ppm" else 1
        if planes != want:
            raise error(path, f"{ext} stores {'RGB (H, W, 3)' if want == 3 else 'grey (H, W)'} "
                               f"images, got {planes} channel(s)")
        maxval = 65535 if samples.dtype == np.uint16 else 255
        header = f"{'P6' if want == 3 else 'P5'}\n{samples.shape[1]} {samples.shape[0]}\n{maxval}\n"
        payload = header.encode("ascii") + samples.astype(
            ">u2" if maxval == 65535 else np.uint8).tobytes()
    else:
        from PIL import Image

        fmt = "JPEG" if ext in (".jpg", ".jpeg") else "BMP"
        if samples.dtype != np.uint8 or planes == 2 or (fmt == "JPEG" and planes == 4):
            raise error(path, f"{fmt} stores 8-bit grey or RGB{'A' if fmt == 'BMP' else ''} "
                               f"images, got {planes} channel(s) of {samples.dtype}")
        buffer = BytesIO()
        options = {"quality": 95} if fmt == "JPEG" else {}
        Image.fromarray(samples[..., 0] if planes == 1 else samples).save(buffer, format=fmt,
                                                                          **options)
        payload = buffer.getvalue()
    atomic_write(path, payload)
