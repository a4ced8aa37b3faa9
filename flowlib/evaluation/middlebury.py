"""Middlebury protocols.

Flow (``other`` set): EPE and angular error (degrees) per scene over pixels with known
ground truth; the overall figures are the **mean over scenes** (as the Middlebury table).
Stereo (2001): bad-1 and bad-2 (% of pixels with |error| > 1 / 2 px) on the ``nonocc`` and
``all`` masks per scene (ground-truth 0 = unknown is always excluded) and their mean over
scenes, plus EPE on ``nonocc`` and ``all``.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from flowlib import metrics
from flowlib.data import Sample
from flowlib.evaluation._result import EvaluationResult, Pool
from flowlib.evaluation._runner import allreduce_sums, device_summary, measure_all

__all__ = ["evaluate_middlebury_flow", "evaluate_middlebury_stereo"]


def _accumulate(model: Any, samples: Sequence[Sample], measure: Any, journal: Any,
                progress: bool) -> tuple[Pool, dict, int]:
    total, groups, n = Pool(), {}, 0
    for _, value in measure_all(model, samples, measure, journal=journal, progress=progress):
        groups[value["group"]] = value["values"]
        for key, v in value["values"].items():  # scene means, averaged over scenes
            total.add(key, v, 1)
        n += 1
    return total, groups, n


def _result(name: str, model: Any, total: Pool, groups: dict, n: int, start: float) -> EvaluationResult:
    record = {"model": model.name, "weights": model.meta.get("weights"), **device_summary(),
              "wall_time_s": time.perf_counter() - start}
    return EvaluationResult(name, Pool.from_flat(allreduce_sums(total.flat())).means(), groups, n, record)


def evaluate_middlebury_flow(model: Any, samples: Sequence[Sample], *, progress: bool = True,
                             on_prediction: Any = None, journal: Any = None) -> EvaluationResult:
    """EPE and AE per scene and their mean over scenes.

    Args:
      model: a flow :class:`flowlib.Model`.
      samples: from :func:`flowlib.data.index_middlebury_flow` (``other`` split).
      progress: progress bar.
      on_prediction: optional callback ``f(sample, flow)``.
      journal: optional :class:`~flowlib.evaluation._journal.Journal` (resume).

    Returns:
      Result with ``epe`` and ``ae`` (scene means); groups per scene.
    """
    start = time.perf_counter()

    def measure(sample: Sample, data: dict, flow: np.ndarray) -> dict[str, Any]:
        valid = data["valid"]
        epe = float(metrics.epe_map(flow, data["flow"])[valid].mean())
        ae = float(metrics.angular_error_map(flow, data["flow"])[valid].mean())
        if on_prediction is not None:
            on_prediction(sample, flow)
        return {"group": sample.meta["scene"], "values": {"epe": epe, "ae": ae}}

    total, groups, n = _accumulate(model, samples, measure, journal, progress)
    return _result("middlebury-flow", model, total, groups, n, start)


def evaluate_middlebury_stereo(model: Any, samples: Sequence[Sample], *, progress: bool = True,
                               on_prediction: Any = None, journal: Any = None) -> EvaluationResult:
    """bad-1/bad-2 and EPE on the nonocc and all masks, per scene and scene mean.

    Args:
      model: a stereo :class:`flowlib.Model`.
      samples: from :func:`flowlib.data.index_middlebury_stereo`.
      progress: progress bar.
      on_prediction: optional callback ``f(sample, disparity)``.
      journal: optional :class:`~flowlib.evaluation._journal.Journal` (resume).

    Returns:
      Result with ``bad1_nonocc``, ``bad2_nonocc``, ``bad1_all``, ``bad2_all`` (%),
      ``epe_nonocc``, ``epe_all``; groups per scene.
    """
    start = time.perf_counter()

    def measure(sample: Sample, data: dict, disp: np.ndarray) -> dict[str, Any]:
        gt, known = data["disparity"], data["valid"]
        scene: dict[str, float] = {}
        for mask_name in ("nonocc", "all"):
            mask = known & data.get(mask_name, known)
            for k in (1, 2):
                bad = metrics.bad_n_map(disp, gt, k)
                scene[f"bad{k}_{mask_name}"] = 100.0 * float(bad[mask].mean())
        error = np.abs(disp - gt)
        scene["epe_nonocc"] = float(error[known & data.get("nonocc", known)].mean())
        scene["epe_all"] = float(error[known & data.get("all", known)].mean())
        if on_prediction is not None:
            on_prediction(sample, disp)
        return {"group": sample.meta["scene"], "values": scene}

    total, groups, n = _accumulate(model, samples, measure, journal, progress)
    return _result("middlebury-stereo", model, total, groups, n, start)
