"""How much ``dtype="bfloat16"`` changes each model's output on the shared real pairs, and
how fast it is here.

    python -m benchmarks.dtype_accuracy [--models spynet-official spynet cfnet]
        [--repeats 3] [--json OUT]

For each model and real pair (``../shared/data``; see its README): the flow / disparity in
float32 and in bfloat16 (same weights, ``flowlib.load_model(..., dtype=...)``), the mean and
99th-percentile end-point difference between the two, each one's error against the ground
truth, and the best-of-``repeats`` forward time of each (jitted, after one warm-up call).

Models: ``spynet-official`` = SpyNet with the official sintel-final weights
(``../shared/data/weights``); ``spynet`` / ``cfnet`` = flowlib's embedded weights. FlowNet has
no weights on this machine (the official ones need a download), so it is not listed; its
bfloat16 parity is covered by ``tests/models/test_dtype.py`` on random weights.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.models import cpu_description

SHARED = Path(os.environ.get("FLOWLIB_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DATA = SHARED / "data"
SPYNET_OFFICIAL = DATA / "weights" / "spynet-pytorch-sintel-final" / "network-sintel-final.pytorch"


def flow_pairs() -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, image1, image2, gt flow, valid) of the shared real flow pairs."""
    from flowlib import io

    out = []
    for pass_ in ("clean", "final"):
        d = DATA / "sintel" / "training"
        flow, valid = io.read_flo(d / "flow" / "alley_1" / "frame_0002.flo")
        out.append((f"sintel-{pass_} alley_1 1024x436",
                    io.read_image(d / pass_ / "alley_1" / "frame_0002.png"),
                    io.read_image(d / pass_ / "alley_1" / "frame_0003.png"), flow, valid))
    for scene in ("RubberWhale", "Venus"):
        flow, valid = io.read_flo(DATA / "middlebury-flow" / "other-gt-flow" / scene / "flow10.flo")
        valid &= np.all(np.abs(flow) < 1e9, axis=-1)
        frames = DATA / "middlebury-flow" / "other-data" / scene
        out.append((f"middlebury {scene}", io.read_image(frames / "frame10.png"),
                    io.read_image(frames / "frame11.png"), flow, valid))
    k = DATA / "kitti2015" / "training"
    flow, valid = io.read_kitti_flow(k / "flow_noc" / "000000_10.png")
    out.append(("kitti2015 000000 1242x375", io.read_image(k / "image_2" / "000000_10.png"),
                io.read_image(k / "image_2" / "000000_11.png"), flow, valid))
    return out


def stereo_pairs() -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, left, right, gt disparity, valid) of the shared real stereo pairs."""
    from flowlib import io

    k = DATA / "kitti2015" / "training"
    disp, valid = io.read_kitti_disparity(k / "disp_occ_0" / "000000_10.png")
    out = [("kitti2015 000000 1242x375", io.read_image(k / "image_2" / "000000_10.png"),
            io.read_image(k / "image_3" / "000000_10.png"), disp, valid)]
    for scene in ("tsukuba", "venus"):
        d = DATA / "middlebury-stereo" / scene
        scale = float((d / "info.txt").read_text().split()[0])
        gt = io.read_image(d / "groundtruth.png")
        gt = (gt[..., 0] if gt.ndim == 3 else gt) * 255.0 / scale
        out.append((f"middlebury {scene}", io.read_image(d / "imL.png"),
                    io.read_image(d / "imR.png"), gt, gt > 0))
    return out


def _error(out: np.ndarray, *, gt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-pixel end-point error (flow) or absolute error (disparity) over valid pixels."""
    err = np.abs(out - gt)
    return (np.sqrt(np.sum(err**2, axis=-1)) if err.ndim == 3 else err)[valid]


def _timed(model: Any, a: np.ndarray, b: np.ndarray, repeats: int) -> tuple[np.ndarray, float]:
    import jax

    x1, x2 = jax.numpy.asarray(a[None]), jax.numpy.asarray(b[None])
    out = np.asarray(jax.block_until_ready(model(x1, x2)))[0]  # compile + warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(model(x1, x2))
        best = min(best, time.perf_counter() - t0)
    return out, best


def compare(label: str, name: str, weights: Any, pairs: list, repeats: int) -> list[dict]:
    import flowlib

    models = {dt: flowlib.load_model(name, weights, dtype=dt, progress=False)
              for dt in ("float32", "bfloat16")}
    rows = []
    for pair, a, b, gt, valid in pairs:
        (o32, t32), (o16, t16) = (_timed(models[dt], a, b, repeats) for dt in models)
        diff = np.abs(o16 - o32)
        diff = np.sqrt(np.sum(diff**2, axis=-1)) if diff.ndim == 3 else diff
        epe = functools.partial(_error, gt=gt, valid=valid)
        row = {"model": label, "pair": pair, "mean_change_px": float(diff.mean()),
               "p99_change_px": float(np.percentile(diff, 99)), "max_change_px": float(diff.max()),
               "error_f32": float(epe(o32).mean()), "error_bf16": float(epe(o16).mean()),
               "f32_s": t32, "bf16_s": t16, "outputs_float32": o16.dtype == np.float32}
        rows.append(row)
        print(f"{label:16s} {pair:28s} change mean {row['mean_change_px']:.4f} px  p99 "
              f"{row['p99_change_px']:.4f}  max {row['max_change_px']:.3f} | error vs GT "
              f"{row['error_f32']:.3f} -> {row['error_bf16']:.3f} | f32 {t32 * 1e3:.0f} ms, "
              f"bf16 {t16 * 1e3:.0f} ms ({t32 / t16:.2f}x)", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["spynet-official", "spynet", "cfnet"],
                        choices=["spynet-official", "spynet", "cfnet"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"needs the shared data folder at {DATA} (FLOWLIB_SHARED)", file=sys.stderr)
        return 2
    print(cpu_description())
    print("error vs GT: flow EPE / disparity absolute error in px over valid GT pixels; "
          f"times: best of {args.repeats}, jitted, one image pair")
    rows = []
    for label in args.models:
        if label == "spynet-official":
            rows += compare(label, "spynet", SPYNET_OFFICIAL, flow_pairs(), args.repeats)
        elif label == "spynet":
            rows += compare(label, "spynet", None, flow_pairs(), args.repeats)
        else:
            rows += compare(label, "cfnet", None, stereo_pairs(), args.repeats)
    if args.json:
        from benchmarks._timing import write_json

        write_json(args.json, {"cpu": cpu_description(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
