"""Speed and memory of the correlation, cost-volume and warping ops at model sizes.

    python -m benchmarks.ops [--quick] [--json OUT] [--dtype float32|bfloat16]
        [--precision highest|high|default] [--only NAME ...]

Cases (features as the models see them):

* ``flownetc``: FlowNetC conv3 features of a 384x512 input, (1, 48, 64, 256), max
  displacement 20, stride 2 (441 channels); warp of a (1, 384, 512, 3) image.
* ``cfnet``: CFNet gw4 features at 1/8 of 384x1248, (1, 48, 156, 160), D = 32 (maxdisp
  256), 40 groups; warp of a (1, 384, 1248, 3) image.
* ``sintel``: FlowNetC conv3 features of a 436x1024 Sintel frame padded to 440x1024,
  (1, 55, 128, 256); warp of a (1, 436, 1024, 3) image.

For each op and implementation: compile time; forward and forward+backward (forward
plus the VJP of a random cotangent w.r.t. every differentiable input) median and IQR;
GFLOP/s from the op's nominal flop count (2 flops per multiply-add) and that as a
percentage of a large float32 matmul timed in the same run; XLA's static peak-memory
estimate; the bandwidth implied by XLA's ``bytes accessed``.
Benchmarks never assert.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks._timing import (
    environment,
    format_bytes,
    format_table,
    forward_backward,
    matmul_peak_flops,
    measure,
    write_json,
)
from flowlib import ops


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    features: tuple[int, int, int, int]  # (B, H, W, C) correlation / cost-volume features
    image: tuple[int, int, int, int]  # (B, H, W, 3) image for the warp
    max_displacement: int = 20
    stride: int = 2
    max_disparity: int | None = None  # set for the stereo case (groupwise cost volume)
    groups: int | None = None


CASES = (
    Case("flownetc", (1, 48, 64, 256), (1, 384, 512, 3)),
    Case("cfnet", (1, 48, 156, 160), (1, 384, 1248, 3), max_disparity=32, groups=40),
    Case("sintel", (1, 55, 128, 256), (1, 436, 1024, 3)),
)

LOCAL_IMPLS = ("banded", "shifted", "patches")
GROUPWISE_IMPLS = ("shifted", "stacked")


def _inputs(shape: tuple[int, ...], dtype: Any, seed: int) -> jax.Array:
    return jax.random.normal(jax.random.PRNGKey(seed), shape, jnp.float32).astype(dtype)


def _row(op: str, case: str, impl: str, pass_: str, m, flops: float | None, peak: float) -> dict:
    row = {
        "op": op,
        "case": case,
        "impl": impl,
        "pass": pass_,
        "median_ms": m.median_s * 1e3,
        "iqr_ms": m.iqr_s * 1e3,
        "runs": m.runs,
        "compile_s": m.compile_s,
        "peak_mem": format_bytes(m.peak_bytes),
        "temp_mem": format_bytes(m.temp_bytes),
        "measurement": m,
        "nominal_flops": flops,
    }
    if flops is not None:
        row["gflops"] = flops / m.median_s / 1e9
        row["pct_peak"] = 100.0 * flops / m.median_s / peak
    if m.xla_bytes is not None:
        row["xla_gbps"] = m.xla_bytes / m.median_s / 1e9
    return row


def _bench_pair(
    rows: list[dict],
    op: str,
    case: str,
    impl: str,
    fn: Callable[..., jax.Array],
    args: tuple[jax.Array, ...],
    argnums: tuple[int, ...],
    flops: float | None,
    peak: float,
    runs: int,
    max_seconds: float,
    backward: bool = True,
) -> None:
    """Forward, then forward + backward (backward costs ~2x the forward flops)."""
    m = measure(fn, *args, runs=runs, warmup=1, max_seconds=max_seconds)
    rows.append(_row(op, case, impl, "fwd", m, flops, peak))
    _print_last(rows)
    if not backward:
        print(
            f"  ({op} {impl} fwd+bwd skipped at size {case}: see the module docstring)",
            file=sys.stderr,
        )
        return
    step, step_args = forward_backward(fn, args, argnums=argnums)
    m = measure(step, *step_args, runs=runs, warmup=1, max_seconds=max_seconds)
    rows.append(_row(op, case, impl, "fwd+bwd", m, None if flops is None else 3 * flops, peak))
    _print_last(rows)


def _print_last(rows: list[dict]) -> None:
    r = rows[-1]
    extra = f" {r['gflops']:.2f} GFLOP/s" if "gflops" in r else ""
    print(
        f"  {r['op']:<22} {r['case']:<9} {r['impl']:<8} {r['pass']:<8} "
        f"{r['median_ms']:9.2f} ms (IQR {r['iqr_ms']:.2f}, "
        f"compile {r['compile_s'] or 0:.2f} s){extra}",
        file=sys.stderr,
        flush=True,
    )


def run(args: argparse.Namespace) -> dict:
    dtype = jnp.dtype(args.dtype)
    precision = None if args.precision == "default" else args.precision
    runs = 3 if args.quick else args.runs
    max_seconds = 1.5 if args.quick else 10.0
    env = environment(dtype=str(dtype), precision=args.precision)
    peak, peak_m = matmul_peak_flops(
        n=1024 if args.quick and jax.default_backend() == "cpu" else 4096,
        precision=precision,
        runs=runs,
    )
    print(
        f"matmul peak (float32, precision={args.precision}): {peak / 1e9:.1f} GFLOP/s",
        file=sys.stderr,
    )
    rows: list[dict] = []
    cases = [c for c in CASES if not args.only or c.name in args.only]
    for case in cases:
        f1 = _inputs(case.features, dtype, 0)
        f2 = _inputs(case.features, dtype, 1)
        if case.max_disparity is None:
            _bench_local(rows, case, f1, f2, quick=args.quick, precision=precision,
                         peak=peak, runs=runs, max_seconds=max_seconds)
        else:
            _bench_groupwise(rows, case, f1, f2, peak=peak, runs=runs, max_seconds=max_seconds)
        _bench_warp(rows, case, dtype, peak, runs, max_seconds)
    return {
        "environment": env,
        "matmul_peak_gflops": peak / 1e9,
        "matmul_peak_measurement": peak_m,
        "quick": args.quick,
        "results": rows,
    }


def _bench_local(rows: list[dict], case: Case, f1: jax.Array, f2: jax.Array, *, quick: bool,
                 precision: Any, peak: float, runs: int, max_seconds: float) -> None:
    """Time ``local_correlation``'s formulations on one case."""
    b, h, w, c = case.features
    radius = case.max_displacement // case.stride
    flops = 2.0 * b * h * w * (2 * radius + 1) ** 2 * c
    # --quick: only the default. "shifted" compiles for ~20 s per pass on a 2-core
    # CPU (441 unrolled displacements); the backward pass of "patches" (the
    # transpose of its one-hot patch convolution) takes ~40 s at the FlowNetC size
    # and is timed there only.
    impls = ("banded",) if quick else LOCAL_IMPLS
    for impl in impls:
        fn = lambda a, bb, impl=impl: ops.local_correlation(  # noqa: E731
            a,
            bb,
            max_displacement=case.max_displacement,
            stride=case.stride,
            normalize="channels",
            precision=precision,
            impl=impl,
        )
        backward = impl != "patches" or case.name == "flownetc"
        _bench_pair(rows, "local_correlation", case.name, impl, fn, (f1, f2), (0, 1), flops,
                    peak, runs, max_seconds, backward)


