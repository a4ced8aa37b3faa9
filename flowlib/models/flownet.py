"""FlowNetS and FlowNetC (Flax Linen).

Paper: A. Dosovitskiy, P. Fischer, E. Ilg, P. Haeusser, C. Hazirbas, V. Golkov, P. van der
Smagt, D. Cremers, T. Brox, "FlowNet: Learning Optical Flow with Convolutional Networks",
ICCV 2015. FlowNet2-S / -C: E. Ilg et al., "FlowNet 2.0: Evolution of Optical Flow
Estimation with Deep Networks", CVPR 2017.

One module, :class:`FlowNet`, ports both upstream PyTorch code bases:

* ``family="fnp"``: ClementPinard/FlowNetPytorch @ d5f3292 (``models/FlowNetS.py``,
  ``FlowNetC.py``, ``util.py``; ``run_inference.py`` pre/post-processing). No bias on
  ``deconv*``, ``predict_flow*``, ``upsampled_flow*``; any input size (``crop_like``).
  Weights: ``flownets:chairs``, ``flownets:chairs-bn``, ``flownetc:chairs``,
  ``flownets:caffe`` (:data:`FLOWNETS_CHECKPOINTS`, :data:`FLOWNETC_CHECKPOINTS`).
* ``family="nv"``: NVIDIA/flownet2-pytorch @ bce69c8 (``models.py`` ``FlowNet2S`` /
  ``FlowNet2C``, ``networks/FlowNetS.py``, ``FlowNetC.py``). ``deconv*`` and
  ``predict_flow*`` have biases, ``upsampled_flow*`` only in FlowNetC; the network
  needs sides that are multiples of 64. Weights: ``flownets:things``, ``flownetc:things``.

Converter: :mod:`flowlib.convert.flownet`.

Input: ``image1``, ``image2``, RGB float in [0, 1], ``(B, H, W, 3)``, any ``H, W >= 1``.
:func:`preprocess` applies the checkpoint's normalisation (``input_norm``);
``family="nv"`` then zero-pads both normalised frames at the bottom / right to the next
multiple of 64 (:func:`network_padding`).

Output: ``FlowOutput(flow, aux)``; ``flow`` is ``(B, H, W, 2)`` in pixels of the input
(u right, v down): ``div_flow * flow2`` resized bilinearly (``align_corners=False``) with
**no** rescaling of the values: FlowNet's predictions are in full-resolution pixels / 20 at
every level. ``fnp``: resized from 1/4 of the input straight to ``H x W`` as
``run_inference.py --upsampling bilinear``; ``nv``: ``nn.Upsample(scale_factor=4)`` of the
padded grid, then cropped. ``aux`` keys:

* ``flows``: ``(flow2, flow3, flow4, flow5, flow6)``, the raw ``predict_flow*`` outputs
  ``(B, h_l, w_l, 2)`` at 1/4 ... 1/64 of the network input (the padded grid for ``nv``),
  in full-resolution pixels / ``div_flow``: the multi-scale training outputs (loss
  weights 0.005, 0.01, 0.02, 0.08, 0.32, targets = flow / 20 resized without rescaling).
  Returned in both modes; ``train=True`` only switches BatchNorm to batch statistics
  (``mutable=["batch_stats"]``).
* FlowNetC only: ``conv_redir`` ``(B, h/8, w/8, 32)`` and ``corr`` ``(B, h/8, w/8, 441)``,
  the two parts of the ``conv3_1`` input (correlation after its LeakyReLU).

Deviations: upstream NVIDIA centre-CROPS inference inputs to the largest multiple of 64
(``StaticCenterCrop``), so its flow covers only that region; to return a flow for every
pixel of any size this port pads instead (identical for multiples of 64). The padding is
zeros after normalisation (the per-image mean colour for ``nv_per_image_mean``); the mean
is taken over the real pixels only.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from flowlib import hub, losses, ops
from flowlib.convert import flownet as _convert
from flowlib.models._layers import BatchNorm, Conv, ConvTranspose, leaky_relu
from flowlib.models._outputs import FlowOutput
from flowlib.models._spec import ModelSpec, Option, compute_dtype, positive_number

__all__ = [
    "FlowNet",
    "FlowNetS",
    "FlowNetC",
    "FlowNetS_BN",
    "FlowNetC_BN",
    "FlowNet2S",
    "FlowNet2C",
    "FLOWNETS_CHECKPOINTS",
    "FLOWNETC_CHECKPOINTS",
    "INPUT_NORMS",
    "preprocess",
    "network_padding",
    "crop_like",
    "SPECS",
]

Family = Literal["fnp", "nv"]
InputNorm = Literal["fnp_inference", "fnp_train", "caffe_bgr", "nv_per_image_mean"]

#: Mean subtracted from x / 255 per convention, in the channel order the network sees.
_FNP_MEAN = (0.411, 0.432, 0.45)
INPUT_NORMS = ("fnp_inference", "fnp_train", "caffe_bgr", "nv_per_image_mean")
_FAMILIES = ("fnp", "nv")
NV_MULTIPLE = 64  # NVIDIA's networks need sides divisible by 2^6 (no crop_like)
# (name, features, kernel, stride) of the encoder after the input convolutions.
_ENCODER = (("conv4", 512, 3, 2), ("conv4_1", 512, 3, 1), ("conv5", 512, 3, 2),
            ("conv5_1", 512, 3, 1), ("conv6", 1024, 3, 2), ("conv6_1", 1024, 3, 1))
_DECONV_FEATURES = {5: 512, 4: 256, 3: 128, 2: 64}
# FlowNetC correlation: d = 20, stride2 = 2 -> 21 x 21 = 441 channels.
MAX_DISPLACEMENT = 20
CORRELATION_STRIDE = 2


def preprocess(image1: jax.Array, image2: jax.Array, *, input_norm: InputNorm
               ) -> tuple[jax.Array, jax.Array]:
    """Normalise two RGB frames in [0, 1] as the checkpoint's upstream code did.

    Args:
      image1: ``(b, h, w, 3)`` RGB in [0, 1].
      image2: ``(b, h, w, 3)`` RGB in [0, 1].
      input_norm: ``"fnp_inference"``: minus (0.411, 0.432, 0.45) on (R, G, B), FNP
        ``run_inference.py`` (values meant for BGR; a legacy bug the maintainer
        acknowledged, FNP#101). ``"fnp_train"``: minus (0.45, 0.432, 0.411) on (R, G, B),
        FNP ``main.py`` since commit 53248d1. ``"caffe_bgr"``: channels reversed to BGR,
        minus (0.411, 0.432, 0.45) on (B, G, R), for ``flownets_from_caffe.pth``.
        ``"nv_per_image_mean"``: minus the per-image, per-channel mean over both frames
        (NVIDIA ``models.py``: ``(x - mean) / rgb_max`` on 0..255 input).

    Returns:
      ``(x1, x2)``, each ``(b, h, w, 3)``, the network's input channels.
    """
    if input_norm == "nv_per_image_mean":
        mean = (jnp.mean(image1, axis=(1, 2), keepdims=True)
                + jnp.mean(image2, axis=(1, 2), keepdims=True)) / 2
        return image1 - mean, image2 - mean
    if input_norm == "fnp_inference":
        mean = _FNP_MEAN
    elif input_norm == "fnp_train":
        mean = _FNP_MEAN[::-1]
    elif input_norm == "caffe_bgr":
        # The FlowNet 1.0 Caffe weights take BGR (FNP README); the means are Caffe's B, G, R.
        image1, image2, mean = image1[..., ::-1], image2[..., ::-1], _FNP_MEAN
    else:
        raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {input_norm!r}")
    mean = jnp.asarray(mean, image1.dtype)
    return image1 - mean, image2 - mean


def network_padding(height: int, width: int, *, family: Family) -> ops.Padding:
    """Zero padding the normalised frames get before the network.

    Args:
      height: input height H.
      width: input width W.
      family: ``"fnp"`` runs at the native size (``crop_like`` handles any size): no
        padding. ``"nv"`` pads at the bottom / right to the next multiple of 64, so that
        the stride-2 sampling grid keeps the origin the unpadded image would have.

    Returns:
      ``ops.Padding(top, bottom, left, right)``; ``ops.unpad`` undoes it.
    """
    if family == "fnp":
        return ops.Padding(0, 0, 0, 0)
    return ops.Padding(0, -height % NV_MULTIPLE, 0, -width % NV_MULTIPLE)


def crop_like(x: jax.Array, target: jax.Array) -> jax.Array:
    """FNP ``crop_like``: keep the top-left block of ``x`` the size of ``target``.

    A stride-2 conv gives ceil(h / 2) rows and the k4 s2 p1 deconvolution exactly 2x, so
    after an odd size the upsampled map has one row / column too many.

    Args:
      x: ``(b, h, w, c)`` upsampled map.
      target: ``(b, h', w', c')`` skip feature it is concatenated with.

    Returns:
      ``x[:, :h', :w']`` (unchanged where ``x`` is not larger).
    """
    return x[:, : target.shape[1], : target.shape[2]]


def _check_images(image1: jax.Array, image2: jax.Array) -> None:
    for name, image in (("image1", image1), ("image2", image2)):
        if image.ndim != 4 or image.shape[-1] != 3 or min(image.shape) < 1:
            raise ValueError(f"{name} must have shape (B, H, W, 3) (RGB in [0, 1]), got {image.shape}")
        if not jnp.issubdtype(image.dtype, jnp.floating):
            raise ValueError(
                f"{name} must be a floating-point RGB array in [0, 1], got dtype {image.dtype}"
            )
    if image1.shape != image2.shape:
        raise ValueError(
            f"image1 and image2 must have the same shape (B, H, W, 3), got {image1.shape} and "
            f"{image2.shape}"
        )


class ConvBlock(nn.Module):
    """Upstream ``conv()``: Conv2d(k, s, pad (k-1)//2) [+ BatchNorm, then no bias] + LReLU(0.1)."""

    features: int
    kernel_size: int = 3
    stride: int = 1
    batch_norm: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = Conv(self.features, self.kernel_size, stride=self.stride,
                 padding=(self.kernel_size - 1) // 2, use_bias=not self.batch_norm,
                 dtype=self.dtype, name="conv")(x)
        if self.batch_norm:
            x = BatchNorm(name="bn")(x, train=train)
        return leaky_relu(x)


class FlowNet(nn.Module):
    """FlowNetS / FlowNetC (see the module docstring for conventions and aux keys).

    Attributes:
      correlation: FlowNetC (siamese conv1-3 + correlation) instead of FlowNetS.
      batch_norm: FNP's experimental ``*_bn`` variants (BatchNorm after every ``conv``).
      family: ``"fnp"`` (FlowNetPytorch) or ``"nv"`` (flownet2-pytorch): which layers have
        biases and how sizes are handled (module docstring).
      input_norm: normalisation the weights were trained with (:func:`preprocess`).
      div_flow: factor between the raw predictions and pixels (upstream 20; FNP
        checkpoints store it).
      channel_divisor: divide every hidden width by this (1 = the paper; larger values
        give small test models).
      dtype: ``None`` / ``"float32"``, or ``"bfloat16"``: the convolutions and transposed
        convolutions multiply in bfloat16 and accumulate in float32; parameters, the
        correlation, resizing and the output stay float32
        (:func:`~flowlib.models._spec.compute_dtype`).
    """

    correlation: bool = False
    batch_norm: bool = False
    family: Family = "fnp"
    input_norm: InputNorm = "fnp_inference"
    div_flow: float = 20.0
    channel_divisor: int = 1
    dtype: Any = None

    def setup(self) -> None:
        if self.family not in _FAMILIES:
            raise ValueError(f"family must be one of {_FAMILIES}, got {self.family!r}")
        if self.input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {self.input_norm!r}")
        if self.channel_divisor not in (1, 2, 4, 8, 16, 32):
            raise ValueError(f"channel_divisor must be a power of two <= 32, got {self.channel_divisor}")
        div = self.channel_divisor
        dtype = compute_dtype(self.dtype)
        conv = functools.partial(ConvBlock, batch_norm=self.batch_norm, dtype=dtype)
        nv = self.family == "nv"
        # Layer names are upstream's, so the converter table is literal.
        self.conv1 = conv(64 // div, 7, 2)
        self.conv2 = conv(128 // div, 5, 2)
        self.conv3 = conv(256 // div, 5, 2)
        if self.correlation:
            self.conv_redir = conv(32 // div, 1, 1)
        self.conv3_1 = conv(256 // div, 3, 1)
        for name, features, kernel, stride in _ENCODER:
            setattr(self, name, conv(features // div, kernel, stride))
        for level in (6, 5, 4, 3, 2):
            setattr(self, f"predict_flow{level}",
                    Conv(2, 3, padding=1, use_bias=nv, dtype=dtype))
        for level in (5, 4, 3, 2):
            setattr(self, f"deconv{level}", ConvTranspose(
                _DECONV_FEATURES[level] // div, 4, stride=2, padding=1, use_bias=nv, dtype=dtype))
            # NVIDIA's FlowNetC (not its FlowNetS) gives the flow upsampling a bias.
            setattr(self, f"upsampled_flow{level + 1}_to_{level}", ConvTranspose(
                2, 4, stride=2, padding=1, use_bias=nv and self.correlation, dtype=dtype))

    def __call__(self, image1: jax.Array, image2: jax.Array, *, train: bool = False) -> FlowOutput:
        _check_images(image1, image2)
        height, width = image1.shape[1:3]
        x1, x2 = preprocess(image1, image2, input_norm=self.input_norm)
        padding = network_padding(height, width, family=self.family)
        pad = ((0, 0), (padding.top, padding.bottom), (padding.left, padding.right), (0, 0))
        x1, x2 = jnp.pad(x1, pad), jnp.pad(x2, pad)

        skips, aux = self.encode(x1, x2, train=train)
        flows = self.decode(skips, train=train)
        # Predictions are full-resolution pixels / div_flow at every level: resize, never x4.
        flow = flows[0] * self.div_flow
        if self.family == "fnp":
            # run_inference.py --upsampling bilinear: 1/4 grid straight to H x W.
            flow = ops.resize_bilinear(flow, (height, width), align_corners=False)
        else:
            # FlowNet2S/2C eval: nn.Upsample(scale_factor=4, mode="bilinear") (align_corners
            # False under PyTorch 0.4.1); the padded sides are multiples of 4.
            grid = (4 * flow.shape[1], 4 * flow.shape[2])
            flow = ops.unpad(ops.resize_bilinear(flow, grid, align_corners=False), padding)
        return FlowOutput(flow, {"flows": flows, **aux})

    def encode(self, x1: jax.Array, x2: jax.Array, *, train: bool
               ) -> tuple[dict[int, jax.Array], dict[str, jax.Array]]:
        """Contracting part: the skip features at 1/4 ... 1/64 (keys 2 ... 6) and aux."""
        aux = {}
        if self.correlation:
            # Siamese conv1-3 with shared weights; the 1/4 skip is frame 1's conv2.
            conv2 = self.conv2(self.conv1(x1, train=train), train=train)
            conv3a = self.conv3(conv2, train=train)
            conv3b = self.conv3(self.conv2(self.conv1(x2, train=train), train=train), train=train)
            # c(x, d) = <f1(x), f2(x + d)> / C for d in {-20, -18, ..., 20}^2, dy-major.
            corr = leaky_relu(ops.local_correlation(
                conv3a, conv3b, max_displacement=MAX_DISPLACEMENT, stride=CORRELATION_STRIDE,
                kernel_size=1, normalize="channels"))
            aux["conv_redir"] = self.conv_redir(conv3a, train=train)
            aux["corr"] = corr
            x = jnp.concatenate([aux["conv_redir"], corr], axis=-1)  # redir first (upstream)
        else:
            conv2 = self.conv2(self.conv1(jnp.concatenate([x1, x2], axis=-1), train=train),
                               train=train)
            x = self.conv3(conv2, train=train)
        skips = {2: conv2, 3: self.conv3_1(x, train=train)}
        x = skips[3]
        for level in (4, 5, 6):
            x = getattr(self, f"conv{level}")(x, train=train)
            x = skips[level] = getattr(self, f"conv{level}_1")(x, train=train)
        return skips, aux

    def decode(self, skips: dict[int, jax.Array], *, train: bool) -> tuple[jax.Array, ...]:
        """Refinement: ``(flow2, ..., flow6)``, each level from [skip, deconv, upsampled flow]."""
        del train  # no BatchNorm in the expanding part (upstream)
        x = skips[6]
        flow = self.predict_flow6(x)
        flows = [flow]
        for level in (5, 4, 3, 2):
            skip = skips[level]
            up_flow = crop_like(getattr(self, f"upsampled_flow{level + 1}_to_{level}")(flow), skip)
            up_features = crop_like(leaky_relu(getattr(self, f"deconv{level}")(x)), skip)
            x = jnp.concatenate([skip, up_features, up_flow], axis=-1)
            flow = getattr(self, f"predict_flow{level}")(x)
            flows.append(flow)
        return tuple(flows[::-1])


FlowNetS = functools.partial(FlowNet, correlation=False)
FlowNetC = functools.partial(FlowNet, correlation=True)
FlowNetS_BN = functools.partial(FlowNet, correlation=False, batch_norm=True)
FlowNetC_BN = functools.partial(FlowNet, correlation=True, batch_norm=True)
FlowNet2S = functools.partial(FlowNet, correlation=False, family="nv",
                              input_norm="nv_per_image_mean")
FlowNet2C = functools.partial(FlowNet, correlation=True, family="nv",
                              input_norm="nv_per_image_mean")


# ----------------------------------------------------------------------------- weights

# FlowNetPytorch keeps its three trained networks and the Caffe FlowNetS in weights/ as
# Git LFS objects: the LFS oid is the file's SHA-256, and media.githubusercontent.com
# serves the content. The README's Google Drive folder holds the same networks as
# *.pth.tar: https://drive.google.com/drive/folders/1dTpSyc7rIYYG19p1uiDfilcsmSPNy-_3
_FNP_COMMIT = "d5f3292a738209d5f3ea450cf714265034fd033a"
_FNP_URL = f"https://media.githubusercontent.com/media/ClementPinard/FlowNetPytorch/{_FNP_COMMIT}/weights/{{}}"
_FNP_LICENSE = "MIT (ClementPinard/FlowNetPytorch; networks trained by its author with that code)"
_FNP_NORM_NOTE = (
    " Normalisation: run_inference.py's mean (0.411, 0.432, 0.45) on RGB; the training "
    "script used those values before commit 53248d1 (2020), after these weights were "
    "published, so they most likely match training (unverified; the alternative differs "
    "by <= 0.04 per channel, input_norm='fnp_train')."
)
_NV_URL = "https://drive.google.com/uc?export=download&id={}"
_NV_LICENSE = (
    "FlowNet 2.0 Caffe models (Uni Freiburg) under their licence agreement, research use "
    "(https://drive.google.com/file/d/1TVv0BnNFh3rpHZvD-easMb9jYrPE2Eqd/view, linked from the "
    "NVIDIA/flownet2-pytorch README; exact terms not verified here)"
)
_NV_NOTE = (
    "Caffe FlowNet 2.0 weights converted by NVIDIA/flownet2-pytorch (convert.py: first-conv "
    "input channels flipped so the network takes RGB); torch.save dict with the state dict "
    "under 'state_dict'. Google Drive file {} ({} MB)."
)


def _fnp(filename: str, sha256: str, training_data: str, notes: str, **model_kwargs) -> hub.Checkpoint:
    return hub.Checkpoint(
        url=_FNP_URL.format(filename), filename=filename, sha256=sha256, license=_FNP_LICENSE,
        training_data=training_data, source_format="pytorch",
        model_kwargs={"batch_norm": False, "family": "fnp", "input_norm": "fnp_inference",
                      **model_kwargs},
        notes=notes,
    )


def _nv(drive_id: str, filename: str, megabytes: int, *, correlation: bool) -> hub.Checkpoint:
    return hub.Checkpoint(
        url=_NV_URL.format(drive_id), filename=filename, sha256=None, license=_NV_LICENSE,
        training_data="FlyingChairs -> FlyingThings3D (FlowNet 2.0)",
        source_format="pytorch",
        model_kwargs={"correlation": correlation, "batch_norm": False, "family": "nv",
                      "input_norm": "nv_per_image_mean"},
        notes=_NV_NOTE.format(drive_id, megabytes),
    )


#: Named weights of FlowNetS: FlowNetPytorch (``fnp``) and FlowNet 2.0 (``nv``).
FLOWNETS_CHECKPOINTS: dict[str, hub.Checkpoint] = {
    "chairs": _fnp(
        "flownets_EPE1.951.pth", "d98505dc749c35f0d4b4ce0536b4f64797ec22ea194a5f743af97dc3f778447d",
        "FlyingChairs (FlowNetPytorch main.py; validation EPE 1.951)",
        "flownets_EPE1.951.pth(.tar), 154,706,509 bytes." + _FNP_NORM_NOTE, correlation=False),
    "chairs-bn": _fnp(
        "flownets_bn_EPE2.459.pth", "77bbee0e7023c0d5b3f64bd9a55bdd71a87426616c2f4924379b2fd648e0c9c8",
        "FlyingChairs (FlowNetPytorch main.py, BatchNorm variant; validation EPE 2.459)",
        "flownets_bn_EPE2.459.pth(.tar), 154,768,164 bytes; the README advises against it."
        + _FNP_NORM_NOTE, correlation=False, batch_norm=True),
    "caffe": hub.Checkpoint(
        url=_FNP_URL.format("flownets_from_caffe.pth"), filename="flownets_from_caffe.pth",
        sha256="0cfadc4e9b4b05807519f5d7472068e799bb587c7b23c3c8a5e94ed20a38ea51",
        license="FlowNet 1.0 Caffe release (Uni Freiburg), research use; terms not verified here",
        training_data="FlyingChairs (original FlowNetS of Dosovitskiy et al. 2015, Caffe)",
        source_format="pytorch",
        model_kwargs={"correlation": False, "batch_norm": False, "family": "fnp",
                      "input_norm": "caffe_bgr"},
        notes=("flownets_from_caffe.pth, 154,709,680 bytes, converted from Caffe by Kaixhin; "
               "expects BGR input (FNP README) with the Caffe means (FNP#101)."),
    ),
    "things": _nv("1V61dZjFomwlynwlYklJHC-TLfdFom3Lg", "FlowNet2-S_checkpoint.pth.tar", 148,
                  correlation=False),
}
#: Named weights of FlowNetC.
FLOWNETC_CHECKPOINTS: dict[str, hub.Checkpoint] = {
    "chairs": _fnp(
        "flownetc_EPE1.766.pth", "b375584e3fb6f0208bf659c72e588803999ec038bc5ea42ecd023ace7be6ffc4",
        "FlyingChairs (FlowNetPytorch main.py; validation EPE 1.766)",
        "flownetc_EPE1.766.pth(.tar), 156,704,303 bytes." + _FNP_NORM_NOTE, correlation=True),
    "things": _nv("1BFT6b7KgKJC8rA59RmOVAXRM_S7aSfKE", "FlowNet2-C_checkpoint.pth.tar", 149,
                  correlation=True),
}

_DIV_FLOW = Option("div_flow", positive_number, flag="--div-flow", type=float, metavar="X",
                   help="prediction-to-pixels factor, for checkpoints that do not store it "
                   "(default 20)")

SPECS = (
    ModelSpec(
        name="flownets",
        task="flow",
        summary="FlowNetS (Dosovitskiy et al. 2015; FlowNet 2.0-S): one encoder-decoder network",
        build=FlowNetS,
        options=(_DIV_FLOW,),
        checkpoints=FLOWNETS_CHECKPOINTS,
        default_weights="chairs",
        convert=_convert.convert_file,
        loss=losses.flownet_loss,
        loss_options=("div_flow",),
        dtypes=("float32", "bfloat16"),
    ),
    ModelSpec(
        name="flownetc",
        task="flow",
        summary="FlowNetC (Dosovitskiy et al. 2015; FlowNet 2.0-C): FlowNet with a correlation layer",
        build=FlowNetC,
        options=(_DIV_FLOW,),
        checkpoints=FLOWNETC_CHECKPOINTS,
        default_weights="chairs",
        convert=_convert.convert_file,
        loss=losses.flownet_loss,
        loss_options=("div_flow",),
        dtypes=("float32", "bfloat16"),
    ),
)
