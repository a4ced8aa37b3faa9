"""The ``flowlib`` command line.

    flowlib demo [-o demo.png] [--stereo s.png]    flow (and disparity) on a synthetic pair (offline)
    flowlib estimate IMG1 IMG2 -o flow.flo [--viz flow.png] [--arrows arrows.png]
    flowlib estimate FRAMES_DIR|VIDEO -o OUT_DIR [--video flow.mp4] [--arrows arrows.mp4]
    flowlib stereo LEFT RIGHT -o disp.pfm [--viz disp_color.png] [--max-disp 192]
    flowlib viz flow.flo|disp.pfm -o flow.png [--max-norm N] [--legend]
    flowlib evaluate sintel|kitti-flow|kitti-stereo|middlebury-flow|middlebury-stereo --root PATH
    flowlib train MODEL [...]                      (python -m flowlib.train's arguments)
    flowlib convert MODEL SRC DST | download NAME | models

Flags of the commands that run a model (demo, estimate, stereo, evaluate): ``--model``,
``--weights``, ``--device cpu|gpu|tpu``, ``--batch-size``, ``--dtype float32|bfloat16``,
and the model's settings
(``--pyramid-levels``, ``--div-flow``, ``--max-disp``); on every command: ``--quiet`` (no
progress bars) and ``--debug``. The last three may also come before the command. Every output
name is checked (folder, extension) before anything is computed. A failure prints one line on
stderr and exits 1 (usage errors exit 2); ``--debug`` shows the full traceback instead.

Each command has its own ``add_<command>_parser``; argument values are checked by their
``type=`` functions, so a bad value is a usage error before any work starts. JAX is imported
only after the arguments are parsed, so ``--device`` can still choose the platform
(``JAX_PLATFORMS``) before JAX initialises.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flowlib import _zoo
from flowlib import _cli_args as cli_args
from flowlib._cli_args import (  # the argument types are part of the command line's API
    UsageError,
    finite_float,
    output_file,
    positive_float,
    positive_int,
)

__all__ = ["BENCHMARKS", "COMMAND_PARSERS", "UsageError", "build_parser", "finite_float", "main",
           "output_file", "positive_float", "positive_int"]

_INSTALL_HINT = {
    "gpu": "install a GPU build of JAX, e.g. pip install -U 'jax[cuda12]'",
    "tpu": "install JAX's TPU support: pip install -U 'jax[tpu]'",
    "cpu": "check the JAX installation",
}

#: Model settings on the command line: load_model keyword -> (flag, models that take it).
MODEL_OPTION_FLAGS = {
    "max_levels": ("--pyramid-levels", ("spynet",)),
    "div_flow": ("--div-flow", ("flownets", "flownetc")),
    "maxdisp": ("--max-disp", ("cfnet", "patchstereo")),
}


# ---------------------------------------------------------------------------------- helpers


def _select_device(device: str | None) -> None:
    """Make JAX use ``device`` ("cpu", "gpu", "tpu"), failing clearly if it has none."""
    if device is None:
        return
    if "jax" not in sys.modules:
        # Read by JAX when it initialises its backends; "gpu" expands to CUDA or ROCm.
        os.environ["JAX_PLATFORMS"] = device
    import jax

    try:
        devices = jax.devices(device)
    except RuntimeError as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise RuntimeError(
            f"--device {device}: JAX cannot use a {device.upper()} here ({reason}); "
            f"{_INSTALL_HINT[device]}"
        ) from err
    # JAX may have been initialised with several platforms already (a library caller).
    jax.config.update("jax_default_device", devices[0])


def _progress(quiet: bool, **kwargs: Any) -> Any:
    from tqdm.auto import tqdm

    # delay: bars appear only for work that takes more than a second.
    return tqdm(disable=quiet, delay=1.0, dynamic_ncols=True, **kwargs)


def _model_options(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """The model settings given on the command line, checked against the model."""
    options = {}
    for keyword, (flag, models) in MODEL_OPTION_FLAGS.items():
        value = getattr(args, keyword, None)
        if value is None:
            continue
        if name not in models:
            raise UsageError(f"{flag} applies to {' and '.join(models)}, not {name}")
        options[keyword] = value
    return options


def _recorded_model(weights: str | None, task: str | None = None) -> str | None:
    """The zoo model a flowlib ``.npz`` records in its metadata, if it does (and is a model of
    ``task`` when given); None for anything else."""
    if weights is None or not weights.lower().endswith(".npz") or not os.path.isfile(weights):
        return None
    from flowlib import _zoo
    from flowlib.convert._common import load_weights

    model = load_weights(weights)[1].get("model")
    if model not in _zoo.MODELS or (task is not None and _zoo.MODELS[model].task != task):
        return None
    return model


def _load_model(args: argparse.Namespace, task: str) -> Any:
    import flowlib
    from flowlib import _zoo

    if args.model is None:  # the model a flowlib .npz records, else the command's default
        args.model = _recorded_model(args.weights, task) or args.default_model
    # The task is known from the zoo table: fail before any download or weight loading.
    name = args.model.split(":", 1)[0]
    entry = _zoo.get(name)
    if entry.task != task:
        raise ValueError(
            f"--model {args.model} is a {entry.task} model; this command needs a {task} model"
        )
    options = _model_options(args, name)
    _select_device(args.device)
    return flowlib.load_model(args.model, args.weights, progress=not args.quiet,
                              dtype=args.dtype, **options)


# ----------------------------------------------------------------------------------- commands


#: The demo scene: a deterministic synthetic pair (flowlib.data.synthetic), exact ground truth.
DEMO_SEED, DEMO_SIZE = 20261122, (240, 320)


def _cmd_demo(args: argparse.Namespace) -> None:
    """Estimate flow (and with --stereo, disparity) on a synthetic scene with exact ground
    truth, using the default (embedded) weights; write a comparison figure. Offline."""
    import time

    import flowlib
    from flowlib import viz
    from flowlib.data import synthetic

    cli_args.check_outputs((args.output, (".png",), "-o"), (args.stereo, (".png",), "--stereo"))
    h, w = DEMO_SIZE
    t0 = time.perf_counter()
    pair = synthetic.flow_pair(DEMO_SEED, h, w, motion=0.6)
    flow = flowlib.estimate(pair["image1"], pair["image2"], model=_load_model(args, "flow"))
    viz.comparison_figure(pair["image1"], flow, pair["flow"], path=args.output)
    epe = float(np.mean(np.linalg.norm(flow - pair["flow"], axis=-1)))
    zero = float(np.mean(np.linalg.norm(pair["flow"], axis=-1)))
    print(f"wrote {args.output}: {args.model} flow on a synthetic {w}x{h} pair, "
          f"EPE {epe:.2f} px (zero flow: {zero:.2f} px), {time.perf_counter() - t0:.1f} s")
    if args.stereo:
        t0 = time.perf_counter()
        pair = synthetic.stereo_pair(DEMO_SEED, h, w, max_disparity=48.0)
        model = flowlib.load_model(_zoo.DEFAULT_STEREO_MODEL, progress=not args.quiet)
        disp = flowlib.estimate_disparity(pair["left"], pair["right"], model=model)
        viz.stereo_figure(pair["left"], disp, pair["disparity"], path=args.stereo)
        epe = float(np.mean(np.abs(disp - pair["disparity"])))
        print(f"wrote {args.stereo}: cfnet disparity on a synthetic {w}x{h} pair, "
              f"EPE {epe:.2f} px, {time.perf_counter() - t0:.1f} s")


def _cmd_viz(args: argparse.Namespace) -> None:
    from flowlib import io

    cli_args.check_input(args.input, "flow or disparity file")
    cli_args.check_outputs((args.output, cli_args.PICTURE_FORMATS, "-o"))
    kind, values, valid = cli_args.read_map(args.input, args.disparity)
    if kind == "flow":
        if args.viz_min is not None or args.viz_max is not None:
            raise UsageError("--min-disp / --max-disp are for disparity maps; flow takes "
                             "--max-norm")
        rgb = cli_args.flow_picture(values, valid, args.max_norm, args.legend)
    else:
        if args.max_norm is not None:
            raise UsageError("--max-norm is for flow; a disparity map takes --min-disp / "
                             "--max-disp")
        rgb = cli_args.disparity_picture(values, valid, args)
    io.write_image(args.output, rgb)
    print(f"wrote {args.output} ({values.shape[1]}x{values.shape[0]} {kind} from {args.input})")


def _cmd_estimate(args: argparse.Namespace) -> None:
    if len(args.sources) > 2:
        raise UsageError(
            "estimate takes two images, or one folder of frames / video file; "
            f"got {len(args.sources)} inputs"
        )
    for source in args.sources:
        cli_args.check_input(source, "input")
    if len(args.sources) == 2:
        _estimate_pair(args)
    else:
        _estimate_sequence(args)


def _estimate_pair(args: argparse.Namespace) -> None:
    import flowlib
    from flowlib import io, viz

    misplaced = [flag for flag, value in (("--video", args.video), ("--every", args.every),
                                          ("--fps", args.fps), ("--format", args.format))
                 if value is not None]
    if misplaced:
        raise UsageError(f"{', '.join(misplaced)}: only for a folder of frames or a video file")
    if args.output is None:
        raise UsageError("the two-image form needs -o OUT (.flo, .pfm, KITTI .png or .npy)")
    cli_args.check_outputs((args.output, cli_args.FLOW_FORMATS, "-o"), (args.viz, cli_args.PICTURE_FORMATS, "--viz"),
                   (args.arrows, cli_args.PICTURE_FORMATS, "--arrows (an image for a pair)"))
    image1, image2 = cli_args.read_pair(*args.sources)
    model = _load_model(args, "flow")
    flow = flowlib.estimate(image1, image2, model)
    cli_args.write_flow(args.output, flow)
    written = [args.output]
    if args.viz:
        io.write_image(args.viz, cli_args.flow_picture(flow, None, args.max_norm, args.legend))
        written.append(args.viz)
    if args.arrows:
        arrows = viz.draw_arrows(image1, flow, step=args.arrow_step, scale=args.arrow_scale)
        io.write_image(args.arrows, arrows)
        written.append(args.arrows)
    print(f"wrote {' and '.join(written)}")


def _check_sequence_args(args: argparse.Namespace) -> None:
    from flowlib import video

    if Path(args.sources[0]).suffix.lower() in video.IMAGE_EXTENSIONS:
        raise UsageError(f"{args.sources[0]} is a single image: pass two images (IMG1 IMG2), "
                         "a folder of frames or a video")
    if args.viz is not None:
        raise UsageError("--viz writes one picture for an image pair; for a sequence use "
                         "--video OUT.mp4")
    if not (args.output or args.video or args.arrows):
        raise UsageError("nothing to write: pass -o OUT_DIR (flow files), --video and/or --arrows")
    cli_args.check_outputs((args.video, cli_args.VIDEO_FORMATS, "--video"),
                   (args.arrows, cli_args.VIDEO_FORMATS, "--arrows (a video for a sequence)"))
    if args.output is not None and Path(args.output).exists() and not Path(args.output).is_dir():
        raise ValueError(f"-o {args.output}: exists and is not a folder "
                         "(a sequence writes one flow file per pair)")
    if args.output is not None and Path(args.output).suffix.lower() in cli_args.FLOW_FORMATS:
        raise UsageError(f"-o {args.output}: a sequence writes one flow file per pair into a "
                         "folder; name a folder (and --format for the file type)")
    if args.video or args.arrows:
        video.require_video_backend()  # before a model is loaded, not after


def _estimate_sequence(args: argparse.Namespace) -> None:
    import flowlib
    from flowlib import video

    _check_sequence_args(args)
    every = args.every or 1
    source = video.open_frames(args.sources[0])
    pairs = None if source.count is None else (source.count - 1) // every
    if pairs == 0:
        raise ValueError(f"{source.path}: needs at least 2 frames"
                         f"{f' (with --every {every})' if every > 1 else ''}, found {source.count}")
    source.check_sizes()  # a folder's frames all have one size: fail before any output
    out_dir = None if args.output is None else Path(args.output)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    fps = args.fps if args.fps is not None else (source.fps or 24.0) / every
    model = _load_model(args, "flow")
    written: list[Path] = []
    try:
        n = _stream_flows(args, source, lambda a, b: flowlib.estimate(a, b, model), out_dir,
                          fps, pairs, written)
    except Exception as err:
        if not written:
            raise
        done = written[0].name + (f" ... {written[-1].name}" if len(written) > 1 else "")
        message = (f"{str(err).strip().splitlines()[0]} (before it, {len(written)} complete flow "
                   f"files were written to {out_dir}: {done}; no video was written)")
        raise RuntimeError(message) from err
    if n == 0:
        raise ValueError(f"{source.path}: needs at least 2 frames"
                         f"{f' (with --every {every})' if every > 1 else ''}")
    report = [f"{n} flow files to {out_dir}"] if out_dir is not None else []
    report += [f"{p} ({n} frames at {fps:g} fps)" for p in (args.video, args.arrows) if p]
    print(f"wrote {', '.join(report)}")


def _stream_flows(args: argparse.Namespace, source: Any, predict: Callable[..., Any],
                  out_dir: Path | None, fps: float, pairs: int | None,
                  written: list[Path]) -> int:
    """Flow of every pair into the flow files and videos; returns the number of pairs.
    Flow files are named after the pair's first frame and appended to ``written``."""
    from flowlib import video, viz

    n = 0
    with contextlib.ExitStack() as stack:
        colour = stack.enter_context(video.VideoWriter(args.video, fps=fps)) if args.video else None
        arrows = stack.enter_context(video.VideoWriter(args.arrows, fps=fps)) if args.arrows \
            else None
        bar = stack.enter_context(_progress(args.quiet, total=pairs, unit="frame", desc="flow"))
        try:
            for index, frame, flow in video.pairwise_flow(
                source, predict, batch_size=args.batch_size, every=args.every or 1
            ):
                if out_dir is not None:
                    path = out_dir / f"{source.frame_name(index)}.{args.format or 'flo'}"
                    cli_args.write_flow(path, flow)
                    written.append(path)
                if colour is not None:
                    colour.write(viz.flow_to_rgb(flow, max_norm=args.max_norm))
                if arrows is not None:
                    arrows.write(viz.draw_arrows(frame, flow, step=args.arrow_step,
                                                 scale=args.arrow_scale))
                n += 1
                bar.update(1)
        except BaseException:
            bar.leave = False  # the error, not a half-finished bar, is the last line
            raise
    return n


