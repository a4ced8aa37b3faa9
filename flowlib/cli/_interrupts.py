"""Ending a command on SIGINT (Ctrl-C) or SIGTERM: exit status 130 or 143, one line on stderr
naming the complete files written, no temporary file, no traceback; part of :mod:`flowlib.cli`.

How: the command runs in a worker thread while the main thread waits for it
(:meth:`Interrupts.call`). Python runs signal handlers in the main thread only, so the
handler runs at once whatever the worker is doing (loading, compiling in XLA, decoding,
writing) and never inside the worker's code. It deletes the temporary files of the writes in progress and holds back any later one
(:func:`flowlib._files.abandon_writes`), prints the line and ends the process with
``os._exit``, which also skips the interpreter's shutdown.

Why not ``KeyboardInterrupt``: raised in the thread that runs the command, it unwinds through
whatever runs there. JAX polls for signals while XLA compiles on its own threads, so Ctrl-C
during a compile unwinds while those threads go on, and the interpreter's shutdown then
crashes (SIGSEGV); raised inside a garbage-collector callback (JAX's ``_xla_gc_callback``) it
is printed as "Exception ignored" and the process exits 0. SIGTERM's default action kills the
process where it stands, temporary files included.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from flowlib import _files

__all__ = ["SIGNALS", "Interrupts", "active", "describe_written", "exit_now"]

T = TypeVar("T")

#: The signals handled, each ending the process with status 128 + its number (130, 143).
SIGNALS = (signal.SIGINT, signal.SIGTERM)

_active: list[Interrupts] = []


def active() -> Interrupts | None:
    """The innermost :class:`Interrupts` in force, if any."""
    return _active[-1] if _active else None


def describe_written(paths: list[Path]) -> str:
    """``"wrote a.flo and a.png"``; more than two files of one folder are counted:
    ``"wrote 12 files to out (frame_0000.flo ... frame_0011.flo)"``; ``"nothing was written"``."""
    if not paths:
        return "nothing was written"
    folders: dict[Path, list[Path]] = {}
    for path in dict.fromkeys(paths):  # in order, once each
        folders.setdefault(path.parent, []).append(path)
    parts = []
    for folder, files in folders.items():
        if len(files) > 2:
            parts.append(f"{len(files)} files to {folder} ({files[0].name} ... {files[-1].name})")
        else:
            parts.extend(str(p) for p in files)
    text = parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
    return f"wrote {text}"


class Interrupts:
    """Handle SIGINT and SIGTERM for the block, and record the files committed in it.

    ``with Interrupts("flowlib estimate") as guard: guard.call(work)``. On a signal the
    process ends with ``os._exit(128 + signum)`` after one line on stderr::

        flowlib estimate: interrupted (SIGINT); wrote 3 files to out (a.flo ... c.flo)

    Signals can only be handled in the main thread: elsewhere the block records the files
    written but handles nothing, and :meth:`call` runs the work directly. Nested blocks
    share the outermost one (its handlers and record).

    Args:
      program: the line's prefix.
      ignore: files not to report (e.g. compilation cache entries).

    Attributes:
      program: as above; a command may refine it.
      hint: appended to the line (e.g. how to resume).
      written: the files committed so far, in order.
    """

    def __init__(self, program: str = "flowlib", *,
                 ignore: Callable[[Path], bool] = lambda path: False) -> None:
        self.program = program
        self.hint = ""
        self.written: list[Path] = []
        self._ignore = ignore
        self._previous: dict[int, Any] = {}
        self._handling = False
        self._exiting = False
        self._watch: Any = None

    def __enter__(self) -> Interrupts:
        outer = active()
        if outer is not None:
            _active.append(outer)
            return outer
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
            self._handling = True
        self._watch = _files.watch_commits(self._record)
        self._watch.__enter__()
        _active.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        guard = _active.pop()
        if _active and _active[-1] is guard:  # a nested block
            return
        guard._watch.__exit__(None, None, None)
        for signum, previous in guard._previous.items():
            signal.signal(signum, previous)
        guard._previous.clear()
        guard._handling = False

    def call(self, work: Callable[[], T]) -> T:
        """``work()``, run in a worker thread while this (main) thread waits for it or for a
        signal; its exception, if any, is raised here."""
        if not self._handling:
            return work()
        outcome: dict[str, Any] = {}
        done = threading.Event()

        def target() -> None:
            try:
                outcome["value"] = work()
            except BaseException as err:  # noqa: BLE001  handed to the main thread
                outcome["error"] = err
            finally:
                done.set()

        threading.Thread(target=target, name="flowlib-command", daemon=True).start()
        while not done.wait(1.0):  # the handler runs (and may end the process) in here
            pass
        if "error" in outcome:
            error = outcome.pop("error")
            try:
                raise error
            finally:
                del error
        return outcome["value"]

    def _record(self, path: Path) -> None:
        if not self._ignore(path):
            self.written.append(path)

    def _handle(self, signum: int, frame: Any) -> None:
        if self._exiting:  # a second Ctrl-C while the first is being handled
            return
        self._exiting = True
        _files.abandon_writes()  # after this, self.written is final
        line = f"{self.program}: interrupted ({signal.Signals(signum).name}); " \
               f"{describe_written(self.written)}"
        exit_now(128 + signum, line + (f"; {self.hint}" if self.hint else ""))


def _close_progress_bars() -> None:
    """Clear the progress bars on screen, so the last line is the message, not a bar."""
    std = sys.modules.get("tqdm.std")
    if std is None:
        return
    for bar in list(getattr(std.tqdm, "_instances", ())):
        try:
            # clear() first: close() leaves the line alone when the bar's `delay` has not
            # passed by its own count, yet a tqdm.write() (the compile notice) may have
            # drawn it already.
            bar.clear()
            bar.leave = False
            bar.close()
        except Exception:  # noqa: BLE001  a bar is never worth a traceback here
            pass


def exit_now(code: int, line: str | None = None) -> NoReturn:
    """End the process at once with ``code``, after clearing progress bars, flushing stdout
    and stderr and writing ``line`` (if any) on stderr; no interpreter shutdown."""
    _close_progress_bars()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001  closed, or re-entered from a handler
            pass
    if line is not None:
        try:
            os.write(2, (line + "\n").encode("utf-8", "replace"))
        except OSError:
            pass
    os._exit(code)
