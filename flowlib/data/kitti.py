"""KITTI 2012 and 2015 flow and stereo in the official layouts.

KITTI 2015 (``data_scene_flow``): ``training/{image_2,image_3,flow_occ,flow_noc,disp_occ_0,
disp_noc_0,obj_map}/%06d_10.png`` (second frame ``_11``), ``testing/{image_2,image_3}``.
KITTI 2012 (``data_stereo_flow``): ``training/{colored_0,colored_1,flow_occ,flow_noc,
disp_occ,disp_noc}`` (no ``_0`` suffix), ``testing/{colored_0,colored_1}``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from flowlib.data._layout import require_dir, require_nonempty
from flowlib.data._sample import Sample

__all__ = ["index_kitti_flow", "index_kitti_stereo"]

_FRAME10 = re.compile(r"^(\d{6})_10\.png$")


def _folders(year: int) -> dict[str, str]:
    if year == 2015:
        return {"left": "image_2", "right": "image_3", "disp": "disp_{gt}_0", "flow": "flow_{gt}"}
    if year == 2012:
        return {"left": "colored_0", "right": "colored_1", "disp": "disp_{gt}", "flow": "flow_{gt}"}
    raise ValueError(f"KITTI year must be 2012 or 2015, got {year!r}")


def _check(split: str, gt: str) -> str:
    if split not in ("training", "testing"):
        raise ValueError(f"KITTI split must be 'training' or 'testing', got {split!r}")
    if gt not in ("occ", "noc"):
        raise ValueError(f"KITTI ground truth must be 'occ' (all pixels) or 'noc', got {gt!r}")
    return split


def _frames(folder: Path) -> list[str]:
    return sorted(m.group(1) for p in folder.iterdir() if (m := _FRAME10.match(p.name)))


def _ground_truth_dir(root: str | os.PathLike, split: str, template: str, gt: str,
                      dataset: str, what: str) -> Path:
    """``root/split/<template with gt>``; a tree that has only the non-occluded ground
    truth is told to use ``gt="noc"`` (``--gt noc``) when asked for "occ"."""
    noc = Path(root, split, template.format(gt="noc"))
    if gt == "occ" and noc.is_dir():
        what += (f"; this tree has only non-occluded ground truth ({noc.name}): use gt='noc'"
                 " (--gt noc)")
    return require_dir(root, f"{split}/{template.format(gt=gt)}", dataset, what)


def index_kitti_flow(
    root: str | os.PathLike, *, year: int = 2015, split: str = "training", gt: str = "occ"
) -> list[Sample]:
    """List KITTI flow pairs (``%06d_10.png`` -> ``%06d_11.png``).

    Args:
      root: the folder holding ``training/`` and/or ``testing/``.
      year: 2015 or 2012.
      split: "training" or "testing".
      gt: "occ" (all pixels, ``flow_occ``) or "noc" (non-occluded, ``flow_noc``).

    Returns:
      Samples; ``meta`` has frame id, year, split and ``name`` = ``flow/%06d_10`` (the
      submission path). ``masks`` holds "obj_map" (KITTI 2015) and the other GT density
      ("noc" or "occ" flow PNG) when present, so evaluators can report both.
    """
    split = _check(split, gt)
    f = _folders(year)
    dataset = f"KITTI {year}"
    left = require_dir(root, f"{split}/{f['left']}", dataset)
    gt_dir = None
    if split == "training":
        gt_dir = _ground_truth_dir(root, split, f["flow"], gt, dataset, "flow ground truth")
    samples = []
    for frame in _frames(left):
        image2 = left / f"{frame}_11.png"
        if not image2.is_file():
            continue
        masks: dict[str, Path] = {}
        target = None
        if gt_dir is not None:
            target = gt_dir / f"{frame}_10.png"
            if not target.is_file():
                raise ValueError(f"{dataset}: missing ground truth {target}")
            obj = Path(root) / split / "obj_map" / f"{frame}_10.png"
            if obj.is_file():
                masks["obj_map"] = obj
        samples.append(
            Sample(
                dataset=f"kitti{year}",
                task="flow",
                image1=left / f"{frame}_10.png",
                image2=image2,
                target=target,
                masks=masks,
                meta={"frame": frame, "year": year, "split": split, "gt": gt, "name": f"flow/{frame}_10"},
            )
        )
    return require_nonempty(samples, left, dataset, "%06d_10.png + %06d_11.png")


def index_kitti_stereo(
    root: str | os.PathLike, *, year: int = 2015, split: str = "training", gt: str = "occ"
) -> list[Sample]:
    """List KITTI stereo pairs (left ``image_2``/``colored_0``, right ``image_3``/``colored_1``).

    Args:
      root: the folder holding ``training/`` and/or ``testing/``.
      year: 2015 or 2012.
      split: "training" or "testing".
      gt: "occ" (``disp_occ_0`` / ``disp_occ``) or "noc".

    Returns:
      Samples; ``meta["name"]`` = ``disp_0/%06d_10`` (the KITTI 2015 submission path).
    """
    split = _check(split, gt)
    f = _folders(year)
    dataset = f"KITTI {year}"
    left = require_dir(root, f"{split}/{f['left']}", dataset)
    right = require_dir(root, f"{split}/{f['right']}", dataset)
    gt_dir = None
    if split == "training":
        gt_dir = _ground_truth_dir(root, split, f["disp"], gt, dataset,
                                   "disparity ground truth")
    samples = []
    for frame in _frames(left):
        image2 = right / f"{frame}_10.png"
        if not image2.is_file():
            raise ValueError(f"{dataset}: missing right image {image2}")
        target = None
        masks: dict[str, Path] = {}
        if gt_dir is not None:
            target = gt_dir / f"{frame}_10.png"
            if not target.is_file():
                raise ValueError(f"{dataset}: missing ground truth {target}")
            obj = Path(root) / split / "obj_map" / f"{frame}_10.png"
            if obj.is_file():
                masks["obj_map"] = obj
        samples.append(
            Sample(
                dataset=f"kitti{year}",
                task="stereo",
                image1=left / f"{frame}_10.png",
                image2=image2,
                target=target,
                masks=masks,
                meta={"frame": frame, "year": year, "split": split, "gt": gt, "name": f"disp_0/{frame}_10"},
            )
        )
    return require_nonempty(samples, left, dataset, "%06d_10.png")
