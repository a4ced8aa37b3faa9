"""FlowNetPytorch / flownet2-pytorch checkpoints -> :class:`flowlib.models.flownet.FlowNet`.

Files: FNP ``main.py`` saves ``{'epoch', 'arch', 'state_dict', 'best_EPE', 'div_flow'}``
(``arch`` in ``flownets``, ``flownets_bn``, ``flownetc``, ``flownetc_bn``); NVIDIA's
``convert.py`` saves ``{'epoch': 0, 'state_dict', 'best_EPE'}``; a bare state dict is
accepted too. Upstream layers are ``nn.Sequential`` blocks, so the keys are
``convX.0.weight`` (+ ``convX.0.bias`` without BatchNorm, ``convX.1.*`` with it),
``deconvX.0.weight``, ``predict_flowX.weight``, ``upsampled_flowA_to_B.weight``, and for
the NVIDIA family also ``deconvX.0.bias``, ``predict_flowX.bias`` and (FlowNetC only)
``upsampled_flowA_to_B.bias``.

The variant is read from the keys when not given (:func:`model_kwargs_from_state`):
``conv_redir.*`` -> FlowNetC, ``conv1.1.*`` -> BatchNorm, ``deconv5.0.bias`` -> NVIDIA.
The input normalisation cannot be read from the weights: it defaults to the family's
(``fnp_inference`` / ``nv_per_image_mean``); pass ``input_norm="caffe_bgr"`` for
``flownets_from_caffe.pth`` (the ``flownets:caffe`` checkpoint entry does).

Layouts: Conv2d ``(O, I, kh, kw)`` -> ``(kh, kw, I, O)``; ConvTranspose2d ``(I, O, kh,
kw)`` -> ``(kh, kw, I, O)`` (``_layers.ConvTranspose`` flips it); BatchNorm
``weight/bias`` -> ``scale/bias`` (params), ``running_mean/var`` -> ``mean/var``
(batch_stats); ``num_batches_tracked`` is ignored.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from flowlib.convert._common import KeyMapper, conv_kernel, conv_transpose_kernel
from flowlib.convert._torch import unwrap_state_dict

__all__ = ["convert_state_dict", "convert_file", "key_table", "model_kwargs_from_state",
           "unwrap", "IGNORED_PATTERN"]

#: BatchNorm step counters (no meaning in eval; Flax keeps none).
IGNORED_PATTERN = r".*\.num_batches_tracked"

#: FNP ``arch`` names -> (correlation, batch_norm).
_ARCHS = {"flownets": (False, False), "flownets_bn": (False, True),
          "flownetc": (True, False), "flownetc_bn": (True, True)}
_STRUCTURE = ("correlation", "batch_norm", "family", "channel_divisor")
_KWARGS = _STRUCTURE + ("input_norm", "div_flow")
_ENCODER = ("conv1", "conv2", "conv3", "conv3_1", "conv4", "conv4_1", "conv5", "conv5_1",
            "conv6", "conv6_1")

Row = tuple[str, str, Any]  # (checkpoint key, Flax variable path, transform or None)


def key_table(*, correlation: bool, batch_norm: bool, family: str) -> list[Row]:
    """Every checkpoint tensor of the variant as ``(key, flax path, transform)``."""
    nv = family == "nv"
    rows: list[Row] = []
    convs = _ENCODER[:3] + ("conv_redir",) + _ENCODER[3:] if correlation else _ENCODER
    for name in convs:  # Sequential(Conv2d, [BatchNorm2d,] LeakyReLU) -> ConvBlock
        rows.append((f"{name}.0.weight", f"params/{name}/conv/conv/kernel", conv_kernel))
        if batch_norm:
            rows += [(f"{name}.1.weight", f"params/{name}/bn/bn/scale", None),
                     (f"{name}.1.bias", f"params/{name}/bn/bn/bias", None),
                     (f"{name}.1.running_mean", f"batch_stats/{name}/bn/bn/mean", None),
                     (f"{name}.1.running_var", f"batch_stats/{name}/bn/bn/var", None)]
        else:
            rows.append((f"{name}.0.bias", f"params/{name}/conv/conv/bias", None))
    for level in (6, 5, 4, 3, 2):  # bare Conv2d(k3) -> _layers.Conv
        rows.append((f"predict_flow{level}.weight", f"params/predict_flow{level}/conv/kernel",
                     conv_kernel))
        if nv:
            rows.append((f"predict_flow{level}.bias", f"params/predict_flow{level}/conv/bias", None))
    for level in (5, 4, 3, 2):
        # deconv = Sequential(ConvTranspose2d, LeakyReLU); upsampled_flow is a bare one.
        rows.append((f"deconv{level}.0.weight", f"params/deconv{level}/kernel",
                     conv_transpose_kernel))
        if nv:
            rows.append((f"deconv{level}.0.bias", f"params/deconv{level}/bias", None))
        up = f"upsampled_flow{level + 1}_to_{level}"
        rows.append((f"{up}.weight", f"params/{up}/kernel", conv_transpose_kernel))
        if nv and correlation:
            rows.append((f"{up}.bias", f"params/{up}/bias", None))
    return rows


def unwrap(obj: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(state_dict, extras)`` of a checkpoint object (``.pth.tar`` dict or bare state
    dict; ``module.`` prefix removed); extras hold ``div_flow``, ``arch``, ``epoch``, ..."""
    return unwrap_state_dict(obj)