def _cmd_stereo(args: argparse.Namespace) -> None:
    import flowlib
    from flowlib import io

    for path, what in ((args.left, "left image"), (args.right, "right image")):
        cli_args.check_input(path, what)
    cli_args.check_outputs((args.output, cli_args.DISPARITY_FORMATS, "-o"), (args.viz, cli_args.PICTURE_FORMATS, "--viz"))
    left, right = cli_args.read_pair(args.left, args.right)
    model = _load_model(args, "stereo")
    disp = flowlib.estimate_disparity(left, right, model)
    cli_args.write_disparity(args.output, disp)
    msg = f"wrote {args.output}"
    if args.viz:
        io.write_image(args.viz, cli_args.disparity_picture(disp, None, args))
        msg += f" and {args.viz}"
    print(msg)


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """One benchmark of ``flowlib evaluate``.

    Attributes:
      task: "flow" or "stereo".
      default_model: the model used without --model.
      index: ``index(data_module, args) -> samples`` of the training split.
      evaluator: name of the :mod:`flowlib.evaluation` function.
      batched: whether the evaluator takes ``batch_size`` (same-sized images).
    """

    task: str
    default_model: str
    index: Callable[[Any, argparse.Namespace], list]
    evaluator: str
    batched: bool = False


def _index_kitti(task: str) -> Callable[[Any, argparse.Namespace], list]:
    def index(data: Any, args: argparse.Namespace) -> list:
        from flowlib.evaluation.kitti import index_kitti

        return index_kitti(args.root, task=task, year=args.year, split="training", gt=args.gt)

    return index


