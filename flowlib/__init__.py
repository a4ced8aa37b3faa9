"""flowlib: optical flow and stereo estimation in JAX.

Public surface::

    flowlib.estimate(img1, img2, model="patchflow", weights=None)   -> (H, W, 2) flow
    flowlib.estimate_disparity(left, right, model="patchstereo")     -> (H, W) disparity
    flowlib.load_model(name, weights=...)                            -> Model
    flowlib.available_models()
    flowlib.io, flowlib.metrics, flowlib.viz                          file formats, metrics, colour coding

``flowlib.ops`` (pure JAX primitives), ``flowlib.models`` (Flax modules),
``flowlib.data``, ``flowlib.evaluation`` and ``flowlib.convert`` are importable for
researchers who build on them.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = {"io", "metrics", "viz", "ops", "models", "data", "evaluation", "convert", "hub",
               "losses", "train", "video", "weights"}
_API = {"estimate", "estimate_disparity", "load_model", "available_models", "Model",
        "DisparityRangeWarning"}

__all__ = sorted(_API | {"io", "metrics", "viz", "__version__"})


def __getattr__(name: str) -> Any:
    # Lazy imports keep `import flowlib` cheap (no JAX start-up for file-format users).
    if name in _SUBMODULES:
        return importlib.import_module(f"flowlib.{name}")
    if name in _API:
        return getattr(importlib.import_module("flowlib._api"), name)
    raise AttributeError(f"module 'flowlib' has no attribute {name!r}")


def __dir__() -> list[str]:
    # Only the documented surface: not `importlib`, `Any`, `annotations` or the lazy tables.
    # The researcher-facing subpackages stay importable (`flowlib.ops`) without being listed.
    return list(__all__)
