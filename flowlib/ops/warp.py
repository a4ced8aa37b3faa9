"""Backward warping by optical flow or disparity, and the PWC-style validity mask.

``backward_warp(I2, F)(x) = I2(x + F(x))``: frame 2 resampled onto frame 1's grid
(FlowNet2 ``Resample2d``, SpyNet ``backwarp``, PWC-Net / RAFT warps).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from flowlib.ops.sample import SamplePadding, bilinear_sample, grid_sample_coords

__all__ = ["backward_warp", "warp_validity", "warp_by_disparity"]


def _check_flow(flow: jax.Array, image_shape: tuple[int, ...] | None = None) -> None:
    if flow.ndim != 4 or flow.shape[-1] != 2:
        raise ValueError(f"flow must have shape (B, H, W, 2) holding (u, v), got {flow.shape}")
    if image_shape is not None and flow.shape[:3] != tuple(image_shape[:3]):
        raise ValueError(
            f"flow must have shape (B, H, W, 2) = {(*image_shape[:3], 2)} to match the image "
            f"{tuple(image_shape)}, got {flow.shape}"
        )
    if not jnp.issubdtype(flow.dtype, jnp.floating):
        raise ValueError(f"flow must be a floating-point array, got dtype {flow.dtype}")


def _sampling_coords(flow: jax.Array, *, align_corners: bool) -> jax.Array:
    """Pixel positions read when warping by ``flow`` (see :func:`backward_warp`)."""
    _, height, width, _ = flow.shape
    xs = jnp.arange(width, dtype=flow.dtype)[None, None, :]
    ys = jnp.arange(height, dtype=flow.dtype)[None, :, None]
    target_x = xs + flow[..., 0]
    target_y = ys + flow[..., 1]
    if align_corners:
        return jnp.stack([target_x, target_y], axis=-1)
    # Upstream (CFNet/PWC `warp()`) normalises with the align-corners formula, guarding
    # W == 1 with max(W - 1, 1), then calls grid_sample with PyTorch's align_corners=False
    # default: the samples land at (x + u) * W / (W - 1) - 0.5, not at x + u. Replayed
    # step by step so the float32 roundings match.
    grid = jnp.stack(
        [
            2.0 * target_x / max(width - 1, 1) - 1.0,
            2.0 * target_y / max(height - 1, 1) - 1.0,
        ],
        axis=-1,
    )
    return grid_sample_coords(grid, height, width, align_corners=False)


def backward_warp(
    image: jax.Array, flow: jax.Array, *, padding: SamplePadding, align_corners: bool,
    horizontal: bool = False,
) -> jax.Array:
    """Warp ``image`` (frame 2) onto frame 1's grid: sample it at ``(x + u, y + v)``.

    Args:
      image: ``(b, h, w, c)`` frame 2 image or features.
      flow: ``(b, h, w, 2)`` flow from frame 1 to frame 2 in pixels, ``(u, v)``.
      padding: ``"border"`` clamps the sampling coordinate to the image (SpyNet,
        FlowNet2 ``Resample2d``); ``"zeros"`` lets out-of-image neighbours contribute 0
        (PWC-Net, RAFT, CFNet ``warp()``). See :func:`~flowlib.ops.bilinear_sample`.
      align_corners: True: exact pixel-coordinate warping, sample at ``(x + u, y + v)``
        (what ``grid_sample(align_corners=True)`` does with a grid built as
        ``2(x + u)/(W - 1) - 1``: SpyNet, RAFT, PWC-Net under PyTorch < 1.3). False:
        reproduce that same grid fed to ``grid_sample(align_corners=False)`` (CFNet's
        ``warp()`` helper under PyTorch >= 1.3): the sample lands at
        ``((x + u) W/(W - 1) - 1/2, (y + v) H/(H - 1) - 1/2)``, so even zero flow
        shifts and stretches the image slightly. Only for reproducing that code.
      horizontal: rectified stereo: ``v`` is taken as 0 and each row is resampled along
        ``x`` alone (two neighbours instead of four; the same values as the bilinear warp
        with ``v = 0``). Needs ``align_corners=True``.

    Returns:
      ``(b, h, w, c)`` warped image, dtype of ``image``.

    Convention:
      Flow channel 0 = u (+x, right), 1 = v (+y, down), pixels. Zero flow with
      ``align_corners=True`` is the identity; an integer flow shifts the image
      (``out[y, x] = image[y + v, x + u]``).
    """
    if image.ndim != 4:
        raise ValueError(f"image must have shape (B, H, W, C), got {image.shape}")
    _check_flow(flow, image.shape)
    if horizontal:
        if not align_corners:
            raise ValueError("backward_warp(horizontal=True) needs align_corners=True (with "
                             "align_corners=False the rows are resampled vertically too)")
        flow = jnp.stack([flow[..., 0], jnp.zeros_like(flow[..., 0])], axis=-1)
    coords = _sampling_coords(flow, align_corners=align_corners)
    return bilinear_sample(image, coords, padding=padding, horizontal=horizontal)


def warp_validity(
    flow: jax.Array, *, align_corners: bool, threshold: float = 0.999
) -> jax.Array:
    """PWC-style validity mask: 1 where a zero-padded warp keeps (almost) all its weight.

    Upstream warps a tensor of ones with the same grid (zero padding) and sets the mask
    to 0 where the result is below ``threshold`` (0.999 in CFNet/PWC-Net; some copies
    use 0.9999), else 1. The warp of ones is the sum of the bilinear weights of the
    in-image neighbours, computed here without gathering anything.

    Args:
      flow: ``(b, h, w, 2)`` flow in pixels, ``(u, v)``.
      align_corners: as in :func:`backward_warp`.
      threshold: minimum in-image weight.

    Returns:
      ``(b, h, w)`` mask of 0.0 / 1.0, dtype of ``flow``. Multiply it into
      ``backward_warp(..., padding="zeros")`` to reproduce upstream's masked warp.

    Convention:
      A sample is valid iff its in-image bilinear weight ``>= threshold``; with
      ``align_corners=True`` that is (up to the threshold) ``x + u`` in ``[0, W - 1]``
      and ``y + v`` in ``[0, H - 1]``.
    """
    _check_flow(flow)
    _, height, width, _ = flow.shape
    coords = _sampling_coords(flow, align_corners=align_corners)

    def inside_weight(c: jax.Array, size: int) -> jax.Array:
        c0 = jnp.floor(c)
        f1 = c - c0
        w0 = jnp.where((c0 >= 0) & (c0 <= size - 1), 1 - f1, 0)
        w1 = jnp.where((c0 + 1 >= 0) & (c0 + 1 <= size - 1), f1, 0)
        return w0 + w1

    # Sum over the four corners of wy_i * wx_j * inside = (sum_i wy_i)(sum_j wx_j).
    ones_warped = inside_weight(coords[..., 0], width) * inside_weight(coords[..., 1], height)
    return (ones_warped >= threshold).astype(flow.dtype)


def warp_by_disparity(
    right: jax.Array, disparity: jax.Array, *, padding: SamplePadding, align_corners: bool
) -> jax.Array:
    """Warp the right image to the left view by a left-referenced disparity.

    Args:
      right: ``(b, h, w, c)`` right image or features.
      disparity: ``(b, h, w)`` left-image disparity in pixels (d >= 0 for a rectified
        pair; negative values are sampled the same way).
      padding: ``"zeros"`` or ``"border"``, see :func:`backward_warp`.
      align_corners: as in :func:`backward_warp` (False reproduces CFNet's ``warp()``).

    Returns:
      ``(b, h, w, c)``: ``right`` sampled at ``(x - d, y)``.

    Convention:
      Equals ``backward_warp(right, stack([-d, 0]), ...)``: the left pixel x matches the
      right pixel ``x - d``.
    """
    if disparity.ndim != 3:
        raise ValueError(f"disparity must have shape (B, H, W), got {disparity.shape}")
    if right.ndim != 4 or right.shape[:3] != disparity.shape:
        raise ValueError(
            f"right must have shape (B, H, W, C) with (B, H, W) = {disparity.shape} "
            f"(from disparity), got {right.shape}"
        )
    flow = jnp.stack([-disparity, jnp.zeros_like(disparity)], axis=-1)
    return backward_warp(right, flow, padding=padding, align_corners=align_corners)
