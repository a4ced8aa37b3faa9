"""THE table of models: name -> where its module, converter and checkpoints live.

A literal dict, no registry: ``grep`` for a model name finds everything about it.
Modules are imported lazily so that ``import flowlib`` stays cheap.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """Where a model lives.

    Attributes:
      name: the model's name in :data:`MODELS` (and the prefix of its checkpoint names in a
        model file shared by several models, e.g. ``"flownetc:chairs"``).
      task: "flow" or "stereo".
      module: import path of the model file.
      factory: attribute of that module building the Flax module from keyword arguments.
      converter: import path of the converter (``convert_file``, ``convert_state_dict``).
      default_kwargs: constructor keyword arguments used when a checkpoint gives none.
      default_weights: the named checkpoint used when ``weights=None``.
    """

    name: str
    task: str
    module: str
    factory: str
    converter: str
    default_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    default_weights: str | None = None

    def build(self, **kwargs: Any) -> Any:
        factory: Callable[..., Any] = getattr(importlib.import_module(self.module), self.factory)
        return factory(**{**self.default_kwargs, **kwargs})

    @property
    def checkpoints(self) -> dict[str, Any]:
        """``{variant: hub.Checkpoint}`` of this model (``"<name>:"`` prefixes stripped)."""
        table = getattr(importlib.import_module(self.module), "CHECKPOINTS", {})
        out: dict[str, Any] = {}
        for key, ckpt in table.items():
            model, sep, variant = key.partition(":")
            if not sep:
                out[key] = ckpt
            elif model == self.name:
                out[variant] = ckpt
        return out


#: What ``flowlib.estimate`` / ``flowlib.estimate_disparity`` (and the CLI, the demo and the
#: benchmarks) use when no model is named: flowlib's own, embedded, no download.
DEFAULT_FLOW_MODEL = "patchflow"
DEFAULT_STEREO_MODEL = "patchstereo"

MODELS: dict[str, ModelEntry] = {
    "patchflow": ModelEntry(
        name="patchflow",
        task="flow",
        module="flowlib.models.patchflow",
        factory="PatchFlow",
        converter="flowlib.convert.patchflow",
    ),
    "patchstereo": ModelEntry(
        name="patchstereo",
        task="stereo",
        module="flowlib.models.patchflow",
        factory="PatchStereo",
        converter="flowlib.convert.patchflow",
    ),
    "spynet": ModelEntry(
        name="spynet",
        task="flow",
        module="flowlib.models.spynet",
        factory="SpyNet",
        converter="flowlib.convert.spynet",
        default_weights="sintel-final",
    ),
    "flownets": ModelEntry(
        name="flownets",
        task="flow",
        module="flowlib.models.flownet",
        factory="FlowNet",
        converter="flowlib.convert.flownet",
        default_kwargs={"correlation": False},
        default_weights="chairs",
    ),
    "flownetc": ModelEntry(
        name="flownetc",
        task="flow",
        module="flowlib.models.flownet",
        factory="FlowNet",
        converter="flowlib.convert.flownet",
        default_kwargs={"correlation": True},
        default_weights="chairs",
    ),
    "cfnet": ModelEntry(
        name="cfnet",
        task="stereo",
        module="flowlib.models.cfnet",
        factory="CFNet",
        converter="flowlib.convert.cfnet",
        default_weights="sceneflow",
    ),
}


def get(name: str) -> ModelEntry:
    """Look a model up by name, with a message listing the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {sorted(MODELS)}") from None
