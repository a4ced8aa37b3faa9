"""The model benchmark on whatever accelerator ``jax.devices()`` offers, in one call.

    python -m benchmarks.gpu [--json OUT] [--repeats 20] [--dtypes float32 bfloat16]
    python -m benchmarks.gpu --quick        # tiny sizes, 2 runs: checks the script (CPU ok)

Runs flowlib's models (random, well-scaled weights; speed does not depend on their values)
at the sizes of flowlib's accelerator targets and prints each time and memory as a ratio to
its target (< 1: met):

* FlowNetC at 500x1000: <= 10 ms and <= 1 GB,
* CFNet at KITTI size (375x1242, maxdisp 256): <= 0.1 s,
* SpyNet at Sintel size (436x1024): <= 20 ms.

Per model, size and dtype: compile time, median / best time over ``--repeats`` calls
(``jax.block_until_ready``, after one warm-up call), XLA's static peak estimate
(``memory_analysis``) and, where the device reports it, the allocator's peak
(``memory_stats()["peak_bytes_in_use"]``, cumulative over the process, so it is read after
each model and is an upper bound for that model). No PyTorch peer. The JSON is written
(atomically) after every model, so a run cut short keeps what it measured. Budget: about
1-2 minutes per model on one GPU, well inside 8 minutes; ``--max-seconds`` caps each timing
loop.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import jax
import numpy as np

from benchmarks._timing import environment, format_bytes, format_table, write_json
from benchmarks.models import (
    cpu_description,
    flowlib_model,
    init_variables,
    measure_jax,
)

# (model, label, (H, W), target seconds, target bytes or None)
TARGETS = (
    ("flownetc", "500x1000", (500, 1000), 0.010, 1e9),
    ("cfnet", "kitti 375x1242", (375, 1242), 0.100, None),
    ("spynet", "sintel 436x1024", (436, 1024), 0.020, None),
    # A target chosen here, not stated by an issue: RAFT's paper reports 10 frames/s at
    # 1088x436 with 32 updates on a GTX 1080 Ti; 12 updates on one current GPU within half that.
    ("raft", "sintel 440x1024, 12 updates", (440, 1024), 0.050, None),
)
QUICK_SIZES = {"flownetc": (64, 64), "cfnet": (64, 128), "spynet": (64, 64), "raft": (64, 64)}


def _device_peak() -> int | None:
    stats = getattr(jax.devices()[0], "memory_stats", lambda: None)()
    return None if not stats else stats.get("peak_bytes_in_use")


def bench(name: str, size: tuple[int, int], dtype: str, *, repeats: int,
          max_seconds: float) -> dict[str, Any]:
    model, mode = flowlib_model(name, dtype)
    variables = init_variables(model, "float32")
    rng = np.random.default_rng(0)
    x1, x2 = (jax.device_put(rng.random((1, *size, 3), np.float32)) for _ in range(2))

    def forward(variables, a, b):
        return getattr(model.module.apply(variables, a, b), model.output)

    j = measure_jax(forward, (variables, x1, x2), runs=repeats, max_seconds=max_seconds,
                     rss=False)
    m = j["measurement"]
    return {"model": name, "size": f"{size[0]}x{size[1]}", "dtype": dtype, "bf16_mode": mode,
            "compile_s": m.compile_s, "median_ms": m.median_s * 1e3, "best_ms": m.min_s * 1e3,
            "runs": m.runs, "xla_peak_bytes": m.peak_bytes, "device_peak_bytes": _device_peak(),
            "bf16_convs": j["bf16_convs"], "convs": j["convs"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--dtypes", nargs="+", choices=["float32", "bfloat16"],
                        default=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--max-seconds", type=float, default=20.0,
                        help="stop a timing loop after this long (at least 2 runs)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, float32, 2 runs: checks that the script works")
    parser.add_argument("--json", metavar="OUT", default="gpu_benchmark.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.dtypes, args.repeats, args.max_seconds = ["float32"], 2, 5.0
    env = environment(dtype=",".join(args.dtypes),
                      precision=jax.config.jax_default_matmul_precision)
    devices = jax.devices()
    header = [f"devices: {', '.join(str(d) for d in devices)} (backend {jax.default_backend()})",
              cpu_description()]
    print("\n".join(header), flush=True)
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for name, label, size, target_s, target_bytes in TARGETS:
        run_size = QUICK_SIZES[name] if args.quick else size
        for dtype in args.dtypes:
            print(f"[{name} {run_size} {dtype}] ...", file=sys.stderr, flush=True)
            row = bench(name, run_size, dtype, repeats=args.repeats,
                        max_seconds=args.max_seconds)
            row["target"] = f"{name} {label}: <= {target_s * 1e3:g} ms" + (
                f", <= {target_bytes / 1e9:g} GB" if target_bytes else "")
            row["time_vs_target"] = row["median_ms"] / (target_s * 1e3)
            peak = row["device_peak_bytes"] or row["xla_peak_bytes"]
            if target_bytes and peak:
                row["memory_vs_target"] = peak / target_bytes
            row["at_target_size"] = not args.quick
            rows.append(row)
            write_json(args.json, {"environment": env, "header": header, "quick": args.quick,
                                   "elapsed_s": time.perf_counter() - start, "results": rows})
    print(format_table([{**r, "xla_peak": format_bytes(r["xla_peak_bytes"]),
                         "device_peak": format_bytes(r["device_peak_bytes"])} for r in rows],
                       [("model", "model"), ("size", "size"), ("dtype", "dtype"),
                        ("compile_s", "compile s"), ("median_ms", "median ms"),
                        ("best_ms", "best ms"), ("runs", "n"), ("xla_peak", "XLA peak"),
                        ("device_peak", "device peak"), ("time_vs_target", "time/target"),
                        ("memory_vs_target", "memory/target")]))
    for r in rows:
        note = "" if r["at_target_size"] else " (--quick: not the target size)"
        ratios = f"time {r['time_vs_target']:.2f}x target" + (
            f", memory {r['memory_vs_target']:.2f}x" if "memory_vs_target" in r else "")
        print(f"target {r['target']} [{r['dtype']}]: {ratios}{note}")
    print(f"elapsed {time.perf_counter() - start:.0f} s; JSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
