"""CFNet's building blocks: the layers, feature extractor, 3-D hourglasses and cascade-stage
helpers that :mod:`flowlib.models.cfnet` composes into the paper's forward pass.

Upstream names (gallenszl/CFNet @ 982230d) are kept in the docstrings; conventions (NHWC
features, ``(B, D, H, W)`` probabilities and hypotheses) are those of
:mod:`flowlib.models.cfnet`, which re-exports the public names used outside this module.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flowlib import ops
from flowlib.models._layers import BatchNorm, Conv, ConvTranspose, mish

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

    dtype: Any = None  # compute dtype of the convolutions (_spec.compute_dtype)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = Conv(self.features, self.kernel_size, stride=self.stride, padding=self.padding,
                 use_bias=False, ndim=self.ndim, dtype=self.dtype, name="conv")(x)
        x = BatchNorm(name="bn")(x, train=train)
        return mish(x) if self.act else x


class DeconvBN(nn.Module):
    """ConvTranspose3d(k3, s2, p1, output_padding 1, no bias) + BN: doubles D, H, W."""

    features: int

    dtype: Any = None  # compute dtype of the convolutions (_spec.compute_dtype)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = ConvTranspose(self.features, 3, stride=2, padding=1, output_padding=1,
                          use_bias=False, ndim=3, dtype=self.dtype, name="deconv")(x)
        return BatchNorm(name="bn")(x, train=train)


class BasicBlock(nn.Module):
    """Upstream ``BasicBlock``: two 3x3 convbn, 1x1 projection shortcut, no final act."""

    features: int
    stride: int

    dtype: Any = None  # compute dtype of the convolutions (_spec.compute_dtype)

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

    dtype: Any = None  # compute dtype of the convolutions (_spec.compute_dtype)

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

    dtype: Any = None  # compute dtype of the convolutions (_spec.compute_dtype)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = ConvBN(self.hidden, dtype=self.dtype, name="convbn")(x, train=train)
        return Conv(self.features, 1, use_bias=False, dtype=self.dtype, name="proj")(x)


# (hidden, out) widths of the group-wise and concatenation feature heads per level.
_GW_HEADS = {2: (80, 80), 3: (160, 160), 4: (160, 160), 5: (320, 320), 6: (320, 320)}
_CONCAT_HEADS = {2: (32, 6), 3: (128, 12), 4: (128, 12), 5: (128, 12), 6: (128, 12)}


def reduced_count(n: int, divisor: int) -> int:
    """``max(1, n // divisor)``: the concatenation-feature widths (6, 12) and correlation
    groups (40, 20) under ``channel_divisor``, which it need not divide exactly."""
    return max(1, n // divisor)


def check_channel_divisor(divisor: int) -> None:
    """Raise ``ValueError`` unless ``divisor`` is a valid :attr:`CFNet.channel_divisor`.

    It must be an integer >= 1 that divides every channel width in ``_DIVIDED_WIDTHS``
    (so 1, 2, 4, 8 or 16), and each reduced group-wise feature width must stay divisible
    by its reduced number of correlation groups (:func:`reduced_count`).
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
        width, reduced = _GW_HEADS[level][1] // divisor, reduced_count(groups, divisor)
        if width % reduced:
            raise ValueError(
                f"channel_divisor {divisor}: the gw{level} width {width} is not divisible by "
                f"its {reduced} correlation groups")


class FeatureExtraction(nn.Module):
    """ResNet-style encoder to 1/32, SPP, nearest-upsampling decoder, per-level heads.

    ``channel_divisor`` divides every width (``CFNet.channel_divisor``; the concatenation
    heads' 6 / 12 outputs by :func:`reduced_count`).
    """

    channel_divisor: int = 1

    dtype: Any = None  # compute dtype of the convolutions (_spec.compute_dtype)

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
                cat_hidden // div, reduced_count(cat_out, div),
                    dtype=self.dtype, name=f"concat{level}")(
                decoded[level], train=train)
        return out


class Conv3dPair(nn.Module):
    """Two 3x3x3 convbn_3d with Mish (upstream ``dres0``-style); no Mish after the
    second when ``act_last`` is False (``dres1``-style residual branch)."""

    features: int
    act_last: bool

    dtype: Any = None  # compute dtype of the convolutions (_spec.compute_dtype)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = ConvBN(self.features, ndim=3, dtype=self.dtype, name="conv_0")(x, train=train)
        return ConvBN(self.features, ndim=3, act=self.act_last,
                      dtype=self.dtype, name="conv_1")(x, train=train)


class Hourglass(nn.Module):
    """Upstream ``hourglass``: two stride-2 convbn_3d stages down, two deconvs back up."""

    channels: int

    dtype: Any = None  # compute dtype of the convolutions (_spec.compute_dtype)

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

    dtype: Any = None  # compute dtype of the convolutions (_spec.compute_dtype)

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

    dtype: Any = None  # compute dtype of the convolutions (_spec.compute_dtype)

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

    dtype: Any = None  # compute dtype of the convolutions (_spec.compute_dtype)

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
