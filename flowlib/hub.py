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
import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.request
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


def _offline_from_env() -> bool:
    return os.environ.get("FLOWLIB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _progress_bar(total: int | None, initial: int, name: str, enabled: bool):
    from tqdm import tqdm

    stream = sys.stderr
    on = enabled and hasattr(stream, "isatty") and stream.isatty()
    return tqdm(
        total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
        desc=name, disable=not on, file=stream, dynamic_ncols=True, leave=False,
    )


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def _open(url: str, start: int, timeout: float):
    headers = {"User-Agent": "flowlib-hub", "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = 30,
) -> Path:
    """Download ``url`` to ``dest``, resumably and atomically.

    Bytes stream into ``dest + ".part"``. If a ``.part`` file is already there (an earlier
    interrupted download) the request asks for the rest with an HTTP ``Range`` header and
    appends; a server that answers with the whole file instead (no Range support,
    ``file://``) restarts the ``.part`` from scratch. Only a complete download whose
    SHA-256 matches is fsynced and renamed to ``dest``, so ``dest`` is never a partial file.

    Args:
      url: ``http://``, ``https://`` or ``file://`` address.
      dest: final path (parent folders are created).
      sha256: expected hex digest, or ``None`` to skip the check.
      progress: show a tqdm bar (bytes, rate, ETA) on a terminal's stderr.
      timeout: socket timeout in seconds for connecting and for each read.

    Returns:
      ``dest`` as a :class:`~pathlib.Path`.

    Raises:
      ValueError: the downloaded file's SHA-256 differs from ``sha256`` (the bad file is
        deleted; the message gives both digests).
      ConnectionError: the transfer failed or ended early (the ``.part`` file is kept for
        the next attempt to resume).
      OSError: other network or disk errors (``urllib.error.URLError``, ``HTTPError``).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.is_file() else 0
    try:
        response = _open(url, start, timeout)
    except urllib.error.HTTPError as err:
        if err.code != 416 or not start:
            raise
        # 416 Range Not Satisfiable: the .part is not a prefix of this file; start over.
        err.close()
        part.unlink()
        start = 0
        response = _open(url, 0, timeout)
    with response:
        status = getattr(response, "status", None) or 200
        total: int | None = None
        if start and status == 206:
            m = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
            if not m or int(m.group(1)) != start:
                raise ConnectionError(f"{url}: server answered a range request with Content-Range {response.headers.get('Content-Range')!r}")
            total = int(m.group(3)) if m.group(3) != "*" else None
            mode = "ab"
        else:
            # The whole file (a 200 to a range request means: no Range support).
            start = 0
            mode = "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        received = start
        with open(part, mode) as out, _progress_bar(total, start, dest.name, progress) as bar:
            try:
                while True:
                    block = response.read(1 << 16)
                    if not block:
                        break
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
            except (OSError, http.client.HTTPException) as err:
                out.flush()
                raise ConnectionError(
                    f"download of {url} interrupted after {received} bytes ({err}); run again to resume from {part}"
                ) from err
            out.flush()
            os.fsync(out.fileno())
    if total is not None and received != total:
        raise ConnectionError(
            f"download of {url} ended after {received} of {total} bytes; run again to resume from {part}"
        )
    if sha256 is not None:
        actual = _sha256_file(part)
        if actual.lower() != sha256.lower():
            part.unlink()
            raise ValueError(
                f"SHA-256 mismatch for {url}: expected {sha256.lower()}, got {actual} "
                f"({received} bytes); the download was deleted"
            )
    os.replace(part, dest)
    _fsync_dir(dest.parent)
    return dest


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _verified_before(path: Path, sha256: str) -> bool:
    """True if the sidecar records ``sha256`` for this exact file (same size and mtime)."""
    try:
        digest, stamp = _sidecar(path).read_text().split("\n")[:2]
        st = path.stat()
        return digest.split()[0].lower() == sha256.lower() and stamp == f"{st.st_size} {st.st_mtime_ns}"
    except (OSError, ValueError, IndexError):
        return False


def _record_verified(path: Path, sha256: str) -> None:
    st = path.stat()
    tmp = _sidecar(path).with_name(_sidecar(path).name + ".tmp")
    tmp.write_text(f"{sha256.lower()}  {path.name}\n{st.st_size} {st.st_mtime_ns}\n")
    os.replace(tmp, _sidecar(path))


def _unavailable(checkpoint: Checkpoint, path: Path, reason: str) -> WeightsUnavailableError:
    what = "folder" if checkpoint.source_format == "t7-dir" else "file"
    return WeightsUnavailableError(
        f"weights {checkpoint.filename!r} are not available: {reason}.\n"
        f"Download {checkpoint.url}\n"
        f"and save the {what} as {path}\n"
        f"(or pass the path of a local copy instead of the named weights, e.g. "
        f"flowlib.load_model(name, '/path/to/{checkpoint.filename}'))."
    )


def fetch(checkpoint: Checkpoint, *, offline: bool | None = None, progress: bool = True) -> Path:
    """Return the local path of ``checkpoint``, downloading it into the cache if needed.

    A cached file is checked against ``checkpoint.sha256`` once; the result is remembered
    in a ``<file>.sha256`` sidecar (re-checked if the file's size or mtime changes).

    Args:
      checkpoint: the entry from a model's ``CHECKPOINTS`` table.
      offline: never use the network; ``None`` reads ``$FLOWLIB_OFFLINE`` (``1``/``true``).
      progress: show a download progress bar on a terminal.

    Returns:
      ``cache_dir()/checkpoints/<filename>`` (a file, or a folder for ``"t7-dir"``).

    Raises:
      WeightsUnavailableError: not cached and offline, not downloadable (a ``t7-dir``
        folder), or the download failed; the message names the URL and the exact path to
        put the file at.
      ValueError: the cached or downloaded file's SHA-256 differs from ``checkpoint.sha256``.
    """
    if offline is None:
        offline = _offline_from_env()
    path = checkpoint_path(checkpoint)
    if checkpoint.source_format == "t7-dir":
        if path.is_dir():
            return path
        raise _unavailable(checkpoint, path, "a folder of Torch7 files is not downloaded automatically")
    if path.is_file():
        if checkpoint.sha256 is None or _verified_before(path, checkpoint.sha256):
            return path
        actual = _sha256_file(path)
        if actual.lower() != checkpoint.sha256.lower():
            raise ValueError(
                f"{path}: SHA-256 is {actual}, expected {checkpoint.sha256.lower()} for {checkpoint.url}; "
                "delete the file to download it again, or pass its path directly to use it anyway"
            )
        _record_verified(path, checkpoint.sha256)
        return path
    if offline:
        raise _unavailable(checkpoint, path, "offline mode (FLOWLIB_OFFLINE or offline=True) and not in the cache")
    try:
        download(checkpoint.url, path, sha256=checkpoint.sha256, progress=progress)
    except (OSError, http.client.HTTPException) as err:
        raise _unavailable(checkpoint, path, f"download failed ({type(err).__name__}: {err})") from err
    if checkpoint.sha256 is not None:
        _record_verified(path, checkpoint.sha256)
    return path
