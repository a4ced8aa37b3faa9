"""The ``flowlib`` command line.

    flowlib demo [-o demo.png] [--stereo s.png]    flow (and disparity) on a synthetic pair (offline)
    flowlib estimate IMG1 IMG2 -o flow.flo [--viz flow.png] [--arrows arrows.png]
    flowlib estimate FRAMES_DIR|VIDEO -o OUT_DIR [--video flow.mp4] [--arrows arrows.mp4]
    flowlib stereo LEFT RIGHT -o disp.png [--viz disp_color.png]
    flowlib viz flow.flo -o flow.png [--max-norm N] [--legend]
    flowlib evaluate sintel|kitti-flow|kitti-stereo|middlebury-flow|middlebury-stereo --root PATH
    flowlib train MODEL [...]                      (python -m flowlib.train's arguments)
    flowlib convert MODEL SRC DST | download NAME | models

Flags shared by every command that runs a model: ``--model``, ``--weights``, ``--device
cpu|gpu|tpu``, ``--batch-size``, ``--dtype float32|bfloat16``; on every command: ``--quiet``
(no progress bars) and ``--debug``. ``--device``, ``--quiet`` and ``--debug`` may also come
before the command. A failure prints one line on stderr and exits 1 (usage errors exit 2);
``--debug`` shows the full traceback instead.

JAX is imported only after the arguments are parsed, so ``--device`` can still choose the
platform (``JAX_PLATFORMS``) before JAX initialises.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np


#: Benchmarks of ``flowlib evaluate``: task, default model.
BENCHMARKS = {
    "sintel": ("flow", "spynet"),
    "kitti-flow": ("flow", "spynet"),
    "kitti-stereo": ("stereo", "cfnet"),
    "middlebury-flow": ("flow", "spynet"),
    "middlebury-stereo": ("stereo", "cfnet"),
}

_INSTALL_HINT = {
    "gpu": "install a GPU build of JAX, e.g. pip install -U 'jax[cuda12]'",
    "tpu": "install JAX's TPU support: pip install -U 'jax[tpu]'",
    "cpu": "check the JAX installation",
}


class UsageError(Exception):
    """Arguments that parse but do not fit together (exit status 2, like argparse)."""


# ------------------------------------------------------------------------------------ helpers


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


def _load_model(args: argparse.Namespace, task: str) -> Any:
    import flowlib
    from flowlib import _zoo

    # The task is known from the zoo table: fail before any download or weight loading.
    entry = _zoo.get(args.model.split(":", 1)[0])
    if entry.task != task:
        raise ValueError(
            f"--model {args.model} is a {entry.task} model; this command needs a {task} model"
        )
    _select_device(args.device)
    return flowlib.load_model(args.model, args.weights, progress=not args.quiet,
                              dtype=args.dtype)


def _check_input(path: str, what: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} {path}: no such file or folder")


def _check_output_folder(path: str) -> None:
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise FileNotFoundError(f"output {path}: folder {folder} does not exist")


def _flow_png(
    flow: np.ndarray, valid: np.ndarray | None, max_norm: float | None, legend: bool
) -> np.ndarray:
    from flowlib import viz

    rgb = viz.flow_to_rgb(flow, max_norm=max_norm, valid=valid)
    if legend:
        h = rgb.shape[0]
        side = max(32, min(h, 256))
        wheel = viz.colorwheel_legend(side)
        pad = np.zeros((h, side, 3), np.uint8)
        pad[: min(h, side), :] = wheel[: min(h, side)]
        rgb = np.concatenate([rgb, pad], axis=1)
    return rgb


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

    _check_output_folder(args.output)
    if args.stereo:
        _check_output_folder(args.stereo)
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
        model = flowlib.load_model("cfnet", progress=not args.quiet)
        disp = flowlib.estimate_disparity(pair["left"], pair["right"], model=model)
        viz.stereo_figure(pair["left"], disp, pair["disparity"], path=args.stereo)
        epe = float(np.mean(np.abs(disp - pair["disparity"])))
        print(f"wrote {args.stereo}: cfnet disparity on a synthetic {w}x{h} pair, "
              f"EPE {epe:.2f} px, {time.perf_counter() - t0:.1f} s")


def _cmd_viz(args: argparse.Namespace) -> None:
    from flowlib import io, viz

    _check_input(args.input, "flow file")
    _check_output_folder(args.output)
    flow, valid = io.read_flow(args.input)
    viz.save_png(args.output, _flow_png(flow, valid, args.max_norm, args.legend))
    print(f"wrote {args.output} ({flow.shape[1]}x{flow.shape[0]} flow from {args.input})")


def _cmd_estimate(args: argparse.Namespace) -> None:
    if len(args.sources) > 2:
        raise UsageError(
            "estimate takes two images, or one folder of frames / video file; "
            f"got {len(args.sources)} inputs"
        )
    for source in args.sources:
        _check_input(source, "input")
    if len(args.sources) == 2:
        _estimate_pair(args)
    else:
        _estimate_sequence(args)


def _estimate_pair(args: argparse.Namespace) -> None:
    import flowlib
    from flowlib import io, viz

    misplaced = [
        flag
        for flag, value in (("--video", args.video), ("--every", args.every), ("--fps", args.fps))
        if value is not None
    ]
    if misplaced:
        raise UsageError(f"{', '.join(misplaced)}: only for a folder of frames or a video file")
    if args.output is None:
        raise UsageError("the two-image form needs -o OUT (.flo, .pfm or KITTI .png)")
    for path in (args.output, args.viz, args.arrows):
        if path is not None:
            _check_output_folder(path)
    # float32 keeps 16-bit images' precision; the model sees exactly what estimate(path) sees.
    image1 = io.read_image(args.sources[0])
    image2 = io.read_image(args.sources[1])
    if image1.shape != image2.shape:
        raise ValueError(
            f"{args.sources[1]}: size {image2.shape[1]}x{image2.shape[0]} differs from "
            f"{args.sources[0]} ({image1.shape[1]}x{image1.shape[0]})"
        )
    model = _load_model(args, "flow")
    flow = flowlib.estimate(image1, image2, model)
    io.write_flow(args.output, flow)
    written = [args.output]
    if args.viz:
        viz.save_png(args.viz, viz.flow_to_rgb(flow, max_norm=args.max_norm))
        written.append(args.viz)
    if args.arrows:
        viz.save_png(args.arrows, viz.draw_arrows(image1, flow, step=args.arrow_step))
        written.append(args.arrows)
    print(f"wrote {' and '.join(written)}")


def _estimate_sequence(args: argparse.Namespace) -> None:
    import flowlib
    from flowlib import io, video, viz

    if Path(args.sources[0]).suffix.lower() in video.IMAGE_EXTENSIONS:
        raise UsageError(
            f"{args.sources[0]} is a single image: pass two images (IMG1 IMG2), "
            "a folder of frames or a video"
        )
    if args.viz is not None:
        raise UsageError(
            "--viz writes one PNG for an image pair; for a sequence use --video OUT.mp4"
        )
    if not (args.output or args.video or args.arrows):
        raise UsageError("nothing to write: pass -o OUT_DIR (flow files), --video and/or --arrows")
    for path in (args.video, args.arrows):
        if path is not None:
            ext = Path(path).suffix.lower()
            if ext not in video.VIDEO_EXTENSIONS:
                raise UsageError(
                    f"{path}: videos are written as {', '.join(video.VIDEO_EXTENSIONS)}"
                )
            _check_output_folder(path)
    if args.video or args.arrows:
        video.require_video_backend()  # before a model is loaded, not after
    every = 1 if args.every is None else args.every
    if every < 1:
        raise UsageError(f"--every must be >= 1, got {every}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    source = video.open_frames(args.sources[0])
    pairs = None if source.count is None else (source.count - 1) // every
    if pairs == 0:
        raise ValueError(
            f"{source.path}: needs at least 2 frames"
            f"{f' (with --every {every})' if every > 1 else ''}, "
            f"found {source.count}"
        )
    out_dir = None
    if args.output is not None:
        out_dir = Path(args.output)
        if out_dir.exists() and not out_dir.is_dir():
            raise ValueError(
                f"-o {out_dir}: exists and is not a folder "
                "(a sequence writes one flow file per pair)"
            )
        out_dir.mkdir(parents=True, exist_ok=True)
    fps = args.fps if args.fps is not None else (source.fps or 24.0) / every
    model = _load_model(args, "flow")

    def predict(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return flowlib.estimate(a, b, model)

    n = 0
    with contextlib.ExitStack() as stack:
        colour = stack.enter_context(video.VideoWriter(args.video, fps=fps)) if args.video else None
        arrows = (
            stack.enter_context(video.VideoWriter(args.arrows, fps=fps)) if args.arrows else None
        )
        bar = stack.enter_context(_progress(args.quiet, total=pairs, unit="frame", desc="flow"))
        for index, frame, flow in video.pairwise_flow(
            source, predict, batch_size=args.batch_size, every=every
        ):
            if out_dir is not None:
                io.write_flow(out_dir / f"flow_{index:06d}.{args.format}", flow)
            if colour is not None:
                colour.write(viz.flow_to_rgb(flow, max_norm=args.max_norm))
            if arrows is not None:
                arrows.write(viz.draw_arrows(frame, flow, step=args.arrow_step))
            n += 1
            bar.update(1)
        if n == 0:
            raise ValueError(
                f"{source.path}: needs at least 2 frames"
                f"{f' (with --every {every})' if every > 1 else ''}"
            )
    written = []
    if out_dir is not None:
        written.append(f"{n} flow files to {out_dir}")
    written += [f"{p} ({n} frames at {fps:g} fps)" for p in (args.video, args.arrows) if p]
    print(f"wrote {', '.join(written)}")


def _cmd_stereo(args: argparse.Namespace) -> None:
    import flowlib
    from flowlib import io, viz

    for path, what in ((args.left, "left image"), (args.right, "right image")):
        _check_input(path, what)
    for path in (args.output, args.viz):
        if path is not None:
            _check_output_folder(path)
    left = io.read_image(args.left)
    right = io.read_image(args.right)
    if left.shape != right.shape:
        raise ValueError(
            f"{args.right}: size {right.shape[1]}x{right.shape[0]} differs from "
            f"{args.left} ({left.shape[1]}x{left.shape[0]})"
        )
    model = _load_model(args, "stereo")
    disp = flowlib.estimate_disparity(left, right, model)
    io.write_disparity(args.output, disp)
    msg = f"wrote {args.output}"
    if args.viz:
        viz.save_png(args.viz, viz.disparity_to_rgb(disp))
        msg += f" and {args.viz}"
    print(msg)


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from flowlib import data, evaluation, io

    task, default_model = BENCHMARKS[args.benchmark]
    args.model = args.model or default_model
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {args.limit}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.json is not None:
        _check_output_folder(args.json)
    if not os.path.isdir(args.root):
        raise FileNotFoundError(f"--root {args.root}: no such folder")
    # Index first: a wrong root fails before a model is loaded or downloaded.
    bench = args.benchmark
    if bench == "sintel":
        samples = data.index_sintel(args.root, split="training", pass_=args.pass_)
    elif bench == "kitti-flow":
        samples = data.index_kitti_flow(args.root, year=args.year, split="training", gt=args.gt)
    elif bench == "kitti-stereo":
        samples = data.index_kitti_stereo(args.root, year=args.year, split="training", gt=args.gt)
    elif bench == "middlebury-flow":
        samples = data.index_middlebury_flow(args.root)
    else:
        samples = data.index_middlebury_stereo(args.root)
    samples = samples[: args.limit]
    model = _load_model(args, task)
    progress = not args.quiet
    if bench == "sintel":
        result = evaluation.evaluate_sintel(
            model, samples, batch_size=args.batch_size, progress=progress
        )
    elif bench == "kitti-flow":
        result = evaluation.evaluate_kitti_flow(model, samples, progress=progress)
    elif bench == "kitti-stereo":
        result = evaluation.evaluate_kitti_stereo(model, samples, progress=progress)
    elif bench == "middlebury-flow":
        result = evaluation.evaluate_middlebury_flow(model, samples, progress=progress)
    else:
        result = evaluation.evaluate_middlebury_stereo(model, samples, progress=progress)
    result.record["root"] = os.path.abspath(args.root)
    print(result.table())
    if args.json is not None:
        io._atomic_write(args.json, (result.to_json(indent=1) + "\n").encode("utf-8"))
        print(f"wrote {args.json}")


def _cmd_train(args: argparse.Namespace, rest: list[str]) -> int:
    from flowlib.train.__main__ import main as train_main

    _select_device(args.device)
    if args.debug and "--debug" not in rest:
        rest = rest + ["--debug"]
    if args.quiet and "--no-progress" not in rest:
        rest = rest + ["--no-progress"]
    return train_main(rest)


def _cmd_convert(args: argparse.Namespace) -> None:
    from flowlib.convert.__main__ import convert

    _check_input(args.src, "checkpoint")
    _check_output_folder(args.dst)
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
    from flowlib.convert._common import load_weights

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


def _global_flags(p: argparse.ArgumentParser, *, device: bool, top: bool) -> None:
    # On the sub-commands the defaults are SUPPRESSed so that a flag given before the command
    # is not overwritten by the sub-parser's default.
    d = (lambda value: value) if top else (lambda value: argparse.SUPPRESS)
    p.add_argument(
        "--debug", action="store_true", default=d(False), help="show full tracebacks on errors"
    )
    p.add_argument("-q", "--quiet", action="store_true", default=d(False), help="no progress bars")
    if device:
        p.add_argument(
            "--device",
            choices=["cpu", "gpu", "tpu"],
            default=d(None),
            help="JAX platform to run on (default: JAX's choice)",
        )


def _model_flags(
    p: argparse.ArgumentParser, default_model: str | None, *, batch: str | None = None
) -> None:
    _global_flags(p, device=True, top=False)
    p.add_argument(
        "--model",
        default=default_model,
        help=f"model name, optionally name:variant (default: {default_model or 'per benchmark'})",
    )
    p.add_argument(
        "--weights",
        default=None,
        help="named variant or a checkpoint path (.npz, PyTorch file); "
        "default: the model's default",
    )
    p.add_argument(
        "--dtype",
        choices=["float32", "bfloat16"],
        default="float32",
        help="bfloat16: convolutions in bfloat16, float32 accumulation and output (for "
        "accelerators; no faster on CPUs, see README 'Speed')",
    )
    if batch is not None:
        p.add_argument("--batch-size", type=int, default=1, help=batch)


def build_parser() -> argparse.ArgumentParser:
    from flowlib import __version__

    p = argparse.ArgumentParser(
        prog="flowlib",
        description="Optical flow and stereo in JAX.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'flowlib COMMAND --help' for a command's options.",
    )
    p.add_argument("--version", action="version", version=f"flowlib {__version__}")
    _global_flags(p, device=True, top=True)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser(
        "demo",
        help="estimate flow on a synthetic pair with exact ground truth, write a figure (offline)",
    )
    _model_flags(s, "spynet")
    s.add_argument(
        "-o", "--output", default="flowlib-demo.png", help="PNG (default flowlib-demo.png)"
    )
    s.add_argument("--stereo", metavar="PNG", default=None,
                   help="also estimate disparity (CFNet) on a synthetic stereo pair, figure here")
    s.set_defaults(func=_cmd_demo)

    s = sub.add_parser(
        "estimate",
        help="optical flow: an image pair, a folder of frames or a video",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Two images:     flowlib estimate IMG1 IMG2 -o flow.flo [--viz flow.png]\n"
            "                    [--arrows arrows.png]\n"
            "Frames / video: flowlib estimate FRAMES_DIR|VIDEO -o OUT_DIR [--video flow.mp4]\n"
            "                    [--arrows arrows.mp4] [--every K] [--batch-size B]\n\n"
            "A sequence is streamed: frames are decoded as needed and only a batch of them is in\n"
            "memory. OUT_DIR gets flow_%06d.flo, numbered by the pair's first frame. Colours are\n"
            "normalised per frame by its largest motion unless --max-norm fixes the scale\n"
            "(then colours are comparable across frames). Video files need 'flowlib[video]'."
        ),
    )
    _model_flags(
        s,
        "spynet",
        batch="sequence: pairs per forward pass (default 1); more is faster on "
        "accelerators and holds batch+1 frames in memory",
    )
    s.add_argument(
        "sources", nargs="+", metavar="SOURCE", help="IMG1 IMG2, or a folder of frames, or a video"
    )
    s.add_argument(
        "-o",
        "--output",
        default=None,
        help="pair: flow file (.flo, .pfm, KITTI .png); sequence: folder for the flow files",
    )
    s.add_argument("--viz", default=None, help="pair: also write a colour-coded PNG")
    s.add_argument(
        "--video", default=None, help="sequence: colour-coded flow video (.mp4, .mkv, .mov, .webm)"
    )
    s.add_argument(
        "--arrows",
        default=None,
        help="arrow overlay on the first image: PNG (pair) or video (sequence)",
    )
    s.add_argument(
        "--max-norm", type=float, default=None, help="fixed colour normalisation in pixels"
    )
    s.add_argument("--arrow-step", type=int, default=16, help="pixels between arrows (default 16)")
    s.add_argument(
        "--every", type=int, default=None, help="sequence: use every K-th frame (default 1)"
    )
    s.add_argument(
        "--fps",
        type=float,
        default=None,
        help="sequence: output frame rate (default: the video's / K, 24 / K for frames)",
    )
    s.add_argument(
        "--format",
        default="flo",
        choices=["flo", "pfm", "png"],
        help="sequence: flow file format (default flo; png = KITTI 16-bit)",
    )
    s.set_defaults(func=_cmd_estimate)

    s = sub.add_parser("stereo", help="disparity of a rectified stereo pair")
    _model_flags(s, "cfnet")
    s.add_argument("left")
    s.add_argument("right")
    s.add_argument("-o", "--output", required=True, help="KITTI .png (16-bit) or .pfm")
    s.add_argument("--viz", default=None, help="also write a colour-coded PNG")
    s.set_defaults(func=_cmd_stereo)

    s = sub.add_parser("viz", help="colour-code a flow file (.flo, .pfm, KITTI .png)")
    _global_flags(s, device=False, top=False)
    s.add_argument("input")
    s.add_argument("-o", "--output", required=True, help="PNG")
    s.add_argument("--max-norm", type=float, default=None, help="fixed normalisation (pixels)")
    s.add_argument("--legend", action="store_true", help="append the colour-wheel legend")
    s.set_defaults(func=_cmd_viz)

    s = sub.add_parser(
        "evaluate",
        aliases=["benchmark"],
        help="evaluate on a benchmark's training split",
        description="Print the benchmark's metrics for a model (training split, which has "
        "ground truth) and optionally save the result record as JSON.",
    )
    _model_flags(
        s,
        None,
        batch="Sintel: pairs per forward pass (default 1); KITTI and Middlebury images "
        "differ in size, so their evaluators run one pair at a time",
    )
    s.add_argument("benchmark", choices=sorted(BENCHMARKS))
    s.add_argument("--root", required=True, help="the dataset folder (official layout)")
    s.add_argument("--limit", type=int, default=None, help="only the first N pairs")
    s.add_argument("--json", default=None, help="write the result record here")
    s.add_argument(
        "--pass", dest="pass_", default="final", choices=["clean", "final"], help="Sintel pass"
    )
    s.add_argument("--year", type=int, default=2015, choices=[2012, 2015], help="KITTI year")
    s.add_argument(
        "--gt",
        default="occ",
        choices=["occ", "noc"],
        help="KITTI ground truth: all or non-occluded",
    )
    s.set_defaults(func=_cmd_evaluate)

    s = sub.add_parser(
        "train",
        help="train or fine-tune a model (flowlib train --help)",
        add_help=False,
        allow_abbrev=False,
    )
    _global_flags(s, device=True, top=False)
    s.set_defaults(func=None)

    s = sub.add_parser("convert", help="convert official weights to a flowlib .npz")
    _global_flags(s, device=False, top=False)
    s.add_argument("model")
    s.add_argument("src")
    s.add_argument("dst")
    s.set_defaults(func=_cmd_convert)

    s = sub.add_parser("download", help="download and convert named weights into the cache")
    _global_flags(s, device=True, top=False)
    s.add_argument(
        "names", nargs="+", metavar="NAME", help="model:variant, e.g. spynet:sintel-final"
    )
    s.set_defaults(func=_cmd_download)

    s = sub.add_parser(
        "models", help="list models, their named weights, what is cached and where"
    )
    _global_flags(s, device=False, top=False)
    s.set_defaults(func=_cmd_models)
    return p


def _find_subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    return parser  # pragma: no cover


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (argparse exits 2 on bad usage)."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command != "train" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if args.command == "train":
            return _cmd_train(args, rest)
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
