"""Middlebury flow (Baker et al., IJCV 2011) and Middlebury 2001 stereo (Scharstein & Szeliski).

Flow: ``<root>/other-data/<scene>/frame10.png, frame11.png`` with ground truth
``<root>/other-gt-flow/<scene>/flow10.flo`` (``eval-data`` for the test set, no GT).
Stereo (2001): ``<root>/<scene>/{imL,imR,groundtruth,nonocc,all,disc}.png`` and ``info.txt``
(line 1: ground-truth scale factor, line 2: maximum disparity).
"""

from __future__ import annotations

import os
from pathlib import Path

from flowlib.data._layout import require_dir, require_nonempty
from flowlib.data._sample import Sample

__all__ = ["index_middlebury_flow", "index_middlebury_stereo"]


def index_middlebury_flow(root: str | os.PathLike, *, split: str = "other") -> list[Sample]:
    """List Middlebury flow pairs frame10 -> frame11.

    Args:
      root: folder holding ``other-data/`` (+ ``other-gt-flow/``) or ``eval-data/``.
      split: "other" (public ground truth) or "eval" (test, no ground truth).

    Returns:
      Samples with ``meta`` scene and ``name`` = ``<scene>/flow10``.
    """
    if split not in ("other", "eval"):
        raise ValueError(f"Middlebury flow split must be 'other' or 'eval', got {split!r}")
    data = require_dir(root, f"{split}-data", "Middlebury flow")
    gt_root = Path(root) / f"{split}-gt-flow"
    if split == "other":
        require_dir(root, "other-gt-flow", "Middlebury flow", "ground truth")
    samples = []
    for scene in sorted(p for p in data.iterdir() if p.is_dir()):
        image1, image2 = scene / "frame10.png", scene / "frame11.png"
        if not (image1.is_file() and image2.is_file()):
            continue
        target = gt_root / scene.name / "flow10.flo"
        samples.append(
            Sample(
                dataset="middlebury",
                task="flow",
                image1=image1,
                image2=image2,
                target=target if target.is_file() else None,
                meta={"scene": scene.name, "split": split, "name": f"{scene.name}/flow10"},
            )
        )
    return require_nonempty(samples, data, "Middlebury flow", "<scene>/frame10.png + frame11.png")


def _read_info(path: Path) -> tuple[float, float]:
    try:
        lines = path.read_text().split()
        return float(lines[0]), float(lines[1])
    except (OSError, IndexError, ValueError) as err:
        raise ValueError(f"{path}: expected two numbers (scale, max disparity): {err}") from err


def index_middlebury_stereo(root: str | os.PathLike) -> list[Sample]:
    """List Middlebury 2001 stereo scenes (tsukuba, venus, ...).

    Returns:
      Samples whose target is ``groundtruth.png`` (disparity * ``meta["scale"]``, 0 =
      unknown) with masks "nonocc", "all", "disc" where present; ``meta`` has scene,
      scale and max_disparity.
    """
    root_path = Path(root)
    if not root_path.is_dir():
        raise ValueError(f"Middlebury stereo: root {root_path} does not exist or is not a folder")
    samples = []
    for scene in sorted(p for p in root_path.iterdir() if p.is_dir()):
        left, right = scene / "imL.png", scene / "imR.png"
        if not (left.is_file() and right.is_file()):
            continue
        info = scene / "info.txt"
        if not info.is_file():
            raise ValueError(f"Middlebury stereo: expected {info} (scale and max disparity)")
        scale, max_disp = _read_info(info)
        target = scene / "groundtruth.png"
        masks = {k: scene / f"{k}.png" for k in ("nonocc", "all", "disc") if (scene / f"{k}.png").is_file()}
        samples.append(
            Sample(
                dataset="middlebury-stereo",
                task="stereo",
                image1=left,
                image2=right,
                target=target if target.is_file() else None,
                masks=masks,
                meta={"scene": scene.name, "scale": scale, "max_disparity": max_disp, "name": scene.name},
            )
        )
    return require_nonempty(samples, root_path, "Middlebury stereo", "<scene>/imL.png + imR.png")
