"""MPI-Sintel evaluation and submission.

    python -m benchmarks.sintel --root PATH [--model M] [--weights W] [--pass clean final]
        [--split training|test] [--limit N] [--json OUT] [--save-viz DIR] [--resume]
        [--submission DIR [--zip]] [--batch-size B]

Training split: EPE all / matched / unmatched and the speed and distance bins, pixel-pooled
per pass (and per scene). Test split: writes the submission layout. Without ``--root`` it
runs on a small **synthetic** Sintel-layout set that flowlib renders itself
(``flowlib.data.synthetic``, cached under ``$FLOWLIB_HOME``), so the whole pipeline can be
demonstrated with no download; its numbers are not Sintel numbers, and its tables say so.
Its final pass is the clean pass with defocus blur, fog and noise
(``synthetic.final_pass``), so the two tables differ as Sintel's do.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import flowlib
from benchmarks._evalcli import add_common, flow_model_name, journal_for, report, viz_saver
from flowlib import _zoo, data, evaluation, hub

SYNTHETIC_VERSION = "v2"  # v2: a rendered final pass (v1 copied clean)


def synthetic_root() -> Path:
    """Render (once) and return the synthetic Sintel-layout set."""
    from flowlib.data import synthetic

    root = hub.cache_dir() / f"synthetic-sintel-{SYNTHETIC_VERSION}"
    done = root / ".complete"
    if not done.is_file():
        tmp = root.with_name(root.name + ".tmp")
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp)
        synthetic.write_sintel_layout(tmp, scenes=2, frames=3, seed=2024)
        (tmp / ".complete").write_text("flowlib synthetic Sintel-layout set\n")
        if root.exists():
            import shutil

            shutil.rmtree(root)
        tmp.rename(root)
    return root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sintel", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common(p, default_model=_zoo.DEFAULT_FLOW_MODEL)
    p.add_argument("--pass", dest="passes", nargs="+", default=["clean", "final"], choices=["clean", "final"])
    p.add_argument("--split", default="training", choices=["training", "test"])
    p.add_argument("--submission", default=None, help="write the test submission layout here")
    p.add_argument("--zip", action="store_true", help="also zip the submission folder")
    args = p.parse_args(argv)

    root = Path(args.root) if args.root else synthetic_root()
    synthetic = args.root is None
    model = flowlib.load_model(flow_model_name(args), args.weights)
    results = []
    for pass_ in args.passes:
        samples = data.index_sintel(root, split=args.split, pass_=pass_)[: args.limit]
        if args.split == "test" or args.submission:
            if not args.submission:
                raise SystemExit("the test split has no ground truth: pass --submission DIR")
            out = evaluation.write_submission(model, samples, args.submission, zip=False,
                                              progress=not args.no_progress)
            print(f"wrote {len(samples)} flows under {out}/{pass_}")
            continue
        with journal_for(args, f"sintel-{args.split}-{pass_}", model, root) as journal:
            result = evaluation.evaluate_sintel(model, samples, batch_size=args.batch_size,
                                                progress=not args.no_progress,
                                                on_prediction=viz_saver(args.save_viz, "flow"),
                                                journal=journal)
        results.append(result)
    if args.submission and args.zip:
        print(f"wrote {evaluation.zip_folder(args.submission)}")
    report(results, args.json, {"root": str(root), "synthetic": synthetic})
    return 0


if __name__ == "__main__":
    sys.exit(main())
