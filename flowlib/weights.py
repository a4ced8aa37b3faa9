"""The runtime weight format: a flat ``.npz`` of a Flax variable tree plus JSON metadata.

Keys are the ``/``-joined paths of the variable tree (``params/conv1/conv/kernel``); the entry
``__meta__`` is a JSON string with the model name, its constructor keyword arguments and the
provenance. :func:`save_weights` writes it atomically (:mod:`flowlib._files`),
:func:`load_weights` reads it back with clear errors for damaged or foreign files.

This is what ``load_model``, ``flowlib.train.export`` and the CLI read and write; the offline
converters (:mod:`flowlib.convert`, which may need torch) produce it but nothing at run time
depends on them.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from flowlib._files import atomic_write

__all__ = ["flatten", "unflatten", "save_weights", "load_weights", "load_meta"]


def flatten(tree: Mapping[str, Any], sep: str = "/") -> dict[str, Any]:
    """Nested dict -> flat dict with ``sep``-joined keys."""
    out: dict[str, Any] = {}

    def rec(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                rec(v, f"{prefix}{sep}{k}" if prefix else str(k))
        else:
            out[prefix] = node

    rec(tree, "")
    return out


def unflatten(flat: Mapping[str, Any], sep: str = "/") -> dict[str, Any]:
    """Flat dict with ``sep``-joined keys -> nested dict."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        parts = key.split(sep)
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def save_weights(path: str | os.PathLike, variables: Mapping[str, Any],
                 meta: Mapping[str, Any]) -> None:
    """Write a flat npz of ``variables`` with ``__meta__`` (JSON), atomically."""
    flat = {k: np.asarray(v) for k, v in flatten(variables).items()}
    if "__meta__" in flat:
        raise ValueError("'__meta__' is reserved")
    flat["__meta__"] = np.array(json.dumps(dict(meta), sort_keys=True))
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **flat)
    atomic_write(path, buf.getvalue())


def _read_npz(path: str, names: Sequence[str] | None = None) -> dict[str, Any]:
    """The arrays of a weight npz (only ``names`` when given), with clear errors."""
    try:
        # Open the file ourselves: np.load leaks its handle when the archive is damaged.
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as data:
            # np.load's archive decompresses a member only when it is indexed.
            keys = data.files if names is None else [k for k in data.files if k in names]
            return {k: data[k] for k in keys}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path}: not a readable flowlib weight file (.npz): {err}") from err
    except Exception as err:  # zipfile.BadZipFile, zlib.error, KeyError from a damaged archive
        raise ValueError(f"{path}: damaged weight file (.npz): {err}") from err


def _pop_meta(path: str, flat: dict[str, Any]) -> dict[str, Any]:
    if "__meta__" not in flat:
        raise ValueError(f"{path}: weight file has no '__meta__' entry; was it written by flowlib?")
    try:
        return json.loads(str(flat.pop("__meta__")))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: '__meta__' is not valid JSON: {err}") from err


def load_weights(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a flowlib weight npz -> (nested variables, meta dict)."""
    path = os.fspath(path)
    flat = _read_npz(path)
    meta = _pop_meta(path, flat)
    return unflatten(flat), meta


def load_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Only the meta dict of a flowlib weight npz (its arrays are not read); the same
    errors as :func:`load_weights` for a missing, damaged or foreign file."""
    path = os.fspath(path)
    return _pop_meta(path, _read_npz(path, ("__meta__",)))
