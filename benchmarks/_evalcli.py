"""Shared pieces of the evaluation CLIs (benchmarks.sintel / kitti / middlebury)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np


def add_common(p: argparse.ArgumentParser, *, default_model: str) -> None:
    from benchmarks._args import output_file, positive_int

    p.add_argument("--root", default=None, help="dataset root (default: a synthetic set flowlib generates)")
    p.add_argument("--model", default=None, help="model name (default: the model a flowlib .npz "
                   f"given as --weights records, else {default_model})")
    p.set_defaults(default_model=default_model)
    p.add_argument("--weights", default=None, help="named variant or checkpoint path (default: embedded)")
    p.add_argument("--limit", type=positive_int, default=None, help="evaluate only the first N pairs")
    p.add_argument("--batch-size", type=positive_int, default=1)
    p.add_argument("--json", default=None, type=output_file(".json"),
                   help="write the result record here")
    p.add_argument("--save-viz", default=None, help="folder for colour-coded predictions")
    add_run_flags(p)


def flow_model_name(args: argparse.Namespace) -> str:
    """--model, else the flow model a flowlib .npz --weights records, else the default."""
    from flowlib._api import recorded_model

    return args.model or recorded_model(args.weights, "flow") or args.default_model


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """-q/--quiet (as in the flowlib command line; --no-progress is the old spelling),
    --resume and --journal-dir."""
    p.add_argument("-q", "--quiet", "--no-progress", dest="no_progress", action="store_true",
                   help="no progress bars")
    p.add_argument("--resume", action="store_true",
                   help="skip pairs a previous (killed) run of the same command already evaluated")
    p.add_argument("--journal-dir", default=None,
                   help="folder of per-pair results files (default: $FLOWLIB_HOME/eval-journals)")


def journal_for(args: argparse.Namespace, benchmark: str, model: Any, root: Any) -> Any:
    """The journal of this (benchmark, model, weights, root): every run writes one, and
    ``--resume`` reuses it, so a killed run continues where it stopped."""
    import hashlib

    from flowlib import hub
    from flowlib.evaluation import Journal

    identity = {"benchmark": benchmark, "model": model.name, "weights": str(model.meta.get("weights")),
                "root": str(Path(root).resolve())}
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    folder = Path(args.journal_dir) if args.journal_dir else hub.cache_dir() / "eval-journals"
    path = folder / f"{benchmark}-{digest}.jsonl"
    journal = Journal(path, identity, resume=args.resume)
    if journal.done:
        print(f"{benchmark}: resuming, {len(journal.done)} pairs already evaluated ({path})")
    return journal


def write_json(path: str | os.PathLike, text: str) -> None:
    from flowlib._files import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text.encode("utf-8"))


def viz_saver(folder: str | None, task: str):
    """Callback writing colour-coded predictions named after the sample."""
    if folder is None:
        return None
    from flowlib import viz

    def save(sample: Any, pred: np.ndarray) -> None:
        path = Path(folder) / f"{sample.name.replace('/', '_')}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        rgb = viz.flow_to_rgb(pred) if task == "flow" else viz.disparity_to_rgb(pred)
        viz.save_png(path, rgb)

    return save


#: The title note of a table measured on a set flowlib renders itself (no --root).
SYNTHETIC_NOTE = ("SYNTHETIC: a small set flowlib renders itself in the official layout "
                  "(not the benchmark's data; pass --root for real figures)")


def report(results: list[Any], json_path: str | None, extra: dict[str, Any]) -> None:
    """Print each result's table and write all records to ``json_path`` (atomically)."""
    for result in results:
        result.record.update(extra)
        print(result.table(note=SYNTHETIC_NOTE if extra.get("synthetic") else None))
        print()
    if json_path and results:
        write_json(json_path, json.dumps([json.loads(r.to_json()) for r in results], indent=1))
        print(f"wrote {json_path}")