BENCHMARKS = {
    "sintel": Benchmark(
        "flow", _zoo.DEFAULT_FLOW_MODEL, lambda data, a: data.index_sintel(a.root, split="training",
                                                            pass_=a.pass_),
        "evaluate_sintel", batched=True),
    "kitti-flow": Benchmark("flow", _zoo.DEFAULT_FLOW_MODEL, _index_kitti("flow"), "evaluate_kitti_flow"),
    "kitti-stereo": Benchmark("stereo", _zoo.DEFAULT_STEREO_MODEL, _index_kitti("stereo"), "evaluate_kitti_stereo"),
    "middlebury-flow": Benchmark("flow", _zoo.DEFAULT_FLOW_MODEL, lambda data, a: data.index_middlebury_flow(
        a.root), "evaluate_middlebury_flow"),
    "middlebury-stereo": Benchmark("stereo", _zoo.DEFAULT_STEREO_MODEL, lambda data, a: data.index_middlebury_stereo(
        a.root), "evaluate_middlebury_stereo"),
}


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from flowlib import data, evaluation

    bench = BENCHMARKS[args.benchmark]
    args.model = args.model or _recorded_model(args.weights) or bench.default_model
    cli_args.check_outputs((args.json, (".json",), "--json"))
    if not os.path.isdir(args.root):
        raise FileNotFoundError(f"--root {args.root}: no such folder")
    # Index first: a wrong root fails before a model is loaded or downloaded.
    samples = bench.index(data, args)[: args.limit]
    model = _load_model(args, bench.task)
    batch = {"batch_size": args.batch_size} if bench.batched else {}
    evaluate = getattr(evaluation, bench.evaluator)
    result = evaluate(model, samples, progress=not args.quiet, **batch)
    result.record["root"] = os.path.abspath(args.root)
    print(result.table())
    if args.json is not None:
        cli_args.write_bytes(args.json, (result.to_json(indent=1) + "\n").encode("utf-8"))
        print(f"wrote {args.json}")


