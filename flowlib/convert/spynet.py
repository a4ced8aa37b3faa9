"""SpyNet weights (PyTorch ``.pytorch`` files or Torch7 ``.t7`` folders) -> Flax variables.

Sources accepted:

* sniklaus/pytorch-spynet ``network-<variant>.pytorch``: a plain state dict with keys
  ``moduleBasic.{L}.moduleBasic.{j}.{weight,bias}``; the current run.py renames them to
  ``netBasic.{L}.netBasic.{j}...`` (also accepted, as is a ``module.`` prefix or a
  ``{'state_dict': ...}`` wrapper). L = 0 is the coarsest level; j in {0, 2, 4, 6, 8} are
  the five convolutions (odd indices are the ReLUs).
* anuragranj/spynet Torch7 files ``modelL{1..6}_<suffix>.t7`` (``modelL1`` coarsest), each an
  ``nn.Sequential`` of ``cudnn.SpatialConvolution`` / ``ReLU`` modules; the FlyingChairs
  variants ship five files (the sixth level reuses the fifth: ``num_networks=5``).

Layout: Conv2d weight ``(O, I, 7, 7)`` -> ``(7, 7, I, O)``; bias as is. Every source tensor
is mapped exactly once and every Flax leaf filled once (:class:`KeyMapper`).
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from flowlib.convert._common import KeyMapper, conv_kernel, strip_prefix

__all__ = [
    "convert_state_dict",
    "convert_t7_dir",
    "convert_file",
    "key_table",
    "unwrap",
    "num_networks_from_state",
    "T7_SUFFIXES",
]

#: Torch7 file suffix per variant (anuragranj/spynet ``spynet.lua`` ``setup``).
T7_SUFFIXES = {
    "sintel-final": "F",
    "sintel-clean": "C",
    "chairs-final": "3",
    "chairs-clean": "4",
    "kitti-final": "K",
}
_T7_LEVELS = {"3": 5, "4": 5}  # FlyingChairs variants: five files; others six
_CONV_INDICES = (0, 2, 4, 6, 8)  # positions of the convolutions in upstream's Sequential
_KEY = re.compile(r"(moduleBasic|netBasic)\.(\d+)\.(moduleBasic|netBasic)\.(\d+)\.(weight|bias)")


def key_table(num_networks: int, *, prefix: str = "netBasic") -> list[tuple[str, str]]:
    """``(source key stem, Flax path)`` for every convolution; add ``.weight`` / ``.bias``."""
    return [
        (f"{prefix}.{level}.{prefix}.{j}", f"params/basic{level}/conv{i}/conv")
        for level in range(num_networks)
        for i, j in enumerate(_CONV_INDICES)
    ]


def unwrap(obj: Any) -> Mapping[str, Any]:
    """The state dict inside a checkpoint object (``{'state_dict': ...}``, ``{'model': ...}``
    or the bare dict), without a ``module.`` prefix."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                return strip_prefix(obj[key], "module.")
        if obj and all(isinstance(k, str) for k in obj):
            return strip_prefix(obj, "module.")
    raise ValueError(
        "expected a SpyNet state dict (keys 'moduleBasic.{L}.moduleBasic.{j}.weight' or "
        f"'netBasic...'), or a dict holding one under 'state_dict'; got {type(obj).__name__}"
    )


def _spelling(state: Mapping[str, Any]) -> str:
    names = {m.group(1) for m in map(_KEY.fullmatch, state) if m}
    if len(names) != 1:
        raise ValueError(
            "expected SpyNet keys 'moduleBasic.{L}.moduleBasic.{j}.{weight,bias}' (downloaded "
            "files) or 'netBasic.{L}.netBasic.{j}...' (current run.py); found "
            f"{sorted(names) or 'neither'} among keys {sorted(state)[:6]}"
        )
    return names.pop()


def num_networks_from_state(state: Mapping[str, Any]) -> int:
    """Number of level networks in a state dict: 1 + the largest level index."""
    levels = [int(m.group(2)) for m in map(_KEY.fullmatch, unwrap(state)) if m]
    if not levels:
        raise ValueError(f"no SpyNet level keys ('moduleBasic.{{L}}...') among {sorted(state)[:6]}")
    return max(levels) + 1


@functools.lru_cache(maxsize=8)
def _expected_tree(num_networks: int) -> Any:
    from flowlib.models.spynet import SpyNet

    x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    return jax.eval_shape(SpyNet(num_networks=num_networks).init, jax.random.PRNGKey(0), x, x)


def convert_state_dict(state: Mapping[str, Any], *, num_networks: int | None = None) -> dict:
    """SpyNet state dict (numpy arrays) -> ``{"params": ...}`` for ``SpyNet(num_networks=n)``.

    Args:
      state: the state dict (or a dict wrapping it, see :func:`unwrap`).
      num_networks: expected number of level networks (5 or 6); default: inferred from
        the keys (:func:`num_networks_from_state`).

    Returns:
      Flax variables ``{"params": {"basic{L}": {"conv{i}": {"conv": {kernel, bias}}}}}``.

    Raises:
      ValueError: a tensor is missing, left over, or has the wrong shape.
    """
    source = {k: np.asarray(v) for k, v in unwrap(state).items()}
    prefix = _spelling(source)
    if num_networks is None:
        num_networks = num_networks_from_state(source)
    if num_networks < 1:
        raise ValueError(f"num_networks must be >= 1, got {num_networks}")
    mapper = KeyMapper(source)
    for src, dst in key_table(num_networks, prefix=prefix):
        mapper.take(f"{src}.weight", f"{dst}/kernel", conv_kernel)
        mapper.take(f"{src}.bias", f"{dst}/bias")
    return mapper.finish(_expected_tree(num_networks))


