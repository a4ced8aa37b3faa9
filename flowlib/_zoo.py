"""The models flowlib knows: name -> the module that declares it, and the default names.

Each model module declares its models in ``SPECS`` (:class:`flowlib.models._spec.ModelSpec`):
factory, settings, checkpoints, converter, loss. Modules are imported only when a model is
looked up, so ``import flowlib`` and listing the names stay cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Every model: its name -> the module whose ``SPECS`` declares it.
MODELS: dict[str, str] = {
    "patchflow": "flowlib.models.patchflow",
    "patchstereo": "flowlib.models.patchflow",
    "spynet": "flowlib.models.spynet",
    "flownets": "flowlib.models.flownet",
    "flownetc": "flowlib.models.flownet",
    "cfnet": "flowlib.models.cfnet",
    "raft": "flowlib.models.raft",
    "raft_small": "flowlib.models.raft",
}

#: What ``flowlib.estimate`` / ``flowlib.estimate_disparity`` (and the CLI, the demo and the
#: benchmarks) use when no model is named: flowlib's own, embedded, no download.
DEFAULT_FLOW_MODEL = "patchflow"
DEFAULT_STEREO_MODEL = "patchstereo"
#: What ``flowlib train`` trains when no model is named.
DEFAULT_TRAIN_MODEL = "spynet"


def spec(name: str) -> Any:
    """The :class:`~flowlib.models._spec.ModelSpec` of model ``name`` (imports its module)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {sorted(MODELS)}")
    module = importlib.import_module(MODELS[name])
    for model in module.SPECS:
        if model.name == name:
            return model
    raise LookupError(f"{MODELS[name]}.SPECS declares no model {name!r}")


def specs() -> list[Any]:
    """The spec of every model, sorted by name."""
    return [spec(name) for name in sorted(MODELS)]
