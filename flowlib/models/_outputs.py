"""Return types shared by the models."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax


class FlowOutput(NamedTuple):
    """What a flow model returns.

    Attributes:
      flow: (B, H, W, 2) float flow in pixels at the *input* resolution, u right, v down.
      aux: named intermediates (multi-scale predictions for training losses, per-level
        flows, ...); each model documents its keys.
    """

    flow: jax.Array
    aux: dict[str, Any]


class StereoOutput(NamedTuple):
    """What a stereo model returns.

    Attributes:
      disparity: (B, H, W) float disparity in pixels at the input resolution, left view
        (right x = left x - d).
      aux: named intermediates (every disparity the official model returns, ...).
    """

    disparity: jax.Array
    aux: dict[str, Any]
