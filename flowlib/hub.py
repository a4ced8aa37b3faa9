"""Official weights: where they come from, where they are cached, and downloading them.

Each model file lists its published checkpoints as ``CHECKPOINTS = {name: Checkpoint(...)}``.
:func:`fetch` returns the local path of one (downloading it into :func:`cache_dir` on first
use); the converters in :mod:`flowlib.convert` turn that file into Flax variables.

The cache lives in ``$FLOWLIB_HOME`` if set, else ``$XDG_CACHE_HOME/flowlib``, else
``~/.cache/flowlib``; downloads go to ``<cache>/checkpoints/<filename>``. With
``FLOWLIB_OFFLINE=1`` nothing is downloaded: a missing file raises
:class:`WeightsUnavailableError`, whose message gives the URL and the exact path to put the
file at (any local checkpoint path can also be passed to ``flowlib.load_model`` directly).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

__all__ = [
    "Checkpoint",
    "WeightsUnavailableError",
    "cache_dir",
    "checkpoint_path",
    "download",
    "fetch",
]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """One published set of weights.

    Attributes:
      url: where the original file is published (``http(s)://`` or ``file://``).
      filename: the name it is cached under (``<cache>/checkpoints/<filename>``).
      sha256: hex SHA-256 of the file, or ``None`` where it is not known.
      license: the licence the authors publish the weights under.
      training_data: what the weights were trained on (e.g. "FlyingChairs -> Sintel").
      source_format: ``"pytorch"`` (a ``torch.save`` file), ``"t7-dir"`` (a folder of
        Torch7 files) or ``"flowlib-npz"`` (already converted).
      model_kwargs: constructor keyword arguments the weights need.
      notes: anything a user should know (provenance, known deviations).
    """

    url: str
    filename: str
    sha256: str | None
    license: str
    training_data: str
    source_format: str
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    notes: str = ""


class WeightsUnavailableError(FileNotFoundError, RuntimeError):
    """The weights are not in the cache and cannot be downloaded (offline or network error)."""


def cache_dir() -> Path:
    """The flowlib cache folder (not created here).

    Returns:
      ``$FLOWLIB_HOME`` if set, else ``$XDG_CACHE_HOME/flowlib``, else ``~/.cache/flowlib``.
    """
    home = os.environ.get("FLOWLIB_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "flowlib"
    return Path.home() / ".cache" / "flowlib"


def checkpoint_path(checkpoint: Checkpoint) -> Path:
    """Where :func:`fetch` keeps ``checkpoint``: ``cache_dir()/checkpoints/<filename>``."""
    return cache_dir() / "checkpoints" / checkpoint.filename
