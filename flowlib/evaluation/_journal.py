"""Resumable evaluation: an append-only journal of per-pair results.

Each evaluated pair appends one JSON line (its metric contributions) and is flushed and
fsynced before the next, so a run killed at any moment keeps every pair it finished; a
line torn by the kill is dropped on reopening. The first line records what the run is
(benchmark, model, weights, root): resuming with a different identity is refused rather
than silently mixing two runs' numbers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from flowlib._files import atomic_write

__all__ = ["Journal"]


class Journal:
    """Per-pair results of one evaluation run, kept on disk.

    Args:
      path: the ``.jsonl`` file.
      identity: JSON-able description of the run; must match to resume.
      resume: keep and reuse the pairs already in ``path`` (else start afresh).

    Attributes:
      done: ``{pair key: contribution}`` restored from the file.
    """

    def __init__(self, path: str | os.PathLike, identity: dict[str, Any], *, resume: bool) -> None:
        self.path = Path(path)
        self.identity = json.loads(json.dumps(identity))  # normalise (tuples -> lists)
        self.done: dict[str, Any] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume and self.path.is_file():
            self._restore()
        else:
            self._start()
        self._fh = open(self.path, "a", encoding="utf-8")

    def _start(self) -> None:
        header = json.dumps({"identity": self.identity}, sort_keys=True) + "\n"
        atomic_write(self.path, header.encode("utf-8"))

    def _restore(self) -> None:
        raw = self.path.read_bytes()
        good_end = 0
        lines = raw.split(b"\n")
        for i, line in enumerate(lines[:-1]):  # the part after the last "\n" is torn or empty
            try:
                entry = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                break
            if i == 0:
                if not isinstance(entry, dict) or entry.get("identity") != self.identity:
                    found = entry.get("identity") if isinstance(entry, dict) else entry
                    raise ValueError(
                        f"{self.path}: journal of a different run (found {found}, this run is "
                        f"{self.identity}); remove it or run without --resume")
            else:
                if not (isinstance(entry, dict) and "key" in entry and "value" in entry):
                    break
                self.done[entry["key"]] = entry["value"]
            good_end += len(line) + 1
        if good_end == 0:
            raise ValueError(f"{self.path}: not an evaluation journal (no identity line); "
                             "remove it or run without --resume")
        if good_end != len(raw):  # drop a line torn by a kill before appending
            with open(self.path, "r+b") as f:
                f.truncate(good_end)

    def add(self, key: str, value: Any) -> None:
        """Record one pair's contribution durably."""
        self._fh.write(json.dumps({"key": key, "value": value}, sort_keys=True) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.done[key] = value

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
