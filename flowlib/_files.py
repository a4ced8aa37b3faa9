"""Atomic file writes: the one place flowlib creates a file that others may read.

Every output (flow files, weights, checkpoints, figures, videos, journals, JSON, zips) is
written to a temporary file in the destination folder, flushed and fsync'ed, given the
permissions a plain ``open()`` would give (``0o666 & ~umask``, or the mode of the file it
replaces), renamed over the destination with ``os.replace`` and the folder fsync'ed, so a
reader never sees a half-written file, a crash leaves any previous file untouched, and
e.g. converted weights in a shared cache stay readable to other users (``mkstemp`` alone
gives ``0600``).

Three shapes of the same steps:

* :func:`atomic_write` -- the bytes are in memory.
* :func:`atomic_open` -- a context manager yielding a file object; committed on a clean exit,
  discarded on an exception.
* :class:`AtomicFile` -- open now, :meth:`~AtomicFile.commit` or :meth:`~AtomicFile.abort`
  later (a video encoder that streams frames over many calls; a tool that writes the
  temporary path by name, such as ``shutil.make_archive``).

For a process that is told to stop (SIGINT, SIGTERM; :mod:`flowlib.cli`): every temporary
file not yet committed is listed, so :func:`abandon_writes` can delete them all and refuse
later writes, and :func:`watch_commits` reports each committed file, so the caller can name
the complete files written. Creating a temporary file, committing it and abandoning share
one lock: a file is either committed (and reported) or its temporary deleted, never both
or neither.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["AtomicFile", "WritesAbandoned", "abandon_writes", "atomic_open", "atomic_write",
           "fsync_dir", "resume_writes", "umask", "watch_commits"]


class WritesAbandoned(RuntimeError):
    """A write started or committed after :func:`abandon_writes`."""


# The temporary files of the AtomicFiles not yet committed or aborted, the commit watchers,
# and whether writes were abandoned; all under _lock.
_lock = threading.Lock()
_pending: set[Path] = set()
_watchers: list[Callable[[Path], None]] = []
_abandoned = False


def abandon_writes() -> list[Path]:
    """Delete the temporary file of every atomic write in progress (in any thread) and make
    every later :class:`AtomicFile` creation or commit raise :class:`WritesAbandoned`.

    For a process about to end on a signal: no temporary file is left behind, and no file
    appears after the caller has named the files written. A commit running in another
    thread finishes first (its file is complete and was reported to the watchers).

    Returns:
      The temporary files deleted.
    """
    global _abandoned
    with _lock:
        _abandoned = True
        removed = sorted(_pending)
        for tmp in removed:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        _pending.clear()
    return removed


def resume_writes() -> None:
    """Undo :func:`abandon_writes` (for a caller that goes on: tests, an application that
    handled the signal itself)."""
    global _abandoned
    with _lock:
        _abandoned = False


@contextlib.contextmanager
def watch_commits(callback: Callable[[Path], None]) -> Iterator[None]:
    """Call ``callback(path)`` for every file committed (by any thread) inside the block.

    The callback runs under the writers' lock, right after the rename: keep it short (e.g.
    ``list.append``) and do not write files from it.
    """
    with _lock:
        _watchers.append(callback)
    try:
        yield
    finally:
        with _lock:
            _watchers.remove(callback)


def umask() -> int:
    """The process umask, read without changing it where the platform allows."""
    # /proc avoids the process-wide os.umask(0) dance (racy with threads creating files).
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    old = os.umask(0o022)
    os.umask(old)
    return old


def _target_mode(path: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~umask()


def fsync_dir(folder: Path) -> None:
    """fsync a folder, so that a rename into it is durable; a no-op where the platform or
    file system does not support it."""
    # Makes the rename itself durable (not supported on every platform / file system).
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class AtomicFile:
    """A temporary file next to ``path`` that becomes ``path`` on :meth:`commit`.

    Args:
      path: the destination; its folder must exist.
      mode: ``open`` mode of :attr:`file` (``"wb"``, ``"w"``, ``"w+b"``).
      encoding: for text modes.
      suffix: of the temporary name (``.<name>.XXXX<suffix>``), e.g. to keep the extension a
        tool keys its format on.

    Attributes:
      path: the destination.
      tmp: the temporary file's path.
      file: the open file object (closed by :meth:`commit` / :meth:`abort`).
    """

    def __init__(self, path: str | os.PathLike, mode: str = "wb", *, encoding: str | None = None,
                 suffix: str = ".tmp") -> None:
        self.path = Path(path)
        self._mode = _target_mode(self.path)
        with _lock:
            if _abandoned:
                raise WritesAbandoned(f"{self.path}: not written (writes were abandoned)")
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=suffix,
                                       dir=self.path.parent)
            self.tmp = Path(tmp)
            _pending.add(self.tmp)
        try:
            self.file: IO[Any] = os.fdopen(fd, mode, encoding=encoding)
        except BaseException:
            os.close(fd)
            self._forget()
            raise
        self._done = False

    def commit(self) -> Path:
        """Flush, fsync, set the permissions, rename over :attr:`path`, fsync the folder."""
        if self._done:
            raise RuntimeError(f"{self.path}: already committed or aborted")
        try:
            if _abandoned:  # the temporary is gone; checked again under the lock below
                raise WritesAbandoned(f"{self.path}: not written (writes were abandoned)")
            if not self.file.closed:
                self.file.flush()
                os.fsync(self.file.fileno())
                self.file.close()
            else:  # written by name (e.g. shutil.make_archive): fsync through a new handle
                fd = os.open(self.tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            with _lock:
                if _abandoned:
                    raise WritesAbandoned(f"{self.path}: not written (writes were abandoned)")
                os.chmod(self.tmp, self._mode)
                os.replace(self.tmp, self.path)
                _pending.discard(self.tmp)
                for watcher in _watchers:
                    watcher(self.path)
        except BaseException:
            self.abort()
            raise
        self._done = True
        fsync_dir(self.path.parent)
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file; :attr:`path` is left as it was."""
        self._done = True
        with contextlib.suppress(OSError):
            self.file.close()
        self._forget()

    def _forget(self) -> None:
        """Delete the temporary file and take it off the list of pending writes."""
        with _lock:
            with contextlib.suppress(OSError):
                self.tmp.unlink(missing_ok=True)
            _pending.discard(self.tmp)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", *, encoding: str | None = None,
                suffix: str = ".tmp") -> Iterator[IO[Any]]:
    """``with atomic_open(path) as f: ...`` -- ``path`` appears, complete, only on a clean exit."""
    out = AtomicFile(path, mode, encoding=encoding, suffix=suffix)
    try:
        yield out.file
    except BaseException:
        out.abort()
        raise
    out.commit()


def atomic_write(path: str | os.PathLike, payload: bytes) -> None:
    """Write ``payload`` to ``path`` atomically (see the module docstring)."""
    with atomic_open(path, "wb") as f:
        f.write(payload)
