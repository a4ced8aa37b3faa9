"""The ``flowlib`` command line.

    flowlib demo [-o demo.png] [--stereo s.png]    flow (and disparity) on a synthetic pair (offline)
    flowlib estimate IMG1 IMG2 -o flow.flo [--viz flow.png] [--arrows arrows.png]
    flowlib estimate FRAMES_DIR|VIDEO -o OUT_DIR [--video flow.mp4] [--arrows arrows.mp4]
    flowlib stereo LEFT RIGHT -o disp.pfm [--viz disp_color.png] [--max-disp 192]
    flowlib viz flow.flo|disp.pfm -o flow.png [--max-norm N] [--legend]
    flowlib evaluate sintel|kitti|middlebury [--root PATH] [--json OUT] [--resume] [...]
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
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np

from flowlib import _compilation_cache, _zoo
from flowlib.cli import _args as cli_args
from flowlib.cli import _interrupts
from flowlib.cli import _model as cli_model
from flowlib.cli._args import UsageError
from flowlib.cli._estimate import add_estimate_parser
from flowlib.cli._evaluate import add_evaluate_parser

__all__ = ["build_parser", "main", "run"]

# ----------------------------------------------------------------------------------- commands


#: The demo scene: a deterministic synthetic pair (flowlib.data.synthetic), exact ground truth.
DEMO_SEED, DEMO_SIZE = 20261122, (240, 320)


def demo_stereo_pair() -> dict:
    """The ``demo --stereo`` scene: disparities up to 48 px, and texture at the pixel scale on
    every surface (``detail=0.1``, as on the validation scenes PatchStereo's settings were
    chosen on), as real stereo pairs have: a uniform surface has no disparity to find."""
    from flowlib.data import synthetic

    return synthetic.stereo_pair(DEMO_SEED, *DEMO_SIZE, max_disparity=48.0, detail=0.1)


def _cmd_demo(args: argparse.Namespace) -> None:
    """Estimate flow (and with --stereo, disparity) on a synthetic scene with exact ground
    truth, using the default (embedded) weights; write a comparison figure. Offline."""
    import time

    import flowlib
    from flowlib import io, viz
    from flowlib.data import synthetic

    cli_args.check_outputs((args.output, cli_args.PICTURE_FORMATS, "-o"),
                           (args.stereo, cli_args.PICTURE_FORMATS, "--stereo"))
    cli_args.check_distinct((), (args.output, "-o"), (args.stereo, "--stereo"))
    stereo_options = {} if args.maxdisp is None else {"maxdisp": args.maxdisp}
    if args.maxdisp is not None and not args.stereo:
        raise UsageError("--max-disp is for the stereo figure: pass --stereo PICTURE too")
    args.maxdisp = None  # the flow model's settings are the other flags
    h, w = DEMO_SIZE
    t0 = time.perf_counter()
    pair = synthetic.flow_pair(DEMO_SEED, h, w, motion=0.6)
    flow = flowlib.estimate(pair["image1"], pair["image2"], model=cli_model.load_model(args, "flow"))
    io.write_image(args.output, viz.comparison_figure(pair["image1"], flow, pair["flow"]))
    epe = float(np.mean(np.linalg.norm(flow - pair["flow"], axis=-1)))
    zero = float(np.mean(np.linalg.norm(pair["flow"], axis=-1)))
    print(f"wrote {args.output}: {args.model} flow on a synthetic {w}x{h} pair, "
          f"EPE {epe:.2f} px (zero flow: {zero:.2f} px), {time.perf_counter() - t0:.1f} s")
    if args.stereo:
        t0 = time.perf_counter()
        pair = demo_stereo_pair()
        model = flowlib.load_model(_zoo.DEFAULT_STEREO_MODEL, progress=not args.quiet,
                                   **stereo_options)
        cli_model.announce_compiles(model, args.quiet)
        disp = flowlib.estimate_disparity(pair["left"], pair["right"], model=model)
        io.write_image(args.stereo, viz.stereo_figure(pair["left"], disp, pair["disparity"]))
        epe = float(np.mean(np.abs(disp - pair["disparity"])))
        d1 = 100 * float(np.mean(flowlib.metrics.d1_outlier_map(disp, pair["disparity"])))
        print(f"wrote {args.stereo}: {_zoo.DEFAULT_STEREO_MODEL} disparity on a synthetic "
              f"{w}x{h} pair, EPE {epe:.2f} px, D1 {d1:.1f} %, {time.perf_counter() - t0:.1f} s")


def _cmd_viz(args: argparse.Namespace) -> None:
    from flowlib import io, viz

    cli_args.check_input(args.input, "flow or disparity file")
    cli_args.check_outputs((args.output, cli_args.PICTURE_FORMATS, "-o"))
    cli_args.check_distinct((args.input,), (args.output, "-o"))
    try:
        kind, values, valid = io.read_map(args.input, kind="disparity" if args.disparity else None)
    except ValueError as err:
        raise ValueError(f"--disparity: {err}" if args.disparity else str(err)) from None
    if not valid.any():
        print(f"flowlib viz: warning: {args.input} holds no valid {kind} value (all unknown, "
              "NaN or infinite): the picture is black", file=sys.stderr)
    if kind == "flow":
        if args.viz_min is not None or args.viz_max is not None:
            raise UsageError("--min-disp / --max-disp are for disparity maps; flow takes "
                             "--max-norm")
        rgb = viz.flow_picture(values, valid=valid, max_norm=args.max_norm, legend=args.legend)
    else:
        if args.max_norm is not None:
            raise UsageError("--max-norm is for flow; a disparity map takes --min-disp / "
                             "--max-disp")
        rgb = cli_args.disparity_picture(values, valid, args)
    io.write_image(args.output, rgb)
    print(f"wrote {args.output} ({values.shape[1]}x{values.shape[0]} {kind} from {args.input})")


def _cmd_stereo(args: argparse.Namespace) -> None:
    import flowlib
    from flowlib import io

    for path, what in ((args.left, "left image"), (args.right, "right image")):
        cli_args.check_input(path, what)
    if not (args.output or args.viz):
        raise UsageError("nothing to write: pass -o OUT (.pfm, KITTI .png or .npy) and/or "
                         "--viz PICTURE")
    cli_args.check_outputs((args.output, cli_args.DISPARITY_FORMATS, "-o"),
                           (args.viz, cli_args.PICTURE_FORMATS, "--viz"))
    cli_args.check_distinct((args.left, args.right), (args.output, "-o"), (args.viz, "--viz"))
    left, right = cli_args.read_pair(args.left, args.right)
    cli_args.check_image_size(args.left, *left.shape[:2])
    model = cli_model.load_model(args, "stereo")
    with cli_args.range_warnings() as capped:
        disp = flowlib.estimate_disparity(left, right, model)
    written = []
    if args.output:
        io.write_disparity(args.output, disp)
        written.append(cli_args.written_note(args.output))
    if args.viz:
        io.write_image(args.viz, cli_args.disparity_picture(disp, None, args))
        written.append(args.viz)
    print(f"wrote {' and '.join(written)}")
    for warning in capped:
        print(f"flowlib stereo: warning: {warning}", file=sys.stderr)


def _cmd_train(args: argparse.Namespace) -> int:
    import dataclasses

    from flowlib.train.__main__ import run
    from flowlib.train.config import config_from_args

    cli_model.select_device(args.device)
    cfg = config_from_args(args)
    if args.quiet:
        cfg = dataclasses.replace(cfg, progress=False)
    return run(cfg, debug=args.debug)


def _cmd_convert(args: argparse.Namespace) -> None:
    from flowlib.convert.__main__ import convert

    cli_args.check_input(args.src, "checkpoint")
    cli_args.check_outputs((args.dst, (".npz",), "DST"))
    cli_args.check_distinct((args.src,), (args.dst, "DST"))
    convert(args.model, args.src, args.dst)
    print(f"wrote {args.dst}")


def _cmd_download(args: argparse.Namespace) -> None:
    import flowlib
    from flowlib import _zoo, hub

    cli_model.select_device(args.device)
    for name in args.names:
        model_name, _, variant = name.partition(":")
        ckpt = _zoo.spec(model_name).checkpoints.get(variant) if variant else None
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
    """``(name, task, cached, sha-256, licence, trained on)`` per model and variant; the
    weights a model loads without --weights are marked "(embedded)" or "(default)"."""
    from flowlib import _api, _zoo, hub
    from flowlib.weights import load_meta

    rows = []
    for name in sorted(_zoo.MODELS):
        try:
            spec = _zoo.spec(name)
        except ImportError as err:  # a model file missing from a partial install
            rows.append((name, "?", "-", "-", f"(unavailable: {err})", ""))
            continue
        checkpoints = spec.checkpoints
        embedded = _api.embedded_default(name)
        if embedded is not None:
            meta = load_meta(embedded)
            rows.append((f"{name} (embedded)", spec.task, "package", "-",
                         meta.get("license", "?"), f"{meta.get('training_data', '?')} (flowlib)"))
        for variant, ckpt in checkpoints.items():
            default = embedded is None and variant == spec.default_weights
            info = hub.cache_info(ckpt)
            cached = ("converted" if hub.converted_path(name, variant).is_file()
                      else "checkpoint" if info.present else "no")
            licence = ckpt.license.split(" (")[0]
            digest = info.sha256_source or ("prefix" if ckpt.sha256_prefix else "none")
            rows.append((f"{name}:{variant}" + (" (default)" if default else ""), spec.task,
                         cached, digest, licence, ckpt.training_data))
    return rows


def _print_models() -> None:
    """One line per model: name, task, summary and its settings' flags."""
    from flowlib import _zoo

    print("Models (--model NAME; their settings are flags of the commands that run them):")
    specs = []
    for name in sorted(_zoo.MODELS):
        try:
            specs.append(_zoo.spec(name))
        except ImportError as err:  # a model file missing from a partial install
            print(f"  {name}: unavailable ({err})")
    defaults = (_zoo.DEFAULT_FLOW_MODEL, _zoo.DEFAULT_STEREO_MODEL)
    width = max((len(spec.name) for spec in specs), default=0)
    for spec in specs:
        flags = [option.cli_flag for option in spec.options]
        flags += [f"--dtype {d}" for d in spec.dtypes if d != "float32"]
        mark = "*" if spec.name in defaults else " "
        print(f"{mark} {spec.name.ljust(width)}  {spec.task.ljust(6)}  {spec.summary}"
              + (f" [{', '.join(flags)}]" if flags else ""))


