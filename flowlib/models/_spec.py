"""What a model module declares about each of its models: :class:`ModelSpec`, its
:class:`Option` settings and its compute dtype (:func:`compute_dtype`).

Every model module (``flowlib/models/<file>.py``) ends with ``SPECS = (ModelSpec(...), ...)``,
one per model name it provides. Everything else in flowlib reads a model from there:
:func:`flowlib.load_model` (factory, checkpoints, default weights, converter, option
validation), the command line (one flag per option), the trainer (the loss) and
``flowlib models`` (the table). :mod:`flowlib._zoo` only maps each name to its module.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import types
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["ModelSpec", "Option", "compute_dtype", "int_in", "positive_number"]


def compute_dtype(dtype: Any) -> Any:
    """Validate a model's ``dtype`` option: ``None`` / ``"float32"`` (plain float32, returned
    as ``None``) or ``"bfloat16"`` (convolutions in bfloat16, accumulated in float32).

    Raises:
      ValueError: any other value, naming the accepted ones.
    """
    if dtype is None:
        return None
    import jax.numpy as jnp  # the declarations need no JAX: imported by this check alone

    try:
        name = jnp.dtype(dtype).name
    except TypeError:
        name = None
    if name == "float32":
        return None
    if name == "bfloat16":
        return jnp.dtype(jnp.bfloat16)
    raise ValueError(f"dtype must be None, 'float32' or 'bfloat16', got {dtype!r}")


def int_in(lo: int, hi: int, *, multiple: int = 1) -> Callable[[str, Any], int]:
    """An :attr:`Option.check`: an integer in ``[lo, hi]`` (and a multiple of ``multiple``)."""

    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not (
            lo <= value <= hi and value % multiple == 0
        ):
            step = f" and a multiple of {multiple}" if multiple > 1 else ""
            raise ValueError(f"{name} must be an integer in [{lo}, {hi}]{step}, got {value!r}")
        return int(value)

    return check


def positive_number(name: str, value: Any) -> float:
    """An :attr:`Option.check`: a finite number > 0, returned as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
        math.isfinite(value) and value > 0
    ):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class Option:
    """A :func:`flowlib.load_model` keyword that changes how a model runs, not its parameters
    (any weights of the model accept it); it overrides what the weights record.

    Attributes:
      name: the ``load_model`` keyword and the model's constructor argument, e.g. ``"maxdisp"``.
      check: ``(name, value) -> value``: the one validator of the setting; raises ValueError
        naming what was expected.
      help: the command-line help, saying the default.
      flag: the command-line flag (default ``--<name>`` with ``-`` for ``_``). Models that
        share a flag share its ``name`` and ``type``.
      type: argparse ``type=`` of the flag (parses the text; :attr:`check` validates).
      choices: the accepted values, where they are a short list.
      metavar: the flag's placeholder in ``--help``.
    """

    name: str
    check: Callable[[str, Any], Any]
    help: str
    flag: str | None = None
    type: Callable[[str], Any] = int
    choices: tuple[Any, ...] | None = None
    metavar: str | None = None

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model: how to build it, its settings, weights, converter and training loss.

    Attributes:
      name: the zoo name, e.g. ``"spynet"`` (a key of ``flowlib._zoo.MODELS``).
      task: ``"flow"`` or ``"stereo"``.
      summary: one line for ``flowlib models``.
      build: ``**model_kwargs -> module`` with ``.init(rng, image1, image2)`` and
        ``.apply(variables, image1, image2)``, whose output has ``.flow`` (flow) or
        ``.disparity`` (stereo).
      options: the user-facing settings (:class:`Option`).
      checkpoints: ``{variant: flowlib.hub.Checkpoint}``, the published weights.
      embedded: file name under ``flowlib/assets/weights/`` of the weights shipped with
        flowlib (used when no weights are given), or None.
      default_weights: the variant used when no weights are given and nothing is embedded.
      convert: ``convert_file(path, **checkpoint.model_kwargs) -> (variables, model_kwargs)``
        for the authors' checkpoint files, or None (the model loads only flowlib ``.npz``).
      loss: the training loss ``(output, batch, **loss_kwargs) -> (loss, metrics)``, or
        None (the model is not trainable).
      loss_options: the module attributes passed to :attr:`loss` as keyword arguments (the
        loss has to match the module's output scaling or range).
      dtypes: the compute dtypes ``load_model(dtype=...)`` accepts.
    """

    name: str
    task: str
    summary: str
    build: Callable[..., Any]
    options: tuple[Option, ...] = ()
    checkpoints: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({}))
    embedded: str | None = None
    default_weights: str | None = None
    convert: Callable[..., Any] | None = None
    loss: Callable[..., Any] | None = None
    loss_options: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ("float32",)

    def __post_init__(self) -> None:
        if self.task not in ("flow", "stereo"):
            raise ValueError(f"{self.name}: task must be 'flow' or 'stereo', got {self.task!r}")
        if self.default_weights is not None and self.default_weights not in self.checkpoints:
            raise ValueError(f"{self.name}: default_weights {self.default_weights!r} is not one "
                             f"of its checkpoints {sorted(self.checkpoints)}")
        names = [o.name for o in self.options]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: options named twice in {names}")

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The validated ``options`` (TypeError naming the accepted ones for an unknown one)."""
        allowed = {o.name: o for o in self.options}
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            accepted = ", ".join(sorted(allowed)) or "none"
            raise TypeError(f"load_model({self.name!r}): unknown option(s) {', '.join(unknown)}; "
                            f"{self.name} accepts: {accepted}")
        return {key: allowed[key].check(key, value) for key, value in options.items()}

    def training_loss(self, module: Any) -> Callable[..., Any]:
        """``(output, batch) -> (loss, metrics)`` for training ``module`` (this model's loss,
        given the :attr:`loss_options` attributes of ``module``)."""
        if self.loss is None:
            raise ValueError(f"model {self.name!r} has no training loss (it is not trainable)")
        kwargs = {name: float(getattr(module, name)) for name in self.loss_options}
        return functools.partial(self.loss, **kwargs) if kwargs else self.loss
