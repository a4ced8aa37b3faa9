"""The ``flowlib`` command line.

Every sub-command prints a one-line message and exits non-zero on failure; ``--debug``
shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

SAMPLE_FLOW = Path(__file__).resolve().parent / "assets" / "sample.flo"


def _write_flow_png(path: str, flow: np.ndarray, valid: np.ndarray | None, max_norm: float | None,
                    legend: bool) -> None:
    from flowlib import viz

    rgb = viz.flow_to_rgb(flow, max_norm=max_norm, valid=valid)
    if legend:
        h = rgb.shape[0]
        side = max(32, min(h, 256))
        wheel = viz.colorwheel_legend(side)
        pad = np.zeros((h, side, 3), np.uint8)
        pad[: min(h, side), :] = wheel[: min(h, side)]
        rgb = np.concatenate([rgb, pad], axis=1)
    viz.save_png(path, rgb)


def _cmd_viz(args: argparse.Namespace) -> None:
    from flowlib import io

    flow, valid = io.read_flow(args.input)
    _write_flow_png(args.output, flow, valid, args.max_norm, args.legend)
    print(f"wrote {args.output} ({flow.shape[1]}x{flow.shape[0]} flow from {args.input})")


def _cmd_demo(args: argparse.Namespace) -> None:
    from flowlib import io

    flow, valid = io.read_flow(SAMPLE_FLOW)
    _write_flow_png(args.output, flow, valid, None, True)
    print(f"wrote {args.output}: colour-coded sample flow ({flow.shape[1]}x{flow.shape[0]}) with legend")


def _cmd_estimate(args: argparse.Namespace) -> None:
    import flowlib
    from flowlib import io

    model = flowlib.load_model(args.model, args.weights)
    flow = flowlib.estimate(args.image1, args.image2, model)
    io.write_flow(args.output, flow)
    msg = f"wrote {args.output}"
    if args.viz:
        _write_flow_png(args.viz, flow, None, args.max_norm, False)
        msg += f" and {args.viz}"
    print(msg)


def _cmd_stereo(args: argparse.Namespace) -> None:
    import flowlib
    from flowlib import io, viz

    model = flowlib.load_model(args.model, args.weights)
    disp = flowlib.estimate_disparity(args.left, args.right, model)
    io.write_disparity(args.output, disp)
    msg = f"wrote {args.output}"
    if args.viz:
        viz.save_png(args.viz, viz.disparity_to_rgb(disp))
        msg += f" and {args.viz}"
    print(msg)


def _cmd_convert(args: argparse.Namespace) -> None:
    from flowlib.convert.__main__ import convert

    convert(args.model, args.src, args.dst)
    print(f"wrote {args.dst}")


def _cmd_download(args: argparse.Namespace) -> None:
    import flowlib

    model = flowlib.load_model(args.name)
    print(f"{model.meta.get('weights')}: ready ({model.meta.get('source_url', 'local')})")


def _cmd_models(args: argparse.Namespace) -> None:
    from flowlib import _zoo

    for name, entry in sorted(_zoo.MODELS.items()):
        for variant, ckpt in entry.checkpoints.items():
            mark = "*" if variant == entry.default_weights else " "
            print(f"{mark} {name}:{variant:<16} {entry.task:<6} {ckpt.training_data:<28} {ckpt.license}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flowlib", description="Optical flow and stereo in JAX.")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("demo", help="colour-code the bundled sample flow to a PNG (works offline)")
    s.add_argument("-o", "--output", default="flowlib-demo.png")
    s.set_defaults(func=_cmd_demo)

    s = sub.add_parser("viz", help="colour-code a flow file (.flo, .pfm, KITTI .png)")
    s.add_argument("input")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--max-norm", type=float, default=None, help="fixed normalisation (pixels)")
    s.add_argument("--legend", action="store_true", help="append the colour-wheel legend")
    s.set_defaults(func=_cmd_viz)

    s = sub.add_parser("estimate", help="optical flow between two images")
    s.add_argument("image1")
    s.add_argument("image2")
    s.add_argument("-o", "--output", required=True, help=".flo, .pfm or KITTI .png")
    s.add_argument("--model", default="spynet")
    s.add_argument("--weights", default=None)
    s.add_argument("--viz", default=None, help="also write a colour-coded PNG")
    s.add_argument("--max-norm", type=float, default=None)
    s.set_defaults(func=_cmd_estimate)

    s = sub.add_parser("stereo", help="disparity of a rectified stereo pair")
    s.add_argument("left")
    s.add_argument("right")
    s.add_argument("-o", "--output", required=True, help="KITTI .png (16-bit) or .pfm")
    s.add_argument("--model", default="cfnet")
    s.add_argument("--weights", default=None)
    s.add_argument("--viz", default=None, help="also write a colour-coded PNG")
    s.set_defaults(func=_cmd_stereo)

    s = sub.add_parser("convert", help="convert official weights to a flowlib .npz")
    s.add_argument("model")
    s.add_argument("src")
    s.add_argument("dst")
    s.set_defaults(func=_cmd_convert)

    s = sub.add_parser("download", help="download and convert named weights into the cache")
    s.add_argument("name", help="model:variant, e.g. spynet:sintel-final")
    s.set_defaults(func=_cmd_download)

    s = sub.add_parser("models", help="list models and their named weights")
    s.set_defaults(func=_cmd_models)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("flowlib: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # one line for users, the traceback under --debug
        if args.debug:
            raise
        print(f"flowlib {args.command}: error: {err}".splitlines()[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
