"""Atomic, resumable training checkpoints.

A checkpoint is one ``.npz`` holding every leaf of the training state (parameters,
batch statistics, optimizer state, step) under its tree path, plus ``__meta__`` (JSON:
step, config, flowlib version). It is written to a temporary file, fsynced and renamed,
so a run killed at any moment leaves either the previous checkpoint or the new one,
never a partial file. The loss history is kept inside the checkpoint too, so resuming
restores exactly the curve up to that step.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Any

import jax
import numpy as np

_NAME = re.compile(r"^step_(\d{8})\.npz$")


def _key(path: tuple) -> str:
    return "/".join(str(getattr(p, "key", getattr(p, "idx", getattr(p, "name", p)))) for p in path)


def save(directory: str | os.PathLike, state: Any, meta: dict[str, Any], *, keep: int = 3) -> Path:
    """Write ``state`` (any pytree of arrays) as ``step_%08d.npz``; keep the newest ``keep``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(state))[0]
    arrays = {f"leaf{i:05d}:{_key(path)}": np.asarray(leaf) for i, (path, leaf) in enumerate(leaves)}
    arrays["__meta__"] = np.array(json.dumps(meta, sort_keys=True))
    target = directory / f"step_{int(meta['step']):08d}.npz"
    from flowlib._files import atomic_write

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write(target, buf.getvalue())
    for old in sorted(p for p in directory.iterdir() if _NAME.match(p.name))[:-keep]:
        old.unlink()
    return target


def latest(directory: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint in ``directory`` (None if there is none)."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    found = sorted(p for p in directory.iterdir() if _NAME.match(p.name))
    return found[-1] if found else None


def _read(path: Path, wanted: Any = lambda tree_path: True) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``{"leafNNNNN:tree/path": array}`` for the tree paths ``wanted`` accepts, and the meta."""
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as data:
            meta = json.loads(str(data["__meta__"]))
            arrays = {k: data[k] for k in data.files if k != "__meta__" and wanted(k.split(":", 1)[1])}
    except Exception as err:  # a damaged file must say so, not crash obscurely
        raise ValueError(f"{path}: unreadable training checkpoint: {err}") from err
    return arrays, meta


def meta(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of checkpoint ``path`` (step, config, history, flowlib version), no arrays."""
    return _read(Path(path), lambda tree_path: False)[1]


def load(path: str | os.PathLike, like: Any) -> tuple[Any, dict[str, Any]]:
    """Restore a state with the structure of ``like`` (e.g. a freshly initialised state)."""
    path = Path(path)
    arrays, meta = _read(path)
    keys = sorted(arrays)
    leaves = [arrays[k] for k in keys]
    ref_leaves, treedef = jax.tree_util.tree_flatten(like)
    if len(ref_leaves) != len(leaves):
        raise ValueError(f"{path}: checkpoint has {len(leaves)} arrays, the model/optimizer expects {len(ref_leaves)}")
    for k, ref, got in zip(keys, ref_leaves, leaves):
        if np.shape(ref) != got.shape:
            raise ValueError(f"{path}: {k.split(':', 1)[1]} has shape {got.shape}, expected {np.shape(ref)}")
    restored = [np.asarray(g, dtype=np.asarray(r).dtype) for r, g in zip(ref_leaves, leaves)]
    return jax.tree_util.tree_unflatten(treedef, restored), meta


def variables(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model variables (``params``, ``batch_stats``) of a checkpoint, and its meta.

    Reads the leaves by their tree paths, so no model or optimizer needs to be built
    (used by :mod:`flowlib.train.export` to turn any checkpoint into flowlib weights).
    """
    from flowlib.weights import unflatten

    path = Path(path)
    arrays, meta = _read(path, lambda tree_path: tree_path.split("/", 1)[0] in ("params", "batch_stats"))
    flat = {k.split(":", 1)[1]: v for k, v in arrays.items()}
    if not any(k.startswith("params/") for k in flat):
        raise ValueError(f"{path}: no params/ arrays: not a flowlib training checkpoint")
    tree = unflatten(flat)
    return {k: tree[k] for k in ("params", "batch_stats") if tree.get(k)}, meta
