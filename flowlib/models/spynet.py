"""SpyNet (SPyNet): optical flow with a spatial pyramid of small networks (Flax Linen).

Paper: A. Ranjan, M. J. Black, "Optical Flow Estimation using a Spatial Pyramid Network",
CVPR 2017 (arXiv:1611.00850). This is a port of sniklaus/pytorch-spynet @ 690689d
(``run.py`` ``Network`` + ``estimate()``), itself a port of the Torch7 original
anuragranj/spynet, and it loads the official weights of both (``CHECKPOINTS``; converter:
:mod:`flowlib.convert.spynet`, which reads the ``.pytorch`` files and the original
``modelL{1..6}_<suffix>.t7`` folders).

Input: ``image1``, ``image2``, RGB float in [0, 1], ``(B, H, W, 3)``, any ``H, W >= 1``.
The model resizes both frames bilinearly (``align_corners=False``, no antialiasing) to
``H' = ceil(H / 32) * 32`` by ``W' = ceil(W / 32) * 32``, normalises them with the
ImageNet mean / std and runs the coarse-to-fine pyramid (:func:`pyramid_sizes`).

Output: ``FlowOutput(flow, aux)``; ``flow`` is ``(B, H, W, 2)`` in pixels of the input
grid (u right, v down): the ``H' x W'`` result resized back (``align_corners=False``) with
u scaled by ``W / W'`` and v by ``H / H'``, as upstream ``estimate()``. ``aux`` keys:

* ``level_flows``: list, coarse to fine, of ``(B, h_k, w_k, 2)``: the flow after level k
  in pixels of level k's grid (the outputs SpyNet's level-wise training supervises; the
  last one equals ``raw_flow``). Same with ``train=True`` (there is no BatchNorm or
  dropout, so ``train`` changes nothing).
* ``raw_flow``: ``(B, H', W', 2)``, the network output before the resize back.
* ``level_inputs`` (only with ``return_level_inputs=True``): list of the 8-channel
  ``(B, h_k, w_k, 8)`` tensors fed to the level networks, [frame 1, warped frame 2,
  upsampled flow].

Level k (counted from the coarsest, which always uses the first network) runs network
``min(k, num_networks - 1)``: the Sintel / KITTI variants have six networks; the
FlyingChairs ones five, and upstream Torch7 reuses the fifth for a sixth level.

Deviations / choices: upstream builds the warp grid from ``linspace(-1, 1)`` and flow
scaled by ``2 / (W - 1)`` and samples with ``grid_sample(align_corners=True,
padding_mode="border")``; here the same sampling positions ``(x + u, y + v)`` are used
directly (float32 roundings differ by ~1e-7 relative). Upstream divides by zero when a
pyramid level is one pixel wide or high (e.g. a 32 x 1024 network input); this port
handles it. The coarsest level's incoming flow is zeros at that level's size, which is what
upstream's bilinear x2 upsampling and replicate padding of its half-size zero flow gives.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flowlib import hub, losses, ops
from flowlib.convert import spynet as _convert
from flowlib.models._inputs import check_image_pair
from flowlib.models._layers import Conv
from flowlib.models._outputs import FlowOutput
from flowlib.models._spec import ModelSpec, Option, compute_dtype, int_in

__all__ = [
    "SpyNet",
    "SpyNetChairs",
    "LevelNetwork",
    "CHECKPOINTS",
    "network_size",
    "pyramid_sizes",
    "preprocess",
    "upsample_to_level",
    "NUM_LEVEL_PARAMS",
    "SPECS",
]

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
_FEATURES = (32, 64, 32, 16, 2)  # 8 -> 32 -> 64 -> 32 -> 16 -> 2, 7x7 convolutions
#: Parameters of one level network.
NUM_LEVEL_PARAMS = 240_050
_MULTIPLE = 32  # network input sides are multiples of this
_COARSEST = 32  # pool while the coarsest level is larger than this in either side


def network_size(height: int, width: int) -> tuple[int, int]:
    """Size the frames are resized to: ``(ceil(H / 32) * 32, ceil(W / 32) * 32)``."""
    return (
        int(math.ceil(height / _MULTIPLE) * _MULTIPLE),
        int(math.ceil(width / _MULTIPLE) * _MULTIPLE),
    )


def pyramid_sizes(height: int, width: int, *, max_levels: int = 6) -> list[tuple[int, int]]:
    """Pyramid level sizes, coarsest first, for a network input of ``height x width``.

    Upstream prepends a 2x2-pooled (floor) level while the coarsest one is taller **or**
    wider than 32 pixels, at most ``max_levels - 1`` times (run.py: ``range(5)``).
    E.g. 416x1024 -> 13x32 ... 416x1024 (6 levels); 64x64 -> 32x32, 64x64.
    """
    sizes = [(int(height), int(width))]
    while len(sizes) < max_levels and (sizes[0][0] > _COARSEST or sizes[0][1] > _COARSEST):
        sizes.insert(0, (sizes[0][0] // 2, sizes[0][1] // 2))
    return sizes


def preprocess(image: jax.Array) -> jax.Array:
    """ImageNet normalisation of RGB in [0, 1]: ``(x - mean) * (1 / std)``.

    Upstream (run.py ``Preprocess``) multiplies by the reciprocal of the std, rounded to
    the tensor dtype, rather than dividing; the last bit differs for some values.
    """
    mean = np.asarray(_MEAN, np.float64).astype(image.dtype)
    inv_std = (1.0 / np.asarray(_STD, np.float64)).astype(image.dtype)
    return (image - mean) * inv_std


def upsample_to_level(flow: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Previous level's flow on level ``size``: bilinear x2 (``align_corners=True``) with the
    vectors doubled, then one replicated row / column at the bottom / right where the level
    is one pixel taller / wider (odd sizes; run.py ``forward``, Torch7 ``ScaleBHWD``).

    Args:
      flow: ``(B, h, w, 2)`` flow in pixels of the coarser grid.
      size: ``(H, W)`` of the finer level, ``H`` in ``{2h, 2h + 1}``, same for ``W``.

    Returns:
      ``(B, H, W, 2)`` flow in pixels of the finer grid.
    """
    _, h, w, _ = flow.shape
    up = ops.upsample_flow(flow, (2 * h, 2 * w), align_corners=True)
    pad_h, pad_w = size[0] - 2 * h, size[1] - 2 * w
    if pad_h not in (0, 1) or pad_w not in (0, 1):
        raise ValueError(f"level size {size} is not twice the flow size {(h, w)} (+0 or +1)")
    return jnp.pad(up, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


class LevelNetwork(nn.Module):
    """One pyramid level's network G_k: five 7x7 convolutions (pad 3), ReLU between.

    Input ``(B, h, w, 8)`` = [frame 1, warped frame 2, upsampled flow]; output the residual
    flow ``(B, h, w, 2)`` (upstream ``Basic``; Torch7 ``models/volcon.lua``). ``dtype``: the
    convolutions' compute dtype (:func:`~flowlib.models._spec.compute_dtype`).
    """

    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for j, features in enumerate(_FEATURES):
            # The 16 -> 2 layer runs by FFT where XLA compiles for a CPU (XLA:CPU runs
            # 2-output-channel convolutions far below its speed for wide ones; python -m
            # benchmarks.conv_routes --only conv); other platforms keep the lax convolution.
            method = "fft" if features <= 2 else "lax"
            x = Conv(features, 7, padding=3, dtype=self.dtype, method=method,
                     name=f"conv{j}")(x)
            if j < len(_FEATURES) - 1:
                x = nn.relu(x)
        return x


class SpyNet(nn.Module):
    """SpyNet flow estimator (see the module docstring for conventions and aux keys).

    Attributes:
      num_networks: distinct level networks (6 for Sintel / KITTI weights, 5 for the
        FlyingChairs Torch7 files); level k uses network ``min(k, num_networks - 1)``.
      max_levels: most pyramid levels (upstream: 6).
      return_level_inputs: also return the 8-channel level inputs in ``aux``.
      dtype: ``None`` / ``"float32"``, or ``"bfloat16"``: the 7x7 convolutions multiply in
        bfloat16 and accumulate in float32; parameters, resizing, warping and the output
        stay float32 (:func:`~flowlib.models._spec.compute_dtype`).
    """

    num_networks: int = 6
    max_levels: int = 6
    return_level_inputs: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, image1: jax.Array, image2: jax.Array, *, train: bool = False) -> FlowOutput:
        del train  # No BatchNorm or dropout: training and inference run the same graph.
        check_image_pair(image1, image2)
        dtype = compute_dtype(self.dtype)
        networks = [LevelNetwork(dtype=dtype, name=f"basic{i}") for i in range(self.num_networks)]
        height, width = image1.shape[1:3]
        net_hw = network_size(height, width)
        sizes = pyramid_sizes(*net_hw, max_levels=self.max_levels)
        # estimate(): resize to multiples of 32, then Network.forward normalises and pools.
        frames1 = ops.image_pyramid(
            preprocess(ops.resize_bilinear(image1, net_hw, align_corners=False)), levels=len(sizes)
        )[::-1]
        frames2 = ops.image_pyramid(
            preprocess(ops.resize_bilinear(image2, net_hw, align_corners=False)), levels=len(sizes)
        )[::-1]

        flow = jnp.zeros((*image1.shape[:1], *sizes[0], 2), frames1[0].dtype)
        level_flows, level_inputs = [], []
        for k, (frame1, frame2) in enumerate(zip(frames1, frames2)):
            upsampled = flow if k == 0 else upsample_to_level(flow, sizes[k])
            # Backward warp with border clamping at exact pixel positions (x + u, y + v).
            warped2 = ops.backward_warp(frame2, upsampled, padding="border", align_corners=True)
            x = jnp.concatenate([frame1, warped2, upsampled], axis=-1)
            # Level k refines the upsampled flow with a residual: V_k = G_k(...) + u(V_{k-1}).
            flow = networks[min(k, self.num_networks - 1)](x) + upsampled
            level_flows.append(flow)
            level_inputs.append(x)
        if self.is_initializing():
            _touch_unused(networks, len(sizes), flow.dtype)

        out = ops.upsample_flow(flow, (height, width), align_corners=False)
        aux = {"level_flows": level_flows, "raw_flow": flow}
        if self.return_level_inputs:
            aux["level_inputs"] = level_inputs
        return FlowOutput(out, aux)


