"""CFNet stereo: cascade and fused cost volumes (Flax Linen).

Paper: Z. Shen, Y. Dai, Z. Rao, "CFNet: Cascade and Fused Cost Volume for Robust Stereo
Matching", CVPR 2021 (arXiv:2104.04314). This is a port of gallenszl/CFNet @ 982230d,
``models/cfnet.py`` ``CFNet(maxdisp)`` = ``cfnet(maxdisp, use_concat_volume=True)`` with
Mish activations, and loads that repository's two released checkpoints (``CHECKPOINTS``;
converter: :mod:`flowlib.convert.cfnet`).

Input: ``image1`` (left) and ``image2`` (right), RGB float32 in [0, 1], ``(B, H, W, 3)``,
any ``H, W >= 1``. The model normalises with the ImageNet mean/std (upstream
``datasets/data_io.py``), zero-pads at the top and right to the next multiple of 32 (64
for sides shorter than 64, see :func:`pad_input`) and crops the outputs back.

Output: ``StereoOutput(disparity, aux)``; ``disparity`` is ``(B, H, W)`` in pixels, left
view (right x = left x - d), the upstream final output ``pred1_s2``. ``aux`` keys:

* ``disp_s3_up``, ``disp_s4_up``: the other two upstream eval outputs ``(B, H, W)``.
* Intermediates on the padded grid (``Hp x Wp``, crop with the padding / scale):
  ``cost2_s4`` (B, D, Hp/8, Wp/8) logits, D = maxdisp/8; ``pred2_s4`` (B, Hp/8, Wp/8);
  for stage ``s`` in (``s3`` at 1/4, ``s2`` at 1/2): ``range_{s}_in_min/max`` (bounds
  before :func:`search_range`), ``range_{s}_min/max``, ``uniform_{s}`` (B, N, h, w),
  ``samples_{s}`` (B, N + 2, h, w) int32, ``cost1_{s}`` (B, N + 2, h, w), ``pred1_{s}``.
* ``features``: ``{"left": ..., "right": ...}``, each ``{"gw2".."gw6",
  "concat2".."concat6"}`` NHWC feature maps on the padded grid.
* With ``train=True`` also ``train_disparities``: the nine full-resolution maps upstream
  returns in training, in its order (pred0_4, pred1_4, pred2_s4, pred0_s3, predmid_s3,
  pred1_s3, pred0_s2, predmid_s2, pred1_s2), for the loss weights of
  :data:`flowlib.losses.CFNET_WEIGHTS`.

Upstream quirks kept on purpose: the cascade hypotheses are truncated to integers
(``.long()``, :func:`disparity_hypotheses`), so no gradient reaches the learned range
scalars; the SPP pooling kernels depend on the input size (:func:`spp_kernel_sizes`).
:meth:`CFNet.stage_hypotheses` is the one place the hypotheses come from (tests replace its
result through ``flax.linen.intercept_methods`` for teacher-forced parity).

Deviations / choices: upstream test loaders pad to a fixed size (KITTI 384x1248) or by
``32 - H % 32`` even when H is divisible (Middlebury); this port pads minimally (identical
for KITTI's 375x1242). ``hourglassup.combine3`` / ``redir3`` exist in the checkpoints but
upstream never calls them; they are not parameters here (the converter lists them as
ignored, 680,448 values). The Mish network is ported; upstream's ReLU variant
(``models/relu``) is not. ``CFNet(channel_divisor=n)`` (not upstream) is the same network
with every channel width divided by ``n``: a small model to train from scratch (on a CPU);
the released weights need ``n = 1``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flowlib import hub, ops
from flowlib.models._layers import BatchNorm, Conv, ConvTranspose, compute_dtype, mish
from flowlib.models._outputs import StereoOutput

__all__ = [
    "CFNet",
    "CHECKPOINTS",
    "preprocess",
    "pad_input",
    "spp_kernel_sizes",
    "check_channel_divisor",
    "uncertainty_bounds",
    "search_range",
    "disparity_hypotheses",
    "stage_volume",
]

_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)
NUM_GROUPS = 40  # group-wise correlation groups at 1/8 ... 1/32 and 1/4 (20 at 1/2)
SAMPLES_S3 = 14  # uniform interior hypotheses at 1/4 (+ floor(min), ceil(max) = 16)
SAMPLES_S2 = 10  # ... at 1/2 (12 hypotheses)


class StageSpec(NamedTuple):
    """Static configuration of one cascade stage."""

    name: str  # "s3" / "s2": upstream's suffix, and the fixtures'
    stride: int  # input pixels per stage pixel (4 / 2)
    level: int  # feature level of its gw{level} / concat{level} features
    num_samples: int  # interior hypotheses N (the stage scores N + 2)
    groups: int  # group-wise correlation groups (before channel_divisor)


STAGE_S3 = StageSpec("s3", stride=4, level=3, num_samples=SAMPLES_S3, groups=NUM_GROUPS)
STAGE_S2 = StageSpec("s2", stride=2, level=2, num_samples=SAMPLES_S2, groups=NUM_GROUPS // 2)
# Channel widths that ``channel_divisor`` must divide exactly: the encoder/decoder, the
# group-wise head widths and the 3-D nets (32, 64; 16 in the 1/2 stage).
_DIVIDED_WIDTHS = (16, 32, 64, 80, 128, 160, 192, 256, 320, 512)


# ----------------------------------------------------------------------------- layers


class ConvBN(nn.Module):
    """Upstream ``convbn`` / ``convbn_3d`` (conv without bias + BatchNorm), then Mish."""

    features: int
    kernel_size: int = 3
    stride: int = 1
    padding: int = 1
    ndim: int = 2
    act: bool = True

    dtype: Any = None  # compute dtype of the convolutions (_layers.compute_dtype)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = Conv(self.features, self.kernel_size, stride=self.stride, padding=self.padding,
                 use_bias=False, ndim=self.ndim, dtype=self.dtype, name="conv")(x)
        x = BatchNorm(name="bn")(x, train=train)
        return mish(x) if self.act else x


class DeconvBN(nn.Module):
    """ConvTranspose3d(k3, s2, p1, output_padding 1, no bias) + BN: doubles D, H, W."""

    features: int

    dtype: Any = None  # compute dtype of the convolutions (_layers.compute_dtype)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = ConvTranspose(self.features, 3, stride=2, padding=1, output_padding=1,
                          use_bias=False, ndim=3, dtype=self.dtype, name="deconv")(x)
        return BatchNorm(name="bn")(x, train=train)


class BasicBlock(nn.Module):
    """Upstream ``BasicBlock``: two 3x3 convbn, 1x1 projection shortcut, no final act."""

    features: int
    stride: int

    dtype: Any = None  # compute dtype of the convolutions (_layers.compute_dtype)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        out = ConvBN(self.features, stride=self.stride,
                     dtype=self.dtype, name="conv1")(x, train=train)
        out = ConvBN(self.features, act=False, dtype=self.dtype, name="conv2")(out, train=train)
        # Every CFNet layer changes width or stride, so each block has the projection.
        shortcut = ConvBN(self.features, 1, self.stride, 0, act=False,
                          dtype=self.dtype, name="downsample")(x, train=train)
        return out + shortcut


def spp_kernel_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """Average-pool kernels (= strides) of CFNet's SPP paths 0..3 for an h x w input.

    Upstream ``pyramidPooling`` (icnet mode): pool sizes ``linspace(2, min(h, w), 4)``
    truncated to int, kernel ``(int(h / p), int(w / p))``, and the list is reversed so
    path 0 gets the smallest kernel. Needs ``min(h, w) >= 2``.
    """
    if min(height, width) < 2:
        raise ValueError(
            f"SPP input must be at least 2x2 (1/32 of the image), got {height}x{width}")
    pool_sizes = np.linspace(2, min(height, width), 4, dtype=int)
    return [(int(height / p), int(width / p)) for p in pool_sizes][::-1]


class PyramidPooling(nn.Module):
    """SPP at 1/32 (``pyramidPooling(512, None, fusion_mode='sum', model_name='icnet')``)."""

    dtype: Any = None  # compute dtype of the convolutions (_layers.compute_dtype)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        height, width, channels = x.shape[1:]
        total = x
        for i, kernel in enumerate(spp_kernel_sizes(height, width)):
            y = ops.avg_pool(x, kernel, stride=kernel, count_include_pad=True)
            y = ConvBN(channels, 1, padding=0, dtype=self.dtype, name=f"path_{i}")(y, train=train)
            # F.upsample(mode="bilinear") without align_corners: False.
            total = total + 0.25 * ops.resize_bilinear(y, (height, width), align_corners=False)
        return mish(total / 2.0)


class FeatureHead(nn.Module):
    """``gwN`` / ``concatN``: convbn 3x3 + Mish, then a 1x1 conv without bias."""

    hidden: int
    features: int

    dtype: Any = None  # compute dtype of the convolutions (_layers.compute_dtype)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = ConvBN(self.hidden, dtype=self.dtype, name="convbn")(x, train=train)
        return Conv(self.features, 1, use_bias=False, dtype=self.dtype, name="proj")(x)


# (hidden, out) widths of the group-wise and concatenation feature heads per level.
_GW_HEADS = {2: (80, 80), 3: (160, 160), 4: (160, 160), 5: (320, 320), 6: (320, 320)}
_CONCAT_HEADS = {2: (32, 6), 3: (128, 12), 4: (128, 12), 5: (128, 12), 6: (128, 12)}


def _reduced_count(n: int, divisor: int) -> int:
    """``max(1, n // divisor)``: the concatenation-feature widths (6, 12) and correlation
    groups (40, 20) under ``channel_divisor``, which it need not divide exactly."""
    return max(1, n // divisor)


def check_channel_divisor(divisor: int) -> None:
    """Raise ``ValueError`` unless ``divisor`` is a valid :attr:`CFNet.channel_divisor`.

    It must be an integer >= 1 that divides every channel width in ``_DIVIDED_WIDTHS``
    (so 1, 2, 4, 8 or 16), and each reduced group-wise feature width must stay divisible
    by its reduced number of correlation groups (:func:`_reduced_count`).
    """
    if isinstance(divisor, bool) or not isinstance(divisor, (int, np.integer)) or divisor < 1:
        raise ValueError(f"channel_divisor must be an integer >= 1, got {divisor!r}")
    if any(w % divisor for w in _DIVIDED_WIDTHS):
        valid = [d for d in range(1, 17) if not any(w % d for w in _DIVIDED_WIDTHS)]
        raise ValueError(
            f"channel_divisor must divide every CFNet channel width {_DIVIDED_WIDTHS}, i.e. be "
            f"one of {valid}; got {divisor}")
    # (feature level, groups): the fused volumes at 1/8 ... 1/32, then the cascade stages.
    volumes = [(level, NUM_GROUPS) for level in (4, 5, 6)]
    volumes += [(stage.level, stage.groups) for stage in (STAGE_S3, STAGE_S2)]
    for level, groups in volumes:
        width, reduced = _GW_HEADS[level][1] // divisor, _reduced_count(groups, divisor)
        if width % reduced:
            raise ValueError(
                f"channel_divisor {divisor}: the gw{level} width {width} is not divisible by "
                f"its {reduced} correlation groups")


class FeatureExtraction(nn.Module):
    """ResNet-style encoder to 1/32, SPP, nearest-upsampling decoder, per-level heads.

    ``channel_divisor`` divides every width (``CFNet.channel_divisor``; the concatenation
    heads' 6 / 12 outputs by :func:`_reduced_count`).
    """

    channel_divisor: int = 1

    dtype: Any = None  # compute dtype of the convolutions (_layers.compute_dtype)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> dict[str, jax.Array]:
        div = self.channel_divisor
        for i in range(3):
            x = ConvBN(32 // div, stride=2 if i == 0 else 1,
                       dtype=self.dtype, name=f"firstconv_{i}")(x, train=train)
        skips = {2: BasicBlock(64 // div, 1,
                               dtype=self.dtype, name="layer2")(x, train=train)}  # 1/2
        for level, width in ((3, 128), (4, 192), (5, 256), (6, 512)):   # 1/4 ... 1/32
            skips[level] = BasicBlock(width // div, 2, dtype=self.dtype, name=f"layer{level}")(
                skips[level - 1], train=train)
        decoded = {6: PyramidPooling(
            dtype=self.dtype, name="pyramid_pooling")(skips[6], train=train)}
        for level, width in ((5, 256), (4, 192), (3, 128), (2, 64)):
            coarse = decoded[level + 1]
            # nn.Upsample(scale_factor=2): nearest; the skip comes first in the concat.
            coarse = ops.resize_nearest(coarse, (2 * coarse.shape[1], 2 * coarse.shape[2]))
            up = ConvBN(width // div,
                        dtype=self.dtype, name=f"upconv{level + 1}")(coarse, train=train)
            merged = jnp.concatenate([skips[level], up], axis=-1)
            decoded[level] = ConvBN(width // div,
                                    dtype=self.dtype, name=f"iconv{level}")(merged, train=train)
        out = {}
        for level in range(2, 7):
            gw_hidden, gw_out = _GW_HEADS[level]
            cat_hidden, cat_out = _CONCAT_HEADS[level]
            out[f"gw{level}"] = FeatureHead(gw_hidden // div, gw_out // div,
                                            dtype=self.dtype, name=f"gw{level}")(
                decoded[level], train=train)
            out[f"concat{level}"] = FeatureHead(
                cat_hidden // div, _reduced_count(cat_out, div),
                    dtype=self.dtype, name=f"concat{level}")(
                decoded[level], train=train)
        return out


class Conv3dPair(nn.Module):
    """Two 3x3x3 convbn_3d with Mish (upstream ``dres0``-style); no Mish after the
    second when ``act_last`` is False (``dres1``-style residual branch)."""

    features: int
    act_last: bool

    dtype: Any = None  # compute dtype of the convolutions (_layers.compute_dtype)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = ConvBN(self.features, ndim=3, dtype=self.dtype, name="conv_0")(x, train=train)
        return ConvBN(self.features, ndim=3, act=self.act_last,
                      dtype=self.dtype, name="conv_1")(x, train=train)


class Hourglass(nn.Module):
    """Upstream ``hourglass``: two stride-2 convbn_3d stages down, two deconvs back up."""

    channels: int

    dtype: Any = None  # compute dtype of the convolutions (_layers.compute_dtype)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        c = self.channels
        conv2 = ConvBN(2 * c, stride=2, ndim=3, dtype=self.dtype, name="conv1")(x, train=train)
        conv2 = ConvBN(2 * c, ndim=3, dtype=self.dtype, name="conv2")(conv2, train=train)
        conv4 = ConvBN(4 * c, stride=2, ndim=3, dtype=self.dtype, name="conv3")(conv2, train=train)
        conv4 = ConvBN(4 * c, ndim=3, dtype=self.dtype, name="conv4")(conv4, train=train)
        redir2 = ConvBN(2 * c, 1, padding=0, ndim=3, act=False,
                        dtype=self.dtype, name="redir2")(conv2, train=train)
        conv5 = mish(DeconvBN(2 * c, dtype=self.dtype, name="conv5")(conv4, train=train) + redir2)
        redir1 = ConvBN(c, 1, padding=0, ndim=3, act=False,
                        dtype=self.dtype, name="redir1")(x, train=train)
        return mish(DeconvBN(c, dtype=self.dtype, name="conv6")(conv5, train=train) + redir1)


class HourglassUp(nn.Module):
    """Upstream ``hourglassup`` (``combine1``): fuses the 1/8, 1/16 and 1/32 volumes.

    The plain stride-2 convs (no BN) bring the 1/8 volume down to where the coarser
    volumes are concatenated. Upstream also registers ``combine3`` and ``redir3`` but
    never calls them; they are omitted here.
    """

    channels: int

    dtype: Any = None  # compute dtype of the convolutions (_layers.compute_dtype)

    @nn.compact
    def __call__(self, x: jax.Array, cost5: jax.Array, cost6: jax.Array, *,
                 train: bool) -> jax.Array:
        c = self.channels
        conv1 = Conv(2 * c, 3, stride=2, padding=1, use_bias=False, ndim=3,
                     dtype=self.dtype, name="conv1")(x)
        conv1 = ConvBN(2 * c, ndim=3, dtype=self.dtype, name="combine1")(
            jnp.concatenate([conv1, cost5], axis=-1), train=train)
        conv2 = ConvBN(2 * c, ndim=3, dtype=self.dtype, name="conv2")(conv1, train=train)
        conv3 = Conv(4 * c, 3, stride=2, padding=1, use_bias=False, ndim=3,
                     dtype=self.dtype, name="conv3")(conv2)
        conv3 = ConvBN(4 * c, ndim=3, dtype=self.dtype, name="combine2")(
            jnp.concatenate([conv3, cost6], axis=-1), train=train)
        conv4 = ConvBN(4 * c, ndim=3, dtype=self.dtype, name="conv4")(conv3, train=train)
        redir2 = ConvBN(2 * c, 1, padding=0, ndim=3, act=False,
                        dtype=self.dtype, name="redir2")(conv2, train=train)
        conv8 = mish(DeconvBN(2 * c, dtype=self.dtype, name="conv8")(conv4, train=train) + redir2)
        redir1 = ConvBN(c, 1, padding=0, ndim=3, act=False,
                        dtype=self.dtype, name="redir1")(x, train=train)
        return mish(DeconvBN(c, dtype=self.dtype, name="conv9")(conv8, train=train) + redir1)


class CostHead(nn.Module):
    """``classif*`` / ``confidence_classif*``: convbn_3d + Mish, Conv3d to one channel.

    Returns the matching-cost logits ``(B, D, H, W)`` (softmax over D gives p(d)).
    """

    channels: int

    dtype: Any = None  # compute dtype of the convolutions (_layers.compute_dtype)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = ConvBN(self.channels, ndim=3, dtype=self.dtype, name="convbn")(x, train=train)
        return Conv(1, 3, padding=1, use_bias=False, ndim=3,
                    dtype=self.dtype, name="proj")(x)[..., 0]


# ------------------------------------------------------------- cascade search range


def uncertainty_bounds(prob: jax.Array, hypotheses: jax.Array, gamma: jax.Array,
                       beta: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Soft-argmin and the uncertainty interval around it.

    Args:
      prob: ``(B, D, H, W)`` probabilities over the hypotheses.
      hypotheses: ``(D,)`` or ``(B, D, H, W)`` disparity values.
      gamma, beta: learned scalars (shape ``(1,)``).

    Returns:
      ``(pred, lo, hi)``, each ``(B, H, W)``: ``pred = sum p d``;
      ``lo/hi = pred -/+ (gamma + 1) * U -/+ beta`` with ``U = sqrt(sum p (d - pred)^2)``
      and ``pred`` detached inside the bounds (upstream ``pred*_cur = pred.detach()``).
    """
    pred = ops.disparity_regression(prob, hypotheses)
    cur = jax.lax.stop_gradient(pred)
    spread = (gamma + 1) * jnp.sqrt(ops.disparity_variance(prob, hypotheses, cur))
    return pred, cur - spread - beta, cur + spread + beta


def search_range(lo: jax.Array, hi: jax.Array, *, min_width: int,
                 upper: int) -> tuple[jax.Array, jax.Array]:
    """Upstream ``generate_search_range``: widen to ``min_width`` and clamp to [0, upper].

    ``e = max(0, min_width - (hi - lo))`` is split evenly between both ends, then both
    bounds are clamped to ``[0, upper]`` (``upper = maxdisp // 2**scale - 1``), so a range
    at a clamp limit may end up narrower than ``min_width`` (upstream does the same).
    ``min_width`` is upstream's ``sample_count`` = number of interior samples + 1.
    """
    # Same operation order as upstream, `(n - hi) + lo`, so rounding matches bit for bit.
    widen = jnp.maximum(min_width - hi + lo, 0) / 2.0
    return jnp.clip(lo - widen, 0, upper), jnp.clip(hi + widen, 0, upper)


def disparity_hypotheses(lo: jax.Array, hi: jax.Array, *,
                         num_samples: int) -> tuple[jax.Array, jax.Array]:
    """Upstream ``UniformSampler`` + ``generate_disparity_samples``.

    Args:
      lo, hi: ``(B, H, W)`` search range.
      num_samples: interior samples N.

    Returns:
      ``(uniform, samples)``: ``uniform`` ``(B, N, H, W)`` float,
      ``lo + (hi - lo) / (N + 1) * k`` for ``k = 1..N``; ``samples`` ``(B, N + 2, H, W)``
      int32 = ``[floor(lo), uniform..., ceil(hi)]`` truncated toward zero.

    Convention:
      QUIRK (reproduced on purpose): upstream casts the hypotheses with ``.long()``, so the
      interior samples are *truncated* to integers (not rounded), neighbouring hypotheses
      may coincide, and no gradient reaches ``lo``/``hi`` (hence none reaches
      ``gamma``/``beta``). Values within ~1e-5 of an integer may truncate differently under
      another float implementation.
    """
    step = (hi - lo) / (num_samples + 1)
    k = jnp.arange(1.0, num_samples + 1, dtype=lo.dtype)[:, None, None]
    uniform = lo[:, None] + step[:, None] * k
    samples = jnp.concatenate([jnp.floor(lo)[:, None], uniform, jnp.ceil(hi)[:, None]], axis=1)
    return uniform, samples.astype(jnp.int32)


def stage_volume(gw_left: jax.Array, gw_right: jax.Array, cat_left: jax.Array,
                 cat_right: jax.Array, samples: jax.Array, *, groups: int) -> jax.Array:
    """Cascade cost volume over per-pixel integer hypotheses (``cost_volume_generator``).

    Args:
      gw_left, gw_right: ``(B, H, W, Cg)`` group-wise features.
      cat_left, cat_right: ``(B, H, W, Cc)`` concatenation features.
      samples: ``(B, N, H, W)`` integer hypotheses.
      groups: correlation groups.

    Returns:
      ``(B, N, H, W, groups + 2 Cc + 1)``: [group-wise correlation, left, warped right,
      the hypothesis value]; the right features are gathered at column ``x - d`` and zero
      outside the image (upstream ``SpatialTransformer``).
    """
    gwc = ops.groupwise_correlation(gw_left, ops.gather_by_integer_disparity(gw_right, samples),
                                    groups=groups)
    warped = ops.gather_by_integer_disparity(cat_right, samples)
    left = jnp.broadcast_to(cat_left[:, None], warped.shape)
    hyp = samples.astype(gwc.dtype)[..., None]
    return jnp.concatenate([gwc, left, warped, hyp], axis=-1)


class CascadeStage(nn.Module):
    """Stage net over the hypothesis volume (``confidence*_s3`` / ``confidence*_s2``).

    Returns logits ``{"cost1": ...}`` (B, N, H, W) and, with ``all_heads``, the
    training-only heads on the stem (``cost0``) and first hourglass (``costmid``).
    """

    channels: int

    dtype: Any = None  # compute dtype of the convolutions (_layers.compute_dtype)

    @nn.compact
    def __call__(self, volume: jax.Array, *, train: bool, all_heads: bool) -> dict[str, jax.Array]:
        c = self.channels
        cost0 = Conv3dPair(c, act_last=True,
                           dtype=self.dtype, name="confidence0")(volume, train=train)
        cost0 = Conv3dPair(c, act_last=False,
                           dtype=self.dtype, name="confidence1")(cost0, train=train) + cost0
        out1 = Hourglass(c, dtype=self.dtype, name="confidence2")(cost0, train=train)
        out2 = Hourglass(c, dtype=self.dtype, name="confidence3")(out1, train=train)
        logits = {"cost1": CostHead(c, dtype=self.dtype, name="classif1")(out2, train=train)}
        if all_heads:
            logits["cost0"] = CostHead(c, dtype=self.dtype, name="classif0")(cost0, train=train)
            logits["costmid"] = CostHead(c, dtype=self.dtype, name="classifmid")(out1, train=train)
        return logits


# ------------------------------------------------------------------- input / output


def preprocess(image: jax.Array) -> tuple[jax.Array, ops.Padding]:
    """RGB in [0, 1] -> ImageNet-normalised network input, zero-padded (:func:`pad_input`).

    Args:
      image: ``(B, H, W, 3)`` float RGB in [0, 1].

    Returns:
      ``(x, padding)``: ``x`` ``(B, Hp, Wp, 3)`` = ``(image - mean) / std`` (upstream
      ``ToTensor`` + ``Normalize``), padded after normalising as upstream's loaders do.
    """
    return pad_input((image - _MEAN) / _STD)


def pad_input(x: jax.Array) -> tuple[jax.Array, ops.Padding]:
    """Zero-pad at the top and right to a multiple of 32 (to 64 for sides < 64).

    Upstream pads at the top and right (KITTI/Middlebury/ETH3D loaders); this is the
    minimal such padding. Sides shorter than 64 go to 64 because the SPP pooling rule
    needs a 1/32 map of at least 2x2 (:func:`spp_kernel_sizes`).
    """
    multiple = tuple(64 if n < 64 else 32 for n in x.shape[1:3])
    return ops.pad_to_multiple(x, multiple, mode="top_right")


def _check_images(image1: jax.Array, image2: jax.Array) -> None:
    for name, im in (("image1", image1), ("image2", image2)):
        if im.ndim != 4 or im.shape[-1] != 3 or min(im.shape[1:3]) < 1:
            raise ValueError(f"{name} must be RGB of shape (B, H, W, 3), got {im.shape}")
        if not jnp.issubdtype(im.dtype, jnp.floating):
            raise ValueError(f"{name} must be float RGB in [0, 1], got dtype {im.dtype}")
    if image1.shape != image2.shape:
        raise ValueError(
            f"left and right images must have the same shape (B, H, W, 3), got {image1.shape} "
            f"and {image2.shape}")


def _check_padded(left: jax.Array, right: jax.Array) -> None:
    if left.ndim != 4 or left.shape[-1] != 3 or left.shape != right.shape:
        raise ValueError(
            f"left and right must both be (B, H, W, 3), got {left.shape} and {right.shape}")
    height, width = left.shape[1:3]
    if height % 32 or width % 32 or min(height, width) < 64:
        raise ValueError(f"padded inputs need H, W multiples of 32 and >= 64, got {height}x{width}")


def _upsample_disparity(disp: jax.Array, scale: int, size: tuple[int, int]) -> jax.Array:
    """``F.upsample(d * scale, (H, W), bilinear, align_corners=True)`` on (B, h, w)."""
    return ops.resize_bilinear((disp * scale)[..., None], size, align_corners=True)[..., 0]


# ------------------------------------------------------------------------- network


class FusedVolume(NamedTuple):
    """:meth:`CFNet.fused_volume`: the 1/8 volume after ``dres0/dres1`` (``cost0``, a training
    head's input), the fused hourglass output (``fused``, another's) and the logits."""

    cost0: jax.Array
    fused: jax.Array
    logits: jax.Array  # (B, D/8, H/8, W/8), upstream cost2_s4


class Hypotheses(NamedTuple):
    """:meth:`CFNet.stage_hypotheses`, all on the stage grid ``(B, [N,] h, w)``."""

    range_in_min: jax.Array  # coarser bounds, doubled and upsampled
    range_in_max: jax.Array
    range_min: jax.Array  # after search_range
    range_max: jax.Array
    uniform: jax.Array  # (B, N, h, w) float interior samples
    samples: jax.Array  # (B, N + 2, h, w) int32 hypotheses the stage scores


class Stage(NamedTuple):
    """:meth:`CFNet.cascade`: one stage's hypotheses, logits, p(d) and soft-argmin."""

    spec: StageSpec
    hyp: Hypotheses
    logits: dict  # "cost1" (+ "cost0", "costmid" with the training heads)
    prob: jax.Array  # softmax of logits["cost1"] over the hypotheses
    hypotheses: jax.Array  # hyp.samples as floats
    disparity: jax.Array  # (B, h, w) upstream pred1_{s}


def _stage_outputs(stage: Stage) -> dict[str, jax.Array]:
    """A stage's intermediates under upstream's (and the fixtures') names."""
    s, hyp = stage.spec.name, stage.hyp
    return {f"range_{s}_in_min": hyp.range_in_min, f"range_{s}_in_max": hyp.range_in_max,
            f"range_{s}_min": hyp.range_min, f"range_{s}_max": hyp.range_max,
            f"uniform_{s}": hyp.uniform, f"samples_{s}": hyp.samples,
            f"cost1_{s}": stage.logits["cost1"], f"pred1_{s}": stage.disparity}


class CFNet(nn.Module):
    """CFNet (Mish); see the module docstring for conventions and ``aux`` keys.

    Attributes:
      maxdisp: maximum disparity, a multiple of 32; all released weights use 256
        (upstream's class default is 192).
      dtype: ``None`` / ``"float32"``, or ``"bfloat16"``: every 2-D and 3-D convolution
        multiplies in bfloat16 and accumulates in float32 (:func:`~flowlib.models._layers.
        compute_dtype`); parameters, BatchNorm, cost volumes, softmax and the regression
        stay float32, and so do the outputs.
      channel_divisor: divide every channel width by this: the feature extractor, the
        feature heads, the 3-D cost networks, and the correlation groups (40 and 20) and
        concatenation features (6 and 12) as ``max(1, n // channel_divisor)``. 1 is the
        paper's network and the only value the released checkpoints fit; 2, 4, 8 (or 16)
        give a small model with the same code, e.g. one trainable on a CPU (about
        ``1 / channel_divisor**2`` of the parameters and of the 3-D convolution cost).
    """

    maxdisp: int = 256
    channel_divisor: int = 1
    dtype: Any = None

    def setup(self) -> None:
        if self.maxdisp % 32 or self.maxdisp <= 0:
            raise ValueError(f"maxdisp must be a positive multiple of 32, got {self.maxdisp}")
        check_channel_divisor(self.channel_divisor)
        div = self.channel_divisor
        dt = compute_dtype(self.dtype)
        self.feature_extraction = FeatureExtraction(channel_divisor=div, dtype=dt)
        self.dres0 = Conv3dPair(32 // div, act_last=True, dtype=dt)
        self.dres1 = Conv3dPair(32 // div, act_last=False, dtype=dt)
        self.dres0_5 = Conv3dPair(64 // div, act_last=True, dtype=dt)
        self.dres1_5 = Conv3dPair(64 // div, act_last=False, dtype=dt)
        self.dres0_6 = Conv3dPair(64 // div, act_last=True, dtype=dt)
        self.dres1_6 = Conv3dPair(64 // div, act_last=False, dtype=dt)
        self.combine1 = HourglassUp(32 // div, dtype=dt)
        self.dres3 = Hourglass(32 // div, dtype=dt)
        self.classif0, self.classif1, self.classif2 = [CostHead(32 // div, dtype=dt)
                                                       for _ in range(3)]
        self.stage_s3 = CascadeStage(32 // div, dtype=dt)
        self.stage_s2 = CascadeStage(16 // div, dtype=dt)
        # Learned range scalars, zero-initialised upstream. Upstream's `.long()` cut means
        # no gradient ever reaches them, so training leaves them at their initial value.
        zeros = nn.initializers.zeros
        self.gamma_s3 = self.param("gamma_s3", zeros, (1,))
        self.beta_s3 = self.param("beta_s3", zeros, (1,))
        self.gamma_s2 = self.param("gamma_s2", zeros, (1,))
        self.beta_s2 = self.param("beta_s2", zeros, (1,))

    def __call__(self, image1: jax.Array, image2: jax.Array, *,
                 train: bool = False) -> StereoOutput:
        """Disparity of the left image; see the module docstring for ``aux``."""
        _check_images(image1, image2)
        left, padding = preprocess(image1)
        right, _ = preprocess(image2)
        out = self.forward_padded(left, right, train=train)
        crop = lambda d: ops.unpad(d, padding)  # noqa: E731
        aux = {k: v for k, v in out.items() if k != "disp_final"}
        aux["disp_s3_up"], aux["disp_s4_up"] = crop(out["disp_s3_up"]), crop(out["disp_s4_up"])
        if train:
            aux["train_disparities"] = tuple(crop(d) for d in out["train_disparities"])
        return StereoOutput(crop(out["disp_final"]), aux)

    def forward_padded(self, left: jax.Array, right: jax.Array, *,
                       train: bool = False) -> dict[str, Any]:
        """Upstream ``cfnet.forward`` on normalised inputs whose H, W are multiples of 32.

        Args:
          left, right: ``(B, H, W, 3)`` ImageNet-normalised, padded images.
          train: batch statistics in BatchNorm and the nine training outputs.

        Returns:
          dict with ``disp_final``, ``disp_s3_up``, ``disp_s4_up`` (B, H, W) and the
          intermediates listed in the module docstring (``train_disparities`` in training).
        """
        _check_padded(left, right)
        size = left.shape[1:3]
        all_heads = train or self.is_initializing()  # create the training heads at init
        fl = self.feature_extraction(left, train=train)
        fr = self.feature_extraction(right, train=train)

        # Fused cost volume: the 1/8, 1/16 and 1/32 volumes V_s = [gwc(f_L, f_R), f_L,
        # f_R(x - d)] are fused by an hourglass into logits C over d = 0 .. D/8 - 1.
        fused = self.fused_volume(fl, fr, train=train)
        # Uncertainty: p(d) = softmax_d(C); d^ = sum_d p(d) d, U = sqrt(sum_d p(d) (d - d^)^2);
        # the next stage searches d^ -/+ ((gamma + 1) U + beta).
        levels = jnp.arange(self.maxdisp // 8, dtype=fused.logits.dtype)
        pred_s4, lo, hi = uncertainty_bounds(
            jax.nn.softmax(fused.logits, axis=1), levels, self.gamma_s3, self.beta_s3)
        # Stage 3 (1/4): N + 2 hypotheses in that range (x2, upsampled), cascade cost volume,
        # 3-D net, soft-argmin over the hypotheses; its uncertainty bounds stage 2 (1/2).
        s3 = self.cascade(STAGE_S3, fl, fr, lo, hi, train=train, all_heads=all_heads)
        _, lo, hi = uncertainty_bounds(s3.prob, s3.hypotheses, self.gamma_s2, self.beta_s2)
        s2 = self.cascade(STAGE_S2, fl, fr, lo, hi, train=train, all_heads=all_heads)

        out: dict[str, Any] = {"features": {"left": fl, "right": fr},
                               "cost2_s4": fused.logits, "pred2_s4": pred_s4,
                               **_stage_outputs(s3), **_stage_outputs(s2)}
        out["disp_final"] = _upsample_disparity(s2.disparity, STAGE_S2.stride, size)
        out["disp_s3_up"] = _upsample_disparity(s3.disparity, STAGE_S3.stride, size)
        out["disp_s4_up"] = _upsample_disparity(pred_s4, 8, size)
        if all_heads:  # at init too, so that the training heads get their parameters
            disps = self.training_disparities(fused, s3, s2, out, size, train=train)
            if train:
                out["train_disparities"] = disps
        return out

    def fused_volume(self, fl: dict, fr: dict, *, train: bool) -> FusedVolume:
        """Fused cost volumes at 1/8, 1/16, 1/32 -> :class:`FusedVolume` (``logits`` =
        upstream ``cost2_s4``)."""
        costs = []
        for level, pre, post in ((4, self.dres0, self.dres1), (5, self.dres0_5, self.dres1_5),
                                 (6, self.dres0_6, self.dres1_6)):
            d = self.maxdisp // 2 ** (level - 1)
            volume = jnp.concatenate([
                ops.groupwise_cost_volume(fl[f"gw{level}"], fr[f"gw{level}"], max_disparity=d,
                                          groups=_reduced_count(NUM_GROUPS, self.channel_divisor)),
                ops.concat_cost_volume(fl[f"concat{level}"], fr[f"concat{level}"], max_disparity=d),
            ], axis=-1)
            cost = pre(volume, train=train)
            costs.append(post(cost, train=train) + cost)
        fused = self.combine1(*costs, train=train)
        return FusedVolume(costs[0], fused, self.classif2(self.dres3(fused, train=train),
                                                          train=train))

    def stage_hypotheses(self, spec: StageSpec, lo: jax.Array, hi: jax.Array) -> Hypotheses:
        """Coarser-stage bounds ``(B, h, w)`` -> the stage's hypotheses (2h x 2w).

        The bounds are doubled and upsampled (align_corners=True), widened and clamped
        (:func:`search_range`), and sampled into integer hypotheses
        (:func:`disparity_hypotheses`). Tests replace the result through
        ``flax.linen.intercept_methods`` to feed reference hypotheses (teacher forcing).
        """
        size = (2 * lo.shape[1], 2 * lo.shape[2])
        lo = _upsample_disparity(lo, 2, size)
        hi = _upsample_disparity(hi, 2, size)
        range_min, range_max = search_range(lo, hi, min_width=spec.num_samples + 1,
                                            upper=self.maxdisp // spec.stride - 1)
        uniform, samples = disparity_hypotheses(range_min, range_max,
                                                num_samples=spec.num_samples)
        return Hypotheses(lo, hi, range_min, range_max, uniform, samples)

    def cascade(self, spec: StageSpec, fl: dict, fr: dict, lo: jax.Array, hi: jax.Array, *,
                train: bool, all_heads: bool) -> Stage:
        """One cascade stage from the coarser range: the stage net scores the hypothesis
        volume; the estimate is the soft-argmin over the hypotheses."""
        hyp = self.stage_hypotheses(spec, lo, hi)
        volume = stage_volume(fl[f"gw{spec.level}"], fr[f"gw{spec.level}"],
                              fl[f"concat{spec.level}"], fr[f"concat{spec.level}"], hyp.samples,
                              groups=_reduced_count(spec.groups, self.channel_divisor))
        net = {"s3": self.stage_s3, "s2": self.stage_s2}[spec.name]
        logits = net(volume, train=train, all_heads=all_heads)
        prob = jax.nn.softmax(logits["cost1"], axis=1)
        hypotheses = hyp.samples.astype(prob.dtype)
        return Stage(spec, hyp, logits, prob, hypotheses,
                     ops.disparity_regression(prob, hypotheses))

    def training_disparities(self, fused: FusedVolume, s3: Stage, s2: Stage, out: dict,
                             size: tuple[int, int], *, train: bool) -> tuple:
        """The nine full-resolution training outputs, in upstream's order."""
        disps = []
        for head, volume in ((self.classif0, fused.cost0), (self.classif1, fused.fused)):
            cost = head(volume, train=train)[..., None]
            # Trilinear upsampling of the 1/8 cost to (maxdisp, H, W), then soft-argmin.
            cost = ops.resize_trilinear(cost, (self.maxdisp, *size), align_corners=True)[..., 0]
            prob = jax.nn.softmax(cost, axis=1)
            disps.append(ops.disparity_regression(prob, jnp.arange(self.maxdisp, dtype=prob.dtype)))
        disps.append(out["disp_s4_up"])
        for stage, final in ((s3, out["disp_s3_up"]), (s2, out["disp_final"])):
            for key in ("cost0", "costmid"):
                prob = jax.nn.softmax(stage.logits[key], axis=1)
                pred = ops.disparity_regression(prob, stage.hypotheses)
                disps.append(_upsample_disparity(pred, stage.spec.stride, size))
            disps.append(final)
        return tuple(disps)


# ---------------------------------------------------------------------- checkpoints

_LICENSE = "MIT (gallenszl/CFNet LICENSE, Copyright (c) 2021 gallenszl)"

CHECKPOINTS: dict[str, hub.Checkpoint] = {
    "sceneflow": hub.Checkpoint(
        url="https://drive.google.com/uc?export=download&id=1gFNUc4cOCFXbGv6kkjjcPw2cJWmodypv",
        sha256=None,
        filename="cfnet_sceneflow_pretrain.ckpt",
        license=_LICENSE,
        training_data="SceneFlow (FlyingThings3D + Driving + Monkaa), 20 epochs, maxdisp 256",
        source_format="pytorch",
        model_kwargs={"maxdisp": 256},
        notes=("'Pretraining Model' of the CFNet README (Google Drive "
               "https://drive.google.com/file/d/1gFNUc4cOCFXbGv6kkjjcPw2cJWmodypv/view); "
               "reproduces Table 3 (cross-domain generalisation). torch.save dict with the "
               "DataParallel state_dict under 'model'. The README suggests ReLU for "
               "reproducing pre-training; whether this file is the Mish or ReLU model is "
               "unverified (the scripts load it into the Mish model)."),
    ),
    "robust": hub.Checkpoint(
        url="https://drive.google.com/uc?export=download&id=1H6L-lQjF4yOxq23wxs3HW40B-0mLxUiI",
        sha256=None,
        filename="cfnet_robust_finetune.ckpt",
        license=_LICENSE,
        training_data=("SceneFlow pre-training, then joint fine-tuning on KITTI 2012 + KITTI "
                       "2015 + ETH3D + Middlebury (Robust Vision Challenge 2020), maxdisp 256"),
        source_format="pytorch",
        model_kwargs={"maxdisp": 256},
        notes=("'Finetuneing Moel' of the CFNet README (Google Drive "
               "https://drive.google.com/file/d/1H6L-lQjF4yOxq23wxs3HW40B-0mLxUiI/view); "
               "the RVC 2020 stereo entry (1st place). Outer dict layout assumed to match "
               "main.py's torch.save ({'epoch', 'model', 'optimizer'}); unverified."),
    ),
}
