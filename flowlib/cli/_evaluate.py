"""The evaluate command: benchmark protocols on a dataset folder, or on a small synthetic set
in its layout; part of :mod:`flowlib.cli`.

    flowlib evaluate sintel [--root PATH] [--pass clean final] [--split training|test]
        [--submission DIR [--zip]]
    flowlib evaluate kitti|kitti-flow|kitti-stereo [--root PATH] [--task flow|stereo|both]
        [--year 2015|2012] [--gt occ noc] [--split training|testing] [--submission DIR [--zip]]
    flowlib evaluate middlebury|middlebury-flow|middlebury-stereo [--root PATH]
        [--flow-root PATH] [--stereo-root PATH]

and on every benchmark: the model flags (``--model``/``--weights`` for the run's flow model,
or its stereo model when stereo is its only task; ``--stereo-model``/``--stereo-weights``),
``--limit N``, ``--batch-size B``, ``--json OUT``, ``--save-viz DIR``, ``--resume``,
``--journal-dir DIR``. ``python -m benchmarks.sintel|kitti|middlebury`` run this command.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowlib import _zoo
from flowlib.cli import _args as cli_args
from flowlib.cli import _model as cli_model
from flowlib.cli._args import UsageError

#: The title note of a table measured on a set flowlib renders itself (no --root).
SYNTHETIC_NOTE = ("SYNTHETIC: a small set flowlib renders itself in the official layout "
                  "(not the benchmark's data; pass --root for real figures)")

TASKS = ("flow", "stereo")


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """One benchmark name of ``flowlib evaluate``: its family ("sintel", "kitti",
    "middlebury") and the tasks it runs without ``--task``."""

    family: str
    tasks: tuple[str, ...]


BENCHMARKS = {
    "sintel": Benchmark("sintel", ("flow",)),
    "kitti": Benchmark("kitti", TASKS),
    "kitti-flow": Benchmark("kitti", ("flow",)),
    "kitti-stereo": Benchmark("kitti", ("stereo",)),
    "middlebury": Benchmark("middlebury", TASKS),
    "middlebury-flow": Benchmark("middlebury", ("flow",)),
    "middlebury-stereo": Benchmark("middlebury", ("stereo",)),
}

#: Flags that only some families take: ``dest -> (flag, families)``.
_FAMILY_FLAGS = {
    "passes": ("--pass", ("sintel",)),
    "year": ("--year", ("kitti",)),
    "gt": ("--gt", ("kitti",)),
    "split": ("--split", ("sintel", "kitti")),
    "submission": ("--submission", ("sintel", "kitti")),
    "task": ("--task", ("kitti", "middlebury")),
}


@dataclasses.dataclass
class _Run:
    """One table: a benchmark's samples, the evaluator and how to name its journal."""

    task: str
    label: str  # names its journal: e.g. "sintel-training-clean"
    samples: list
    evaluate: Callable[..., Any]
    root: Path
    synthetic: bool
    pictures: bool = True  # --save-viz writes its predictions (once per model and pair)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from flowlib import evaluation

    bench = BENCHMARKS[args.benchmark]
    _check_flags(args, bench)
    cli_args.check_outputs((args.json, (".json",), "--json"))
    tasks = _tasks(args, bench)
    test_split = "test" if bench.family == "sintel" else "testing"
    split = args.split or (test_split if args.submission is not None else "training")
    submit = args.submission is not None or split != "training"
    if submit and args.submission is None:
        raise UsageError(f"--split {split} has no ground truth: pass --submission DIR")
    if args.zip and args.submission is None:
        raise UsageError("--zip zips the submission folder: pass --submission DIR")
    if "stereo" not in tasks and (args.stereo_model or args.stereo_weights):
        raise UsageError("--stereo-model / --stereo-weights: this run has no stereo task")
    models = {task: _model_args(args, task, tasks) for task in tasks}
    roots = {task: _root(args, bench, task, tasks) for task in tasks}
    # Index everything first: a wrong root fails before a model is loaded or downloaded.
    plans = {task: _plan(args, bench.family, task, *roots[task], split) for task in tasks}
    results = []
    for task in tasks:
        model = cli_model.load_model(models[task], task)
        for run in plans[task]:
            if submit:
                out = evaluation.write_submission(model, run.samples, args.submission,
                                                  resume=args.resume, progress=not args.quiet)
                print(f"wrote {cli_args.count(len(run.samples), f'{task} prediction')} "
                      f"under {out}")
                continue
            with _journal(args, run, model) as journal:
                result = run.evaluate(model, run.samples, progress=not args.quiet,
                                      on_prediction=_viz_saver(args.save_viz, run),
                                      journal=journal,
                                      **({"batch_size": args.batch_size}
                                         if bench.family == "sintel" else {}))
            result.record.update(root=str(run.root.resolve()), synthetic=run.synthetic)
            print(result.table(note=SYNTHETIC_NOTE if run.synthetic else None))
            print()
            results.append(result)
    if submit and args.zip:
        print(f"wrote {evaluation.zip_folder(args.submission)}")
    if args.json is not None and results:
        from flowlib._files import atomic_write

        records = [json.loads(r.to_json()) for r in results]
        atomic_write(args.json, (json.dumps(records, indent=1) + "\n").encode("utf-8"))
        print(f"wrote {args.json}")