def _touch_unused(networks: list[LevelNetwork], num_levels: int, dtype: jnp.dtype) -> None:
    # Linen creates a submodule's parameters on its first call; small inputs use only the
    # first networks, but the variables must always hold all of them (checkpoints do).
    dummy = jnp.zeros((1, 1, 1, 8), dtype)
    for network in networks[num_levels:]:
        network(dummy)


#: FlyingChairs Torch7 weights: five networks, the sixth level reuses the fifth.
SpyNetChairs = functools.partial(SpyNet, num_networks=5)

_URL = "http://content.sniklaus.com/github/pytorch-spynet/network-{}.pytorch"
_LICENSE = "non-commercial research only (anuragranj/spynet)"
_NOTES = (
    "sniklaus/pytorch-spynet conversion of the Torch7 files {t7} of anuragranj/spynet; "
    "the .pytorch file holds six levels under 'moduleBasic.*' keys{extra}."
)


def _checkpoint(name: str, training_data: str, t7: str, extra: str = "") -> hub.Checkpoint:
    return hub.Checkpoint(
        url=_URL.format(name),
        filename=f"spynet-{name}.pytorch",
        # Not recorded: shared/data's sintel-final file was rebuilt from the .t7 files
        # (same tensors), so its hash need not equal the served file's.
        sha256=None,
        license=_LICENSE,
        training_data=training_data,
        source_format="pytorch",
        model_kwargs={},
        notes=_NOTES.format(t7=t7, extra=extra),
    )


