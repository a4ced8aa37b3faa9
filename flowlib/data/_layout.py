"""Checks that a dataset root has the official layout, with errors that say what was expected."""

from __future__ import annotations

import os
from pathlib import Path


def require_dir(root: str | os.PathLike, relative: str, dataset: str, hint: str = "") -> Path:
    """Return ``root/relative`` or raise a ValueError naming the expected folder."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{dataset}: root {root} does not exist or is not a folder")
    path = root / relative
    if not path.is_dir():
        extra = f" ({hint})" if hint else ""
        raise ValueError(f"{dataset}: expected folder {path} under root {root}{extra}")
    return path


def require_nonempty(samples: list, root: str | os.PathLike, dataset: str, pattern: str) -> list:
    if not samples:
        raise ValueError(f"{dataset}: no files matching {pattern} under {root}")
    return samples
