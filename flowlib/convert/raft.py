"""torchvision RAFT checkpoints -> :class:`flowlib.models.raft.RAFT` (no torch needed).

Files: torchvision's ``raft_large_*.pth`` / ``raft_small_*.pth`` are plain state dicts of
``torchvision.models.optical_flow.RAFT`` saved with ``torch.save`` (read by the
restricted reader, :func:`flowlib.convert._torch.read_torch_checkpoint`). The Flax
modules carry torchvision's names, so every key maps by rule (:func:`flax_path`):

* ``Conv2dNormActivation`` (``convnormrelu``, ``convcorr1``, ``downsample``, ...):
  ``<m>.0.weight / bias`` -> ``<m>/conv/conv/kernel / bias``; ``<m>.1.weight / bias`` ->
  ``<m>/norm/bn/scale / bias``; ``<m>.1.running_mean / var`` -> ``batch_stats`` ``mean /
  var``; ``num_batches_tracked`` is ignored;
* a bare ``nn.Conv2d`` (``conv``, ``convz``, ``flow_head.conv1``, ...): ``<m>.weight`` ->
  ``<m>/conv/kernel``;
* ``layerN.i`` (``nn.Sequential`` of blocks) -> ``layerN_i``.

Conv2d weights ``(O, I, kh, kw)`` become ``(kh, kw, I, O)``. The model size (large or
small) is read from the keys when not given: only RAFT-small lacks ``mask_predictor.*``.
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from flowlib.convert._common import KeyMapper, conv_kernel
from flowlib.convert._torch import unwrap_state_dict

__all__ = ["convert_state_dict", "convert_file", "convert_large_file", "convert_small_file",
           "flax_path", "small_from_state", "IGNORED_PATTERN"]

#: BatchNorm step counters (no meaning in eval; Flax keeps none).
IGNORED_PATTERN = r".*\.num_batches_tracked"
_LAYER = re.compile(r"(layer\d)\.(\d)")
_KINDS = ("weight", "bias", "running_mean", "running_var")


def flax_path(key: str) -> tuple[str, Any]:
    """``(flax variable path, transform)`` of one torchvision RAFT state-dict key."""
    parts = _LAYER.sub(r"\1_\2", key).split(".")
    kind = parts[-1]
    if kind not in _KINDS or len(parts) < 2:
        raise ValueError(f"unexpected tensor {key!r} in a torchvision RAFT state dict")
    module, slot = parts[:-1], None
    if module[-1] in ("0", "1"):  # Conv2dNormActivation = Sequential(conv, [norm], [relu])
        slot = module.pop()
    if slot == "1":
        collection = "batch_stats" if kind.startswith("running_") else "params"
        leaf = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}[kind]
        return f"{collection}/{'/'.join(module)}/norm/bn/{leaf}", None
    if kind.startswith("running_"):
        raise ValueError(f"unexpected tensor {key!r} in a torchvision RAFT state dict")
    inner = "conv/conv" if slot == "0" else "conv"
    leaf = "kernel" if kind == "weight" else "bias"
    return f"params/{'/'.join(module)}/{inner}/{leaf}", conv_kernel if kind == "weight" else None


def small_from_state(state: Mapping[str, Any]) -> bool:
    """Whether a state dict is RAFT-small's (no mask predictor) or RAFT's."""
    return not any(k.startswith("mask_predictor.") for k in state)


@functools.lru_cache(maxsize=4)
def _expected_tree(small: bool) -> Any:
    from flowlib.models.raft import RAFT

    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    return jax.eval_shape(RAFT(small=small, iters=1).init, jax.random.PRNGKey(0), x, x)


def convert_state_dict(state: Mapping[str, Any], *, small: bool | None = None) -> dict:
    """torchvision ``raft_large`` / ``raft_small`` state dict -> Flax variables.

    Args:
      state: numpy arrays by torchvision name.
      small: RAFT-small or not; read from the keys when ``None``.

    Returns:
      ``{"params": ..., "batch_stats": ...}`` (RAFT-small has no batch statistics).

    Raises:
      ValueError: a tensor is missing, left over, or has the wrong shape.
    """
    small = small_from_state(state) if small is None else bool(small)
    mapper = KeyMapper(state, ignore_pattern=IGNORED_PATTERN)
    for key in state:
        if re.fullmatch(IGNORED_PATTERN, key):
            continue
        path, transform = flax_path(key)
        mapper.take(key, path, transform)
    return mapper.finish(_expected_tree(small))


def convert_file(path: str | os.PathLike, **model_kwargs: Any) -> tuple[dict, dict]:
    """Read a torchvision RAFT ``.pth`` (no torch needed).

    Args:
      path: the checkpoint file.
      **model_kwargs: ``small`` (read from the keys when not given).

    Returns:
      ``(variables, {"small": bool})``.
    """
    from flowlib.convert._torch import read_torch_checkpoint

    unknown = sorted(set(model_kwargs) - {"small"})
    if unknown:
        raise ValueError(f"unknown RAFT keyword arguments {unknown}; expected 'small'")
    obj = read_torch_checkpoint(path)
    try:
        state, _ = unwrap_state_dict(obj)
        small = model_kwargs.get("small")
        small = small_from_state(state) if small is None else bool(small)
        variables = convert_state_dict(state, small=small)
    except ValueError as err:
        raise ValueError(f"{os.fspath(path)}: {err}") from err
    return variables, {"small": small}


def _convert_sized(path: str | os.PathLike, small: bool, **model_kwargs: Any) -> tuple[dict, dict]:
    from flowlib.convert._torch import read_torch_checkpoint

    if model_kwargs:
        raise ValueError(f"unknown RAFT keyword arguments {sorted(model_kwargs)}")
    want, other = ("RAFT-small", "RAFT (large)") if small else ("RAFT (large)", "RAFT-small")
    try:
        state, _ = unwrap_state_dict(read_torch_checkpoint(path))
        if small_from_state(state) != small:
            raise ValueError(f"this is a {other} state dict (mask_predictor.* "
                             f"{'present' if small else 'absent'}), expected {want}")
        variables = convert_state_dict(state, small=small)
    except ValueError as err:
        raise ValueError(f"{os.fspath(path)}: {err}") from err
    return variables, {}


def convert_large_file(path: str | os.PathLike, **model_kwargs: Any) -> tuple[dict, dict]:
    """:func:`convert_file` for a ``raft_large`` file only (the ``raft`` model's converter):
    ``(variables, {})``; a RAFT-small file is a ValueError saying so."""
    return _convert_sized(path, False, **model_kwargs)


def convert_small_file(path: str | os.PathLike, **model_kwargs: Any) -> tuple[dict, dict]:
    """:func:`convert_file` for a ``raft_small`` file only (the ``raft_small`` model's
    converter): ``(variables, {})``; a large RAFT file is a ValueError saying so."""
    return _convert_sized(path, True, **model_kwargs)
