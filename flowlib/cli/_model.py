"""Model loading for the command line: ``--model`` / ``--weights`` / the model's settings,
``--device`` and progress bars; part of :mod:`flowlib.cli`. JAX is imported only inside
the functions, after the arguments are parsed."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from flowlib.cli._args import UsageError

_INSTALL_HINT = {
    "gpu": "install a GPU build of JAX, e.g. pip install -U 'jax[cuda12]'",
    "tpu": "install JAX's TPU support: pip install -U 'jax[tpu]'",
    "cpu": "check the JAX installation",
}

def select_device(device: str | None) -> None:
    """Make JAX use ``device`` ("cpu", "gpu", "tpu"), failing clearly if it has none."""
    if device is None:
        return
    if "jax" not in sys.modules:
        # Read by JAX when it initialises its backends; "gpu" expands to CUDA or ROCm.
        os.environ["JAX_PLATFORMS"] = device
    import jax

    try:
        devices = jax.devices(device)
    except RuntimeError as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise RuntimeError(
            f"--device {device}: JAX cannot use a {device.upper()} here ({reason}); "
            f"{_INSTALL_HINT[device]}"
        ) from err
    # JAX may have been initialised with several platforms already (a library caller).
    jax.config.update("jax_default_device", devices[0])


def progress(quiet: bool, **kwargs: Any) -> Any:
    from tqdm.auto import tqdm

    # delay: bars appear only for work that takes more than a second.
    return tqdm(disable=quiet, delay=1.0, dynamic_ncols=True, **kwargs)


def _option_flags(tasks: Sequence[str]) -> dict[str, list[tuple[Any, Any]]]:
    """``{flag: [(spec, option), ...]}`` over the options of the models of ``tasks``."""
    from flowlib import _zoo

    flags: dict[str, list[tuple[Any, Any]]] = {}
    for spec in _zoo.specs():
        if spec.task in tasks:
            for option in spec.options:
                flags.setdefault(option.cli_flag, []).append((spec, option))
    for flag, users in flags.items():
        first = users[0][1]
        for spec, option in users[1:]:
            if (option.name, option.type, option.choices) != (first.name, first.type, first.choices):
                raise TypeError(f"{flag}: {users[0][0].name} and {spec.name} declare it "
                                "differently (a shared flag needs one name, type and choices)")
    return flags


def add_option_flags(p: argparse.ArgumentParser, tasks: Sequence[str]) -> None:
    """One flag per option of the models of ``tasks``; a flag several models declare is one
    flag whose help gives each model's."""
    for flag, users in _option_flags(tasks).items():
        first = users[0][1]
        p.add_argument(flag, dest=first.name, type=first.type, choices=first.choices,
                       default=None, metavar=first.metavar,
                       help="; ".join(f"{spec.name}: {option.help}" for spec, option in users))


def model_options(args: argparse.Namespace, spec: Any) -> dict[str, Any]:
    """The model settings given on the command line, checked by the model's spec."""
    options = {}
    for flag, users in _option_flags(("flow", "stereo")).items():
        value = getattr(args, users[0][1].name, None)
        if value is None:
            continue
        option = next((o for s, o in users if s.name == spec.name), None)
        if option is None:
            models = " and ".join(s.name for s, _ in users)
            raise UsageError(f"{flag} applies to {models}, not {spec.name}")
        try:
            options[option.name] = option.check(option.name, value)
        except ValueError as err:
            raise UsageError(f"{flag}: {err}") from None
    return options


def load_model(args: argparse.Namespace, task: str) -> Any:
    import flowlib
    from flowlib import _api, _zoo

    if args.model is None:  # the model a flowlib .npz records, else the command's default
        args.model = _api.recorded_model(args.weights, task) or args.default_model
    # The task is known from the model's spec: fail before any download or weight loading.
    spec = _zoo.spec(args.model.split(":", 1)[0])
    if spec.task != task:
        raise ValueError(
            f"--model {args.model} is a {spec.task} model; this command needs a {task} model"
        )
    options = model_options(args, spec)
    select_device(args.device)
    return flowlib.load_model(args.model, args.weights, progress=not args.quiet,
                              dtype=args.dtype, **options)