def model_kwargs_from_state(state: Mapping[str, Any], extras: Mapping[str, Any] | None = None
                            ) -> dict[str, Any]:
    """The :class:`FlowNet` keyword arguments a state dict implies.

    Args:
      state: the unwrapped state dict.
      extras: the checkpoint's other entries (``arch``, ``div_flow``), if any.

    Returns:
      ``correlation``, ``batch_norm``, ``family``, ``input_norm`` (the family's default)
      and, when the checkpoint records it, ``div_flow``.

    Raises:
      ValueError: ``conv1.0.weight`` is missing, or ``arch`` contradicts the keys.
    """
    if "conv1.0.weight" not in state:
        raise ValueError(
            "not a FlowNetS/C state dict: no 'conv1.0.weight' "
            f"(first keys: {sorted(state)[:5]})"
        )
    kwargs: dict[str, Any] = {
        "correlation": any(k.startswith("conv_redir.") for k in state),
        "batch_norm": any(k.startswith("conv1.1.") for k in state),
        "family": "nv" if "deconv5.0.bias" in state else "fnp",
    }
    kwargs["input_norm"] = "nv_per_image_mean" if kwargs["family"] == "nv" else "fnp_inference"
    extras = dict(extras or {})
    arch = extras.get("arch")
    if isinstance(arch, str) and arch in _ARCHS:
        if _ARCHS[arch] != (kwargs["correlation"], kwargs["batch_norm"]):
            raise ValueError(
                f"checkpoint says arch={arch!r} but its keys are those of correlation="
                f"{kwargs['correlation']}, batch_norm={kwargs['batch_norm']}"
            )
    div_flow = extras.get("div_flow")
    if div_flow is not None:
        div_flow = float(np.asarray(div_flow))
        if not np.isfinite(div_flow) or div_flow <= 0:
            raise ValueError(f"checkpoint div_flow must be a positive number, got {div_flow}")
        kwargs["div_flow"] = div_flow
    return kwargs


@functools.lru_cache(maxsize=16)
def _expected_tree(correlation: bool, batch_norm: bool, family: str, channel_divisor: int) -> Any:
    from flowlib.models.flownet import FlowNet

    model = FlowNet(correlation=correlation, batch_norm=batch_norm, family=family,
                    channel_divisor=channel_divisor)
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    return jax.eval_shape(model.init, jax.random.PRNGKey(0), x, x)


def _resolve_kwargs(state: Mapping[str, Any], extras: Mapping[str, Any],
                    model_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(model_kwargs) - set(_KWARGS))
    if unknown:
        raise ValueError(f"unknown FlowNet keyword arguments {unknown}; expected some of {_KWARGS}")
    inferred = model_kwargs_from_state(state, extras)
    return {**inferred, **model_kwargs}


def convert_state_dict(state: Mapping[str, Any], **model_kwargs: Any) -> dict:
    """FlowNetS/C state dict (or whole checkpoint dict) -> Flax variables.

    Args:
      state: numpy arrays by PyTorch name, or a ``.pth.tar``-style dict holding them under
        ``state_dict``.
      **model_kwargs: :class:`FlowNet` fields (``correlation``, ``batch_norm``,
        ``family``, ...); the structural ones not given are read from the keys.

    Returns:
      ``{"params": ...}`` (plus ``"batch_stats"`` for BatchNorm variants).

    Raises:
      ValueError: a tensor is missing, left over, or has the wrong shape.
    """
    source, extras = unwrap(state)
    kwargs = _resolve_kwargs(source, extras, model_kwargs)
    mapper = KeyMapper(source, ignore_pattern=IGNORED_PATTERN)
    for key, path, transform in key_table(correlation=kwargs["correlation"],
                                          batch_norm=kwargs["batch_norm"],
                                          family=kwargs["family"]):
        mapper.take(key, path, transform)
    expected = _expected_tree(bool(kwargs["correlation"]), bool(kwargs["batch_norm"]),
                              kwargs["family"], int(kwargs.get("channel_divisor", 1)))
    return mapper.finish(expected)


def convert_file(path: str | os.PathLike, **model_kwargs: Any) -> tuple[dict, dict]:
    """Read a FlowNetPytorch ``.pth(.tar)`` or flownet2-pytorch ``.pth.tar`` (no torch needed).

    Args:
      path: the checkpoint file.
      **model_kwargs: as :func:`convert_state_dict`; override what the file implies.

    Returns:
      ``(variables, model_kwargs)``: the kwargs rebuild the matching :class:`FlowNet`
      (``div_flow`` from the checkpoint when it records one).
    """
    from flowlib.convert._torch import read_torch_checkpoint

    obj = read_torch_checkpoint(path)
    try:
        source, extras = unwrap(obj)
        kwargs = _resolve_kwargs(source, extras, model_kwargs)
        variables = convert_state_dict(source, **kwargs)
    except ValueError as err:
        raise ValueError(f"{os.fspath(path)}: {err}") from err
    return variables, kwargs
