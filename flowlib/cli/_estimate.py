"""``flowlib estimate``: optical flow of an image pair, or streamed over a folder of frames
or a video; part of :mod:`flowlib.cli`."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowlib.cli import _args as cli_args
from flowlib.cli import _model as cli_model
from flowlib import _zoo
from flowlib.cli._args import UsageError


def cmd_estimate(args: argparse.Namespace) -> None:
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
    if not (args.output or args.viz or args.arrows):
        raise UsageError("nothing to write: pass -o OUT (.flo, .pfm, KITTI .png or .npy), "
                         "--viz PICTURE and/or --arrows PICTURE")
    cli_args.check_outputs((args.output, cli_args.FLOW_FORMATS, "-o"),
                           (args.viz, cli_args.PICTURE_FORMATS, "--viz"),
                           (args.arrows, cli_args.PICTURE_FORMATS,
                            "--arrows (an image for a pair)"))
    cli_args.check_distinct(args.sources, (args.output, "-o"), (args.viz, "--viz"),
                            (args.arrows, "--arrows"))
    image1, image2 = cli_args.read_pair(*args.sources)
    cli_args.check_image_size(args.sources[0], *image1.shape[:2])
    model = cli_model.load_model(args, "flow")
    flow = flowlib.estimate(image1, image2, model)
    written = []
    if args.output:
        io.write_flow(args.output, flow)
        written.append(cli_args.written_note(args.output))
    if args.viz:
        io.write_image(args.viz, viz.flow_picture(flow, max_norm=args.max_norm,
                                                  legend=args.legend))
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
    cli_args.check_distinct(args.sources, (args.video, "--video"), (args.arrows, "--arrows"))
    if args.output is not None and Path(args.output).exists() and not Path(args.output).is_dir():
        raise ValueError(f"-o {args.output}: exists and is not a folder "
                         "(a sequence writes one flow file per pair)")
    if args.output is not None and Path(args.output).suffix.lower() in cli_args.FLOW_FORMATS:
        raise UsageError(f"-o {args.output}: a sequence writes one flow file per pair into a "
                         "folder; name a folder (and --format for the file type)")
    if args.output is not None:
        _check_creatable(Path(args.output))
    if args.video or args.arrows:
        video.require_video_backend()  # before a model is loaded, not after


def _check_creatable(folder: Path) -> None:
    """The output folder exists, or its nearest existing parent is a folder we may write in
    (it is created when the first flow file is written)."""
    import os

    parent = folder
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"-o {folder}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"-o {folder}: cannot write in {parent}")


def _check_frame_names(args: argparse.Namespace, source: Any, every: int) -> None:
    """Refuse flow files that would replace the source's own frames (``-o`` the frames'
    folder with ``--format png``)."""
    if args.output is None or source.kind != "folder" or not Path(args.output).is_dir():
        return
    if not cli_args.same_file(args.output, source.path):
        return
    frames = {p.name for p in source.files}
    ext = args.format or "flo"
    for index in range(0, len(source.files) - 1, every):
        name = f"{source.frame_name(index)}.{ext}"
        if name in frames:
            raise UsageError(f"-o {args.output}: the flow file {name} would overwrite the frame "
                             f"{name} of {source.path}; name another folder")


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
    size = source.check_sizes()  # a folder's frames all have one size: fail before any output
    if size is not None:
        cli_args.check_image_size(source.path, size[1], size[0])
    _check_frame_names(args, source, every)
    out_dir = None if args.output is None else Path(args.output)
    fps = args.fps if args.fps is not None else (source.fps or 24.0) / every
    model = cli_model.load_model(args, "flow")
    written: list[Path] = []
    try:
        n = _stream_flows(args, source, lambda a, b: flowlib.estimate(a, b, model), out_dir,
                          fps, pairs, written)
    except Exception as err:
        if not written:
            raise
        done = written[0].name + (f" ... {written[-1].name}" if len(written) > 1 else "")
        were = "was" if len(written) == 1 else "were"
        message = (f"{str(err).strip().splitlines()[0]} (before it, "
                   f"{cli_args.count(len(written), 'complete flow file')} {were} written to "
                   f"{out_dir}: {done}; no video was written)")
        raise RuntimeError(message) from err
    if n == 0:
        raise ValueError(f"{source.path}: needs at least 2 frames"
                         f"{f' (with --every {every})' if every > 1 else ''}")
    report = [f"{cli_args.count(n, 'flow file')} to {out_dir}"] if out_dir is not None else []
    report += [f"{p} ({cli_args.count(n, 'frame')} at {fps:g} fps)"
               for p in (args.video, args.arrows) if p]
    print(f"wrote {', '.join(report)}")


def _stream_flows(args: argparse.Namespace, source: Any, predict: Callable[..., Any],
                  out_dir: Path | None, fps: float, pairs: int | None,
                  written: list[Path]) -> int:
    """Flow of every pair into the flow files and videos; returns the number of pairs.
    Flow files are named after the pair's first frame and appended to ``written``."""
    from flowlib import io, video, viz

    n = 0
    with contextlib.ExitStack() as stack:
        colour = stack.enter_context(video.VideoWriter(args.video, fps=fps)) if args.video else None
        arrows = stack.enter_context(video.VideoWriter(args.arrows, fps=fps)) if args.arrows \
            else None
        bar = stack.enter_context(cli_model.progress(args.quiet, total=pairs, unit="frame", desc="flow"))
        try:
            for index, frame, flow in video.pairwise_flow(
                source, predict, batch_size=args.batch_size, every=args.every or 1
            ):
                if out_dir is not None:
                    if not written:
                        out_dir.mkdir(parents=True, exist_ok=True)
                    path = out_dir / f"{source.frame_name(index)}.{args.format or 'flo'}"
                    io.write_flow(path, flow)
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


_ESTIMATE_DESCRIPTION = (
    "Two images:     flowlib estimate IMG1 IMG2 [-o flow.flo] [--viz flow.png]\n"
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
                   help="pair: flow file: .flo, .pfm, .npy or .png (KITTI 16-bit encoding: data "
                   "for flowlib/KITTI tools, not a picture; --viz writes one); sequence: folder")
    s.add_argument("--viz", default=None, help="pair: a colour-coded picture "
                   f"({', '.join(cli_args.PICTURE_FORMATS)}), with or without -o")
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
    s.set_defaults(func=cmd_estimate)
