"""Middlebury flow ("other" set: EPE, AE) and 2001 stereo (bad-1/bad-2, nonocc/all) evaluation.

    python -m benchmarks.middlebury --flow-root PATH --stereo-root PATH
        [--model M] [--stereo-model M] [--json OUT] [--save-viz DIR]

Either root may be omitted; at least one is required (Middlebury data has no synthetic
stand-in).
"""

from __future__ import annotations

import argparse
import sys

import flowlib
from benchmarks._evalcli import report, viz_saver
from flowlib import data, evaluation


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.middlebury", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--flow-root", default=None, help="folder with other-data/ and other-gt-flow/")
    p.add_argument("--stereo-root", default=None, help="folder of 2001 scenes (tsukuba/, venus/, ...)")
    p.add_argument("--model", default="spynet")
    p.add_argument("--weights", default=None)
    p.add_argument("--stereo-model", default="cfnet")
    p.add_argument("--stereo-weights", default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--save-viz", default=None)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if not (args.flow_root or args.stereo_root):
        p.error("pass --flow-root and/or --stereo-root")
    results = []
    if args.flow_root:
        model = flowlib.load_model(args.model, args.weights)
        samples = data.index_middlebury_flow(args.flow_root)
        results.append(evaluation.evaluate_middlebury_flow(
            model, samples, progress=not args.no_progress, on_prediction=viz_saver(args.save_viz, "flow")))
    if args.stereo_root:
        model = flowlib.load_model(args.stereo_model, args.stereo_weights)
        samples = data.index_middlebury_stereo(args.stereo_root)
        results.append(evaluation.evaluate_middlebury_stereo(
            model, samples, progress=not args.no_progress, on_prediction=viz_saver(args.save_viz, "stereo")))
    report(results, args.json, {"flow_root": args.flow_root, "stereo_root": args.stereo_root})
    return 0


if __name__ == "__main__":
    sys.exit(main())