def _cmd_train(args: argparse.Namespace) -> int:
    import dataclasses

    from flowlib.train.__main__ import run
    from flowlib.train.config import config_from_args

    _select_device(args.device)
    cfg = config_from_args(args)
    if args.quiet:
        cfg = dataclasses.replace(cfg, progress=False)
    return run(cfg, debug=args.debug)


def _cmd_convert(args: argparse.Namespace) -> None:
    from flowlib.convert.__main__ import convert

    cli_args.check_input(args.src, "checkpoint")
    cli_args.check_outputs((args.dst, (".npz",), "DST"))
    convert(args.model, args.src, args.dst)
    print(f"wrote {args.dst}")


def _cmd_download(args: argparse.Namespace) -> None:
    import flowlib
    from flowlib import _zoo, hub

    _select_device(args.device)
    for name in args.names:
        model_name, _, variant = name.partition(":")
        ckpt = _zoo.get(model_name).checkpoints.get(variant) if variant else None
        if ckpt is None:  # the embedded default, a local path or an unknown variant
            model = flowlib.load_model(name, progress=not args.quiet)
            print(f"{model.meta.get('weights')}: ready ({model.meta.get('source_url', 'local')})")
            continue
        converted = hub.converted_path(model_name, variant)
        had_converted, had_file = converted.is_file(), hub.cache_info(ckpt).present
        model = flowlib.load_model(name, progress=not args.quiet)
        if had_converted:
            source = model.meta.get("source_url", ckpt.url)
            print(f"{name}: found in the cache ({converted}; from {source})")
            continue
        info = hub.cache_info(ckpt)
        if had_file:
            done = f"found {info.path} in the cache"
        else:
            done = f"downloaded {ckpt.url} to {info.path}"
        print(f"{name}: {done} (SHA-256 {info.sha256_source}: {info.sha256}); converted to "
              f"{converted}")