def _t7_paths(directory: Path, variant: str | None) -> list[Path]:
    if variant is None:
        suffixes = {m.group(1) for p in directory.glob("modelL1_*.t7")
                    if (m := re.fullmatch(r"modelL1_(\w+)\.t7", p.name))}
        known = sorted(s for s in suffixes if s in T7_SUFFIXES.values())
        if len(known) != 1:
            raise ValueError(
                f"{directory}: cannot tell the SpyNet variant from the files (modelL1_<suffix>.t7 "
                f"with suffix in {sorted(T7_SUFFIXES.values())}; found {sorted(suffixes)}); pass "
                f"variant= one of {sorted(T7_SUFFIXES)}"
            )
        suffix = known[0]
    elif variant in T7_SUFFIXES:
        suffix = T7_SUFFIXES[variant]
    else:
        raise ValueError(
            f"unknown SpyNet variant {variant!r}; expected one of {sorted(T7_SUFFIXES)}"
        )
    levels = range(1, _T7_LEVELS.get(suffix, 6) + 1)
    paths = [directory / f"modelL{level}_{suffix}.t7" for level in levels]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise ValueError(f"{directory}: missing Torch7 files {missing}")
    return paths


def _t7_level(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight, bias) of the five convolutions of one ``modelL*.t7`` nn.Sequential."""
    from flowlib.convert._t7 import T7Object, read_t7

    obj = read_t7(path)
    modules = obj.fields.get("modules") if isinstance(obj, T7Object) else None
    if isinstance(modules, Mapping) and all(isinstance(k, (int, float)) for k in modules):
        # A Lua table that is not a plain 1..n sequence (e.g. empty) reads as a dict.
        modules = [modules[k] for k in sorted(modules)]
    if not isinstance(modules, list):
        raise ValueError(f"{path}: expected an nn.Sequential (a Torch7 object with 'modules'), "
                         f"got {getattr(obj, 'class_name', type(obj).__name__)}")
    convs = [m for m in modules
             if isinstance(m, T7Object) and m.class_name.endswith("SpatialConvolution")]
    if len(convs) != len(_CONV_INDICES):
        names = [getattr(m, "class_name", m) for m in modules]
        raise ValueError(f"{path}: expected {len(_CONV_INDICES)} SpatialConvolution modules, "
                         f"found {len(convs)} in {names}")
    for i, conv in enumerate(convs):
        for field, value in (("dW", 1), ("dH", 1), ("padW", 3), ("padH", 3)):
            if conv.fields.get(field, value) != value:
                raise ValueError(f"{path}: convolution {i} has {field}={conv.fields.get(field)}, "
                                 f"expected {value}")
    return [(np.asarray(c.fields["weight"]), np.asarray(c.fields["bias"])) for c in convs]


def convert_t7_dir(
    directory_or_paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    variant: str | None = None,
) -> tuple[dict, dict]:
    """Convert the original Torch7 files of anuragranj/spynet.

    Args:
      directory_or_paths: a folder holding ``modelL{1..6}_<suffix>.t7`` (``modelL{1..5}``
        for the FlyingChairs variants), or the files themselves, coarsest level first.
      variant: which files to take from a folder (``"sintel-final"`` -> ``_F``, see
        :data:`T7_SUFFIXES`); default: the only variant present.

    Returns:
      ``(variables, model_kwargs)``, ``model_kwargs = {"num_networks": number of files}``.
    """
    if isinstance(directory_or_paths, (str, os.PathLike)):
        paths = _t7_paths(Path(directory_or_paths), variant)
    else:
        paths = [Path(p) for p in directory_or_paths]
        if not paths:
            raise ValueError("no Torch7 files given")
    state = {}
    for level, path in enumerate(paths):
        for j, (weight, bias) in zip(_CONV_INDICES, _t7_level(path)):
            state[f"netBasic.{level}.netBasic.{j}.weight"] = weight
            state[f"netBasic.{level}.netBasic.{j}.bias"] = bias
    try:
        variables = convert_state_dict(state, num_networks=len(paths))
    except ValueError as err:
        raise ValueError(f"{[p.name for p in paths]}: {err}") from err
    return variables, {"num_networks": len(paths)}


def convert_file(path: str | os.PathLike, *, num_networks: int | None = None,
                 variant: str | None = None) -> tuple[dict, dict]:
    """Convert a ``.pytorch`` state dict file or a folder of ``.t7`` files (no torch needed).

    Args:
      path: the file, or a folder of Torch7 files (see :func:`convert_t7_dir`).
      num_networks: expected number of level networks (default: what the file holds).
      variant: for a folder, which variant's files (default: the only one present).

    Returns:
      ``(variables, model_kwargs)``, ``model_kwargs = {"num_networks": n}``.
    """
    if Path(path).is_dir():
        variables, kwargs = convert_t7_dir(path, variant=variant)
        if num_networks is not None and kwargs["num_networks"] != num_networks:
            raise ValueError(f"{os.fspath(path)}: holds {kwargs['num_networks']} level networks, "
                             f"expected {num_networks}")
        return variables, kwargs
    from flowlib.convert._torch import read_torch_checkpoint

    obj = read_torch_checkpoint(path)
    try:
        n = num_networks_from_state(obj) if num_networks is None else num_networks
        variables = convert_state_dict(obj, num_networks=n)
    except ValueError as err:
        raise ValueError(f"{os.fspath(path)}: {err}") from err
    return variables, {"num_networks": n}