def _cmd_models(args: argparse.Namespace) -> None:
    from flowlib import hub

    _print_models()
    print()
    print("Weights (--weights VARIANT or --model NAME:VARIANT):")
    rows = [("MODEL", "TASK", "CACHED", "SHA-256", "LICENCE", "TRAINED ON"), *_model_rows()]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row[:5], widths)]
        print("  " + " ".join(cells + [row[5]]).rstrip())
    cache = hub.cache_dir()
    print()
    for name, module in _zoo.MODELS.items():
        measured = getattr(importlib.import_module(module), "PRESET_MEASURED", {}).get(name)
        for preset, line in (measured or {}).items():
            print(f"{name} --preset {preset:<8} {line}")
    print()
    print("* = the model of its task used without --model; (embedded) = shipped inside the "
          "package and (default) = named: the weights a model loads without --weights")
    print("CACHED: converted = ready to load; checkpoint = downloaded, converted on first load; "
          "no = downloaded on first use (flowlib download NAME)")
    print("SHA-256: published = checked against the authors' hash; recorded = checked against "
          "the first copy downloaded here; prefix = the first download is checked against the "
          "hash prefix in the published file name, then recorded; none = recorded at the "
          "first download")
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
                   help=f"the figure ({', '.join(cli_args.PICTURE_FORMATS)}; default "
                   "flowlib-demo.png, in the current folder)")
    s.add_argument("--stereo", metavar="PICTURE", default=None,
                   help=f"also estimate disparity ({_zoo.DEFAULT_STEREO_MODEL}) on a synthetic "
                        "stereo pair, figure here")
    s.add_argument("--max-disp", dest="maxdisp", type=cli_args.positive_int, default=None,
                   metavar="D", help=f"with --stereo: largest disparity {_zoo.DEFAULT_STEREO_MODEL} "
                   "searches (default: what its weights record)")
    s.set_defaults(func=_cmd_demo)


