"""Images in, pictures out: input checks, the Agg canvas, tiling and atomic PNG writing;
part of :mod:`flowlib.viz`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flowlib._files import atomic_open


def image_uint8(image: Any) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3) or grey (H, W), got {image.shape}")
    if image.dtype == np.uint8:
        return image
    if np.issubdtype(image.dtype, np.floating):
        if not np.all(np.isfinite(image)) or image.min() < 0 or image.max() > 1:
            raise ValueError("a float image must hold finite values in [0, 1]")
        return np.round(image * 255.0).astype(np.uint8)
    raise ValueError(f"expected a uint8 or float [0, 1] image, got dtype {image.dtype}")


def agg_figure(width_px: int, height_px: int, dpi: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def render(fig: Any) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def tile(images: Sequence[Any], *, columns: int | None = None, padding: int = 0) -> np.ndarray:
    """Arrange equally sized uint8 images in a grid (row-major), black between and after.

    Args:
      images: sequence of ``(H, W, 3)`` uint8 images, or one ``(B, H, W, 3)`` array.
      columns: images per row; None = all in one row.
      padding: black pixels between neighbouring images.

    Returns:
      ``(rows*H + (rows-1)*padding, columns*W + (columns-1)*padding, 3)`` uint8.
    """
    images = [np.asarray(im) for im in images]
    if not images:
        raise ValueError("tile needs at least one image")
    shape = images[0].shape
    for im in images:
        if im.shape != shape or im.ndim != 3 or im.shape[-1] != 3 or im.dtype != np.uint8:
            raise ValueError(f"tile needs uint8 (H, W, 3) images of one shape, got {im.shape} {im.dtype}"
                             f" next to {shape}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    columns = len(images) if columns is None else int(columns)
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    rows = -(-len(images) // columns)
    h, w = shape[:2]
    out = np.zeros((rows * h + (rows - 1) * padding, columns * w + (columns - 1) * padding, 3), np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, columns)
        out[r * (h + padding) : r * (h + padding) + h, c * (w + padding) : c * (w + padding) + w] = im
    return out


def beside(picture: np.ndarray, key: np.ndarray) -> np.ndarray:
    """``key`` to the right of ``picture`` (both uint8 RGB); the shorter one is padded with
    white below."""
    height = max(picture.shape[0], key.shape[0])
    pad = lambda im: np.pad(im, ((0, height - im.shape[0]), (0, 0), (0, 0)),  # noqa: E731
                            constant_values=255)
    return np.concatenate([pad(picture), pad(key)], axis=1)


def save_png(path: str | os.PathLike, rgb: Any) -> None:
    """Write a uint8 image as PNG atomically (temporary file in the same folder + rename).

    A reader never sees a half-written file, and an interrupted write leaves any previous
    file intact.

    Args:
      path: destination file; its folder must exist.
      rgb: ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA or ``(H, W)`` grey uint8.
    """
    import png

    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:
        raise ValueError(f"save_png needs a uint8 image, got dtype {rgb.dtype} (for {path})")
    if rgb.ndim == 2:
        planes = 1
    elif rgb.ndim == 3 and rgb.shape[-1] in (3, 4):
        planes = rgb.shape[-1]
    else:
        raise ValueError(f"save_png needs (H, W), (H, W, 3) or (H, W, 4), got {rgb.shape} (for {path})")
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"save_png needs a non-empty image, got {rgb.shape} (for {path})")
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder of {path} does not exist")
    writer = png.Writer(width=rgb.shape[1], height=rgb.shape[0], greyscale=planes == 1,
                        alpha=planes == 4, bitdepth=8)
    with atomic_open(path) as f:
        writer.write(f, (row.tobytes() for row in np.ascontiguousarray(rgb).reshape(rgb.shape[0], -1)))