def _check_flags(args: argparse.Namespace, bench: Benchmark) -> None:
    for dest, (flag, families) in _FAMILY_FLAGS.items():
        if getattr(args, dest) is not None and bench.family not in families:
            raise UsageError(f"{flag} is for {' and '.join(families)}, not {args.benchmark}")
    split = args.split
    if split is not None and split != "training":
        want = "test" if bench.family == "sintel" else "testing"
        if split != want:
            raise UsageError(f"--split {split}: {bench.family}'s split without ground truth is "
                             f"'{want}'")


def _tasks(args: argparse.Namespace, bench: Benchmark) -> tuple[str, ...]:
    if args.task is not None:
        tasks = TASKS if args.task == "both" else (args.task,)
        if not set(tasks) <= set(bench.tasks):
            raise UsageError(f"--task {args.task}: {args.benchmark} is {bench.tasks[0]} only")
        return tasks
    given = tuple(t for t in bench.tasks if getattr(args, f"{t}_root") is not None)
    if bench.family == "middlebury" and given:  # Middlebury's sets are separate folders
        return given
    return bench.tasks


def _root(args: argparse.Namespace, bench: Benchmark, task: str, tasks: tuple[str, ...]
          ) -> tuple[Path, bool]:
    """``(folder, synthetic)`` of ``task``'s dataset: its flag, --root, else the synthetic set."""
    from flowlib.data import synthetic

    for other in TASKS:
        if getattr(args, f"{other}_root") is not None and other not in tasks:
            raise UsageError(f"--{other}-root: this run has no {other} task")
    own = getattr(args, f"{task}_root")
    if args.root is not None and bench.family == "middlebury" and len(tasks) > 1:
        raise UsageError("Middlebury's flow and stereo sets are separate folders: pass "
                         "--flow-root and --stereo-root (or --task with --root)")
    root = own if own is not None else args.root
    if root is None:
        name = "sintel" if bench.family == "sintel" else f"{bench.family}-{task}"
        return synthetic.benchmark_set(name), True
    if not os.path.isdir(root):
        flag = f"--{task}-root" if own is not None else "--root"
        raise FileNotFoundError(f"{flag} {root}: no such folder")
    return Path(root), False


