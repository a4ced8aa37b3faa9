"""flowlib's own validation set for choosing default models and settings.

    python -m benchmarks.validation [--model patchflow] [--model-kwargs JSON] [--pairs N]

The shared real pairs (``../shared/data``) are a test set: nothing is selected on them.
Settings of the embedded defaults are chosen on these rendered scenes instead
(:mod:`flowlib.data.synthetic`, seeds 900000+ that no training run uses), four groups
of ``--pairs`` pairs each at 384x512:

* ``chairs-small``: layered scenes, motion scale 0.5 (mean |flow| ~4 px);
* ``chairs-medium``: motion scale 1.5 (~12 px, up to ~30 px);
* ``warp``: smooth deformations of photo/noise textures (~6 px, no occlusions);
* ``chairs-large``: motion scale 3 (~26 px, up to ~75 px).

Prints mean EPE per group for the flowlib model and for OpenCV DIS (medium preset) when
OpenCV is installed, so a setting is judged against the same peer in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable, Iterator

import numpy as np

import flowlib
from flowlib import metrics
from flowlib.data import synthetic

#: group -> (generator, keyword arguments, first seed)
GROUPS: dict[str, tuple[Callable[..., dict[str, np.ndarray]], dict[str, Any], int]] = {
    "chairs-small": (synthetic.flow_pair, {"motion": 0.5, "detail": 0.1}, 900000),
    "chairs-medium": (synthetic.flow_pair, {"motion": 1.5, "detail": 0.1}, 910000),
    "warp": (synthetic.warp_pair, {"motion": 1.0}, 920000),
    "chairs-large": (synthetic.flow_pair, {"motion": 3.0, "detail": 0.1}, 930000),
}


def pairs(n: int, height: int = 384, width: int = 512) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """The validation pairs, group by group (deterministic)."""
    for group, (make, kwargs, seed) in GROUPS.items():
        for i in range(n):
            yield group, make(seed + i, height, width, **kwargs)


def evaluate(method: Callable[[np.ndarray, np.ndarray], np.ndarray], n: int) -> dict[str, float]:
    """Mean EPE per group (all pixels, occluded ones included)."""
    out: dict[str, list[float]] = {}
    for group, d in pairs(n):
        pred = np.asarray(method(d["image1"], d["image2"]), np.float32)
        out.setdefault(group, []).append(float(metrics.epe_map(pred, d["flow"]).mean()))
    return {g: float(np.mean(v)) for g, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.validation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="patchflow")
    p.add_argument("--weights", default=None)
    p.add_argument("--model-kwargs", default="{}", help="JSON: constructor overrides")
    p.add_argument("--pairs", type=int, default=6, help="pairs per group")
    p.add_argument("--no-opencv", action="store_true")
    args = p.parse_args(argv)
    model = flowlib.load_model(args.model, args.weights)
    overrides = json.loads(args.model_kwargs)
    if overrides:
        model = flowlib.Model(model.name, model.module.clone(**overrides), model.variables,
                              task=model.task, meta={**model.meta, "overrides": overrides})
    rows = {}
    t = time.perf_counter()
    rows[f"flowlib {args.model} {args.model_kwargs}"] = evaluate(
        lambda a, b: flowlib.estimate(a, b, model), args.pairs)
    seconds = time.perf_counter() - t
    if not args.no_opencv:
        try:
            import cv2
        except ImportError:
            cv2 = None
        if cv2 is not None:
            dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
            grey = lambda x: np.round(255 * (x @ np.float32([0.299, 0.587, 0.114]))).astype(np.uint8)  # noqa: E731
            rows["OpenCV DIS medium"] = evaluate(lambda a, b: dis.calc(grey(a), grey(b), None), args.pairs)
    for name, res in rows.items():
        print(f"{name:60s} " + "  ".join(f"{g} {v:6.3f}" for g, v in res.items()))
    print(f"({seconds:.1f} s for the flowlib rows, compilation included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
