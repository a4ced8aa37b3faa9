"""PatchFlow has no checkpoints: its settings file is written by ``python -m flowlib.models.patchflow``.

Present so that the zoo's contract (every model names a converter) holds and a user who
passes a foreign checkpoint to ``load_model("patchflow", ...)`` gets a clear message.
"""

from __future__ import annotations

import os
from typing import Any


def convert_file(path: str | os.PathLike, **_: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    raise ValueError(
        f"{os.fspath(path)}: PatchFlow has no learned weights to convert; pass nothing (the"
        " embedded settings) or a flowlib .npz settings file"
    )


def convert_state_dict(state: Any, **_: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    raise ValueError("PatchFlow has no learned weights to convert")
