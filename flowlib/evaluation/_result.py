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


#: Column order of every table and record, whatever order the statistics arrived in (a
#: resumed run restores them from its journal in another order); other names follow sorted.
METRIC_ORDER = (
    "epe", "epe_pooled", "epe_nonocc", "epe_all", "epe_matched", "epe_unmatched", "ae",
    "fl", "fl_bg", "fl_fg", "d1", "bad1_nonocc", "bad2_nonocc", "bad1_all", "bad2_all",
    "1px", "3px", "5px", "s0-10", "s10-40", "s40+", "d0-10", "d10-60", "d60-140",
)

#: What the less obvious columns hold, printed under the table.
METRIC_NOTES = {
    "epe": "epe: end-point error in px (lower is better)",
    "epe_pooled": "epe_pooled: over all pixels of all images (epe: mean of per-image means)",
    "1px": "1px/3px/5px: fraction (0-1) of pixels with EPE below 1/3/5 px",
    "fl": "fl: % of pixels with EPE > 3 px and > 5 % of |gt| (KITTI Fl)",
    "d1": "d1: % of pixels with error > 3 px and > 5 % of gt (KITTI D1)",
    "bad1_nonocc": "badN_mask: % of pixels with error > N px on the mask (nonocc / all)",
    "s0-10": "sA-B: EPE of pixels moving A-B px; dA-B: A-B px from an occlusion boundary",
}


def ordered(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with its keys in :data:`METRIC_ORDER`, unknown keys sorted after them."""
    rank = {name: i for i, name in enumerate(METRIC_ORDER)}
    return {k: values[k] for k in sorted(values, key=lambda k: (rank.get(k, len(rank)), k))}


def _json_safe(value: Any) -> Any:
    """NaN and infinities as null: bare NaN is not JSON, and strict parsers refuse it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


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

    def __post_init__(self) -> None:
        self.metrics = ordered(self.metrics)
        self.groups = {name: ordered(values) for name, values in self.groups.items()}

    def to_json(self, **kwargs: Any) -> str:
        """The result as strict JSON: non-finite numbers are written as null."""
        return json.dumps(_json_safe(dataclasses.asdict(self)), sort_keys=True, allow_nan=False,
                          **kwargs)

    def table(self, max_groups: int = 30, *, note: str | None = None) -> str:
        """A plain-text table: one row per group, then the overall row, then what the columns
        mean. A figure a group does not have (e.g. pooled ones per image) is left blank.
        ``note`` is appended to the title line (e.g. that the data are synthetic)."""
        names = list(self.metrics)
        width = max([len("overall")] + [len(g) for g in list(self.groups)[:max_groups]]) + 2
        head = "".ljust(width) + "".join(n.rjust(max(10, len(n) + 2)) for n in names)
        pairs = f"{self.num_pairs} pair{'' if self.num_pairs == 1 else 's'}"
        title = f"{self.benchmark}  ({pairs})" + (f"  {note}" if note else "")
        rows = [title, head]

        def fmt(values: dict[str, float]) -> str:
            cells = (f"{values[n]:.4f}" if n in values else "" for n in names)
            return "".join(c.rjust(max(10, len(n) + 2)) for c, n in zip(cells, names))

        for group, values in list(self.groups.items())[:max_groups]:
            rows.append(group.ljust(width) + fmt(values))
        rows.append("overall".ljust(width) + fmt(self.metrics))
        rows += [f"  {note}" for name, note in METRIC_NOTES.items() if name in self.metrics]
        return "\n".join(rows)