def _cache_origin() -> str:
    if os.environ.get("FLOWLIB_HOME"):
        return "$FLOWLIB_HOME"
    if os.environ.get("XDG_CACHE_HOME"):
        return "$XDG_CACHE_HOME/flowlib"
    return "default; set FLOWLIB_HOME to move it"


def _model_rows() -> list[tuple[str, ...]]:
    """``(mark, name, task, cached, sha-256, licence, trained on)`` per model and variant."""
    from flowlib import _api, _zoo, hub
    from flowlib.weights import load_weights

    rows = []
    for name, entry in sorted(_zoo.MODELS.items()):
        try:
            checkpoints = entry.checkpoints
        except ImportError as err:  # a model file missing from a partial install
            rows.append((" ", name, entry.task, "-", "-", f"(unavailable: {err})", ""))
            continue
        embedded = _api._embedded_default(name)
        if embedded is not None:
            meta = load_weights(embedded)[1]
            rows.append(("*", f"{name} (embedded)", entry.task, "package", "-",
                         meta.get("license", "?"), f"{meta.get('training_data', '?')} (flowlib)"))
        for variant, ckpt in checkpoints.items():
            mark = "*" if embedded is None and variant == entry.default_weights else " "
            info = hub.cache_info(ckpt)
            cached = ("converted" if hub.converted_path(name, variant).is_file()
                      else "checkpoint" if info.present else "no")
            licence = ckpt.license.split(" (")[0]
            rows.append((mark, f"{name}:{variant}", entry.task, cached,
                         info.sha256_source or "none", licence, ckpt.training_data))
    return rows


