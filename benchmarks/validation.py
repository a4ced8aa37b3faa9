"""flowlib's own validation set for choosing default models and settings.

    python -m benchmarks.validation [--task flow|stereo] [--model NAME] [--preset NAME]
                                    [--model-kwargs JSON] [--pairs N]

The shared real pairs (``../shared/data``) are a test set: nothing is selected on them.
Settings of the embedded defaults are chosen on these rendered scenes instead
(:mod:`flowlib.data.synthetic`, seeds 900000+ that no training run uses), four groups
of ``--pairs`` pairs each at 384x512:

* ``chairs-small``: layered scenes, motion scale 0.5 (mean |flow| ~4 px);
* ``chairs-medium``: motion scale 1.5 (~12 px, up to ~30 px);
* ``warp``: smooth deformations of photo/noise textures (~6 px, no occlusions);
* ``chairs-large``: motion scale 3 (~26 px, up to ~75 px).

Stereo (``--task stereo``): layered plane scenes (:func:`flowlib.data.synthetic.stereo_pair`,
seeds 940000+), ``stereo-64`` (256x512, disparities up to 64 px) and ``stereo-160``
(320x640, up to 160 px, KITTI-like range); EPE and D1 (> 3 px and > 5 %) over all pixels.

Prints mean EPE per group for the flowlib model and for the classical peer (OpenCV DIS
medium preset for flow, StereoSGBM as in ``benchmarks.defaults`` for stereo) when OpenCV is
installed, so a setting is judged against the same peer in the same run.
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


#: stereo group -> (keyword arguments, first seed, height, width)
STEREO_GROUPS: dict[str, tuple[dict[str, Any], int, int, int]] = {
    "stereo-64": ({"max_disparity": 64, "detail": 0.1}, 940000, 256, 512),
    "stereo-160": ({"max_disparity": 160, "detail": 0.1}, 950000, 320, 640),
}


def stereo_pairs(n: int) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """The stereo validation pairs, group by group (deterministic)."""
    for group, (kwargs, seed, h, w) in STEREO_GROUPS.items():
        for i in range(n):
            yield group, synthetic.stereo_pair(seed + i, h, w, **kwargs)


def evaluate_stereo(method: Callable[[np.ndarray, np.ndarray], np.ndarray], n: int) -> dict[str, str]:
    """'EPE / D1 %' per group (all pixels)."""
    out: dict[str, list[tuple[float, float]]] = {}
    for group, d in stereo_pairs(n):
        pred = np.asarray(method(d["left"], d["right"]), np.float32)
        gt = d["disparity"]
        out.setdefault(group, []).append(
            (float(np.abs(pred - gt).mean()), 100 * float(metrics.d1_outlier_map(pred, gt).mean())))
    return {g: "{:.3f} / {:.2f} %".format(*np.mean(v, axis=0)) for g, v in out.items()}


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
    p.add_argument("--task", choices=["flow", "stereo"], default="flow")
    p.add_argument("--model", default=None, help="default: patchflow / patchstereo")
    p.add_argument("--weights", default=None)
    p.add_argument("--preset", default=None, help="PatchFlow / PatchStereo preset (fast, accurate)")
    p.add_argument("--model-kwargs", default="{}", help="JSON: constructor overrides")
    p.add_argument("--pairs", type=int, default=6, help="pairs per group")
    p.add_argument("--no-opencv", action="store_true")
    args = p.parse_args(argv)
    args.model = args.model or {"flow": "patchflow", "stereo": "patchstereo"}[args.task]
    model = flowlib.load_model(args.model, args.weights,
                               **({} if args.preset is None else {"preset": args.preset}))
    overrides = json.loads(args.model_kwargs)
    if overrides:
        model = flowlib.Model(model.name, model.module.clone(**overrides), model.variables,
                              task=model.task, meta={**model.meta, "overrides": overrides})
    rows = {}
    t = time.perf_counter()
    if args.task == "stereo":
        rows[f"flowlib {args.model} {args.preset or ''} {args.model_kwargs}"] = evaluate_stereo(
            lambda a, b: flowlib.estimate_disparity(a, b, model), args.pairs)
    else:
        rows[f"flowlib {args.model} {args.preset or ''} {args.model_kwargs}"] = evaluate(
            lambda a, b: flowlib.estimate(a, b, model), args.pairs)
    seconds = time.perf_counter() - t
    if args.task == "stereo" and not args.no_opencv:
        from benchmarks.defaults import sgbm

        # The customary KITTI range, as PatchStereo's maxdisp 192.
        rows["OpenCV SGBM"] = evaluate_stereo(lambda a, b: sgbm(a, b, 192), args.pairs)
    elif not args.no_opencv:
        try:
            import cv2
        except ImportError:
            cv2 = None
        if cv2 is not None:
            dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
            grey = lambda x: np.round(255 * (x @ np.float32([0.299, 0.587, 0.114]))).astype(np.uint8)  # noqa: E731
            rows["OpenCV DIS medium"] = evaluate(lambda a, b: dis.calc(grey(a), grey(b), None), args.pairs)
    for name, res in rows.items():
        print(f"{name:60s} " + "  ".join(f"{g} {v:>6}" if isinstance(v, str) else f"{g} {v:6.3f}"
                                          for g, v in res.items()))
    print(f"({seconds:.1f} s for the flowlib rows, compilation included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
