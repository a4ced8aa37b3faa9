"""KITTI protocols (flow and stereo), devkit rules.

Flow: ``epe`` is the **mean over images of the per-image mean EPE** over valid GT pixels
(the convention of RAFT's evaluate.py and the numbers papers print), ``epe_pooled`` the
pixel-pooled value; ``fl`` (Fl-all in %) is **pooled** over all valid pixels of all images
(devkit: counts accumulated, then divided). With ``obj_map`` present, ``fl_bg``/``fl_fg``.
Stereo: ``d1`` (D1 in %) pooled over valid pixels (devkit), ``epe`` per-image mean and
``epe_pooled``. Whether the figures are "all" or "noc" depends on the ground truth the
samples were indexed with (``gt="occ"`` or ``"noc"``), recorded in the benchmark name.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from flowlib import metrics
from flowlib.data import Sample
from flowlib.evaluation._result import EvaluationResult, Pool
from flowlib.evaluation._runner import allreduce_sums, device_summary, measure_all

__all__ = ["evaluate_kitti_flow", "evaluate_kitti_stereo", "index_kitti"]


def _accumulate(model: Any, samples: Sequence[Sample], measure: Any, journal: Any,
                progress: bool) -> tuple[Pool, dict, int]:
    total, groups, n = Pool(), {}, 0
    for _, value in measure_all(model, samples, measure, journal=journal, progress=progress):
        for name, (a, b) in value["parts"].items():
            total.add(name, a, b)
        groups[value["group"]] = value["values"]
        n += 1
    return total, groups, n


def _finish(name: str, model: Any, total: Pool, groups: dict, n: int, start: float,
            percent: tuple[str, ...]) -> EvaluationResult:
    means = Pool.from_flat(allreduce_sums(total.flat())).means()
    for key in percent:
        if key in means:
            means[key] *= 100.0
    record = {"model": model.name, "weights": model.meta.get("weights"), **device_summary(),
              "wall_time_s": time.perf_counter() - start}
    return EvaluationResult(name, means, groups, n, record)


def _benchmark_name(samples: Sequence[Sample], task: str) -> str:
    s = samples[0] if samples else None
    year = s.meta.get("year", "") if s else ""
    gt = s.meta.get("gt", "occ") if s else "occ"
    return f"kitti{year}-{task}-{'all' if gt == 'occ' else 'noc'}"


def evaluate_kitti_flow(model: Any, samples: Sequence[Sample], *, progress: bool = True,
                        on_prediction: Any = None, journal: Any = None) -> EvaluationResult:
    """Evaluate a flow model on KITTI training samples.

    Args:
      model: a flow :class:`flowlib.Model`.
      samples: from :func:`flowlib.data.index_kitti_flow` (training split).
      progress: progress bar.
      on_prediction: optional callback ``f(sample, flow)``.
      journal: optional :class:`~flowlib.evaluation._journal.Journal` (resume).

    Returns:
      Result with ``epe`` (per-image mean), ``epe_pooled``, ``fl`` (%, pooled) and, when
      object maps exist, ``fl_bg``/``fl_fg``; groups per image.
    """
    start = time.perf_counter()

    def measure(sample: Sample, data: dict, flow: np.ndarray) -> dict[str, Any]:
        gt, valid = data["flow"], data["valid"]
        epe = metrics.epe_map(flow, gt)
        out = metrics.fl_outlier_map(flow, gt)
        count = float(valid.sum())
        parts = {"epe_pooled": [float(epe[valid].sum()), count], "fl": [float(out[valid].sum()), count]}
        if count:  # per-image mean: one observation per image
            parts["epe"] = [float(epe[valid].sum()) / count, 1.0]
        if "obj_map" in data:
            for key, region in (("fl_bg", ~data["obj_map"]), ("fl_fg", data["obj_map"])):
                m = valid & region
                parts[key] = [float(out[m].sum()), float(m.sum())]
        if on_prediction is not None:
            on_prediction(sample, flow)
        return {"group": sample.meta.get("frame", sample.name), "parts": parts, "values": {
            "epe": float(epe[valid].mean()) if count else float("nan"),
            "fl": 100.0 * float(out[valid].mean()) if count else float("nan")}}

    total, groups, n = _accumulate(model, samples, measure, journal, progress)
    return _finish(_benchmark_name(samples, "flow"), model, total, groups, n, start, ("fl", "fl_bg", "fl_fg"))


def evaluate_kitti_stereo(model: Any, samples: Sequence[Sample], *, progress: bool = True,
                        on_prediction: Any = None, journal: Any = None) -> EvaluationResult:
    """Evaluate a stereo model on KITTI training samples.

    Args:
      model: a stereo :class:`flowlib.Model`.
      samples: from :func:`flowlib.data.index_kitti_stereo` (training split).
      progress: progress bar.
      on_prediction: optional callback ``f(sample, disparity)``.
      journal: optional :class:`~flowlib.evaluation._journal.Journal` (resume).

    Returns:
      Result with ``d1`` (%, pooled), ``epe`` (per-image mean), ``epe_pooled`` and, with
      object maps, ``d1_bg``/``d1_fg``; groups per image.
    """
    start = time.perf_counter()

    def measure(sample: Sample, data: dict, disp: np.ndarray) -> dict[str, Any]:
        gt, valid = data["disparity"], data["valid"]
        err = np.abs(disp - gt)
        out = metrics.d1_outlier_map(disp, gt)
        count = float(valid.sum())
        parts = {"d1": [float(out[valid].sum()), count], "epe_pooled": [float(err[valid].sum()), count]}
        if count:
            parts["epe"] = [float(err[valid].sum()) / count, 1.0]
        if "obj_map" in data:
            for key, region in (("d1_bg", ~data["obj_map"]), ("d1_fg", data["obj_map"])):
                m = valid & region
                parts[key] = [float(out[m].sum()), float(m.sum())]
        if on_prediction is not None:
            on_prediction(sample, disp)
        return {"group": sample.meta.get("frame", sample.name), "parts": parts, "values": {
            "d1": 100.0 * float(out[valid].mean()) if count else float("nan"),
            "epe": float(err[valid].mean()) if count else float("nan")}}

    total, groups, n = _accumulate(model, samples, measure, journal, progress)
    return _finish(_benchmark_name(samples, "stereo"), model, total, groups, n, start, ("d1", "d1_bg", "d1_fg"))


def index_kitti(root: Any, *, task: str, year: int = 2015, split: str = "training",
                gt: str = "occ") -> list[Sample]:
    """Index a KITTI tree (``flowlib.data``) for ``task`` ("flow" / "stereo"); a tree that
    has only the non-occluded ground truth is told to use ``gt="noc"`` (``--gt noc``) by the
    indexer."""
    from flowlib import data

    index = data.index_kitti_flow if task == "flow" else data.index_kitti_stereo
    return index(root, year=year, split=split, gt=gt)
