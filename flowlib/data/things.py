"""FlyingThings3D (Mayer et al., CVPR 2016), SceneFlow layout.

Images ``frames_{cleanpass,finalpass}/{TRAIN,TEST}/{A,B,C}/<seq>/{left,right}/%04d.png``;
disparity ``disparity/.../left/%04d.pfm``; flow
``optical_flow/.../into_future/left/OpticalFlowIntoFuture_%04d_L.pfm``.
"""

from __future__ import annotations

import os
from pathlib import Path

from flowlib.data._layout import require_dir, require_nonempty
from flowlib.data._sample import Sample

__all__ = ["index_flyingthings3d"]


def index_flyingthings3d(
    root: str | os.PathLike, *, task: str = "stereo", split: str = "TRAIN", pass_: str = "clean"
) -> list[Sample]:
    """List FlyingThings3D stereo pairs or forward-flow pairs (left camera).

    Args:
      root: the folder holding ``frames_cleanpass/`` etc.
      task: "stereo" (left/right, ``disparity/``) or "flow" (t -> t+1, ``optical_flow/``).
      split: "TRAIN" or "TEST".
      pass_: "clean" or "final".

    Returns:
      Samples; targets are None where the ground-truth file is absent.
    """
    if task not in ("stereo", "flow"):
        raise ValueError(f"FlyingThings3D task must be 'stereo' or 'flow', got {task!r}")
    if pass_ not in ("clean", "final"):
        raise ValueError(f"FlyingThings3D pass must be 'clean' or 'final', got {pass_!r}")
    frames = require_dir(root, f"frames_{pass_}pass/{split}", "FlyingThings3D")
    root = Path(root)
    samples = []
    for left_dir in sorted(frames.glob("*/*/left")):
        seq = left_dir.parent.relative_to(frames)
        pngs = sorted(left_dir.glob("*.png"))
        if task == "stereo":
            for img in pngs:
                right = left_dir.parent / "right" / img.name
                if not right.is_file():
                    continue
                target = root / "disparity" / split / seq / "left" / f"{img.stem}.pfm"
                samples.append(
                    Sample(dataset="flyingthings3d", task="stereo", image1=img, image2=right,
                           target=target if target.is_file() else None,
                           meta={"sequence": str(seq), "frame": int(img.stem), "name": f"{seq}/{img.stem}"})
                )
        else:
            by_index = {int(p.stem): p for p in pngs}
            for index, img in sorted(by_index.items()):
                if index + 1 not in by_index:
                    continue
                target = (root / "optical_flow" / split / seq / "into_future" / "left"
                          / f"OpticalFlowIntoFuture_{index:04d}_L.pfm")
                samples.append(
                    Sample(dataset="flyingthings3d", task="flow", image1=img, image2=by_index[index + 1],
                           target=target if target.is_file() else None,
                           meta={"sequence": str(seq), "frame": index, "name": f"{seq}/{index:04d}"})
                )
    return require_nonempty(samples, frames, "FlyingThings3D", "<A|B|C>/<seq>/left/%04d.png")
