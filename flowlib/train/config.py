"""The training configuration, declared once: :class:`TrainConfig` and the parser made from it.

Every field of :class:`TrainConfig` carries its command-line help (and, where it has one, its
choices or validating type) in ``dataclasses.field(metadata=...)``; :func:`add_config_arguments`
turns the fields into argparse options (``batch_size`` -> ``--batch-size``, a ``True`` bool ->
``--no-<name>``, a ``tuple[int, int]`` -> two integers, a ``dict`` -> a JSON object), and
:func:`config_from_args` turns the parsed namespace back into a :class:`TrainConfig`. Both
``python -m flowlib.train`` and ``flowlib train`` use them, so a new field is one line here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from typing import Any

from flowlib import _zoo
from flowlib._argtypes import positive_int as _positive_int

__all__ = ["TrainConfig", "add_config_arguments", "config_from_args"]


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object like '{{\"key\": 1}}', got {text!r}")
    return value


class _TrainableModels:
    """argparse ``choices`` for the model: the models whose spec declares a training loss.
    Looked up when argparse checks a name (that model's module only) or lists them (help,
    errors), since the model modules import JAX."""

    def __contains__(self, name: object) -> bool:
        return name in _zoo.MODELS and _zoo.spec(name).loss is not None

    def __iter__(self) -> typing.Iterator[str]:
        return iter([spec.name for spec in _zoo.specs() if spec.loss is not None])


def _option(default: Any = dataclasses.MISSING, *, help: str, factory: Any = dataclasses.MISSING,
            **cli: Any) -> Any:
    """A dataclass field whose metadata holds its command-line help and argparse settings."""
    metadata = {"help": help, **cli}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run (recorded in its checkpoints)."""

    # metavar: argparse would otherwise list the choices (importing every model) while
    # building the parser.
    model: str = _option(_zoo.DEFAULT_TRAIN_MODEL, positional=True, metavar="model",
                         help="model to train: one with a training loss (flowlib models)",
                         choices=_TrainableModels())
    data: str = _option("synthetic", help="training data (all but synthetic need --root)",
                        choices=["synthetic", "chairs", "things", "sintel", "kitti"])
    root: str | None = _option(None, help="dataset folder")
    steps: int = _option(1000, help="total optimiser steps", type=_positive_int)
    batch_size: int = _option(8, help="pairs per step (a multiple of the device count)",
                              type=_positive_int)
    crop: tuple[int, int] = _option((256, 320), help="training crop", metavar=("H", "W"),
                                    type=_positive_int)
    lr: float = _option(1e-4, help="peak learning rate")
    schedule: str = _option("cosine", help="learning-rate schedule",
                            choices=["constant", "cosine", "step"])
    warmup: int = _option(50, help="warm-up steps of the cosine schedule", type=_non_negative_int)
    weight_decay: float = _option(0.0, help="AdamW weight decay")
    seed: int = _option(0, help="seed of the initialisation and of every batch")
    out: str = _option("runs/train", help="run folder (default runs/<model>)", cli_default=None)
    checkpoint_every: int = _option(200, help="steps between checkpoints", type=_positive_int)
    log_every: int = _option(10, help="steps between logged losses", type=_positive_int)
    init: str | None = _option(None, help="fine-tune from these weights (name:variant or path)")
    model_kwargs: dict[str, Any] = _option(factory=dict, help='JSON, e.g. \'{"maxdisp": 192}\'')
    data_kwargs: dict[str, Any] = _option(
        factory=dict,
        help='JSON for the synthetic generator, e.g. \'{"motion": 0.5}\' or \'{"max_disparity": 64}\'')
    freeze: str | None = _option(None, help="regex of parameter paths to keep fixed")
    workers: int = _option(2, help="threads that render/decode batches ahead", type=_positive_int)
    progress: bool = _option(True, help="no progress bar")
    photometric: bool = _option(
        True, help="no colour jitter / noise (geometric augmentation only): an early curriculum stage")

    def identity(self) -> dict[str, Any]:
        """The fields a resumed run must share with the checkpoint."""
        d = dataclasses.asdict(self)
        for k in ("steps", "out", "checkpoint_every", "log_every", "workers", "progress"):
            d.pop(k)
        d["crop"] = list(d["crop"])
        return d


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add one option per :class:`TrainConfig` field to ``parser`` (see the module docstring)."""
    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        meta = dict(field.metadata)
        kind = hints[field.name]
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        default = meta.pop("cli_default", default)
        kwargs: dict[str, Any] = {"help": meta.pop("help")}
        choices = meta.pop("choices", None)
        if choices is not None:
            kwargs["choices"] = choices() if callable(choices) else choices
        if meta.pop("positional", False):
            parser.add_argument(field.name, **kwargs, **meta)
            continue
        if kind is bool:
            if default is not True:
                raise TypeError(f"TrainConfig.{field.name}: only default-True bools (--no-...) are supported")
            parser.add_argument(f"--no-{field.name.replace('_', '-')}", dest=field.name,
                                action="store_false", **kwargs)
            continue
        kwargs["default"] = default
        if typing.get_origin(kind) is tuple:
            kwargs.update(nargs=len(typing.get_args(kind)), type=typing.get_args(kind)[0])
            kwargs["default"] = list(default)
        elif typing.get_origin(kind) is dict:
            kwargs["type"] = _json_object
        elif kind in (int, float, str):
            kwargs["type"] = kind
        else:  # `str | None`
            kwargs["type"] = next(t for t in typing.get_args(kind) if t is not type(None))
        kwargs.update(meta)  # an explicit type= (validating) or metavar wins
        parser.add_argument(_flag(field.name), **kwargs)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of a namespace parsed by :func:`add_config_arguments`."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    values["crop"] = tuple(values["crop"])
    if values["out"] is None:
        values["out"] = f"runs/{values['model']}"
    return TrainConfig(**values)