def _cmd_models(args: argparse.Namespace) -> None:
    from flowlib import hub

    rows = [("", "MODEL", "TASK", "CACHED", "SHA-256", "LICENCE", "TRAINED ON"), *_model_rows()]
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for row in rows:
        cells = [row[0] or " "] + [c.ljust(w) for c, w in zip(row[1:6], widths[1:6])]
        print(" ".join(cells + [row[6]]).rstrip())
    cache = hub.cache_dir()
    print()
    print("* = used when no weights are given (embedded: shipped inside the package)")
    print("CACHED: converted = ready to load; checkpoint = downloaded, converted on first load; "
          "no = downloaded on first use (flowlib download NAME)")
    print("SHA-256: published = checked against the authors' hash; recorded = checked against "
          "the first copy downloaded here; none = recorded at the first download")
    print(f"cache: {cache} ({_cache_origin()}): checkpoints in {cache / 'checkpoints'}, "
          f"converted weights in {cache / 'converted'}")


# ------------------------------------------------------------------------------------- parser


def add_demo_parser(sub: Any) -> None:
    s = sub.add_parser(
        "demo",
        help="estimate flow on a synthetic pair with exact ground truth, write a figure (offline)",
    )
    cli_args.model_flags(s, _zoo.DEFAULT_FLOW_MODEL, tasks=("flow",))
    s.add_argument("-o", "--output", default="flowlib-demo.png",
                   help="PNG (default flowlib-demo.png)")
    s.add_argument("--stereo", metavar="PNG", default=None,
                   help="also estimate disparity (CFNet) on a synthetic stereo pair, figure here")
    s.set_defaults(func=_cmd_demo)