CHECKPOINTS: dict[str, hub.Checkpoint] = {
    "sintel-final": _checkpoint(
        "sintel-final", "FlyingChairs, fine-tuned on MPI-Sintel training (final pass)",
        "modelL{1..6}_F.t7",
    ),
    "sintel-clean": _checkpoint(
        "sintel-clean", "FlyingChairs, fine-tuned on MPI-Sintel training (clean pass)",
        "modelL{1..6}_C.t7",
    ),
    "chairs-final": _checkpoint(
        "chairs-final", "FlyingChairs (base model, upstream 'chairsFinal')", "modelL{1..5}_3.t7",
        "; upstream Torch7 runs modelL5_3.t7 at level 6 (whether the .pytorch file stores a "
        "copy of level 5 as level 6 is unverified; the converter accepts 5 or 6 levels)",
    ),
    "chairs-clean": _checkpoint(
        "chairs-clean", "FlyingChairs (base model, upstream 'chairsClean')", "modelL{1..5}_4.t7",
        "; upstream Torch7 runs modelL5_4.t7 at level 6 (whether the .pytorch file stores a "
        "copy of level 5 as level 6 is unverified; the converter accepts 5 or 6 levels)",
    ),
    "kitti-final": _checkpoint(
        "kitti-final", "FlyingChairs, fine-tuned on KITTI", "modelL{1..6}_K.t7",
    ),
}


SPECS = (
    ModelSpec(
        name="spynet",
        task="flow",
        summary="SpyNet (Ranjan & Black 2017): a spatial pyramid of small networks",
        build=SpyNet,
        options=(Option("max_levels", int_in(1, 10), flag="--pyramid-levels", metavar="N",
                        help="pyramid levels (upstream 6; default: what the weights record)"),),
        checkpoints=CHECKPOINTS,
        embedded="spynet.npz",
        default_weights="sintel-final",
        convert=_convert.convert_file,
        loss=losses.spynet_loss,
        dtypes=("float32", "bfloat16"),
    ),
)
