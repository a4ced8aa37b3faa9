"""Official weights: where they come from, where they are cached, and downloading them.

Each model's spec lists its published checkpoints: ``ModelSpec.checkpoints = {variant:
Checkpoint(...)}`` (:mod:`flowlib.models._spec`).
:func:`fetch` returns the local path of one (downloading it into :func:`cache_dir` on first
use); the converters in :mod:`flowlib.convert` turn that file into Flax variables.

The cache lives in ``$FLOWLIB_HOME`` if set, else ``$XDG_CACHE_HOME/flowlib``, else
``~/.cache/flowlib``; downloads go to ``<cache>/checkpoints/<filename>``. With
``FLOWLIB_OFFLINE=1`` nothing is downloaded: a missing file raises
:class:`WeightsUnavailableError`, whose message gives the URL and the exact path to put the
file at (any local checkpoint path can also be passed to ``flowlib.load_model`` directly).
With ``FLOWLIB_MIRROR=<address>`` every download is requested from that mirror instead:
``https://<host>/<path>`` as ``<address>/<host>/<path>``.

What arrives is checked before it is renamed into the cache:

* an answer that is an HTML page (``Content-Type: text/html`` or a body that starts like
  one) is never written as a checkpoint. Google Drive answers large files with such a page
  (a virus-scan warning holding a confirmation form); :func:`download` follows that form the
  way Drive serves it (``drive.usercontent.google.com/download`` with the form's hidden
  ``id/export/confirm/uuid`` fields) and refuses any other page with a one-line
  :class:`UnexpectedContentError` naming the URL and what came back;
* the file must be what the converter reads (a PyTorch zip archive with intact CRCs, the
  legacy PyTorch pickle, a flowlib ``.npz``), else :class:`UnexpectedContentError`;
* its SHA-256 must equal the published one, or, where none is published, the one recorded
  when the file was first downloaded (trust on first use). The record,
  ``<cache>/checkpoints/<filename>.json``, holds the size and SHA-256 and outlives the file,
  so a later copy (a re-download, a file put there by hand) is verified against it.
"""

from __future__ import annotations

import dataclasses
import datetime
import http.client
import json
import os
from pathlib import Path
from typing import Any

from flowlib._download import EXPECTED, UnexpectedContentError, content_problem, download
from flowlib._download import download_checked as _download_checked
from flowlib._download import sha256_file as _sha256_file
from flowlib._files import atomic_write