_ESTIMATE_DESCRIPTION = (
    "Two images:     flowlib estimate IMG1 IMG2 -o flow.flo [--viz flow.png]\n"
    "                    [--arrows arrows.png]\n"
    "Frames / video: flowlib estimate FRAMES_DIR|VIDEO -o OUT_DIR [--video flow.mp4]\n"
    "                    [--arrows arrows.mp4] [--every K] [--batch-size B]\n\n"
    "A sequence is streamed: frames are decoded as needed and only a batch of them is in\n"
    "memory. OUT_DIR gets one flow file per pair, named after the pair's first frame\n"
    "(frame_0002.png -> frame_0002.flo; video frames: frame_000000.flo ...). A folder's frames\n"
    "are checked for one size before anything is written; if a run fails later, the error\n"
    "names the flow files written (all complete) and no video is left behind. Colours are\n"
    "normalised per frame by its largest motion unless --max-norm fixes the scale (then\n"
    "colours are comparable across frames). Video files need 'flowlib[video]'."
)


def add_estimate_parser(sub: Any) -> None:
    s = sub.add_parser("estimate", help="optical flow: an image pair, a folder of frames or a "
                       "video", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description=_ESTIMATE_DESCRIPTION)
    cli_args.model_flags(s, _zoo.DEFAULT_FLOW_MODEL, tasks=("flow",),
                 batch="sequence: pairs per forward pass (default 1); more is faster on "
                 "accelerators and holds batch+1 frames in memory")
    s.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="IMG1 IMG2, or a folder of frames, or a video")
    s.add_argument("-o", "--output", default=None,
                   help="pair: flow file (.flo, .pfm, KITTI .png, .npy); sequence: folder")
    s.add_argument("--viz", default=None, help="pair: also write a colour-coded picture "
                   f"({', '.join(cli_args.PICTURE_FORMATS)})")
    s.add_argument("--video", default=None,
                   help=f"sequence: colour-coded flow video ({', '.join(cli_args.VIDEO_FORMATS)})")
    s.add_argument("--arrows", default=None,
                   help="arrow overlay on the first image: a picture (pair) or a video (sequence)")
    cli_args.picture_flags(s, flow=True, disparity=False)
    s.add_argument("--arrow-step", type=cli_args.positive_int, default=16,
                   help="pixels between arrows (default 16)")
    s.add_argument("--arrow-scale", type=cli_args.positive_float, default=None,
                   help="arrow length per pixel of flow (default: from the flow's magnitude, "
                   "so the longer arrows are about one step long)")
    s.add_argument("--every", type=cli_args.positive_int, default=None,
                   help="sequence: use every K-th frame (default 1)")
    s.add_argument("--fps", type=cli_args.positive_float, default=None,
                   help="sequence: output frame rate (default: the video's / K, 24 / K for frames)")
    s.add_argument("--format", default=None, choices=["flo", "pfm", "png", "npy"],
                   help="sequence: flow file format (default flo; png = KITTI 16-bit)")
    s.set_defaults(func=_cmd_estimate)


def add_stereo_parser(sub: Any) -> None:
    s = sub.add_parser("stereo", help="disparity of a rectified stereo pair")
    cli_args.model_flags(s, _zoo.DEFAULT_STEREO_MODEL, tasks=("stereo",))
    s.add_argument("left")
    s.add_argument("right")
    s.add_argument("-o", "--output", required=True, type=cli_args.output_file(cli_args.DISPARITY_FORMATS),
                   help="disparity file: .pfm, KITTI 16-bit .png or .npy")
    s.add_argument("--viz", default=None, type=cli_args.output_file(cli_args.PICTURE_FORMATS),
                   help="also write a colour-coded picture")
    cli_args.picture_flags(s, flow=False, disparity=True)
    s.set_defaults(func=_cmd_stereo)


def add_viz_parser(sub: Any) -> None:
    s = sub.add_parser("viz", help="colour-code a flow or disparity file")
    cli_args.global_flags(s, device=False, top=False)
    s.add_argument("input", help="flow (.flo, 3-channel .pfm, KITTI 16-bit RGB .png, (H, W, 2) "
                   ".npy) or disparity (1-channel .pfm, KITTI 16-bit grey .png, (H, W) .npy)")
    s.add_argument("-o", "--output", required=True, type=cli_args.output_file(cli_args.PICTURE_FORMATS),
                   help=f"picture ({', '.join(cli_args.PICTURE_FORMATS)})")
    s.add_argument("--disparity", action="store_true",
                   help="read the input as a disparity map (default: detected from the file)")
    cli_args.picture_flags(s, flow=True, disparity=True, disparity_aliases=True)
    s.set_defaults(func=_cmd_viz)


