"""Middlebury flow ("other" set: EPE, AE) and 2001 stereo (bad-1/bad-2, nonocc/all) evaluation.

    python -m benchmarks.middlebury [--flow-root PATH] [--stereo-root PATH]
        [--model M] [--weights W] [--stereo-model M] [--stereo-weights W]
        [--json OUT] [--save-viz DIR] [--resume]

With neither root it runs on small **synthetic** sets in the Middlebury layouts that
flowlib renders itself (``other-data``/``other-gt-flow`` and 2001-style stereo scenes,
cached under ``$FLOWLIB_HOME``): a demonstration of the pipeline, not Middlebury numbers.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

import flowlib
from benchmarks._args import output_file
from benchmarks._evalcli import add_run_flags, flow_model_name, journal_for, report, viz_saver
from flowlib import _zoo, data, evaluation, hub, io

SYNTHETIC_VERSION = "v1"
_STEREO_SCALE = 8  # grey level = disparity * 8, as Middlebury 2001's venus


def synthetic_root() -> Path:
    """Render (once) ``flow/{other-data,other-gt-flow}/synthetic_k`` and ``stereo/synthetic_k``."""
    from flowlib.data import synthetic

    root = hub.cache_dir() / f"synthetic-middlebury-{SYNTHETIC_VERSION}"
    if (root / ".complete").is_file():
        return root
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    u8 = lambda x: np.clip(np.round(x * 255), 0, 255).astype(np.uint8)  # noqa: E731
    h, w = 288, 384
    for k in range(2):
        scene = f"synthetic_{k + 1}"
        pair = synthetic.flow_pair(9100 + k, h, w, motion=0.3)  # Middlebury motions are small
        d = tmp / "flow" / "other-data" / scene
        d.mkdir(parents=True)
        io.write_image(d / "frame10.png", u8(pair["image1"]))
        io.write_image(d / "frame11.png", u8(pair["image2"]))
        g = tmp / "flow" / "other-gt-flow" / scene
        g.mkdir(parents=True)
        io.write_flow(g / "flow10.flo", pair["flow"])
        st = synthetic.stereo_pair(9200 + k, h, w, max_disparity=30.0)
        d = tmp / "stereo" / scene
        d.mkdir(parents=True)
        io.write_image(d / "imL.png", u8(st["left"]))
        io.write_image(d / "imR.png", u8(st["right"]))
        gt = np.clip(np.round(st["disparity"] * _STEREO_SCALE), 1, 255).astype(np.uint8)
        io.write_image(d / "groundtruth.png", np.repeat(gt[..., None], 3, -1))
        full = np.full((h, w), 255, np.uint8)
        io.write_image(d / "all.png", np.repeat(full[..., None], 3, -1))
        nonocc = np.where(st["occlusions"], 0, 255).astype(np.uint8)
        io.write_image(d / "nonocc.png", np.repeat(nonocc[..., None], 3, -1))
        (d / "info.txt").write_text(f"{_STEREO_SCALE}\n{int(np.ceil(st['disparity'].max()))}\n")
    (tmp / ".complete").write_text("flowlib synthetic Middlebury-layout sets\n")
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.middlebury", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--flow-root", default=None, help="folder with other-data/ and other-gt-flow/")
    p.add_argument("--stereo-root", default=None, help="folder of 2001 scenes (tsukuba/, venus/, ...)")
    p.add_argument("--model", default=None, help="flow model (default: the model a flowlib .npz "
                   "given as --weights records, else the embedded default)")
    p.set_defaults(default_model=_zoo.DEFAULT_FLOW_MODEL)
    p.add_argument("--weights", default=None)
    p.add_argument("--stereo-model", default=_zoo.DEFAULT_STEREO_MODEL)
    p.add_argument("--stereo-weights", default=None)
    p.add_argument("--json", default=None, type=output_file(".json"))
    p.add_argument("--save-viz", default=None)
    add_run_flags(p)
    args = p.parse_args(argv)
    synthetic = not (args.flow_root or args.stereo_root)
    flow_root, stereo_root = args.flow_root, args.stereo_root
    if synthetic:
        base = synthetic_root()
        flow_root, stereo_root = base / "flow", base / "stereo"
    results = []
    if flow_root:
        model = flowlib.load_model(flow_model_name(args), args.weights)
        samples = data.index_middlebury_flow(flow_root)
        with journal_for(args, "middlebury-flow", model, flow_root) as journal:
            results.append(evaluation.evaluate_middlebury_flow(
                model, samples, progress=not args.no_progress, on_prediction=viz_saver(args.save_viz, "flow"),
                journal=journal))
    if stereo_root:
        model = flowlib.load_model(args.stereo_model, args.stereo_weights)
        samples = data.index_middlebury_stereo(stereo_root)
        with journal_for(args, "middlebury-stereo", model, stereo_root) as journal:
            results.append(evaluation.evaluate_middlebury_stereo(
                model, samples, progress=not args.no_progress, on_prediction=viz_saver(args.save_viz, "stereo"),
                journal=journal))
    report(results, args.json, {"flow_root": str(flow_root), "stereo_root": str(stereo_root),
                                "synthetic": synthetic})
    return 0


if __name__ == "__main__":
    sys.exit(main())
