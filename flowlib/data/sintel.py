"""MPI-Sintel (Butler et al., ECCV 2012) in its official layout.

``<root>/{training,test}/{clean,final}/<scene>/frame_%04d.png``;
training ground truth ``training/flow/<scene>/frame_%04d.flo`` (frame t -> t+1),
``training/occlusions/...png`` and ``training/invalid/...png`` (255 = set).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from flowlib.data._layout import require_dir, require_nonempty
from flowlib.data._sample import Sample

__all__ = ["index_sintel"]

_FRAME = re.compile(r"frame_(\d{4})\.png$")


def index_sintel(root: str | os.PathLike, *, split: str = "training", pass_: str = "final") -> list[Sample]:
    """List the consecutive frame pairs of one split and pass.

    Args:
      root: the MPI-Sintel folder (holding ``training/`` and/or ``test/``).
      split: "training" or "test".
      pass_: "clean" or "final".

    Returns:
      Samples in scene then frame order; ``meta`` has scene, frame (1-based index of the
      first frame), pass, split and ``name`` = ``<pass>/<scene>/frame%04d`` (the official
      submission naming). Test samples have no target.
    """
    if split not in ("training", "test"):
        raise ValueError(f"sintel split must be 'training' or 'test', got {split!r}")
    if pass_ not in ("clean", "final"):
        raise ValueError(f"sintel pass must be 'clean' or 'final', got {pass_!r}")
    image_root = require_dir(root, f"{split}/{pass_}", "MPI-Sintel")
    if split == "training":
        require_dir(root, "training/flow", "MPI-Sintel", "training ground truth")
    samples = []
    for scene_dir in sorted(p for p in image_root.iterdir() if p.is_dir()):
        frames = sorted(int(m.group(1)) for p in scene_dir.iterdir() if (m := _FRAME.search(p.name)))
        for a, b in zip(frames, frames[1:]):
            if b != a + 1:
                continue
            stem = f"frame_{a:04d}"
            masks: dict[str, Path] = {}
            target = None
            if split == "training":
                target = Path(root) / "training" / "flow" / scene_dir.name / f"{stem}.flo"
                if not target.is_file():
                    raise ValueError(f"MPI-Sintel: missing ground truth {target}")
                for kind in ("occlusions", "invalid"):
                    mask = Path(root) / "training" / kind / scene_dir.name / f"{stem}.png"
                    if mask.is_file():
                        masks[kind] = mask
            samples.append(
                Sample(
                    dataset="sintel",
                    task="flow",
                    image1=scene_dir / f"{stem}.png",
                    image2=scene_dir / f"frame_{b:04d}.png",
                    target=target,
                    masks=masks,
                    meta={
                        "scene": scene_dir.name,
                        "frame": a,
                        "pass": pass_,
                        "split": split,
                        "name": f"{pass_}/{scene_dir.name}/frame{a:04d}",
                    },
                )
            )
    return require_nonempty(samples, image_root, "MPI-Sintel", "<scene>/frame_%04d.png")
