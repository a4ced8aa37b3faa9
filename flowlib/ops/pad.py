"""Padding to a multiple of the network stride, and its exact inverse.

The upstream inference scripts place the padding differently, and the networks'
outputs depend on where it goes, so the placement is a required ``mode``:

* ``"center"``: split evenly, the odd pixel at the bottom / right (RAFT
  ``InputPadder`` for Sintel).
* ``"bottom_right"``: all padding after the image.
* ``"top_right"``: rows at the top, columns at the right (CFNet's KITTI, Middlebury and
  ETH3D loaders).
* ``"kitti"``: columns split evenly (odd one at the right), rows at the bottom only
  (RAFT ``InputPadder(mode="kitti")``).
"""

from __future__ import annotations

from typing import Literal, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Padding", "pad_to_multiple", "unpad"]

PadMode = Literal["center", "bottom_right", "top_right", "kitti"]
ValueMode = Literal["constant", "edge"]
_MODES = ("center", "bottom_right", "top_right", "kitti")
_VALUE_MODES = ("constant", "edge")


class Padding(NamedTuple):
    """Pixels added on each side of the image (Python ints, so unpadding stays static)."""

    top: int
    bottom: int
    left: int
    right: int


def _check_spatial(x: jax.Array, name: str) -> None:
    if x.ndim not in (3, 4):
        raise ValueError(f"{name} must have shape (B, H, W, C) or (B, H, W), got {x.shape}")


def _multiples(multiple: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(multiple, (int, np.integer)) and not isinstance(multiple, bool):
        pair = (int(multiple), int(multiple))
    elif isinstance(multiple, Sequence) and len(multiple) == 2 and all(
        isinstance(m, (int, np.integer)) and not isinstance(m, bool) for m in multiple
    ):
        pair = (int(multiple[0]), int(multiple[1]))
    else:
        raise ValueError(f"multiple must be an int or 2 ints (height, width), got {multiple!r}")
    if min(pair) <= 0:
        raise ValueError(f"multiple must be > 0, got {multiple!r}")
    return pair


def pad_to_multiple(
    x: jax.Array,
    multiple: int | Sequence[int],
    *,
    mode: PadMode,
    value_mode: ValueMode = "constant",
) -> tuple[jax.Array, Padding]:
    """Pad height and width up to the next multiple (no padding if already divisible).

    Args:
      x: ``(b, h, w, c)`` or ``(b, h, w)`` array.
      multiple: one int for both axes or ``(m_h, m_w)``.
      mode: where the padding goes: ``"center"``, ``"bottom_right"``, ``"top_right"`` or
        ``"kitti"`` (see the module docstring for which upstream uses which).
      value_mode: ``"constant"`` pads with zeros (CFNet, after input normalisation);
        ``"edge"`` replicates the border pixels (RAFT's ``F.pad(mode="replicate")``).

    Returns:
      ``(padded, padding)``: ``padded`` has shape ``(b, H, W[, c])`` with ``H``, ``W``
      the next multiples of ``m_h``, ``m_w``; ``padding`` says where the pixels went and
      undoes it with :func:`unpad`.

    Convention:
      ``padded[:, top:top + h, left:left + w] == x``. Odd amounts put the extra pixel at
      the bottom / right.
    """
    _check_spatial(x, "x")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if value_mode not in _VALUE_MODES:
        raise ValueError(f"value_mode must be one of {_VALUE_MODES}, got {value_mode!r}")
    m_h, m_w = _multiples(multiple)
    height, width = x.shape[1], x.shape[2]
    pad_h = -height % m_h
    pad_w = -width % m_w
    if mode == "center":
        padding = Padding(pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2)
    elif mode == "bottom_right":
        padding = Padding(0, pad_h, 0, pad_w)
    elif mode == "top_right":
        padding = Padding(pad_h, 0, 0, pad_w)
    else:  # kitti
        padding = Padding(0, pad_h, pad_w // 2, pad_w - pad_w // 2)
    widths = [(0, 0), (padding.top, padding.bottom), (padding.left, padding.right)]
    widths += [(0, 0)] * (x.ndim - 3)
    if value_mode == "edge" and 0 in (height, width) and (pad_h or pad_w):
        raise ValueError(f"value_mode='edge' needs a non-empty image, got x of shape {x.shape}")
    return jnp.pad(x, widths, mode=value_mode), padding


def unpad(y: jax.Array, padding: Padding) -> jax.Array:
    """Crop the padding added by :func:`pad_to_multiple` (exact inverse).

    Args:
      y: ``(b, H, W, c)`` or ``(b, H, W)`` array on the padded grid (the padded input
        or any per-pixel output of the same size: flow, disparity, masks).
      padding: the :class:`Padding` returned by :func:`pad_to_multiple`.

    Returns:
      ``(b, H - top - bottom, W - left - right[, c])``.

    Convention:
      Spatial axes are 1 and 2 for both layouts.
    """
    _check_spatial(y, "y")
    top, bottom, left, right = (int(p) for p in padding)
    if min(top, bottom, left, right) < 0:
        raise ValueError(f"padding must be non-negative, got {padding}")
    height, width = y.shape[1], y.shape[2]
    if top + bottom > height or left + right > width:
        raise ValueError(
            f"padding {padding} removes more than y of shape (B, H, W[, C]) = {y.shape} holds"
        )
    # Explicit end indices: a `-bottom` slice would be empty when bottom == 0.
    return y[:, top : height - bottom, left : width - right]
