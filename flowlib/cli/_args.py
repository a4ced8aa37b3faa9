"""The command line's arguments: ``type=`` validators, the output formats and their checks
(run before anything is computed), the shared flags, and the one-line notes the commands
print. The files and pictures themselves are :mod:`flowlib.io`'s and :mod:`flowlib.viz`'s."""

from __future__ import annotations

import argparse
import contextlib
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from flowlib._argtypes import positive_int

__all__ = [
    "CommandParser", "DISPARITY_FORMATS", "FLOW_FORMATS", "PICTURE_FORMATS", "VIDEO_FORMATS",
    "UsageError", "KITTI_PNG_NOTE", "check_distinct", "check_image_size", "check_input",
    "check_output_folder", "check_outputs", "count", "disparity_picture", "finite_float",
    "global_flags", "model_flags", "output_file", "picture_flags", "positive_float",
    "positive_int", "range_warnings", "read_pair", "same_file", "written_note",
]


class UsageError(Exception):
    """Arguments that parse but do not fit together (exit status 2, like argparse)."""


class CommandParser(argparse.ArgumentParser):
    """A command's parser whose deferred arguments are added when they are needed: to print
    its help, or to parse a command line that the others do not account for. The models'
    settings are deferred: their flags come from every model module of the command's task
    (which import JAX, most of them Flax), and a command line that gives none needs only the
    module of the model it runs."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._deferred: list[Callable[[argparse.ArgumentParser], None]] = []

    def defer(self, add_arguments: Callable[[argparse.ArgumentParser], None]) -> None:
        self._deferred.append(add_arguments)

    def complete(self) -> None:
        """Add the deferred arguments now."""
        while self._deferred:
            self._deferred.pop(0)(self)

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if self._deferred:  # first without them: nothing left over means none was given
            parsed = self._parse_without_deferred(args, namespace)
            if parsed is not None:
                return parsed, []
            self.complete()
        return super().parse_known_args(args, namespace)

    def _parse_without_deferred(self, args: Any, namespace: Any) -> argparse.Namespace | None:
        """The command line parsed by the arguments added so far, or None where they leave
        something over or cannot parse it (a deferred flag, or an error that the full
        parse reports)."""

        def fail(message: str) -> NoReturn:
            raise _Incomplete(message)

        probe = argparse.Namespace(**vars(namespace)) if namespace is not None else None
        # Abbreviations too are left to the full parse (one that the arguments so far read as
        # theirs may be ambiguous among all).
        abbreviations, self.allow_abbrev = self.allow_abbrev, False
        self.error = fail  # type: ignore[method-assign]
        try:
            parsed, extras = super().parse_known_args(args, probe)
        except _Incomplete:
            return None
        finally:
            del self.error
            self.allow_abbrev = abbreviations
        return None if extras else parsed

    def format_usage(self) -> str:
        self.complete()
        return super().format_usage()

    def format_help(self) -> str:
        self.complete()
        return super().format_help()


class _Incomplete(Exception):
    """A command line that the arguments added so far cannot parse."""


#: What each kind of output may be written as (by extension, as flowlib.io writes them).
FLOW_FORMATS = (".flo", ".pfm", ".png", ".npy")
DISPARITY_FORMATS = (".pfm", ".png", ".npy")
PICTURE_FORMATS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm")
VIDEO_FORMATS = (".mp4", ".mov", ".mkv", ".webm")  # = flowlib.video.VIDEO_EXTENSIONS
_FORMAT_NOTES = {
    FLOW_FORMATS: ".flo, .pfm, KITTI 16-bit .png or .npy",
    DISPARITY_FORMATS: ".pfm, KITTI 16-bit .png or .npy",
    PICTURE_FORMATS: ", ".join(PICTURE_FORMATS),
    VIDEO_FORMATS: ", ".join(VIDEO_FORMATS),
}

# ------------------------------------------------------------------------- argument types


def positive_float(text: str) -> float:
    """``type=`` for scales and norms: a finite number > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def finite_float(text: str) -> float:
    """``type=`` for a finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    return value


def output_file(formats: tuple[str, ...]) -> Callable[[str], str]:
    """``type=`` for an output file: its extension must be one of ``formats``."""

    def check(text: str) -> str:
        _check_extension(text, formats)
        return text

    check.__name__ = "output file"
    return check


def _check_extension(path: str, formats: tuple[str, ...], what: str = "") -> None:
    ext = Path(path).suffix.lower()
    if ext not in formats:
        found = f"extension {ext!r}" if ext else "no extension"
        prefix = f"{what}: " if what else ""
        raise argparse.ArgumentTypeError(
            f"{prefix}{path} has {found}; write {_FORMAT_NOTES.get(formats, ', '.join(formats))}"
        )


def check_input(path: str, what: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} {path}: no such file or folder")


def check_output_folder(path: str) -> None:
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise FileNotFoundError(f"output {path}: folder {folder} does not exist")
    if Path(path).is_dir():
        raise IsADirectoryError(f"output {path} is a folder; name a file")


def check_outputs(*outputs: tuple[str | None, tuple[str, ...], str]) -> None:
    """Check ``(path, formats, flag)`` outputs before any work: extension, then folder."""
    for path, formats, flag in outputs:
        if path is None:
            continue
        try:
            _check_extension(path, formats, flag)
        except argparse.ArgumentTypeError as err:
            raise UsageError(str(err)) from None
        check_output_folder(path)


def count(n: int, noun: str) -> str:
    """``"1 flow file"``, ``"3 flow files"``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` and ``b`` name one file or folder (links followed; either may not exist)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


def check_distinct(inputs: Sequence[str | Path], *outputs: tuple[str | Path | None, str]
                   ) -> None:
    """Refuse an ``(path, flag)`` output that is one of the ``inputs`` (it would be
    overwritten) or the same file as an earlier output (one would replace the other)."""
    given = [(path, flag) for path, flag in outputs if path is not None]
    for k, (path, flag) in enumerate(given):
        for source in inputs:
            if same_file(path, source):
                raise UsageError(f"{flag} {path} is the input {source}: writing it would "
                                 "overwrite the input; name another file")
        for other, other_flag in given[:k]:
            if same_file(path, other):
                raise UsageError(f"{flag} {path} is also {other_flag}: name two files")


def check_image_size(path: str | Path, height: int, width: int) -> None:
    """Refuse an image no model can run on, before a model is loaded."""
    from flowlib import _api

    try:
        _api.check_size(height, width)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


#: Said after a ``.png`` flow or disparity output: it holds data, not a picture.
KITTI_PNG_NOTE = "KITTI 16-bit encoding: data for flowlib/KITTI tools, not a picture; --viz writes one"


def written_note(path: str | Path) -> str:
    """``path``, followed by what it holds where its extension could mislead (``.png``)."""
    return f"{path} ({KITTI_PNG_NOTE})" if Path(path).suffix.lower() == ".png" else str(path)


def disparity_picture(disp: np.ndarray, valid: np.ndarray | None, args: argparse.Namespace
                      ) -> np.ndarray:
    """:func:`flowlib.viz.disparity_picture` over ``--viz-min/--viz-max`` and ``--legend``."""
    from flowlib import viz

    try:
        return viz.disparity_picture(disp, valid=valid, min_disp=args.viz_min,
                                     max_disp=args.viz_max, legend=args.legend)
    except ValueError as err:
        if "colour range is empty" not in str(err):
            raise
        raise ValueError(f"{err} (set --viz-min / --viz-max)") from None


@contextlib.contextmanager
def range_warnings() -> Iterator[list[str]]:
    """Collect :class:`flowlib.DisparityRangeWarning` as one-line command-line messages
    (naming ``--max-disp``) instead of Python's warning output; other warnings pass through."""
    from flowlib._api import DisparityRangeWarning, suggested_maxdisp

    lines: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DisparityRangeWarning)
        yield lines
    for w in caught:
        if isinstance(w.message, DisparityRangeWarning):
            m = w.message
            lines.append(f"{100 * m.fraction:.1f} % of the disparities are at the top of the range "
                         f"searched ({m.maxdisp} px), where larger ones are capped; if the scene "
                         f"is nearer, rerun with a larger --max-disp (e.g. --max-disp "
                         f"{suggested_maxdisp(m.maxdisp)})")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def read_pair(first: str, second: str) -> tuple[np.ndarray, np.ndarray]:
    from flowlib import io

    # float32 keeps 16-bit images' precision; the model sees exactly what estimate(path) sees.
    image1, image2 = io.read_image(first), io.read_image(second)
    if image1.shape != image2.shape:
        raise ValueError(
            f"{second}: size {image2.shape[1]}x{image2.shape[0]} differs from "
            f"{first} ({image1.shape[1]}x{image1.shape[0]})"
        )
    return image1, image2


# ------------------------------------------------------------------------------ shared flags


def global_flags(p: argparse.ArgumentParser, *, device: bool, top: bool) -> None:
    # On the sub-commands the defaults are SUPPRESSed so that a flag given before the command
    # is not overwritten by the sub-parser's default.
    d = (lambda value: value) if top else (lambda value: argparse.SUPPRESS)
    p.add_argument(
        "--debug", action="store_true", default=d(False), help="show full tracebacks on errors"
    )
    p.add_argument("-q", "--quiet", action="store_true", default=d(False), help="no progress bars")
    if device:
        p.add_argument(
            "--device",
            choices=["cpu", "gpu", "tpu"],
            default=d(None),
            help="JAX platform to run on (default: JAX's choice)",
        )


def model_flags(p: argparse.ArgumentParser, default_model: str | None, *, tasks: Sequence[str],
                 batch: str | None = None) -> None:
    """--model, --weights, --device, the global flags, [--batch-size], --dtype and the
    settings of the models of ``tasks`` (one flag per option of their specs; --dtype names
    the models that take bfloat16; both added when ``p``, a :class:`CommandParser`, is first
    used)."""
    global_flags(p, device=True, top=False)
    p.add_argument(
        "--model",
        default=None,
        help="model name, optionally name:variant (default: the model a flowlib .npz given as "
        f"--weights records, else {default_model or 'per benchmark'})",
    )
    # What the deferred flags give when none is on the command line (and so not added).
    p.set_defaults(default_model=default_model, dtype="float32", model_settings=False)
    p.add_argument(
        "--weights",
        default=None,
        help="named variant or a checkpoint path (.npz, PyTorch file); "
        "default: the model's default",
    )
    if batch is not None:
        p.add_argument("--batch-size", type=positive_int, default=1, help=batch)
    if isinstance(p, CommandParser):
        p.defer(lambda parser: _model_option_flags(parser, tasks))
    else:
        _model_option_flags(p, tasks)


def _model_option_flags(p: argparse.ArgumentParser, tasks: Sequence[str]) -> None:
    from flowlib.cli._model import add_option_flags

    add_option_flags(p, tasks)


def picture_flags(p: argparse.ArgumentParser, *, flow: bool, disparity: bool,
                   disparity_aliases: bool = False) -> None:
    """Colour-coding options: --max-norm (flow), --viz-min/--viz-max (disparity), --legend."""
    if flow:
        p.add_argument("--max-norm", type=positive_float, default=None,
                       help="flow colours: fixed normalisation in pixels (default: per image, "
                       "its largest motion)")
    if disparity:
        low = ["--viz-min"] + (["--min-disp"] if disparity_aliases else [])
        high = ["--viz-max"] + (["--max-disp"] if disparity_aliases else [])
        p.add_argument(*low, dest="viz_min", type=finite_float, default=None, metavar="D",
                       help="disparity colours: value at the bottom of the colour map "
                       "(default: 1st percentile)")
        p.add_argument(*high, dest="viz_max", type=finite_float, default=None, metavar="D",
                       help="disparity colours: value at the top (default: 99th percentile)")
    p.add_argument("--legend", action="store_true",
                   help="append the key: the colour wheel with its max-norm (flow) or a colour "
                   "bar (disparity)")
