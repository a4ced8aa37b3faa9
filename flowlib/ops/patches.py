"""Square patches on a regular grid: extraction, means, bilinear sampling at offsets,
overlap-add.

The building blocks of patch-based matching (DIS-style inverse search): a template patch
per grid cell from frame 1, the frame-2 patch at ``cell + offset`` sampled bilinearly
(one displacement per patch), and the dense field assembled back from overlapping patches.

Conventions:

* Images are single-channel ``(B, H, W)`` float arrays; pixel centres at integers.
* A :class:`PatchGrid` of patch ``size`` p and ``stride`` s (p a multiple of s) has
  ``rows x cols`` patches; patch ``(i, j)`` covers rows ``i*s .. i*s + p - 1`` and columns
  ``j*s .. j*s + p - 1`` of the image extended to ``grid.height x grid.width`` by edge
  replication (``height = s*(rows - 1) + p >= H``), so every pixel is covered by
  ``(p/s)^2`` patches (fewer at the image's top and left borders).
* Offsets and displacements are ``(..., 2)`` in ``(x, y)`` order, pixels.

Extraction, means and overlap-add are reshapes and shifted adds (no gather/scatter); sampling is
one windowed gather of ``(p+1) x (p+1)`` per patch (``p x (p+1)`` for offsets along rows),
then a bilinear blend with the patch's single fractional offset: far cheaper than a
per-pixel gather on XLA:CPU.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["PatchGrid", "patch_grid", "extract_patches", "patch_means", "sample_patches",
           "overlap_add"]


class PatchGrid(NamedTuple):
    """A regular grid of square patches covering an ``image_height x image_width`` image."""

    size: int
    stride: int
    rows: int
    cols: int
    image_height: int
    image_width: int

    @property
    def height(self) -> int:
        """Rows of the (edge-extended) image the grid covers exactly."""
        return self.stride * (self.rows - 1) + self.size

    @property
    def width(self) -> int:
        """Columns of the (edge-extended) image the grid covers exactly."""
        return self.stride * (self.cols - 1) + self.size


def patch_grid(height: int, width: int, *, size: int, stride: int) -> PatchGrid:
    """The smallest grid of ``size x size`` patches, ``stride`` apart, covering the image.

    Raises:
      ValueError: a non-positive size/stride, or a size that is not a multiple of stride.
    """
    if size < 1 or stride < 1 or size % stride:
        raise ValueError(f"patch size must be a positive multiple of stride, got size={size}, "
                         f"stride={stride}")
    if height < 1 or width < 1:
        raise ValueError(f"image must be at least 1x1, got {height}x{width}")
    rows = max(1, math.ceil((height - size) / stride) + 1)
    cols = max(1, math.ceil((width - size) / stride) + 1)
    return PatchGrid(size, stride, rows, cols, height, width)


def _check_image(x: jax.Array, grid: PatchGrid, name: str) -> None:
    if x.ndim != 3 or x.shape[1:] != (grid.image_height, grid.image_width):
        raise ValueError(f"{name} must have shape (B, {grid.image_height}, {grid.image_width}),"
                         f" got {x.shape}")


def _blocks(x: jax.Array, grid: PatchGrid) -> jax.Array:
    """``x`` edge-extended to the grid, as its ``stride x stride`` blocks:
    ``(B, height / s, s, width / s, s)``."""
    s = grid.stride
    pad = ((0, 0), (0, grid.height - x.shape[1]), (0, grid.width - x.shape[2]))
    ext = jnp.pad(x, pad, mode="edge")
    return ext.reshape(ext.shape[0], grid.height // s, s, grid.width // s, s)


def extract_patches(x: jax.Array, grid: PatchGrid) -> jax.Array:
    """Patches of ``x`` ``(B, H, W)`` on ``grid``: ``(B, rows, cols, size, size)``."""
    _check_image(x, grid, "x")
    p, s = grid.size, grid.stride
    k = p // s
    blocks = _blocks(x, grid).transpose(0, 1, 3, 2, 4)
    rows = [
        jnp.stack([blocks[:, a : a + grid.rows, c : c + grid.cols] for c in range(k)], axis=3)
        for a in range(k)
    ]  # each (B, rows, cols, k_c, s, s)
    stacked = jnp.stack(rows, axis=3)  # (B, rows, cols, k_a, k_c, s, s)
    return stacked.transpose(0, 1, 2, 3, 5, 4, 6).reshape(x.shape[0], grid.rows, grid.cols, p, p)


def patch_means(x: jax.Array, grid: PatchGrid) -> jax.Array:
    """The mean of each patch of ``x`` ``(B, H, W)`` on ``grid``: ``(B, rows, cols)``, equal to
    ``extract_patches(x, grid).mean(axis=(-2, -1))`` up to float rounding.

    Summed from the ``stride x stride`` blocks' sums, ``(size / stride)^2`` per patch: a
    reduction over the image's own layout, which compiles to a fraction of the code of a
    reduction over the patches' (each patch's rows gathered from its blocks).
    """
    _check_image(x, grid, "x")
    p, s = grid.size, grid.stride
    k = p // s
    blocks = _blocks(x, grid).sum(axis=(2, 4))
    total = sum(blocks[:, a : a + grid.rows, c : c + grid.cols] for a in range(k) for c in range(k))
    return total / (p * p)


def overlap_add(values: jax.Array, grid: PatchGrid) -> jax.Array:
    """Sum overlapping patch values into the image: ``(B, rows, cols, p, p) -> (B, H, W)``.

    The inverse layout of :func:`extract_patches`: pixel ``(y, x)`` receives the sum of
    the entries of every patch that covers it (cropped back to the image size).
    """
    p, s = grid.size, grid.stride
    k = p // s
    if values.ndim != 5 or values.shape[1:] != (grid.rows, grid.cols, p, p):
        raise ValueError(f"values must have shape (B, {grid.rows}, {grid.cols}, {p}, {p}), "
                         f"got {values.shape}")
    b = values.shape[0]
    v = values.reshape(b, grid.rows, grid.cols, k, s, k, s)
    out = jnp.zeros((b, grid.rows + k - 1, grid.cols + k - 1, s, s), values.dtype)
    for a in range(k):
        for c in range(k):
            out = out.at[:, a : a + grid.rows, c : c + grid.cols].add(v[:, :, :, a, :, c, :])
    dense = out.transpose(0, 1, 3, 2, 4).reshape(b, grid.height, grid.width)
    return dense[:, : grid.image_height, : grid.image_width]


def sample_patches(x: jax.Array, grid: PatchGrid, offsets: jax.Array, *,
                   horizontal: bool = False, window: tuple[int, int] | None = None) -> jax.Array:
    """Bilinear patches of ``x`` at the grid positions moved by ``offsets``.

    Args:
      x: ``(B, H, W)`` image (frame 2).
      grid: the patch grid (of frame 1).
      offsets: ``(B, rows, cols, 2)`` displacement ``(x, y)`` of each patch, pixels.
      horizontal: the offsets move along rows only (rectified stereo): their ``y`` is
        taken as 0, and each patch is one linear blend of ``p x (p + 1)`` pixels along
        ``x`` (the same values as the bilinear blend with ``y = 0``).
      window: ``(height, width)`` of the sampled windows, anchored at the patches'
        top-left corners (default ``(p, p)``: the patches themselves).

    Returns:
      ``(B, rows, cols, height, width)``: entry ``[b, i, j, r, c]`` is ``x`` sampled at
      ``(j*s + c + u, i*s + r + v)``. Outside the image ``x`` is extended by edge
      replication for one window size; windows displaced farther than that are clamped
      to that band (their content is replicated border either way).
    """
    _check_image(x, grid, "x")
    if offsets.shape != (x.shape[0], grid.rows, grid.cols, 2):
        raise ValueError(f"offsets must have shape (B, {grid.rows}, {grid.cols}, 2), "
                         f"got {offsets.shape}")
    p = grid.size
    if window is not None and (len(window) != 2 or any(
            isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in window)):
        raise ValueError(f"window must be (height, width), two ints >= 1, got {window!r}")
    height, width = (p, p) if window is None else window
    m = max(height, width) + 1
    padded = jnp.pad(x, ((0, 0), (m, m), (m, m)), mode="edge")
    ys = (jnp.arange(grid.rows) * grid.stride).astype(offsets.dtype)
    xs = (jnp.arange(grid.cols) * grid.stride).astype(offsets.dtype)
    px = xs[None, None, :] + offsets[..., 0]
    if horizontal:  # the offsets' y is taken as 0
        py = jnp.broadcast_to(ys[None, :, None], px.shape)
    else:
        py = ys[None, :, None] + offsets[..., 1]
    fx0, fy0 = jnp.floor(px), jnp.floor(py)
    fx = (px - fx0)[..., None, None]
    fy = (py - fy0)[..., None, None]
    ix = jnp.clip(fx0.astype(jnp.int32) + m, 0, padded.shape[2] - width - 1)
    iy = jnp.clip(fy0.astype(jnp.int32) + m, 0, padded.shape[1] - height - 1)
    rows = height if horizontal else height + 1
    # Each patch's window, (B, rows, cols, height (+1), width + 1): one gather, batched over
    # the images (what vmapping a dynamic slice over images and patches builds, without its
    # tracing cost).
    dims = jax.lax.GatherDimensionNumbers(offset_dims=(3, 4), collapsed_slice_dims=(),
                                          start_index_map=(1, 2), operand_batching_dims=(0,),
                                          start_indices_batching_dims=(0,))
    wins = jax.lax.gather(padded, jnp.stack([iy, ix], axis=-1), dims, (1, rows, width + 1),
                          mode=jax.lax.GatherScatterMode.CLIP)
    top = wins[..., :height, :-1] * (1 - fx) + wins[..., :height, 1:] * fx
    if horizontal:
        return top
    bottom = wins[..., 1:, :-1] * (1 - fx) + wins[..., 1:, 1:] * fx
    return top * (1 - fy) + bottom * fy
