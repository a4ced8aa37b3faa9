"""Evaluation results: pooled (sum, count) statistics, a dataclass, JSON and a table."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from typing import Any


class Pool:
    """Accumulates named (sum, count) pairs; ``mean(name)`` = total sum / total count."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, float] = defaultdict(float)

    def add(self, name: str, total: float, count: float) -> None:
        self.sums[name] += float(total)
        self.counts[name] += float(count)

    def add_mean(self, name: str, total: float, count: float) -> None:
        """Add one image's mean as a single observation (per-image averaging)."""
        if count > 0:
            self.add(name, float(total) / float(count), 1.0)

    def means(self) -> dict[str, float]:
        return {k: (self.sums[k] / self.counts[k] if self.counts[k] else math.nan) for k in self.sums}

    def flat(self) -> dict[str, float]:
        out = {f"{k}/sum": v for k, v in self.sums.items()}
        out.update({f"{k}/count": v for k, v in self.counts.items()})
        return out

    @classmethod
    def from_flat(cls, flat: dict[str, float]) -> "Pool":
        pool = cls()
        for key, value in flat.items():
            name, kind = key.rsplit("/", 1)
            (pool.sums if kind == "sum" else pool.counts)[name] += value
        return pool


@dataclasses.dataclass
class EvaluationResult:
    """Metrics of one benchmark run.

    Attributes:
      benchmark: e.g. "sintel-final", "kitti2015-flow", "middlebury-stereo".
      metrics: overall figures (names say their aggregation, see the evaluator).
      groups: the same per scene (Sintel, Middlebury) or per image (KITTI).
      num_pairs: pairs evaluated.
      record: model, weights, device and versions, wall time.
    """

    benchmark: str
    metrics: dict[str, float]
    groups: dict[str, dict[str, float]]
    num_pairs: int
    record: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, **kwargs)

    def table(self, max_groups: int = 30) -> str:
        """A plain-text table: one row per group, then the overall row."""
        names = list(self.metrics)
        width = max([len("overall")] + [len(g) for g in list(self.groups)[:max_groups]]) + 2
        head = "".ljust(width) + "".join(n.rjust(max(10, len(n) + 2)) for n in names)
        rows = [f"{self.benchmark}  ({self.num_pairs} pairs)", head]

        def fmt(values: dict[str, float]) -> str:
            return "".join(f"{values.get(n, math.nan):.4f}".rjust(max(10, len(n) + 2)) for n in names)

        for group, values in list(self.groups.items())[:max_groups]:
            rows.append(group.ljust(width) + fmt(values))
        rows.append("overall".ljust(width) + fmt(self.metrics))
        return "\n".join(rows)
