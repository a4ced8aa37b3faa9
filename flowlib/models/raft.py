"""RAFT and RAFT-small: recurrent all-pairs field transforms for optical flow (Flax Linen).

Paper: Z. Teed, J. Deng, "RAFT: Recurrent All-Pairs Field Transforms for Optical Flow",
ECCV 2020 (arXiv:2003.12039). This is a port of ``torchvision.models.optical_flow.raft``
(torchvision 0.29; the same code as 0.28), ``raft_large`` and ``raft_small``, with the
same parameter names, and it loads torchvision's published weights (``CHECKPOINTS``;
converter: :mod:`flowlib.convert.raft`).

Input: ``image1``, ``image2``, RGB float in [0, 1], ``(B, H, W, 3)``, any ``H, W >= 1``.
Both frames are mapped to [-1, 1] (torchvision's ``OpticalFlow`` transform), padded by
edge replication to multiples of 8 and at least 64 pixels on each side, the padding split
evenly with the odd pixel at the bottom / right (RAFT's ``InputPadder``), and the flow is
cropped back.

Architecture (both as torchvision builds them):

* feature encoder on both frames (one batch), instance norm; context encoder on frame 1,
  batch norm (large) or none (small); residual blocks (large, 64-64-96-128 -> 256) or
  bottleneck blocks (small, 32-32-64-96 -> 128 / 160), output at 1/8;
* all-pairs correlation of the frame features, 4-level pooled pyramid, lookup radius 4
  (large) / 3 (small) (:func:`flowlib.ops.correlation_pyramid`,
  :func:`flowlib.ops.lookup_correlation_pyramid`);
* ``iters`` updates of the 1/8 flow by a motion encoder, a ConvGRU (large: a 1x5 and a
  5x1 GRU, hidden 128; small: one 3x3 GRU, hidden 96) and a flow head; the context
  features' share of the GRU convolutions is the same at every update and is computed
  once (:class:`ConvGRU`);
* upsampling x8: convex combination of the 3x3 neighbours with learned masks (large) or
  bilinear with ``align_corners=True`` (small).

Correlation lookup (``lookup``): ``"volume"`` builds the all-pairs volume as torchvision
does, ``(H/8 * W/8)^2`` float32 values per image pair; ``"on_the_fly"`` computes each
looked-up window from the pooled frame-2 features (:func:`flowlib.ops.
lookup_correlation_on_the_fly`, RAFT's "alternate" correlation): memory linear in the
pixels, same flow within float rounding (1e-4 px), slower; ``"hybrid"`` builds the
pooled levels 1-3 of the pyramid (a quarter of the volume and less) and computes only
level 0 on the fly: about a quarter of the on-the-fly work, same flow within float
rounding. ``"auto"`` (the default) takes the volume while it holds at most
:data:`ON_THE_FLY_ABOVE` elements (``B * (H/8 * W/8)^2`` of the padded input, 256 Mi =
1 GiB float32: up to about 1024x1024 for one pair), else ``"hybrid"`` while level 1
holds at most that many (up to 1920x1088 for one pair: 1.4 GB for levels 1-3), else
``"on_the_fly"``.

Output: ``FlowOutput(flow, aux)``; ``flow`` ``(B, H, W, 2)`` in pixels of the input grid,
the prediction after the last update. ``aux`` keys:

* ``low_res_flow``: ``(B, H'/8, W'/8, 2)``, the last 1/8 flow (``H' x W'`` the padded size);
* ``flow_predictions`` (only with ``train=True``): list of the ``iters`` upsampled,
  cropped predictions ``(B, H, W, 2)``, first to last: what RAFT's sequence loss
  (:func:`flowlib.losses.raft_loss`) weights. As torchvision, the flow fed to each update's
  correlation lookup carries no gradient (``coords1.detach()``).

``train=True`` also switches the large model's context-encoder batch norm to batch
statistics (``mutable=["batch_stats"]``).

``dtype="bfloat16"``: every convolution multiplies in bfloat16 and accumulates in float32
(:func:`~flowlib.models._spec.compute_dtype`); the correlation, lookup, GRU gates,
norms and upsampling stay float32.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flowlib import hub, losses, ops
from flowlib.convert import raft as _convert
from flowlib.models._inputs import check_image_pair
from flowlib.models._layers import BatchNorm, Conv, _mixed_conv
from flowlib.models._outputs import FlowOutput
from flowlib.models._spec import ModelSpec, Option, compute_dtype

__all__ = [
    "RAFT",
    "RaftSmall",
    "ON_THE_FLY_ABOVE",
    "LOOKUPS",
    "MIN_SIZE",
    "check_iters",
    "resolve_lookup",
    "input_padding",
    "LARGE_CHECKPOINTS",
    "SMALL_CHECKPOINTS",
    "SPECS",
]

#: ``lookup="auto"`` materialises no pyramid level with more elements than this
#: (``B * (H/8 * W/8)^2`` for level 0; 2^28 float32 = 1 GiB).
ON_THE_FLY_ABOVE = 2**28
LOOKUPS = ("auto", "volume", "hybrid", "on_the_fly")
#: Smallest padded side: the 1/8 grid must survive three 2x2 poolings.
MIN_SIZE = 64
_LEVELS = 4
_FACTOR = 8


def check_iters(iters: Any) -> int:
    """Validate the number of flow updates: an int >= 1."""
    if isinstance(iters, bool) or not isinstance(iters, (int, np.integer)) or iters < 1:
        raise ValueError(f"iters must be an int >= 1 (number of flow updates), got {iters!r}")
    return int(iters)


def input_padding(height: int, width: int) -> ops.Padding:
    """Edge padding of an ``height x width`` frame: to multiples of 8, at least
    :data:`MIN_SIZE`, split evenly with the odd pixel at the bottom / right."""
    pads = []
    for size in (height, width):
        target = max(-(-size // _FACTOR) * _FACTOR, MIN_SIZE)
        extra = target - size
        pads += [extra // 2, extra - extra // 2]
    return ops.Padding(*pads)


def resolve_lookup(lookup: str, batch: int, height: int, width: int) -> str:
    """The correlation lookup a :class:`RAFT` with option ``lookup`` runs on a batch of
    ``batch`` frame pairs of ``height x width`` (before padding): ``lookup`` itself unless
    it is ``"auto"``, which takes ``"volume"`` while the padded input's all-pairs volume
    holds at most :data:`ON_THE_FLY_ABOVE` elements, else ``"hybrid"`` while its pyramid
    level 1 does, else ``"on_the_fly"``."""
    if lookup not in LOOKUPS:
        raise ValueError(f"lookup must be one of {LOOKUPS}, got {lookup!r}")
    if lookup != "auto":
        return lookup
    pad = input_padding(height, width)
    h8 = (height + pad.top + pad.bottom) // _FACTOR
    w8 = (width + pad.left + pad.right) // _FACTOR
    if batch * (h8 * w8) ** 2 <= ON_THE_FLY_ABOVE:
        return "volume"
    if batch * h8 * w8 * (h8 // 2) * (w8 // 2) <= ON_THE_FLY_ABOVE:
        return "hybrid"
    return "on_the_fly"


# ----------------------------------------------------------------- building blocks


def _instance_norm(x: jax.Array) -> jax.Array:
    """``nn.InstanceNorm2d`` defaults: no affine, biased variance, eps 1e-5, float32."""
    x = x.astype(jnp.float32)
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + 1e-5)


class ConvNormAct(nn.Module):
    """torchvision ``Conv2dNormActivation`` (bias on): conv, norm, ReLU.

    ``norm``: ``"instance"``, ``"batch"`` or ``None``; ``act``: ReLU or not.
    """

    features: int
    kernel_size: int
    stride: int = 1
    norm: str | None = None
    act: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        x = Conv(self.features, self.kernel_size, stride=self.stride,
                 padding=(self.kernel_size - 1) // 2, dtype=self.dtype, name="conv")(x)
        if self.norm == "instance":
            x = _instance_norm(x)
        elif self.norm == "batch":
            x = BatchNorm(name="norm")(x, train=train)
        return nn.relu(x) if self.act else x


class ResidualBlock(nn.Module):
    """Two 3x3 conv-norm-ReLU, a 1x1 projection when strided, ReLU of the sum."""

    features: int
    norm: str | None
    stride: int = 1
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        y = ConvNormAct(self.features, 3, self.stride, self.norm, dtype=self.dtype,
                        name="convnormrelu1")(x, train=train)
        y = ConvNormAct(self.features, 3, 1, self.norm, dtype=self.dtype,
                        name="convnormrelu2")(y, train=train)
        if self.stride != 1:
            x = ConvNormAct(self.features, 1, self.stride, self.norm, act=False, dtype=self.dtype,
                            name="downsample")(x, train=train)
        return nn.relu(x + y)


class BottleneckBlock(nn.Module):
    """1x1 (features/4), 3x3 (strided), 1x1 (features), a 1x1 projection when strided."""

    features: int
    norm: str | None
    stride: int = 1
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        quarter = self.features // 4
        y = ConvNormAct(quarter, 1, 1, self.norm, dtype=self.dtype,
                        name="convnormrelu1")(x, train=train)
        y = ConvNormAct(quarter, 3, self.stride, self.norm, dtype=self.dtype,
                        name="convnormrelu2")(y, train=train)
        y = ConvNormAct(self.features, 1, 1, self.norm, dtype=self.dtype,
                        name="convnormrelu3")(y, train=train)
        if self.stride != 1:
            x = ConvNormAct(self.features, 1, self.stride, self.norm, act=False, dtype=self.dtype,
                            name="downsample")(x, train=train)
        return nn.relu(x + y)


class FeatureEncoder(nn.Module):
    """7x7 stride-2 conv, three stages of two blocks (strides 1, 2, 2), 1x1 conv: 1/8."""

    layers: Sequence[int]
    bottleneck: bool
    norm: str | None
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        block = BottleneckBlock if self.bottleneck else ResidualBlock
        x = ConvNormAct(self.layers[0], 7, 2, self.norm, dtype=self.dtype,
                        name="convnormrelu")(x, train=train)
        for stage, stride in zip((1, 2, 3), (1, 2, 2)):
            for i in range(2):
                x = block(self.layers[stage], self.norm, stride if i == 0 else 1, dtype=self.dtype,
                          name=f"layer{stage}_{i}")(x, train=train)
        return Conv(self.layers[4], 1, dtype=self.dtype, name="conv")(x)


class MotionEncoder(nn.Module):
    """Correlation and flow features, merged, with the flow appended (``out`` channels)."""

    corr_layers: Sequence[int]
    flow_layers: Sequence[int]
    out: int
    dtype: Any = None

    @nn.compact
    def __call__(self, flow: jax.Array, corr: jax.Array) -> jax.Array:
        c = ConvNormAct(self.corr_layers[0], 1, dtype=self.dtype, name="convcorr1")(corr)
        if len(self.corr_layers) == 2:
            c = ConvNormAct(self.corr_layers[1], 3, dtype=self.dtype, name="convcorr2")(c)
        f = ConvNormAct(self.flow_layers[0], 7, dtype=self.dtype, name="convflow1")(flow)
        f = ConvNormAct(self.flow_layers[1], 3, dtype=self.dtype, name="convflow2")(f)
        cf = ConvNormAct(self.out - 2, 3, dtype=self.dtype,
                         name="conv")(jnp.concatenate([c, f], axis=-1))
        return jnp.concatenate([cf, flow], axis=-1)


class _ConvParams(nn.Module):
    """``nn.Conv``'s parameters (``kernel`` ``(*k, in, out)``, ``bias``) without the conv."""

    features: int
    kernel_size: Sequence[int]
    in_features: int

    @nn.compact
    def __call__(self) -> tuple[jax.Array, jax.Array]:
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (*self.kernel_size, self.in_features, self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return kernel, bias


class _SplitConv(nn.Module):
    """A stride-1 convolution of a channel concatenation, applied to some of its parts.

    The parameters are :class:`~flowlib.models._layers.Conv`'s (``conv/kernel``,
    ``conv/bias``) for ``in_features`` input channels. ``__call__(x, parts, bias)`` is
    that convolution's contribution of the input-channel ranges ``parts`` (``x`` holds
    those channels, concatenated in the same order), plus the bias when ``bias``: a
    convolution is linear, so the contributions of the parts of its input sum to it.
    """

    features: int
    kernel_size: Sequence[int]
    padding: Sequence[int]
    in_features: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, parts: Sequence[tuple[int, int]], bias: bool) -> jax.Array:
        kernel, b = _ConvParams(self.features, tuple(self.kernel_size), self.in_features,
                                name="conv")()
        kernel = jnp.concatenate([kernel[..., lo:hi, :] for lo, hi in parts], axis=-2)
        y = _mixed_conv(jax.lax.conv_general_dilated, compute_dtype(self.dtype))(
            x, kernel, (1, 1), [(p, p) for p in self.padding],
            dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + b if bias else y


class ConvGRU(nn.Module):
    """Convolutional GRU: ``h' = (1 - z) h + z tanh(conv_q([r h, x]))``,
    ``z = sigmoid(conv_z([h, x]))``, ``r = sigmoid(conv_r([h, x]))``, with the input
    ``x = [context, motion]`` (``context_features`` + ``motion_features`` channels).

    The context is the same at every update, so its share of the three convolutions
    (and their biases) is computed once (:meth:`context_terms`); each update
    (:meth:`__call__`) convolves only ``[h, motion]``.
    """

    hidden: int
    kernel_size: Sequence[int]
    padding: Sequence[int]
    context_features: int
    motion_features: int
    dtype: Any = None

    def setup(self) -> None:
        in_features = self.hidden + self.context_features + self.motion_features
        convs = [_SplitConv(self.hidden, self.kernel_size, self.padding, in_features,
                            dtype=self.dtype) for _ in range(3)]
        self.convz, self.convr, self.convq = convs

    def _ranges(self) -> tuple[tuple[int, int], tuple[int, int]]:
        context_end = self.hidden + self.context_features
        return (self.hidden, context_end), (context_end, context_end + self.motion_features)

    def context_terms(self, context: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """The context's contributions to ``conv_z``, ``conv_r``, ``conv_q``, with biases."""
        context_range = [self._ranges()[0]]
        return tuple(conv(context, context_range, True)
                     for conv in (self.convz, self.convr, self.convq))

    def __call__(self, h: jax.Array, motion: jax.Array,
                 terms: tuple[jax.Array, jax.Array, jax.Array]) -> jax.Array:
        hidden_and_motion = [(0, self.hidden), self._ranges()[1]]
        hm = jnp.concatenate([h, motion], axis=-1)
        z = jax.nn.sigmoid(self.convz(hm, hidden_and_motion, False) + terms[0])
        r = jax.nn.sigmoid(self.convr(hm, hidden_and_motion, False) + terms[1])
        rhm = jnp.concatenate([r * h, motion], axis=-1)
        q = jnp.tanh(self.convq(rhm, hidden_and_motion, False) + terms[2])
        return (1 - z) * h + z * q


class RecurrentBlock(nn.Module):
    """One or two ConvGRUs in sequence (large: 1x5 then 5x1; small: one 3x3), all on the
    same input ``[context, motion]``."""

    hidden: int
    kernel_sizes: Sequence[Sequence[int]]
    paddings: Sequence[Sequence[int]]
    context_features: int
    motion_features: int
    dtype: Any = None

    def setup(self) -> None:
        grus = [ConvGRU(self.hidden, k, p, self.context_features, self.motion_features,
                        dtype=self.dtype) for k, p in zip(self.kernel_sizes, self.paddings)]
        self.convgru1 = grus[0]
        if len(grus) > 1:
            self.convgru2 = grus[1]

    def _grus(self) -> list[ConvGRU]:
        return [self.convgru1] + ([self.convgru2] if len(self.kernel_sizes) > 1 else [])

    def context_terms(self, context: jax.Array) -> list:
        """Every GRU's :meth:`ConvGRU.context_terms`."""
        return [gru.context_terms(context) for gru in self._grus()]

    def __call__(self, h: jax.Array, motion: jax.Array, terms: Sequence) -> jax.Array:
        for gru, gru_terms in zip(self._grus(), terms):
            h = gru(h, motion, gru_terms)
        return h


class FlowHead(nn.Module):
    """3x3 conv, ReLU, 3x3 conv to the 2-channel flow update."""

    hidden: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(Conv(self.hidden, 3, padding=1, dtype=self.dtype, name="conv1")(x))
        return Conv(2, 3, padding=1, dtype=self.dtype, name="conv2")(x)


class MaskPredictor(nn.Module):
    """3x3 conv-ReLU (256), 1x1 conv to 8*8*9 upsampling logits, times 0.25."""

    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = ConvNormAct(256, 3, dtype=self.dtype, name="convrelu")(x)
        return 0.25 * Conv(_FACTOR * _FACTOR * 9, 1, dtype=self.dtype, name="conv")(x)


def convex_upsample(flow: jax.Array, mask: jax.Array) -> jax.Array:
    """RAFT's convex upsampling x8.

    Args:
      flow: ``(B, h, w, 2)`` flow on the 1/8 grid.
      mask: ``(B, h, w, 576)`` logits in torchvision's channel order ``k * 64 + i * 8 + j``
        (k the 3x3 neighbour, row-major; ``(i, j)`` the sub-pixel row and column).

    Returns:
      ``(B, 8h, 8w, 2)``: ``out[8y + i, 8x + j] = sum_k softmax_k(mask[y, x, k, i, j]) *
      8 * flow[y + ky - 1, x + kx - 1]`` (zero outside the grid, ``F.unfold(padding=1)``).
    """
    b, h, w, _ = flow.shape
    weights = jax.nn.softmax(mask.astype(jnp.float32).reshape(b, h, w, 9, _FACTOR, _FACTOR),
                             axis=3)
    padded = jnp.pad(_FACTOR * flow, ((0, 0), (1, 1), (1, 1), (0, 0)))
    neighbours = jnp.stack([padded[:, ky:ky + h, kx:kx + w] for ky in range(3) for kx in range(3)],
                           axis=3)  # (b, h, w, 9, 2)
    up = jnp.einsum("bhwkij,bhwkc->bhiwjc", weights, neighbours)
    return up.reshape(b, h * _FACTOR, w * _FACTOR, 2)


def bilinear_upsample(flow: jax.Array) -> jax.Array:
    """RAFT-small's upsampling: ``8 * interpolate(flow, x8, bilinear, align_corners=True)``."""
    b, h, w, _ = flow.shape
    return _FACTOR * ops.resize_bilinear(flow, (h * _FACTOR, w * _FACTOR), align_corners=True)


def _coords_grid(batch: int, height: int, width: int) -> jax.Array:
    ys, xs = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                          jnp.arange(width, dtype=jnp.float32), indexing="ij")
    return jnp.broadcast_to(jnp.stack([xs, ys], axis=-1), (batch, height, width, 2))


class _UpdateBlock(nn.Module):
    """torchvision's ``UpdateBlock`` with the correlation lookup: :meth:`context_terms` once,
    then :meth:`__call__` once per flow update (scanned ``iters`` times by :class:`RAFT`).

    Carry ``(hidden, coords1)``; each update emits ``(hidden, coords1)`` when ``collect``.
    """

    corr_layers: Sequence[int]
    flow_layers: Sequence[int]
    motion_out: int
    hidden: int
    context_features: int
    gru_kernels: Sequence[Sequence[int]]
    gru_paddings: Sequence[Sequence[int]]
    head_hidden: int
    radius: int
    lookup: str
    collect: bool
    dtype: Any = None

    def setup(self) -> None:
        self.motion_encoder = MotionEncoder(self.corr_layers, self.flow_layers, self.motion_out,
                                            dtype=self.dtype)
        self.recurrent_block = RecurrentBlock(self.hidden, self.gru_kernels, self.gru_paddings,
                                              self.context_features, self.motion_out,
                                              dtype=self.dtype)
        self.flow_head = FlowHead(self.head_hidden, dtype=self.dtype)

    def context_terms(self, context: jax.Array) -> list:
        """The recurrent block's context terms (:meth:`RecurrentBlock.context_terms`)."""
        return self.recurrent_block.context_terms(context)

    def __call__(self, carry, terms, coords0, corr_state):
        hidden, coords1 = carry
        coords1 = jax.lax.stop_gradient(coords1)
        if self.lookup == "on_the_fly":
            f1, f2_pyramid = corr_state
            corr = ops.lookup_correlation_on_the_fly(f1, f2_pyramid, coords1, radius=self.radius,
                                                     normalize="sqrt_channels")
        elif self.lookup == "hybrid":
            # Level 0 on the fly; levels 1.. from their volumes, whose level-1 coordinates
            # are coords1 / 2 (division by 2 is exact).
            f1, f2, coarse = corr_state
            fine = ops.lookup_correlation_on_the_fly(f1, [f2], coords1, radius=self.radius,
                                                     normalize="sqrt_channels")
            corr = jnp.concatenate(
                [fine, ops.lookup_correlation_pyramid(coarse, coords1 / 2, radius=self.radius)],
                axis=-1)
        else:
            corr = ops.lookup_correlation_pyramid(corr_state, coords1, radius=self.radius)
        motion = self.motion_encoder(coords1 - coords0, corr)
        hidden = self.recurrent_block(hidden, motion, terms)
        coords1 = coords1 + self.flow_head(hidden)
        return (hidden, coords1), ((hidden, coords1) if self.collect else None)


def _update_step(block: _UpdateBlock, carry, terms, coords0, corr_state):
    return block(carry, terms, coords0, corr_state)


class RAFT(nn.Module):
    """RAFT flow estimator (see the module docstring); defaults build ``raft_large``.

    Attributes:
      iters: number of flow updates (torchvision's ``num_flow_updates``, default 12).
      lookup: ``"auto"``, ``"volume"``, ``"hybrid"`` or ``"on_the_fly"`` (module docstring).
      dtype: ``None`` / ``"float32"`` or ``"bfloat16"`` (convolutions only).
      small: RAFT-small's configuration (:data:`RaftSmall`).
    """

    iters: int = 12
    lookup: str = "auto"
    dtype: Any = None
    small: bool = False

    def _config(self) -> dict[str, Any]:
        if self.small:
            return dict(feature=(32, 32, 64, 96, 128), context=(32, 32, 64, 96, 160),
                        bottleneck=True, context_norm=None, radius=3, corr_layers=(96,),
                        flow_layers=(64, 32), motion_out=82, hidden=96, gru_kernels=((3, 3),),
                        gru_paddings=((1, 1),), head_hidden=128, mask=False)
        return dict(feature=(64, 64, 96, 128, 256), context=(64, 64, 96, 128, 256),
                    bottleneck=False, context_norm="batch", radius=4, corr_layers=(256, 192),
                    flow_layers=(128, 64), motion_out=128, hidden=128,
                    gru_kernels=((1, 5), (5, 1)), gru_paddings=((0, 2), (2, 0)), head_hidden=256,
                    mask=True)

    @nn.compact
    def __call__(self, image1: jax.Array, image2: jax.Array, *, train: bool = False) -> FlowOutput:
        iters = check_iters(self.iters)
        if self.lookup not in LOOKUPS:
            raise ValueError(f"lookup must be one of {LOOKUPS}, got {self.lookup!r}")
        check_image_pair(image1, image2)
        dtype = compute_dtype(self.dtype)
        cfg = self._config()
        batch, height, width = image1.shape[:3]
        padding = input_padding(height, width)
        widths = ((0, 0), (padding.top, padding.bottom), (padding.left, padding.right), (0, 0))

        def prepare(image: jax.Array) -> jax.Array:
            return jnp.pad(2.0 * image.astype(jnp.float32) - 1.0, widths, mode="edge")

        x1, x2 = prepare(image1), prepare(image2)
        fmaps = FeatureEncoder(cfg["feature"], cfg["bottleneck"], "instance", dtype=dtype,
                               name="feature_encoder")(jnp.concatenate([x1, x2], 0), train=train)
        fmaps = fmaps.astype(jnp.float32)
        fmap1, fmap2 = fmaps[:batch], fmaps[batch:]
        h8, w8 = fmap1.shape[1:3]
        lookup = resolve_lookup(self.lookup, batch, height, width)
        if lookup == "on_the_fly":
            corr_state = (fmap1, ops.feature_pyramid(fmap2, levels=_LEVELS))
        elif lookup == "hybrid":
            f2_pyramid = ops.feature_pyramid(fmap2, levels=_LEVELS)
            corr_state = (fmap1, fmap2, [
                ops.all_pairs_correlation(fmap1, level, normalize="sqrt_channels")
                for level in f2_pyramid[1:]])
        else:
            corr_state = ops.correlation_pyramid(fmap1, fmap2, levels=_LEVELS,
                                                 normalize="sqrt_channels")

        context_out = FeatureEncoder(cfg["context"], cfg["bottleneck"], cfg["context_norm"],
                                     dtype=dtype, name="context_encoder")(x1, train=train)
        context_out = context_out.astype(jnp.float32)
        hidden = jnp.tanh(context_out[..., : cfg["hidden"]])
        context = nn.relu(context_out[..., cfg["hidden"]:])

        coords0 = _coords_grid(batch, h8, w8)
        update = _UpdateBlock(cfg["corr_layers"], cfg["flow_layers"], cfg["motion_out"],
                              cfg["hidden"], context.shape[-1], cfg["gru_kernels"],
                              cfg["gru_paddings"], cfg["head_hidden"], cfg["radius"], lookup,
                              train, dtype=dtype, name="update_block")
        scan = nn.scan(_update_step, variable_broadcast="params", split_rngs={"params": False},
                       in_axes=(nn.broadcast, nn.broadcast, nn.broadcast), length=iters)
        (hidden, coords1), steps = scan(update, (hidden, coords0), update.context_terms(context),
                                        coords0, corr_state)
        mask_predictor = MaskPredictor(dtype=dtype, name="mask_predictor") if cfg["mask"] else None

        def upsample(hidden: jax.Array, flow: jax.Array) -> jax.Array:
            if mask_predictor is None:
                return bilinear_upsample(flow)
            return convex_upsample(flow, mask_predictor(hidden))

        low_res = coords1 - coords0
        aux: dict[str, Any] = {"low_res_flow": low_res}
        if train:
            hiddens, all_coords = steps
            # All updates' upsamplings in one batch (iters folded into the batch axis).
            flows = (all_coords - coords0).reshape(iters * batch, h8, w8, 2)
            ups = upsample(hiddens.reshape(iters * batch, h8, w8, -1), flows)
            ups = ops.unpad(ups, padding).reshape(iters, batch, height, width, 2)
            aux["flow_predictions"] = [ups[i] for i in range(iters)]
            flow = aux["flow_predictions"][-1]
        else:
            flow = ops.unpad(upsample(hidden, low_res), padding)
        return FlowOutput(flow, aux)


#: RAFT-small (torchvision ``raft_small``): :class:`RAFT` with ``small=True``.
RaftSmall = functools.partial(RAFT, small=True)


# ----------------------------------------------------------------- torchvision's weights

_URL = "https://download.pytorch.org/models/{}"
_LICENSE = "BSD-3-Clause (torchvision)"
_CT = "FlyingChairs + FlyingThings3D"
_SKHT = (f"{_CT}, fine-tuned on Sintel + KITTI 2015 + HD1K + FlyingThings3D (clean) "
         "('C+T+S+K+H')")


def _checkpoint(file: str, training_data: str, published: str, ported: bool) -> hub.Checkpoint:
    source = ("ported by torchvision from princeton-vl/RAFT (the paper's weights)" if ported
              else "trained by torchvision's references/optical_flow recipe")
    return hub.Checkpoint(
        url=_URL.format(file),
        filename=file,
        sha256=None,
        sha256_prefix=file.rsplit("-", 1)[1].split(".")[0],
        license=_LICENSE,
        training_data=f"{training_data} (torchvision: {published})",
        source_format="pytorch",
        model_kwargs={},
        notes=f"torchvision {file}: {source}; figures from torchvision's weight metadata.",
    )


#: torchvision ``Raft_Large_Weights`` (default: ``C_T_SKHT_V2``, torchvision's DEFAULT).
LARGE_CHECKPOINTS: dict[str, hub.Checkpoint] = {
    "C_T_V1": _checkpoint(
        "raft_large_C_T_V1-22a6c225.pth", _CT,
        "Sintel train EPE clean 1.4411, final 2.7894; KITTI-15 train EPE 5.0172, Fl-all 17.45 %",
        True),
    "C_T_V2": _checkpoint(
        "raft_large_C_T_V2-1bb1363a.pth", _CT,
        "Sintel train EPE clean 1.3822, final 2.7161; KITTI-15 train EPE 4.5118, Fl-all 16.07 %",
        False),
    "C_T_SKHT_V1": _checkpoint(
        "raft_large_C_T_SKHT_V1-0b8c9e55.pth", _SKHT,
        "Sintel test EPE clean 1.94, final 3.18", True),
    "C_T_SKHT_V2": _checkpoint(
        "raft_large_C_T_SKHT_V2-ff5fadd5.pth", _SKHT,
        "Sintel test EPE clean 1.819, final 3.067", False),
    "C_T_SKHT_K_V1": _checkpoint(
        "raft_large_C_T_SKHT_K_V1-4a6a5039.pth", f"{_SKHT}, then KITTI 2015",
        "KITTI-15 test Fl-all 5.10 %", True),
    "C_T_SKHT_K_V2": _checkpoint(
        "raft_large_C_T_SKHT_K_V2-b5c70766.pth", f"{_SKHT}, then KITTI 2015",
        "KITTI-15 test Fl-all 5.19 %", False),
}

#: torchvision ``Raft_Small_Weights`` (default: ``C_T_V2``, torchvision's DEFAULT).
SMALL_CHECKPOINTS: dict[str, hub.Checkpoint] = {
    "C_T_V1": _checkpoint(
        "raft_small_C_T_V1-ad48884c.pth", _CT,
        "Sintel train EPE clean 2.1231, final 3.2790; KITTI-15 train EPE 7.6557, Fl-all 25.28 %",
        True),
    "C_T_V2": _checkpoint(
        "raft_small_C_T_V2-01064c6d.pth", _CT,
        "Sintel train EPE clean 1.9901, final 3.2831; KITTI-15 train EPE 7.5978, Fl-all 25.24 %",
        False),
}


def _check_lookup(name: str, value: Any) -> str:
    if value not in LOOKUPS:
        raise ValueError(f"{name} must be one of {LOOKUPS}, got {value!r}")
    return value


_OPTIONS = (
    Option("iters", lambda name, value: check_iters(value), metavar="N",
           help="RAFT flow updates (default 12, as torchvision; more: slower, often better)"),
    Option("lookup", _check_lookup, type=str, choices=LOOKUPS, flag="--corr-lookup",
           help="RAFT correlation lookup: 'volume' (all-pairs volume, torchvision), "
                "'on_the_fly' (memory linear in the pixels, slower), 'hybrid' (pooled "
                "levels as volumes, level 0 on the fly), 'auto' (default: the volume up to "
                "2^28 elements, hybrid up to 2^28 in level 1, e.g. 1920x1080, else on the fly)"),
)

SPECS = (
    ModelSpec(
        name="raft",
        task="flow",
        summary="RAFT (Teed & Deng 2020; torchvision raft_large): recurrent all-pairs field "
                "transforms",
        build=RAFT,
        options=_OPTIONS,
        checkpoints=LARGE_CHECKPOINTS,
        default_weights="C_T_SKHT_V2",
        convert=_convert.convert_large_file,
        loss=losses.raft_loss,
        dtypes=("float32", "bfloat16"),
    ),
    ModelSpec(
        name="raft_small",
        task="flow",
        summary="RAFT-small (Teed & Deng 2020; torchvision raft_small): the 1M-parameter RAFT",
        build=RaftSmall,
        options=_OPTIONS,
        checkpoints=SMALL_CHECKPOINTS,
        default_weights="C_T_V2",
        convert=_convert.convert_small_file,
        loss=losses.raft_loss,
        dtypes=("float32", "bfloat16"),
    ),
)
