"""Weight conversion helpers: PyTorch -> Flax layouts, strict key accounting, npz store.

Nothing here imports torch. A converter for a model builds a :class:`KeyMapper` over the
source state dict, calls :meth:`KeyMapper.take` once per target leaf with the layout
transform it needs, lists what it deliberately ignores, and calls :meth:`KeyMapper.finish`
with the target variable tree (from ``model.init`` or ``jax.eval_shape``).  ``finish``
raises a ``ValueError`` listing every source tensor that was neither used nor ignored,
every target leaf that was not filled, filled twice, or filled with the wrong shape.

Converted weights are stored in the runtime format of :mod:`flowlib.weights` (a flat
``.npz`` plus ``__meta__``); its functions are re-exported here for the converters.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from flowlib.weights import flatten, load_weights, save_weights, unflatten

__all__ = [
    "conv_kernel",
    "conv_transpose_kernel",
    "KeyMapper",
    "flatten",
    "unflatten",
    "save_weights",
    "load_weights",
    "strip_prefix",
]


def conv_kernel(w: np.ndarray) -> np.ndarray:
    """PyTorch Conv{1,2,3}d weight ``(out, in, *k)`` -> Flax ``(*k, in, out)``."""
    w = np.asarray(w)
    if w.ndim < 3:
        raise ValueError(f"conv weight must be (out, in, *kernel), got shape {w.shape}")
    return np.ascontiguousarray(np.moveaxis(w, (0, 1), (-1, -2)))


def conv_transpose_kernel(w: np.ndarray) -> np.ndarray:
    """PyTorch ConvTranspose weight ``(in, out, *k)`` -> ``(*k, in, out)`` (see _layers)."""
    w = np.asarray(w)
    if w.ndim < 3:
        raise ValueError(f"transposed conv weight must be (in, out, *kernel), got {w.shape}")
    return np.ascontiguousarray(np.moveaxis(w, (0, 1), (-2, -1)))


def strip_prefix(state: Mapping[str, Any], prefix: str = "module.") -> dict[str, Any]:
    """Remove ``prefix`` from every key when *all* keys carry it (nn.DataParallel)."""
    keys = list(state)
    if keys and all(k.startswith(prefix) for k in keys):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return dict(state)


class KeyMapper:
    """Strict source-key -> target-path mapping with full accounting."""

    def __init__(
        self,
        source: Mapping[str, Any],
        *,
        ignore: Iterable[str] = (),
        ignore_pattern: str | None = None,
    ) -> None:
        self.source = dict(source)
        self.used: set[str] = set()
        self.ignored = {k for k in ignore if k in self.source}
        missing_ignored = [k for k in ignore if k not in self.source]
        if missing_ignored:
            # Listing a key as ignored that is not there hides a layout mismatch.
            raise ValueError(f"keys listed as ignored are not in the checkpoint: {missing_ignored[:10]}")
        if ignore_pattern is not None:
            rx = re.compile(ignore_pattern)
            self.ignored |= {k for k in self.source if rx.fullmatch(k)}
        self.target: dict[str, np.ndarray] = {}
        self._double: list[str] = []

    def take(
        self,
        src_key: str,
        dst_path: str,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        """Fill target ``dst_path`` (``/``-joined) from ``src_key`` after ``transform``."""
        if src_key not in self.source:
            raise ValueError(f"checkpoint has no tensor {src_key!r} (needed for {dst_path})")
        value = np.asarray(self.source[src_key])
        if transform is not None:
            value = transform(value)
        if dst_path in self.target:
            self._double.append(dst_path)
        self.target[dst_path] = np.asarray(value, dtype=np.float32) if value.dtype.kind == "f" else value
        self.used.add(src_key)

    def finish(self, expected: Mapping[str, Any]) -> dict[str, Any]:
        """Check against the target tree (arrays or ShapeDtypeStructs) and return it filled."""
        expected_flat = {k: tuple(v.shape) for k, v in flatten(expected).items()}
        problems = []
        unused = sorted(set(self.source) - self.used - self.ignored)
        if unused:
            problems.append(f"{len(unused)} checkpoint tensors neither used nor ignored: {unused[:20]}")
        unfilled = sorted(set(expected_flat) - set(self.target))
        if unfilled:
            problems.append(f"{len(unfilled)} parameters not filled: {unfilled[:20]}")
        extra = sorted(set(self.target) - set(expected_flat))
        if extra:
            problems.append(f"{len(extra)} filled paths that the model does not have: {extra[:20]}")
        if self._double:
            problems.append(f"parameters filled more than once: {self._double[:20]}")
        bad_shape = [
            f"{k}: checkpoint gives {self.target[k].shape}, model expects {s}"
            for k, s in expected_flat.items()
            if k in self.target and tuple(self.target[k].shape) != s
        ]
        if bad_shape:
            problems.append("shape mismatches: " + "; ".join(bad_shape[:20]))
        if problems:
            raise ValueError("weight conversion failed:\n  " + "\n  ".join(problems))
        return unflatten(self.target)
