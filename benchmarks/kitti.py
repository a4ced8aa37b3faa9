"""KITTI 2012/2015 flow and stereo evaluation and submission.

    python -m benchmarks.kitti --root PATH [--task flow|stereo|both] [--year 2015|2012]
        [--model M] [--stereo-model M] [--weights W] [--split training|testing]
        [--limit N] [--json OUT] [--save-viz DIR] [--submission DIR [--zip]] [--resume]

Flow: EPE (mean of per-image means) and Fl (pooled), on ``flow_occ`` ("all") and, when
present, ``flow_noc``. Stereo: D1 (pooled) and EPE on ``disp_occ`` and ``disp_noc``.
Without ``--root`` it runs on a small **synthetic** KITTI-layout set that flowlib renders
itself (not KITTI numbers).
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import numpy as np

import flowlib
from benchmarks._evalcli import add_common, flow_model_name, journal_for, report, viz_saver
from flowlib import _zoo, evaluation, hub, io
from flowlib.evaluation.kitti import index_kitti

SYNTHETIC_VERSION = "v1"


def synthetic_root() -> Path:
    """Render (once) KITTI-2015-layout sets at 375x1242: ``flow/`` and ``stereo/``, 3 pairs each."""
    import shutil

    from flowlib.data import synthetic

    root = hub.cache_dir() / f"synthetic-kitti-{SYNTHETIC_VERSION}"
    if (root / ".complete").is_file():
        return root
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    h, w = 375, 1242

    def u8(x: np.ndarray) -> np.ndarray:
        return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)

    for sub, folders in (("flow", ("image_2", "flow_occ", "flow_noc")),
                         ("stereo", ("image_2", "image_3", "disp_occ_0", "disp_noc_0"))):
        for folder in folders:
            (tmp / sub / "training" / folder).mkdir(parents=True)
    for i in range(3):
        name = f"{i:06d}_10.png"
        pair = synthetic.flow_pair(7000 + i, h, w)
        t = tmp / "flow" / "training"
        io.write_image(t / "image_2" / name, u8(pair["image1"]))
        io.write_image(t / "image_2" / f"{i:06d}_11.png", u8(pair["image2"]))
        io.write_kitti_flow(t / "flow_occ" / name, pair["flow"])
        io.write_kitti_flow(t / "flow_noc" / name, pair["flow"], valid=~pair["occlusions"])
        st = synthetic.stereo_pair(8000 + i, h, w, max_disparity=96)
        t = tmp / "stereo" / "training"
        io.write_image(t / "image_2" / name, u8(st["left"]))
        io.write_image(t / "image_3" / name, u8(st["right"]))
        io.write_kitti_disparity(t / "disp_occ_0" / name, st["disparity"])
        io.write_kitti_disparity(t / "disp_noc_0" / name, st["disparity"], valid=~st["occlusions"])
    (tmp / ".complete").write_text("flowlib synthetic KITTI-layout sets\n")
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.kitti", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(p, default_model=_zoo.DEFAULT_FLOW_MODEL)
    p.add_argument("--task", default="both", choices=["flow", "stereo", "both"])
    p.add_argument("--year", type=int, default=2015, choices=[2012, 2015])
    p.add_argument("--stereo-model", default=_zoo.DEFAULT_STEREO_MODEL)
    p.add_argument("--stereo-weights", default=None)
    p.add_argument("--split", default="training", choices=["training", "testing"])
    p.add_argument("--submission", default=None)
    p.add_argument("--zip", action="store_true")
    args = p.parse_args(argv)

    synthetic = args.root is None
    base = synthetic_root() if synthetic else Path(args.root)
    results = []
    tasks = ["flow", "stereo"] if args.task == "both" else [args.task]
    for task in tasks:
        root = base / task if synthetic else base
        if task == "flow":
            model = flowlib.load_model(flow_model_name(args), args.weights)
            evaluate = evaluation.evaluate_kitti_flow
        else:
            model = flowlib.load_model(args.stereo_model, args.stereo_weights)
            evaluate = evaluation.evaluate_kitti_stereo
        # index_kitti: a tree with only the non-occluded ground truth is told to use noc.
        index = functools.partial(index_kitti, task=task)
        if args.split == "testing" or args.submission:
            if not args.submission:
                raise SystemExit("the testing split has no ground truth: pass --submission DIR")
            samples = index(root, year=args.year, split=args.split)[: args.limit]
            evaluation.write_submission(model, samples, args.submission, progress=not args.no_progress)
            print(f"wrote {len(samples)} {task} predictions under {args.submission}")
            continue
        for gt in ("occ", "noc"):
            try:
                samples = index(root, year=args.year, split="training", gt=gt)[: args.limit]
            except ValueError as err:
                if gt == "noc":  # the noc ground truth is optional
                    print(f"skipping noc: {err}")
                    continue
                raise
            with journal_for(args, f"kitti{args.year}-{task}-{gt}", model, root) as journal:
                results.append(evaluate(model, samples, progress=not args.no_progress,
                                        on_prediction=viz_saver(args.save_viz, task) if gt == "occ" else None,
                                        journal=journal))
    if args.submission and args.zip:
        print(f"wrote {evaluation.zip_folder(args.submission)}")
    report(results, args.json, {"root": str(base), "synthetic": synthetic})
    return 0


if __name__ == "__main__":
    sys.exit(main())