def _plan(args: argparse.Namespace, family: str, task: str, root: Path, synthetic: bool,
          split: str) -> list[_Run]:
    """The runs of ``task`` on ``split`` (one per Sintel pass or KITTI ground truth),
    indexed."""
    from flowlib import data, evaluation
    from flowlib.evaluation.kitti import index_kitti

    limit = args.limit
    if family == "sintel":
        return [_Run(task, f"sintel-{split}-{pass_}",
                     data.index_sintel(root, split=split, pass_=pass_)[:limit],
                     evaluation.evaluate_sintel, root, synthetic)
                for pass_ in args.passes or ("clean", "final")]
    if family == "kitti":
        year = args.year or 2015
        evaluate = (evaluation.evaluate_kitti_flow if task == "flow"
                    else evaluation.evaluate_kitti_stereo)
        if split != "training" or args.submission is not None:
            samples = index_kitti(root, task=task, year=year, split=split)[:limit]
            return [_Run(task, f"kitti{year}-{task}-{split}", samples, evaluate, root,
                         synthetic)]
        runs = []
        for gt in args.gt or ("occ", "noc"):
            try:
                samples = index_kitti(root, task=task, year=year, split="training", gt=gt)
            except ValueError as err:
                if gt == "noc" and args.gt is None:  # the noc ground truth is optional
                    print(f"skipping noc: {err}")
                    continue
                raise
            runs.append(_Run(task, f"kitti{year}-{task}-{gt}", samples[:limit], evaluate,
                             root, synthetic, pictures=not runs))
        return runs
    if task == "flow":
        samples, evaluate = data.index_middlebury_flow(root), evaluation.evaluate_middlebury_flow
    else:
        samples = data.index_middlebury_stereo(root)
        evaluate = evaluation.evaluate_middlebury_stereo
    return [_Run(task, f"middlebury-{task}", samples[:limit], evaluate, root, synthetic)]


def _model_args(args: argparse.Namespace, task: str, tasks: tuple[str, ...]
                ) -> argparse.Namespace:
    """The arguments :func:`flowlib.cli._model.load_model` reads for ``task``'s model:
    --model/--weights name the flow model, or the stereo model of a stereo-only run;
    --stereo-model/--stereo-weights name the stereo model. Model settings apply to the
    model whose task declares them."""
    given_stereo = args.stereo_model is not None or args.stereo_weights is not None
    if task == "flow" or (tasks == ("stereo",) and not given_stereo):
        model, weights = args.model, args.weights
    else:
        if tasks == ("stereo",) and (args.model is not None or args.weights is not None):
            raise UsageError("a stereo-only run takes --model/--weights or --stereo-model/"
                             "--stereo-weights, not both")
        model, weights = args.stereo_model, args.stereo_weights
    chosen = argparse.Namespace(**vars(args))
    chosen.model, chosen.weights = model, weights
    chosen.default_model = (_zoo.DEFAULT_FLOW_MODEL if task == "flow"
                            else _zoo.DEFAULT_STEREO_MODEL)
    if not args.model_settings:  # the settings' flags were not added: none was given
        return chosen
    for flag, users in cli_model.option_flags(TASKS).items():
        dest = users[0][1].name
        if getattr(args, dest, None) is None:
            continue
        if not any(spec.task in tasks for spec, _ in users):
            raise UsageError(f"{flag} applies to {' and '.join(s.name for s, _ in users)}, "
                             f"which this run does not use")
        if not any(spec.task == task for spec, _ in users):
            setattr(chosen, dest, None)  # the other task's setting
    return chosen


def _journal(args: argparse.Namespace, run: _Run, model: Any) -> Any:
    """The journal of this (run, model, weights, root): every run writes one, and
    ``--resume`` reuses it, so a killed run continues where it stopped."""
    from flowlib import hub
    from flowlib.evaluation import Journal

    identity = {"benchmark": run.label, "model": model.name,
                "weights": str(model.meta.get("weights")), "root": str(run.root.resolve())}
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    folder = Path(args.journal_dir) if args.journal_dir else hub.cache_dir() / "eval-journals"
    path = folder / f"{run.label}-{digest}.jsonl"
    journal = Journal(path, identity, resume=args.resume)
    if journal.done:
        print(f"{run.label}: resuming, {len(journal.done)} pairs already evaluated ({path})")
    return journal