def add_evaluate_parser(sub: Any) -> None:
    s = sub.add_parser("evaluate", aliases=["benchmark"],
                       help="evaluate on a benchmark's training split",
                       description="Print the benchmark's metrics for a model (training split, "
                       "which has ground truth) and optionally save the result record as JSON.")
    cli_args.model_flags(s, None, tasks=("flow", "stereo"),
                 batch="Sintel: pairs per forward pass (default 1); KITTI and Middlebury images "
                 "differ in size, so their evaluators run one pair at a time")
    s.add_argument("benchmark", choices=sorted(BENCHMARKS))
    s.add_argument("--root", required=True, help="the dataset folder (official layout)")
    s.add_argument("--limit", type=cli_args.positive_int, default=None, help="only the first N pairs")
    s.add_argument("--json", default=None, type=cli_args.output_file((".json",)),
                   help="write the result record here")
    s.add_argument("--pass", dest="pass_", default="final", choices=["clean", "final"],
                   help="Sintel pass")
    s.add_argument("--year", type=int, default=2015, choices=[2012, 2015], help="KITTI year")
    s.add_argument("--gt", default="occ", choices=["occ", "noc"],
                   help="KITTI ground truth: all or non-occluded")
    s.set_defaults(func=_cmd_evaluate)


def add_train_parser(sub: Any) -> None:
    from flowlib.train import __main__ as train_main
    from flowlib.train.config import add_config_arguments

    s = sub.add_parser(
        "train",
        help="train or fine-tune a model (flowlib train --help)",
        description=train_main.__doc__.replace("python -m flowlib.train", "flowlib train"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(s)  # the same options as python -m flowlib.train, from TrainConfig
    cli_args.global_flags(s, device=True, top=False)
    s.set_defaults(func=_cmd_train)


def add_convert_parser(sub: Any) -> None:
    s = sub.add_parser("convert", help="convert official weights to a flowlib .npz")
    cli_args.global_flags(s, device=False, top=False)
    s.add_argument("model")
    s.add_argument("src")
    s.add_argument("dst", type=cli_args.output_file((".npz",)))
    s.set_defaults(func=_cmd_convert)


def add_download_parser(sub: Any) -> None:
    s = sub.add_parser("download", help="download and convert named weights into the cache")
    cli_args.global_flags(s, device=True, top=False)
    s.add_argument(
        "names", nargs="+", metavar="NAME", help="model:variant, e.g. spynet:sintel-final"
    )
    s.set_defaults(func=_cmd_download)


def add_models_parser(sub: Any) -> None:
    s = sub.add_parser(
        "models", help="list models, their named weights, what is cached and where"
    )
    cli_args.global_flags(s, device=False, top=False)
    s.set_defaults(func=_cmd_models)


COMMAND_PARSERS = (add_demo_parser, add_estimate_parser, add_stereo_parser, add_viz_parser,
                   add_evaluate_parser, add_train_parser, add_convert_parser,
                   add_download_parser, add_models_parser)


def build_parser() -> argparse.ArgumentParser:
    from flowlib import __version__

    p = argparse.ArgumentParser(
        prog="flowlib",
        description="Optical flow and stereo in JAX.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'flowlib COMMAND --help' for a command's options.",
    )
    p.add_argument("--version", action="version", version=f"flowlib {__version__}")
    cli_args.global_flags(p, device=True, top=True)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in COMMAND_PARSERS:
        add_parser(sub)
    return p


def _find_subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    return parser  # pragma: no cover


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (argparse exits 2 on bad usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return _cmd_train(args)
        args.func(args)
    except UsageError as err:
        _find_subparser(parser, args.command).error(str(err))
    except KeyboardInterrupt:
        print("flowlib: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # one line for users, the traceback under --debug
        if args.debug:
            raise
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"flowlib {args.command}: error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