def _bench_groupwise(rows: list[dict], case: Case, f1: jax.Array, f2: jax.Array, *, peak: float,
                     runs: int, max_seconds: float) -> None:
    """Time ``groupwise_cost_volume``'s formulations on one case."""
    b, h, w, c = case.features
    flops = 2.0 * b * case.max_disparity * h * w * c
    for impl in GROUPWISE_IMPLS:
        fn = lambda a, bb, impl=impl: ops.groupwise_cost_volume(  # noqa: E731
            a, bb, max_disparity=case.max_disparity, groups=case.groups, impl=impl
        )
        _bench_pair(rows, "groupwise_cost_volume", case.name, impl, fn, (f1, f2), (0, 1), flops,
                    peak, runs, max_seconds)


def _bench_warp(
    rows: list[dict], case: Case, dtype: Any, peak: float, runs: int, max_seconds: float
) -> None:
    backward_warp = getattr(ops, "backward_warp", None)
    if backward_warp is None:
        print(
            "  (backward_warp skipped: flowlib.ops.backward_warp is not available yet)",
            file=sys.stderr,
        )
        return
    image = _inputs(case.image, dtype, 2)
    flow = (
        8.0 * jax.random.uniform(jax.random.PRNGKey(3), (*case.image[:3], 2), jnp.float32, -1, 1)
    ).astype(dtype)

    def fn(x, f):
        return backward_warp(x, f, padding="zeros", align_corners=True)

    _bench_pair(
        rows,
        "backward_warp",
        case.name,
        "-",
        fn,
        (image, flow),
        (0, 1),
        None,
        peak,
        runs,
        max_seconds,
    )


COLUMNS = [
    ("op", "op"),
    ("case", "case"),
    ("impl", "impl"),
    ("pass", "pass"),
    ("median_ms", "median ms"),
    ("iqr_ms", "IQR ms"),
    ("runs", "n"),
    ("compile_s", "compile s"),
    ("gflops", "GFLOP/s"),
    ("pct_peak", "% matmul"),
    ("xla_gbps", "XLA GB/s"),
    ("peak_mem", "peak mem"),
    ("temp_mem", "temp mem"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ops", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 runs; only the default local_correlation impl"
    )
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--precision", default="highest", choices=["highest", "high", "default"])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--only", nargs="+", choices=[c.name for c in CASES], help="run these cases only"
    )
    args = parser.parse_args(argv)
    result = run(args)
    env = result["environment"]
    print(
        f"device {env['device']} ({env['backend']}), jax {env['jax']}, jaxlib {env['jaxlib']}, "
        f"dtype {env['dtype']}, precision {env['precision']}, "
        f"matmul peak {result['matmul_peak_gflops']:.1f} GFLOP/s (float32 {env['precision']})"
    )
    print(format_table(result["results"], COLUMNS))
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
