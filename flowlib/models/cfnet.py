"""CFNet stereo: cascade and fused cost volumes (Flax Linen).

Paper: Z. Shen, Y. Dai, Z. Rao, "CFNet: Cascade and Fused Cost Volume for Robust Stereo
Matching", CVPR 2021 (arXiv:2104.04314). This is a port of gallenszl/CFNet @ 982230d,
``models/cfnet.py`` ``CFNet(maxdisp)`` = ``cfnet(maxdisp, use_concat_volume=True)`` with
Mish activations, and loads that repository's two released checkpoints (``CHECKPOINTS``;
converter: :mod:`flowlib.convert.cfnet`). The layers, feature extractor, hourglasses and
cascade-stage helpers live in :mod:`flowlib.models._cfnet_blocks`; this module is the
forward pass.

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

from flowlib import hub, losses, ops
from flowlib.convert import cfnet as _convert
from flowlib.models._cfnet_blocks import (
    NUM_GROUPS,
    STAGE_S2,
    STAGE_S3,
    CascadeStage,
    Conv3dPair,
    CostHead,
    FeatureExtraction,
    Hourglass,
    HourglassUp,
    StageSpec,
    check_channel_divisor,
    disparity_hypotheses,
    reduced_count,
    search_range,
    spp_kernel_sizes,
    stage_volume,
    uncertainty_bounds,
)
from flowlib.models._outputs import StereoOutput
from flowlib.models._spec import ModelSpec, Option, compute_dtype, int_in

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
    "SPECS",
]

#: The validator of ``maxdisp`` (the module's and ``load_model``'s): the cost volumes are
#: built at 1/8, 1/16 and 1/32 of it.
_check_maxdisp = int_in(32, 1024, multiple=32)

_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)


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
        _check_maxdisp("maxdisp", self.maxdisp)
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
                                          groups=reduced_count(NUM_GROUPS, self.channel_divisor)),
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
                              groups=reduced_count(spec.groups, self.channel_divisor))
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


SPECS = (
    ModelSpec(
        name="cfnet",
        task="stereo",
        summary="CFNet (Shen et al. 2021): cascade and fused cost volumes",
        build=CFNet,
        options=(Option("maxdisp", _check_maxdisp, flag="--max-disp", metavar="D",
                        help="largest disparity searched, a multiple of 32 in [32, 1024] "
                        "(default: what the weights record)"),),
        checkpoints=CHECKPOINTS,
        embedded="cfnet.npz",
        default_weights="sceneflow",
        convert=_convert.convert_file,
        loss=losses.cfnet_loss,
        loss_options=("maxdisp",),
        dtypes=("float32", "bfloat16"),
    ),
)
