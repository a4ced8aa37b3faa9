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
        # Read by JAX when it initialises its backends. "gpu" would make JAX try CUDA and
        # ROCm and report the last failure (ROCm on a CUDA-less machine): name the plugins
        # installed instead, or say that there is none.
        platforms = device
        if device == "gpu":
            installed = gpu_plugins()
            if not installed:
                raise RuntimeError(f"--device gpu: this JAX has no GPU support (no CUDA or ROCm "
                                   f"plugin is installed); {_INSTALL_HINT['gpu']}")
            platforms = ",".join(installed)
        os.environ["JAX_PLATFORMS"] = platforms
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


def gpu_plugins() -> list[str]:
    """The GPU platforms ("cuda", "rocm") this JAX has a PJRT plugin installed for (found as
    JAX finds them: ``jax_plugins`` entry points and modules), without importing JAX."""
    import importlib.util
    import pkgutil
    from importlib import metadata

    names = [f"{ep.name} {ep.value}" for ep in metadata.entry_points(group="jax_plugins")]
    spec = importlib.util.find_spec("jax_plugins")
    if spec is not None and spec.submodule_search_locations:
        names += [m.name for m in pkgutil.iter_modules(spec.submodule_search_locations)]
    return [platform for platform in ("cuda", "rocm") if any(platform in n for n in names)]


def progress(quiet: bool, **kwargs: Any) -> Any:
    from tqdm.auto import tqdm

    # delay: bars appear only for work that takes more than a second.
    return tqdm(disable=quiet, delay=1.0, dynamic_ncols=True, **kwargs)


def option_flags(tasks: Sequence[str]) -> dict[str, list[tuple[Any, Any]]]:
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
    """--dtype, and one flag per option of the models of ``tasks``; a flag several models
    declare is one flag whose help gives each model's."""
    from flowlib import _zoo

    dtypes = sorted({d for spec in _zoo.specs() if spec.task in tasks for d in spec.dtypes},
                    key=lambda d: d != "float32")
    takers = [spec.name for spec in _zoo.specs() if spec.task in tasks
              and "bfloat16" in spec.dtypes]
    if takers:
        p.add_argument("--dtype", choices=dtypes, default="float32",
                       help=f"bfloat16 ({', '.join(takers)} only): convolutions in bfloat16, "
                       "float32 accumulation and output (for accelerators; no faster on CPUs, "
                       "see README 'Speed'); the other models compute in float32")
    else:
        p.set_defaults(dtype="float32")
    p.set_defaults(model_settings=True)
    for flag, users in option_flags(tasks).items():
        first = users[0][1]
        p.add_argument(flag, dest=first.name, type=first.type, choices=first.choices,
                       default=None, metavar=first.metavar,
                       help="; ".join(f"{spec.name}: {option.help}" for spec, option in users))


def model_options(args: argparse.Namespace, spec: Any) -> dict[str, Any]:
    """The model settings given on the command line, checked by the model's spec."""
    options: dict[str, Any] = {}
    if not args.model_settings:  # the settings' flags were not added: none was given
        return options
    for flag, users in option_flags(("flow", "stereo")).items():
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

    # The tasks are known from the zoo table and the .npz metadata: fail before any
    # download or weight loading.
    recorded = _api.recorded_model(args.weights)
    if recorded is not None:
        kind = _zoo.spec(recorded).task
        if kind != task:
            raise ValueError(f"--weights {args.weights} holds {recorded} weights, a {kind} "
                             f"model; this command needs a {task} model")
    if args.model is None:  # the model a flowlib .npz records, else the command's default
        args.model = recorded or args.default_model
    name = args.model.split(":", 1)[0]
    spec = _zoo.spec(name)
    if spec.task != task:
        raise ValueError(
            f"--model {args.model} is a {spec.task} model; this command needs a {task} model"
        )
    if recorded is not None and recorded != name:
        raise ValueError(f"--weights {args.weights} holds {recorded} weights, not {name} ones; "
                         f"pass --model {recorded} or leave --model out")
    if args.dtype not in spec.dtypes:
        raise UsageError(f"--dtype {args.dtype}: {name} computes in {' or '.join(spec.dtypes)} "
                         "only (flowlib models lists what each model takes)")
    options = model_options(args, spec)
    select_device(args.device)
    model = flowlib.load_model(args.model, args.weights, progress=not args.quiet,
                               dtype=args.dtype, **options)
    announce_compiles(model, args.quiet)
    return model


def flowlib_model() -> type:
    from flowlib import _api

    return _api.Model


def announce_compiles(model: Any, quiet: bool) -> None:
    """Say "compiling <model> for HxW (once per size; cached in ...)" on stderr before
    each compile of ``model``'s forward (a new image or batch size), unless ``quiet``."""
    if not isinstance(model, flowlib_model()):  # a caller's stand-in
        return
    if quiet:
        model.on_compile = None
        return
    from flowlib import _compilation_cache

    where = ("the compilation cache is off" if _compilation_cache.is_disabled()
             else f"cached in {_compilation_cache.cache_path()}")

    def say(shape: tuple[int, ...]) -> None:
        from tqdm.auto import tqdm

        batch, height, width = shape[:3]
        size = f"{height}x{width}" + (f", batch {batch}" if batch > 1 else "")
        tqdm.write(f"compiling {model.name} for {size} (once per size; {where})",
                   file=sys.stderr)

    model.on_compile = say
