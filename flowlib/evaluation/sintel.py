"""MPI-Sintel protocol: EPE all / matched / unmatched and the speed and distance bins.

Aggregation: every figure is **pixel-pooled** over the whole split (as the Sintel server
and RAFT's evaluate.py), and the same pooled per scene. Pixels marked in
``training/invalid`` are excluded. "matched" = not occluded (visible in both frames),
"unmatched" = occluded; s0-10/s10-40/s40+ bin by ground-truth speed; d0-10/d10-60/d60-140
by distance to the nearest occlusion boundary (see :func:`flowlib.metrics.sintel_breakdown`).
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from flowlib import metrics
from flowlib.data import Sample
from flowlib.evaluation._result import EvaluationResult, Pool
from flowlib.evaluation._runner import allreduce_sums, device_summary, measure_all

__all__ = ["evaluate_sintel"]


def evaluate_sintel(
    model: Any,
    samples: Sequence[Sample],
    *,
    batch_size: int = 1,
    progress: bool = True,
    on_prediction: Any = None,
    journal: Any = None,
) -> EvaluationResult:
    """Evaluate a flow model on Sintel training samples (one pass).

    Args:
      model: a flow :class:`flowlib.Model`.
      samples: from :func:`flowlib.data.index_sintel` (training split).
      batch_size: pairs per forward pass.
      progress: progress bar.
      on_prediction: optional callback ``f(sample, flow)`` (saving visualisations, ...).
      journal: optional :class:`~flowlib.evaluation._journal.Journal`: pairs it holds are
        not evaluated again, new ones are recorded (``--resume``).

    Returns:
      Result with metrics ``epe`` (all), ``epe_matched``, ``epe_unmatched``, ``s0-10``,
      ``s10-40``, ``s40+``, ``d0-10``, ``d10-60``, ``d60-140``, ``1px``/``3px``/``5px``
      (fractions with EPE below), pooled over pixels; groups per scene.
    """
    start = time.perf_counter()
    total, scenes = Pool(), {}
    n = 0

    def measure(sample: Sample, data: dict, flow: np.ndarray) -> dict[str, Any]:
        if "flow" not in data:
            raise ValueError(f"{sample.image1}: Sintel evaluation needs ground truth (training split)")
        valid = data["valid"] & ~data.get("invalid", np.zeros_like(data["valid"]))
        parts = metrics.sintel_breakdown(flow, data["flow"], valid=valid, occluded=data.get("occlusions"))
        epe = metrics.epe_map(flow, data["flow"])
        for k in (1, 3, 5):
            parts[f"{k}px"] = (float(np.sum((epe < k) & valid)), float(np.sum(valid)))
        if on_prediction is not None:
            on_prediction(sample, flow)
        return {"scene": sample.meta.get("scene", "?"),
                "parts": {name: [float(a), float(b)] for name, (a, b) in parts.items()}}

    for _, value in measure_all(model, samples, measure, journal=journal, batch_size=batch_size,
                                progress=progress):
        scene = scenes.setdefault(value["scene"], Pool())
        for name, (a, b) in value["parts"].items():
            total.add(name, a, b)
            scene.add(name, a, b)
        n += 1
    pooled = Pool.from_flat(allreduce_sums(total.flat()))
    renamed = {("epe" if k == "all" else f"epe_{k}" if k in ("matched", "unmatched") else k): v
               for k, v in pooled.means().items()}
    groups = {name: {("epe" if k == "all" else f"epe_{k}" if k in ("matched", "unmatched") else k): v
                     for k, v in pool.means().items()} for name, pool in scenes.items()}
    record = {"model": model.name, "weights": model.meta.get("weights"), **device_summary(),
              "wall_time_s": time.perf_counter() - start}
    passes = sorted({s.meta.get("pass", "?") for s in samples})
    return EvaluationResult(f"sintel-{'+'.join(passes)}", renamed, groups, n, record)