__all__ = [
    "CacheInfo",
    "Checkpoint",
    "UnexpectedContentError",
    "WeightsUnavailableError",
    "cache_dir",
    "cache_info",
    "checkpoint_path",
    "converted_path",
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
      sha256_prefix: the leading hex digits of the file's SHA-256 that the publisher puts
        in its name (torchvision's ``<name>-<8 hex>.pth``), or ``None``. Checked on every
        copy (downloaded or found in the cache) in addition to ``sha256`` or the recorded
        digest.
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
    sha256_prefix: str | None = None


class WeightsUnavailableError(FileNotFoundError, RuntimeError):
    """The weights are not in the cache and cannot be downloaded (offline or network error)."""


@dataclasses.dataclass(frozen=True)
class CacheInfo:
    """What the cache holds for one checkpoint (see :func:`cache_info`).

    Attributes:
      path: where the checkpoint file is (or would be) kept.
      present: whether it is there now.
      sha256: the digest a copy is verified against, or ``None`` (none published and none
        recorded yet: the first download records one).
      sha256_source: ``"published"`` (from the model's table), ``"recorded"`` (from the
        first copy seen, in ``<path>.json``) or ``None``.
      record: ``<path>.json``, the cache metadata (size, SHA-256, URL, when recorded).
    """

    path: Path
    present: bool
    sha256: str | None
    sha256_source: str | None
    record: Path


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


def converted_path(model: str, variant: str) -> Path:
    """Where the converted weights of ``model:variant`` are kept:
    ``cache_dir()/converted/<model>-<variant>.npz``."""
    return cache_dir() / "converted" / f"{model}-{variant}.npz"


def _offline_from_env() -> bool:
    return os.environ.get("FLOWLIB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


# ------------------------------------------------------------------------ cache metadata


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(_record_path(path).read_text())
        if isinstance(record.get("sha256"), str) and isinstance(record.get("size"), int):
            return record
    except (OSError, ValueError, AttributeError):
        pass
    return None


def _write_record(
    path: Path, checkpoint: Checkpoint, digest: str, origin: str, old: dict[str, Any] | None
) -> None:
    """Record size, SHA-256 and the file's stat (to skip re-hashing an unchanged file)."""
    st = path.stat()
    keep = old is not None and old["sha256"] == digest
    record = {
        "filename": checkpoint.filename,
        "url": checkpoint.url,
        "size": st.st_size,
        "sha256": digest,
        "sha256_source": "published" if checkpoint.sha256 else "recorded",
        "origin": old["origin"] if keep and "origin" in old else origin,
        "recorded": old["recorded"]
        if keep and "recorded" in old
        else datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "checked": [st.st_size, st.st_mtime_ns],
    }
    atomic_write(_record_path(path), (json.dumps(record, indent=1) + "\n").encode())
    # flowlib <= 0.1 kept "<file>.sha256" sidecars; the record replaces them.
    path.with_name(path.name + ".sha256").unlink(missing_ok=True)


def _expected_digest(checkpoint: Checkpoint, record: dict[str, Any] | None) -> str | None:
    if checkpoint.sha256 is not None:
        return checkpoint.sha256.lower()
    return record["sha256"] if record is not None else None


def cache_info(checkpoint: Checkpoint) -> CacheInfo:
    """What the cache holds for ``checkpoint`` (reads no checkpoint data, no network)."""
    path = checkpoint_path(checkpoint)
    record = _read_record(path)
    digest = _expected_digest(checkpoint, record)
    source = "published" if checkpoint.sha256 else ("recorded" if record else None)
    present = path.is_dir() if checkpoint.source_format == "t7-dir" else path.is_file()
    return CacheInfo(path, present, digest, source, _record_path(path))


# ------------------------------------------------------------------------------ fetch


def _unavailable(checkpoint: Checkpoint, path: Path, reason: str) -> WeightsUnavailableError:
    """One line: what went wrong, then the manual steps (the CLI prints it whole)."""
    if checkpoint.source_format == "t7-dir":
        steps = f"download the folder {checkpoint.url} and save the folder"
    else:
        steps = (
            f"open {checkpoint.url} in a browser (confirm the download if it asks) and "
            "save the file"
        )
    return WeightsUnavailableError(
        f"weights {checkpoint.filename!r} are not available: {reason}. "
        f"To install them by hand, {steps} "
        f"as {path} (or pass the path of a local copy instead of the named weights, e.g. "
        f"flowlib.load_model(name, '/path/to/{checkpoint.filename}'))."
    )


def _recorded_note(checkpoint: Checkpoint, record: dict[str, Any]) -> str:
    return (
        f"{record['size']:,} bytes, SHA-256 {record['sha256']} were recorded from the "
        f"{record.get('origin', 'first copy')} on {record.get('recorded', '?')}; if the file "
        f"was replaced upstream, delete {_record_path(checkpoint_path(checkpoint))} to accept "
        "the new one"
    )


def _mismatch(
    checkpoint: Checkpoint, record: dict[str, Any] | None, digest: str, path: Path
) -> ValueError:
    if checkpoint.sha256 is not None:
        return ValueError(
            f"{path}: SHA-256 is {digest}, expected {checkpoint.sha256.lower()} for "
            f"{checkpoint.url}; delete the file to download it again, or pass its path "
            "directly to use it anyway"
        )
    assert record is not None
    return ValueError(
        f"{path}: SHA-256 is {digest}, not the recorded one ({_recorded_note(checkpoint, record)})"
    )


def _check_prefix(checkpoint: Checkpoint, digest: str, path: Path) -> None:
    prefix = checkpoint.sha256_prefix
    if prefix is not None and not digest.startswith(prefix.lower()):
        raise ValueError(
            f"{path}: SHA-256 is {digest}, which does not start with {prefix.lower()} as the "
            f"published file name says for {checkpoint.url}; delete the file to download it "
            "again, or pass its path directly to use it anyway"
        )


def _check_cached(checkpoint: Checkpoint, path: Path, record: dict[str, Any] | None) -> Path:
    """Verify a file found in the cache (hashing it only if it changed since last time)."""
    expected = _expected_digest(checkpoint, record)
    st = path.stat()
    if (
        record is not None
        and record["sha256"] == expected
        and record.get("checked") == [st.st_size, st.st_mtime_ns]
    ):
        return path
    if expected is None:  # first sight of a file put there by hand: is it a checkpoint?
        problem = content_problem(path, checkpoint.source_format)
        if problem is not None:
            raise _unavailable(
                checkpoint,
                path,
                f"{path} is {problem}, not {EXPECTED[checkpoint.source_format]}; delete it",
            )
    digest = _sha256_file(path)
    if expected is not None and digest != expected:
        raise _mismatch(checkpoint, record, digest, path)
    _check_prefix(checkpoint, digest, path)
    _write_record(path, checkpoint, digest, "copy found in the cache", record)
    return path


def fetch(checkpoint: Checkpoint, *, offline: bool | None = None, progress: bool = True) -> Path:
    """Return the local path of ``checkpoint``, downloading it into the cache if needed.

    A file is verified against ``checkpoint.sha256``, or where that is ``None`` against the
    size and SHA-256 recorded (in ``<file>.json``) from the first copy downloaded or found
    in the cache, and against ``checkpoint.sha256_prefix`` where given (a download that
    fails it is deleted). A cached file is hashed again only if its size or mtime changed.

    Args:
      checkpoint: one of a model spec's ``checkpoints``.
      offline: never use the network; ``None`` reads ``$FLOWLIB_OFFLINE`` (``1``/``true``).
      progress: show a download progress bar on a terminal.

    Returns:
      ``cache_dir()/checkpoints/<filename>`` (a file, or a folder for ``"t7-dir"``).

    Raises:
      WeightsUnavailableError: not cached and offline, not downloadable (a ``t7-dir``
        folder), the download failed or brought something other than the file (an HTML
        page); the one-line message names the URL, what happened and the exact path to
        put the file at.
      ValueError: the cached or downloaded file's SHA-256 differs from the published or
        recorded one, or does not start with the published prefix.
    """
    if offline is None:
        offline = _offline_from_env()
    path = checkpoint_path(checkpoint)
    if checkpoint.source_format == "t7-dir":
        if path.is_dir():
            return path
        raise _unavailable(
            checkpoint, path, "a folder of Torch7 files is not downloaded automatically"
        )
    record = _read_record(path)
    if path.is_file():
        return _check_cached(checkpoint, path, record)
    if offline:
        raise _unavailable(
            checkpoint, path, "offline mode (FLOWLIB_OFFLINE or offline=True) and not in the cache"
        )
    expected = _expected_digest(checkpoint, record)
    size = record["size"] if record is not None and checkpoint.sha256 is None else None
    try:
        digest = _download_checked(
            checkpoint.url,
            path,
            sha256=expected,
            size=size,
            source_format=checkpoint.source_format,
            progress=progress,
            timeout=30,
        )
    except UnexpectedContentError as err:
        raise _unavailable(checkpoint, path, str(err)) from err
    except ValueError as err:
        if checkpoint.sha256 is None and record is not None:
            raise ValueError(f"{err} ({_recorded_note(checkpoint, record)})") from err
        raise
    except (OSError, http.client.HTTPException) as err:
        raise _unavailable(
            checkpoint, path, f"download failed ({type(err).__name__}: {err})"
        ) from err
    try:
        _check_prefix(checkpoint, digest, path)
    except ValueError:
        path.unlink(missing_ok=True)
        raise
    _write_record(path, checkpoint, digest, "first download", record)
    return path