def add_stereo_parser(sub: Any) -> None:
    s = sub.add_parser("stereo", help="disparity of a rectified stereo pair")
    cli_args.model_flags(s, _zoo.DEFAULT_STEREO_MODEL, tasks=("stereo",))
    s.add_argument("left", help="left image of a rectified pair (the disparity is the left "
                   "view's)")
    s.add_argument("right", help="right image, same size")
    s.add_argument("-o", "--output", default=None,
                   type=cli_args.output_file(cli_args.DISPARITY_FORMATS),
                   help=f"disparity file: .pfm, .npy or .png ({cli_args.KITTI_PNG_NOTE})")
    s.add_argument("--viz", default=None, type=cli_args.output_file(cli_args.PICTURE_FORMATS),
                   help="a colour-coded picture (with or without -o)")
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
    s.add_argument("model", help="zoo model the checkpoint is for (flowlib models lists them)")
    s.add_argument("src", help="the authors' checkpoint: a PyTorch file (.pth, .tar, ...) or, "
                   "for SpyNet, a folder of Torch7 files")
    s.add_argument("dst", type=cli_args.output_file((".npz",)),
                   help="the flowlib .npz to write (load it with --weights DST)")
    s.set_defaults(func=_cmd_convert)


def add_download_parser(sub: Any) -> None:
    s = sub.add_parser("download", help="download and convert named weights into the cache")
    cli_args.global_flags(s, device=True, top=False)
    s.add_argument(
        "names", nargs="+", metavar="NAME", help="model:variant, as flowlib models lists them"
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
    return _parser_and_commands()[0]


def _parser_and_commands() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser, and each command's (and alias's) subparser by name (for its usage errors)."""
    from flowlib import __version__

    p = argparse.ArgumentParser(
        prog="flowlib",
        description="Optical flow and stereo in JAX.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'flowlib COMMAND --help' for a command's options.",
    )
    p.add_argument("--version", action="version", version=f"flowlib {__version__}")
    cli_args.global_flags(p, device=True, top=True)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           parser_class=cli_args.CommandParser)
    for add_parser in COMMAND_PARSERS:
        add_parser(sub)
    return p, sub.choices


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (argparse exits 2 on bad usage).

    The command runs under :class:`~flowlib.cli._interrupts.Interrupts`: SIGINT and SIGTERM
    end the process at once (status 130 / 143) with one line naming the files written.
    """
    parser, commands = _parser_and_commands()
    with _interrupts.Interrupts("flowlib", ignore=_compilation_cache.is_entry) as guard:
        args = parser.parse_args(argv)
        guard.program = f"flowlib {args.command}"
        try:
            if args.command == "train":
                guard.hint = "re-run the same command to resume from the last checkpoint"
                return guard.call(lambda: _cmd_train(args))
            guard.call(lambda: args.func(args))
        except UsageError as err:
            commands[args.command].error(str(err))
        except BrokenPipeError:  # the reader went away (flowlib models | head): end quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 128 + signal.SIGPIPE
        except Exception as err:  # one line for users, the traceback under --debug
            if args.debug:
                raise
            message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            print(f"flowlib {args.command}: error: {message}", file=sys.stderr)
            return 1
    return 0


def run() -> NoReturn:
    """The ``flowlib`` program: :func:`main`, then the process ends at once with its status
    (``os._exit`` after flushing stdout and stderr; every file was written and synced before
    its name was printed). Skipping the interpreter's shutdown means no signal can land in
    it (JAX's garbage-collector callback would print and drop it) and XLA's threads are not
    torn down under running code."""
    with _interrupts.Interrupts("flowlib", ignore=_compilation_cache.is_entry):
        try:
            code: Any = main()
        except SystemExit as stop:  # --help, --version, usage errors
            code = stop.code
        if code is None:
            code = 0
        elif not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
        _interrupts.exit_now(code)


if __name__ == "__main__":
    run()
