"""The published training losses (JAX), one per model family.

* FlowNet (Dosovitskiy et al. 2015; FlowNetPytorch multiscaleloss.py): multi-scale EPE
  between each prediction flow2..flow6 (units: full-resolution px / div_flow) and the
  ground truth divided by div_flow and area-downsampled to that level *without* rescaling
  the vectors; per scale the EPE is summed over pixels and divided by the batch size;
  weights 0.005, 0.01, 0.02, 0.08, 0.32.
* SpyNet (Ranjan & Black 2017): EPE of each pyramid level's flow against the ground truth
  average-pooled to that level and scaled to its pixel units. The paper trains levels one
  at a time with the coarser ones frozen; ``flowlib.train --freeze REGEX`` keeps chosen
  parameters fixed, and by default all levels are trained jointly with this summed loss.
* RAFT (Teed & Deng 2020; princeton-vl/RAFT train.py ``sequence_loss``): the L1 error of
  every update's upsampled prediction, weighted ``gamma^(n - 1 - i)`` (gamma 0.8, the last
  update weighted 1), over the pixels whose ground truth is valid and shorter than
  ``max_flow`` = 400 px.
* CFNet (Shen et al. 2021; models/loss.py): smooth-L1 over the pixels with
  0 < gt < maxdisp for each of the nine training outputs, weights
  0.25, 0.35, 0.5, 0.5, 0.7, 1.0, 1.0, 1.4, 2.0.

Each loss takes the model's training output and the batch, and returns
``(loss, metrics)`` with metrics a dict of scalars: the full-resolution ``epe`` and
``zero_epe``, the EPE a zero prediction would have (a run whose ``epe`` stays at
``zero_epe`` has not left the zero-flow plateau). Each model's spec names its loss and the
module attributes the loss depends on (FlowNet's ``div_flow``, CFNet's ``maxdisp``):
``ModelSpec.loss`` / ``loss_options``, bound by ``ModelSpec.training_loss(module)``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from flowlib import ops

__all__ = ["flownet_loss", "spynet_loss", "raft_loss", "cfnet_loss", "FLOWNET_WEIGHTS",
           "CFNET_WEIGHTS", "RAFT_GAMMA", "RAFT_MAX_FLOW"]

FLOWNET_WEIGHTS = (0.005, 0.01, 0.02, 0.08, 0.32)
CFNET_WEIGHTS = (0.25, 0.35, 0.5, 0.5, 0.7, 1.0, 1.0, 1.4, 2.0)
RAFT_GAMMA = 0.8
RAFT_MAX_FLOW = 400.0


def _area_downsample(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Area interpolation (adaptive average pooling) of (B, H, W, C) to ``size``."""
    b, h, w, c = x.shape
    oh, ow = size
    if h % oh == 0 and w % ow == 0:
        return x.reshape(b, oh, h // oh, ow, w // ow, c).mean(axis=(2, 4))
    # General case: PyTorch adaptive_avg_pool2d bins [floor(i*h/oh), ceil((i+1)*h/oh)).
    def bins(n: int, m: int) -> jax.Array:
        i = jnp.arange(m)
        start, end = (i * n) // m, -((-(i + 1) * n) // m)
        idx = jnp.arange(n)
        mat = ((idx[None, :] >= start[:, None]) & (idx[None, :] < end[:, None])).astype(x.dtype)
        return mat / mat.sum(axis=1, keepdims=True)

    return jnp.einsum("ih,bhwc,jw->bijc", bins(h, oh), x, bins(w, ow))


def _epe(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum((a - b) ** 2, axis=-1) + 1e-12)


def flownet_loss(output: Any, batch: dict[str, jax.Array], *, div_flow: float = 20.0,
                 weights: tuple[float, ...] = FLOWNET_WEIGHTS) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Multi-scale EPE (see module docstring); ``output.aux["flows"]`` = (flow2, ..., flow6)."""
    target = batch["flow"] / div_flow
    batch_size = target.shape[0]
    total = 0.0
    for weight, pred in zip(weights, output.aux["flows"]):
        gt = _area_downsample(target, pred.shape[1:3])
        total = total + weight * jnp.sum(_epe(pred, gt)) / batch_size
    valid = batch.get("valid")
    epe = _epe(output.flow, batch["flow"])
    zero = jnp.sqrt(jnp.sum(batch["flow"] ** 2, axis=-1))
    if valid is None:
        epe, zero = jnp.mean(epe), jnp.mean(zero)
    else:
        count = jnp.maximum(jnp.sum(valid), 1)
        epe, zero = jnp.sum(epe * valid) / count, jnp.sum(zero * valid) / count
    return total, {"loss": total, "epe": epe, "zero_epe": zero}


def spynet_loss(output: Any, batch: dict[str, jax.Array]) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Sum over levels of the mean EPE against the level-sized, level-scaled ground truth."""
    gt = batch["flow"]
    h, w = gt.shape[1:3]
    total = 0.0
    metrics = {}
    level_flows = output.aux["level_flows"]
    for level, pred in enumerate(level_flows):
        lh, lw = pred.shape[1:3]
        target = ops.resize_bilinear(gt, (lh, lw), align_corners=False) * jnp.array([lw / w, lh / h])
        epe = jnp.mean(_epe(pred, target))
        total = total + epe
        metrics[f"epe_level{level}"] = epe
    metrics["epe"] = jnp.mean(_epe(output.flow, gt))
    metrics["zero_epe"] = jnp.mean(jnp.sqrt(jnp.sum(gt**2, axis=-1)))  # the zero-flow floor
    metrics["loss"] = total
    return total, metrics


def raft_loss(output: Any, batch: dict[str, jax.Array], *, gamma: float = RAFT_GAMMA,
              max_flow: float = RAFT_MAX_FLOW) -> tuple[jax.Array, dict[str, jax.Array]]:
    """RAFT's sequence loss over ``output.aux["flow_predictions"]`` (see module docstring).

    ``sum_i gamma^(n - 1 - i) * mean(valid * |pred_i - gt|)``, the mean over every pixel and
    both channels (invalid pixels count as zeros, as upstream ``train.py``); valid pixels
    have ``valid >= 0.5`` (all when the batch has no ``valid``) and ``|gt| < max_flow``.
    ``epe`` and ``zero_epe`` are means over the valid pixels.
    """
    gt = batch["flow"]
    magnitude = jnp.sqrt(jnp.sum(gt**2, axis=-1))
    valid = magnitude < max_flow
    if "valid" in batch:
        valid = valid & (batch["valid"] >= 0.5)
    weight = valid[..., None].astype(gt.dtype)
    predictions = output.aux["flow_predictions"]
    n = len(predictions)
    total = 0.0
    for i, pred in enumerate(predictions):
        total = total + gamma ** (n - 1 - i) * jnp.mean(weight * jnp.abs(pred - gt))
    count = jnp.maximum(jnp.sum(valid), 1)
    epe = jnp.sum(_epe(predictions[-1], gt) * valid) / count
    zero = jnp.sum(magnitude * valid) / count
    return total, {"loss": total, "epe": epe, "zero_epe": zero}


def _smooth_l1(x: jax.Array) -> jax.Array:
    ax = jnp.abs(x)
    return jnp.where(ax < 1.0, 0.5 * x * x, ax - 0.5)


def cfnet_loss(output: Any, batch: dict[str, jax.Array], *, maxdisp: float,
               weights: tuple[float, ...] = CFNET_WEIGHTS) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Weighted smooth-L1 over ``output.aux["train_disparities"]`` (9 full-resolution maps)."""
    gt = batch["disparity"]
    mask = (gt > 0) & (gt < maxdisp)
    if "valid" in batch:
        mask = mask & batch["valid"]
    count = jnp.maximum(jnp.sum(mask), 1)
    total = 0.0
    for weight, pred in zip(weights, output.aux["train_disparities"]):
        total = total + weight * jnp.sum(_smooth_l1(pred - gt) * mask) / count
    epe = jnp.sum(jnp.abs(output.disparity - gt) * mask) / count
    return total, {"loss": total, "epe": epe, "zero_epe": jnp.sum(jnp.abs(gt) * mask) / count}

