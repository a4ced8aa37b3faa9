"""The record every dataset indexer returns, and how to decode it.

Indexers only list files (cheap, no decoding); :func:`load_sample` decodes one sample
through :mod:`flowlib.io`. There is no framework Dataset class: a list of samples can be
fed to any loader (see :func:`flowlib.data.prefetch`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["Sample", "load_sample"]


@dataclasses.dataclass(frozen=True, eq=False)
class Sample:
    """One image pair and its ground truth, as paths.

    Attributes:
      dataset: "sintel", "kitti2015", "kitti2012", "middlebury", "flyingchairs",
        "flyingthings3d", ...
      task: "flow" (images = frames t, t+1) or "stereo" (images = left, right).
      image1, image2: the two image files.
      target: flow (task "flow") or disparity (task "stereo") file; None on test splits.
      masks: extra per-pixel masks by name, e.g. {"occlusions": ..., "invalid": ...} for
        Sintel or {"nonocc": ..., "all": ...} for Middlebury stereo (PNG, nonzero = set).
      meta: scene, frame index, pass, split and ``name`` (the path a submission writes,
        relative to the submission root, without extension).
    """

    dataset: str
    task: str
    image1: Path
    image2: Path
    target: Path | None = None
    masks: Mapping[str, Path] = dataclasses.field(default_factory=dict)
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.meta.get("name", self.image1.stem))


def _read_mask(path: Path) -> np.ndarray:
    from flowlib import io

    grey = io.read_grey(path)
    return grey > 0


def load_sample(sample: Sample) -> dict[str, Any]:
    """Decode a sample.

    Returns:
      dict with "image1", "image2" (float32 RGB (H, W, 3) in [0, 1]); for flow samples with
      ground truth "flow" (H, W, 2) float32 and "valid" (H, W) bool; for stereo samples
      "disparity" (H, W) float32 and "valid"; and one bool (H, W) array per mask name.
      Middlebury-2001 stereo ground truth is divided by the scale in ``meta["scale"]``.
    """
    from flowlib import io

    out: dict[str, Any] = {"image1": io.read_image(sample.image1), "image2": io.read_image(sample.image2)}
    if out["image1"].shape != out["image2"].shape:
        raise ValueError(
            f"{sample.image1} and {sample.image2} differ in size: "
            f"{out['image1'].shape} vs {out['image2'].shape}"
        )
    if sample.target is not None:
        if sample.task == "flow":
            out["flow"], out["valid"] = io.read_flow(sample.target)
        elif "scale" in sample.meta:  # Middlebury 2001: grey PNG = disparity * scale, 0 = unknown
            raw = io.read_grey(sample.target).astype(np.float32)
            out["disparity"] = raw / np.float32(sample.meta["scale"])
            out["valid"] = raw > 0
        else:
            out["disparity"], out["valid"] = io.read_disparity(sample.target)
    for key, path in sample.masks.items():
        out[key] = _read_mask(path)
    return out
