"""Stand-in models for tests of what happens around a model (warnings, the command line)."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

import flowlib
from flowlib.models._outputs import FlowOutput, StereoOutput


class ConstantStereo(nn.Module):
    """A stereo model with a search range ``maxdisp``: disparity ``top`` on the first
    ``columns`` columns, 3 px elsewhere."""

    maxdisp: int = 16
    top: float = 16.0
    columns: int = 1

    def __call__(self, left, right, train=False):
        b, h, w, _ = left.shape
        d = jnp.where(jnp.arange(w) < self.columns, self.top, 3.0)
        return StereoOutput(jnp.broadcast_to(d, (b, h, w)).astype(jnp.float32), {})


def constant_stereo(**kw) -> flowlib.Model:
    return flowlib.Model("constant", ConstantStereo(**kw), {}, task="stereo", meta={})


class ZeroFlow(nn.Module):
    """A flow model that estimates zero motion everywhere."""

    def __call__(self, image1, image2, train=False):
        b, h, w, _ = image1.shape
        return FlowOutput(jnp.zeros((b, h, w, 2), jnp.float32), {})


def zero_flow() -> flowlib.Model:
    return flowlib.Model("zero", ZeroFlow(), {}, task="flow", meta={})