def _viz_saver(folder: str | None, run: _Run) -> Callable[[Any, Any], None] | None:
    """``on_prediction`` writing each prediction's colour coding to
    ``folder/<sample name>.png`` (the names hold the pass or task: ``clean_alley_1_...``)."""
    if folder is None or not run.pictures:
        return None
    from flowlib import viz

    out = Path(folder)

    def save(sample: Any, prediction: Any) -> None:
        out.mkdir(parents=True, exist_ok=True)
        rgb = (viz.flow_to_rgb(prediction) if run.task == "flow"
               else viz.disparity_to_rgb(prediction))
        viz.save_png(out / f"{sample.name.replace('/', '_')}.png", rgb)

    return save


def add_evaluate_parser(sub: Any) -> None:
    s = sub.add_parser(
        "evaluate", aliases=["benchmark"],
        help="evaluate on a benchmark (training split), or write its test submission",
        description="Print a benchmark's metrics for a model and optionally save the result "
        "records as JSON; or write the test split's submission layout. Without a root, the "
        "benchmark runs on a small synthetic set in its official layout that flowlib renders "
        "(cached under $FLOWLIB_HOME); its tables say SYNTHETIC. Every pair's result is "
        "journalled, so a killed run continues with --resume.",
    )
    cli_args.model_flags(s, None, tasks=TASKS,
                         batch="Sintel: pairs per forward pass (default 1); KITTI and "
                         "Middlebury images differ in size, so their evaluators run one pair "
                         "at a time")
    s.add_argument("benchmark", choices=list(BENCHMARKS),
                   help="kitti and middlebury run flow and stereo (see --task)")
    s.add_argument("--root", default=None,
                   help="the dataset folder (official layout); default: the synthetic set")
    s.add_argument("--flow-root", default=None, metavar="PATH",
                   help="the flow set's folder where it differs from --root (Middlebury's "
                   "other-data/ and other-gt-flow/)")
    s.add_argument("--stereo-root", default=None, metavar="PATH",
                   help="the stereo set's folder where it differs from --root (Middlebury "
                   "2001 scenes)")
    s.add_argument("--task", default=None, choices=["flow", "stereo", "both"],
                   help="kitti, middlebury: which task (default: both; middlebury: the tasks "
                   "whose root is given, if any)")
    s.add_argument("--stereo-model", default=None,
                   help=f"the stereo model of a run with both tasks (default: the model "
                   f"--stereo-weights records, else {_zoo.DEFAULT_STEREO_MODEL})")
    s.add_argument("--stereo-weights", default=None, help="its weights (as --weights)")
    s.add_argument("--pass", dest="passes", nargs="+", default=None,
                   choices=["clean", "final"], help="Sintel passes (default: clean final)")
    s.add_argument("--year", type=int, default=None, choices=[2012, 2015],
                   help="KITTI year (default 2015)")
    s.add_argument("--gt", nargs="+", default=None, choices=["occ", "noc"],
                   help="KITTI ground truth: all pixels (occ) and/or the non-occluded ones "
                   "(noc); default: both, noc where the tree has it")
    s.add_argument("--split", default=None, choices=["training", "test", "testing"],
                   help="training (default; ground truth) or the test split (Sintel: test, "
                   "KITTI: testing), which needs --submission")
    s.add_argument("--submission", default=None, metavar="DIR",
                   help="write the benchmark's submission layout here instead of scoring")
    s.add_argument("--zip", action="store_true", help="also zip the submission folder")
    s.add_argument("--limit", type=cli_args.positive_int, default=None,
                   help="only the first N pairs of each table")
    s.add_argument("--json", default=None, type=cli_args.output_file((".json",)),
                   help="write the result records here (a list, one per table)")
    s.add_argument("--save-viz", default=None, metavar="DIR",
                   help="write colour-coded predictions to DIR/<pair>.png")
    s.add_argument("--resume", action="store_true",
                   help="skip pairs a killed run of the same command already evaluated")
    s.add_argument("--journal-dir", default=None, metavar="DIR",
                   help="folder of the per-pair journals (default: "
                   "$FLOWLIB_HOME/eval-journals)")
    s.add_argument("--no-progress", dest="quiet", action="store_true",
                   default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_evaluate)
