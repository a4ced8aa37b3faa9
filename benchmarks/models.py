"""Inference speed and memory of the flowlib models against eager PyTorch, same machine.

    python -m benchmarks.models [--models spynet flownets flownetc cfnet raft raft_small]
        [--sizes chairs sintel kitti] [--dtypes float32 bfloat16] [--repeats N]
        [--quick] [--json OUT]

For every model, input size and dtype this measures, in one process:

* flowlib: ``module.apply`` jitted; compile time on its own; then one untimed call, then
  ``--repeats`` timed calls (``jax.block_until_ready``), median and interquartile range;
* memory: XLA's ``memory_analysis()`` of the compiled executable (arguments + outputs +
  temporaries - aliased) and, as a second figure, the growth of the process's peak RSS
  (``VmHWM``, reset through ``/proc/self/clear_refs``) over the first call after compiling;
* FLOPs from XLA's ``cost_analysis()`` (padding taps and the zeros of input-dilated
  convolutions are not counted; the zero taps of CFNet's sub-pixel transposed
  convolutions, ``flowlib.models._layers.conv_transpose``, are), divided by the
  convolution throughput measured at the start of the same run (a 1x128x128x256 -> 256
  3x3 ``conv_general_dilated``): the compute-bound time, and the fraction of it that the
  model reaches;
* the eager-PyTorch peer of the same architecture (:mod:`benchmarks._torch_peers`, the
  official parameter counts asserted) under ``torch.inference_mode()`` with
  ``torch.set_num_threads`` = the number of threads XLA's CPU client uses (the
  schedulable cores); bfloat16 through ``torch.autocast("cpu", torch.bfloat16)``. It runs
  in a worker process of the same run (``--torch-worker``, same input images) so that
  torch's OpenMP pool and XLA's thread pool never compete for the cores and each side
  gets its own RSS figure. The headline is the ratio flowlib time / torch time (< 1:
  flowlib is faster).

bfloat16 on the flowlib side: the module's ``dtype`` field when it has one, otherwise the
parameters and the input images are cast to bfloat16 (the mode is printed). Whether the
convolutions then really run in bfloat16 is read off the optimised HLO and printed as
``bf16 convs k/n`` (a model that promotes to float32 internally shows 0/n).

Sizes: FlyingChairs 384x512, Sintel 436x1024, KITTI 375x1242, ``sintel440`` 440x1024 (RAFT
and RAFT-small, 12 updates, against torchvision's ``raft_large`` / ``raft_small`` with the
same random weights; they run at that size unless ``--sizes`` names others) (CFNet pads it to 384x1248
at the top and right, as upstream's KITTI loader; the torch peer does the same). CFNet
runs at the KITTI size unless ``--sizes`` names others. ``--quick``: Chairs size only
(CFNet too), float32, 2 timed runs, a time budget per measurement.

For CFNet the memory of each stage's 3-D cost volume is computed from the shapes
(B x C x D x H x W x 4 bytes). Goals are evaluated and printed as
met / not met; benchmarks never assert on timings (only the peers' parameter counts).
``--breakdown`` answers "where does the time go": every distinct convolution of the
lowered program is timed on its own (same shapes, window, dtype), multiplied by its count
and summed per kind (2-D / 3-D, strided, transposed = input-dilated); the rest of the model
time is everything else (correlation, cost volumes, gathers, resizes, elementwise). The
kinds are those of the lowered program: CFNet's stride-1 3-D convolutions and its
transposed ones are lowered as 2-D convolutions (depth taps on the channels, depth in the
batch; :mod:`flowlib.models._layers`), so they count as ``conv2d`` there.

The yardstick is measured before and after the models (best run of each, the faster of
the two kept): on a shared CPU a median mostly measures the other tenants. Run it on an
idle machine (the header prints the load average at start and end).
torch is an optional benchmark dependency (``pip install .[bench]``); without it the
torch columns are empty.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.metadata
import json
import math
import os
import subprocess
import tempfile
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks._timing import Measurement, format_bytes, format_table, write_json
# The shared timing module's own statistics and XLA-analysis readers, so that every
# benchmark reports the same quantities; the compile / first-call / timed-loop sequence is
# written out here because the RSS probe has to sit between compiling and the warm-up.
from benchmarks._timing import compiled_cost, compiled_memory, summarize_times
from benchmarks._hlo import conv_dtypes, conv_kind, parse_convolutions, requested_conv_dtypes
from benchmarks._machine import (  # cpu_description: also used by benchmarks.gpu / dtype_accuracy
    cpu_description,
    jax_threads,
    machine_record,
    peak_rss_delta,
    torch_version,
)

SIZES = {"chairs": (384, 512), "sintel": (436, 1024), "kitti": (375, 1242), "sintel440": (440, 1024)}
MODELS = ("spynet", "flownets", "flownetc", "cfnet", "raft", "raft_small")
DEFAULT_SIZES = {"spynet": ("chairs", "sintel", "kitti"), "flownets": ("chairs", "sintel", "kitti"),
                 "flownetc": ("chairs", "sintel", "kitti"), "cfnet": ("kitti",),
                 "raft": ("sintel440",), "raft_small": ("sintel440",)}
# The speed goals: (model, size, max flowlib/torch ratio, max time / bound).
GOALS = (("spynet", "sintel", 0.75, 1.2), ("flownets", "sintel", 0.8, None),
         ("flownetc", "sintel", 0.8, None), ("cfnet", "kitti", 0.8, None),
         ("raft", "sintel440", 0.8, None))
CFNET_MEMORY_GOAL = 8e9  # bytes, "KITTI-size inference fits in 8 GB"
PEAK_CONV = (1, 128, 128, 256, 256, 3)  # B, H, W, Cin, Cout, k of the yardstick conv


# ------------------------------------------------------------------------ yardstick


def conv_peak(dtype: str, runs: int, *, use_torch: bool) -> dict[str, Any]:
    """GFLOP/s of one large 3x3 convolution in jax (and in torch, same shapes)."""
    b, h, w, cin, cout, k = PEAK_CONV
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((b, h, w, cin), np.float32)).astype(dtype)
    kern = jnp.asarray(rng.standard_normal((k, k, cin, cout), np.float32) / math.sqrt(k * k * cin))
    kern = kern.astype(dtype)

    def conv(x, kern):
        return jax.lax.conv_general_dilated(x, kern, (1, 1), ((1, 1), (1, 1)),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    m = measure_jax(conv, (x, kern), runs=max(runs, 5), rss=False)["measurement"]
    flops = m.xla_flops or 2.0 * b * h * w * cin * cout * k * k
    # The best of the runs: a peak is what the machine can do; on a shared CPU the median
    # mostly measures the other tenants.
    out = {"dtype": dtype, "shape": PEAK_CONV, "flops": flops, "jax_ms": m.min_s * 1e3,
           "jax_gflops": flops / m.min_s / 1e9, "jax_median_gflops": flops / m.median_s / 1e9}
    if use_torch:
        t = run_torch_worker({"task": "conv", "dtype": dtype, "runs": max(runs, 5)})
        if t is not None:
            out.update(torch_ms=t["min_s"] * 1e3, torch_gflops=flops / t["min_s"] / 1e9,
                       torch_threads=t["threads"])
    return out


def _best_peak(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """The yardstick is measured before and after the models; keep the faster."""
    best = dict(first if first["jax_gflops"] >= second["jax_gflops"] else second)
    best["jax_gflops_start_end"] = (first["jax_gflops"], second["jax_gflops"])
    if "torch_gflops" in first and "torch_gflops" in second:
        best["torch_gflops"] = max(first["torch_gflops"], second["torch_gflops"])
    return best


# --------------------------------------------------------------------------- timing


def measure_jax(fn: Callable[..., Any], args: tuple, *, runs: int, warmup: int = 1,
                 max_seconds: float | None = None, rss: bool = True) -> dict[str, Any]:
    """Compile, probe RSS on the first call, warm up, time; a :class:`Measurement` plus
    the compiled executable's convolution dtypes."""
    t0 = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    rss_delta = None
    if rss:  # the first call after compiling; it also serves as the first warm-up call
        rss_delta = peak_rss_delta(lambda: jax.block_until_ready(compiled(*args)))
        warmup -= 1
    for _ in range(warmup):
        jax.block_until_ready(compiled(*args))
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(runs):
        t = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t)
        if (max_seconds is not None and len(times) >= min(runs, 2)
                and time.perf_counter() - start > max_seconds):
            break
    median, iqr, fastest = summarize_times(times)
    m = Measurement(median_s=median, iqr_s=iqr, min_s=fastest, runs=len(times),
                    compile_s=compile_s, times_s=tuple(times), **compiled_memory(compiled),
                    **compiled_cost(compiled))
    try:
        stablehlo = lowered.as_text()
        convs = conv_dtypes(compiled.as_text())
        asked = requested_conv_dtypes(stablehlo)
    except Exception:  # as_text is not available on every backend
        stablehlo, convs, asked = "", (None, None), (None, None)
    return {"measurement": m, "rss_delta": rss_delta, "bf16_convs": convs[0], "convs": convs[1],
            "bf16_convs_requested": asked[0], "convs_requested": asked[1], "stablehlo": stablehlo}


def _measure_torch(fn: Callable[[], Any], *, dtype: str, runs: int, warmup: int = 1,
                   max_seconds: float | None = None, rss: bool = True) -> dict[str, Any]:
    """Like :func:`_measure_jax` for an eager torch callable (inside the worker process):
    the first call (RSS probe) is the warm-up; inference_mode, bf16 through autocast."""
    import torch

    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bfloat16"
                else torch.autocast("cpu", enabled=False))
    with torch.inference_mode(), autocast:
        t0 = time.perf_counter()
        rss_delta = peak_rss_delta(fn) if rss else (fn(), None)[1]
        first_s = time.perf_counter() - t0
        for _ in range(warmup - 1):
            fn()
        times: list[float] = []
        start = time.perf_counter()
        for _ in range(runs):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
            if (max_seconds is not None and len(times) >= min(runs, 2)
                    and time.perf_counter() - start > max_seconds):
                break
    median, iqr, fastest = summarize_times(times)
    return {"median_s": median, "iqr_s": iqr, "min_s": fastest, "runs": len(times),
            "times_s": times, "first_call_s": first_s, "rss_delta": rss_delta}


# ------------------------------------------------------------------------ breakdown


def conv_breakdown(stablehlo: str, total_ms: float, *, runs: int = 1) -> dict[str, Any]:
    """Time every distinct convolution of a model on its own (same shapes, dtype, window),
    weight it by how often it occurs, and sum per kind; the rest of the model time is
    everything else (correlation / cost volumes, gathers, resizes, elementwise)."""
    convs = parse_convolutions(stablehlo)
    unique: dict[tuple, dict] = {}
    for c in convs:
        key = (c["x"], c["k"], c["dtype"], c["stride"], c["pad"], c["lhs_dilate"], c["rhs_dilate"])
        unique.setdefault(key, {**c, "count": 0})["count"] += 1
    rng = np.random.default_rng(0)
    items = []
    for c in unique.values():
        nd = len(c["x"]) - 2
        spec = ("NHWC", "HWIO", "NHWC") if nd == 2 else ("NDHWC", "DHWIO", "NDHWC")
        x = jnp.asarray(rng.standard_normal(c["x"], np.float32)).astype(c["dtype"])
        k = jnp.asarray(rng.standard_normal(c["k"], np.float32) * 0.05).astype(c["dtype"])

        def fn(x, k, c=c, spec=spec):
            return jax.lax.conv_general_dilated(
                x, k, c["stride"], list(c["pad"]), lhs_dilation=c["lhs_dilate"],
                rhs_dilation=c["rhs_dilate"], dimension_numbers=spec)

        m = measure_jax(fn, (x, k), runs=runs, rss=False)["measurement"]
        items.append({"kind": conv_kind(c), "x": c["x"], "k": c["k"], "lhs_dilate": c["lhs_dilate"],
                      "stride": c["stride"], "count": c["count"], "ms_each": m.median_s * 1e3,
                      "ms_total": m.median_s * 1e3 * c["count"],
                      "gflops": (m.xla_flops or 0) / m.median_s / 1e9})
    kinds: dict[str, dict] = {}
    for it in items:
        k = kinds.setdefault(it["kind"], {"kind": it["kind"], "count": 0, "ms": 0.0})
        k["count"] += it["count"]
        k["ms"] += it["ms_total"]
    conv_ms = sum(k["ms"] for k in kinds.values())
    rows = sorted(kinds.values(), key=lambda k: -k["ms"])
    rows.append({"kind": "everything else (model time - convolutions)", "count": None,
                 "ms": max(total_ms - conv_ms, 0.0)})
    for r in rows:
        r["pct"] = 100.0 * r["ms"] / total_ms
    return {"kinds": rows, "top": sorted(items, key=lambda i: -i["ms_total"])[:6],
            "unparsed": stablehlo.count("stablehlo.convolution") - len(convs)}


def run_torch_worker(task: dict[str, Any], images: tuple[np.ndarray, np.ndarray] | None = None
                     ) -> dict[str, Any] | None:
    """Run one torch measurement in a fresh process (``--torch-worker``).

    A separate process keeps torch's OpenMP pool and XLA's Eigen pool from competing for
    the same cores, and gives the peer its own RSS figure. Returns the worker's JSON, or
    None when torch is not installed.
    """
    if torch_version() is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        if images is not None:
            for i, im in enumerate(images):
                np.save(os.path.join(tmp, f"image{i + 1}.npy"), im)
        task = {**task, "dir": tmp, "threads": jax_threads()}
        env = {**os.environ, "JAX_PLATFORMS": "cpu"}
        proc = subprocess.run([sys.executable, "-m", "benchmarks.models", "--torch-worker",
                               json.dumps(task)], capture_output=True, text=True, env=env,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if proc.returncode != 0:
        raise RuntimeError(f"torch worker failed ({task['task']}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def torch_worker(task: dict[str, Any]) -> dict[str, Any]:
    """The worker side: build the peer (parameter count asserted), time it, report."""
    import torch

    from benchmarks import _torch_peers as peers

    torch.set_num_threads(task["threads"])
    out: dict[str, Any] = {"threads": torch.get_num_threads()}
    if task["task"] == "conv":
        b, h, w, cin, cout, k = PEAK_CONV
        x, kern = torch.randn(b, cin, h, w), torch.randn(cout, cin, k, k) / math.sqrt(k * k * cin)
        out.update(_measure_torch(lambda: torch.nn.functional.conv2d(x, kern, padding=1),
                                  dtype=task["dtype"], runs=task["runs"], rss=False))
        return out
    name = task["model"]
    im1, im2 = (torch.from_numpy(np.load(os.path.join(task["dir"], f"image{i}.npy")))
                .permute(0, 3, 1, 2).contiguous() for i in (1, 2))
    kwargs = {}
    if name == "flownetc":
        feat = (im1.shape[0], 256, math.ceil(im1.shape[2] / 8), math.ceil(im1.shape[3] / 8))
        kwargs["correlation_impl"], corr_times = peers.fastest_correlation(feat)
        out["correlation"] = kwargs["correlation_impl"]
        out["correlation_ms"] = {k: v * 1e3 for k, v in corr_times.items()}
    peer = peers.make_peer(name, **kwargs)
    count = peers.count_parameters(peer)
    assert count == peers.PARAM_COUNTS[name], f"{name} peer has {count} parameters, official {peers.PARAM_COUNTS[name]}"
    out["params"] = count
    out.update(_measure_torch(lambda: peer(im1, im2), dtype=task["dtype"], runs=task["runs"],
                              max_seconds=task["max_seconds"]))
    return out


# --------------------------------------------------------------------------- models


@dataclasses.dataclass
class FlowlibModel:
    module: Any
    output: str  # "flow" or "disparity"
    init_size: tuple[int, int]


def flowlib_model(name: str, dtype: str) -> tuple[FlowlibModel, str]:
    """The flowlib module for ``name``; with bfloat16, a module built with its ``dtype``
    field if it has one. Returns (model, how bf16 is applied)."""
    if name == "spynet":
        mod = importlib.import_module("flowlib.models.spynet")
        cls, kwargs, output, init = mod.SpyNet, {}, "flow", (64, 64)
    elif name in ("flownets", "flownetc"):
        mod = importlib.import_module("flowlib.models.flownet")
        cls, kwargs = _flownet_variant(mod, name)
        output, init = "flow", (64, 64)
    elif name == "cfnet":
        mod = importlib.import_module("flowlib.models.cfnet")
        cls, kwargs, output, init = mod.CFNet, {"maxdisp": 256}, "disparity", (64, 128)
    elif name in ("raft", "raft_small"):
        # 12 flow updates (torchvision's default num_flow_updates), at Sintel size padded to /8.
        mod = importlib.import_module("flowlib.models.raft")
        cls, kwargs, output, init = mod.RAFT, {"iters": 12, "small": name == "raft_small"}, "flow", (64, 64)
    else:
        raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")
    mode = "-"
    if dtype == "bfloat16":
        # flowlib.load_model(..., dtype="bfloat16"): bf16 products, float32 accumulation,
        # float32 parameters, inputs and outputs.
        kwargs = {**kwargs, "dtype": "bfloat16"}
        mode = "module dtype=bfloat16 (bf16 conv operands, f32 accumulation; f32 params/inputs)"
    return FlowlibModel(cls(**kwargs), output, init), mode


def _flownet_variant(mod: Any, name: str) -> tuple[Callable[..., Any], dict]:
    """FlowNetPytorch's FlowNetS / FlowNetC (no BN) from ``flowlib.models.flownet``."""
    cls_name = {"flownets": "FlowNetS", "flownetc": "FlowNetC"}[name]
    if hasattr(mod, cls_name):
        return getattr(mod, cls_name), {}
    raise AttributeError(f"flowlib.models.flownet has no {cls_name}")


def init_variables(model: FlowlibModel, dtype: str) -> dict:
    """Well-scaled random variables without running the model: shapes from
    ``jax.eval_shape(init)``; kernels N(0, 1/fan_in), other params 0, BN scale/var 1."""
    h, w = model.init_size
    dummy = jnp.zeros((1, h, w, 3), jnp.float32)
    shapes = jax.eval_shape(lambda: model.module.init(jax.random.PRNGKey(0), dummy, dummy))
    rng = np.random.default_rng(0)

    def fill(path, leaf):
        keys = [getattr(k, "key", str(k)) for k in path]
        last = keys[-1]
        if last == "kernel":
            fan_in = int(np.prod(leaf.shape[:-1]))
            value = rng.standard_normal(leaf.shape, np.float32) / math.sqrt(fan_in)
        elif last in ("scale", "var"):
            value = np.ones(leaf.shape, np.float32)
        else:
            value = np.zeros(leaf.shape, np.float32)
        return jnp.asarray(value).astype(dtype if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def _param_count(variables: dict) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(variables.get("params", {}))))


def _images(size: tuple[int, int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((1, *size, 3), np.float32)


def cfnet_volume_memory(size: tuple[int, int], maxdisp: int = 256, batch: int = 1) -> list[dict]:
    """Bytes of CFNet's 3-D cost volumes (float32) per stage, from the padded input size."""
    hp, wp = (int(math.ceil(n / 32) * 32) for n in size)
    stages = (("1/8 fused", 8, 40 + 24, maxdisp // 8), ("1/16 fused", 16, 40 + 24, maxdisp // 16),
              ("1/32 fused", 32, 40 + 24, maxdisp // 32), ("1/4 cascade", 4, 40 + 24 + 1, 16),
              ("1/2 cascade", 2, 20 + 12 + 1, 12))
    rows = []
    for name, scale, channels, depth in stages:
        shape = (batch, channels, depth, hp // scale, wp // scale)
        rows.append({"stage": name, "shape": "x".join(map(str, shape)),
                     "bytes": int(np.prod(shape)) * 4})
    return rows


# ---------------------------------------------------------------------------- run


def bench_one(name: str, size_name: str, dtype: str, args: argparse.Namespace,
              peaks: dict[str, dict]) -> dict[str, Any]:
    size = SIZES[size_name]
    model, bf16_mode = flowlib_model(name, dtype)
    if name in ("raft", "raft_small"):
        # The torch peer's random weights (benchmarks._torchvision), converted.
        from benchmarks._torchvision import random_state_dict, state_shapes
        from flowlib.convert.raft import convert_state_dict

        variables = convert_state_dict(random_state_dict(state_shapes(name), seed=0))
    else:
        variables = init_variables(model, "float32")
    im1, im2 = _images(size, 1), _images(size, 2)
    x1, x2 = jnp.asarray(im1), jnp.asarray(im2)
    output = model.output

    def forward(variables, a, b):
        return getattr(model.module.apply(variables, a, b), output)

    row: dict[str, Any] = {"model": name, "size": f"{size[0]}x{size[1]}", "size_name": size_name,
                           "dtype": dtype, "bf16_mode": bf16_mode,
                           "flowlib_params": _param_count(variables)}
    print(f"[{name} {size_name} {dtype}] flowlib: compiling ...", file=sys.stderr, flush=True)
    j = measure_jax(forward, (variables, x1, x2), runs=args.repeats, max_seconds=args.max_seconds)
    m = j["measurement"]
    peak = peaks[dtype]["jax_gflops"] * 1e9
    row.update({
        "flowlib_ms": m.median_s * 1e3, "flowlib_iqr_ms": m.iqr_s * 1e3, "flowlib_runs": m.runs,
        "compile_s": m.compile_s, "xla_peak_bytes": m.peak_bytes, "xla_temp_bytes": m.temp_bytes,
        "rss_delta_bytes": j["rss_delta"], "gflop": None if m.xla_flops is None else m.xla_flops / 1e9,
        "bf16_convs": j["bf16_convs"], "convs": j["convs"],
        "bf16_convs_requested": j["bf16_convs_requested"], "convs_requested": j["convs_requested"],
        "measurement": m,
    })
    if m.xla_flops is not None:
        row["bound_ms"] = m.xla_flops / peak * 1e3
        row["pct_bound"] = 100.0 * row["bound_ms"] / row["flowlib_ms"]
    print(f"[{name} {size_name} {dtype}] flowlib {row['flowlib_ms']:.1f} ms "
          f"(compile {m.compile_s:.1f} s)", file=sys.stderr, flush=True)
    del variables
    if args.breakdown:
        print(f"[{name} {size_name} {dtype}] timing each convolution ...", file=sys.stderr, flush=True)
        row["breakdown"] = conv_breakdown(j["stablehlo"], row["flowlib_ms"])
    t = None
    if not args.no_torch:
        print(f"[{name} {size_name} {dtype}] torch (worker process) ...", file=sys.stderr, flush=True)
        t = run_torch_worker({"task": "peer", "model": name, "dtype": dtype, "runs": args.repeats,
                              "max_seconds": args.max_seconds}, (im1, im2))
    if t is not None:
        row.update({"torch_ms": t["median_s"] * 1e3, "torch_iqr_ms": t["iqr_s"] * 1e3,
                    "torch_runs": t["runs"], "torch_first_s": t["first_call_s"],
                    "torch_rss_delta_bytes": t["rss_delta"], "torch_times_s": t["times_s"],
                    "torch_params": t["params"], "torch_threads": t["threads"]})
        if "correlation" in t:
            row["torch_correlation"] = t["correlation"]
            row["torch_correlation_ms"] = t["correlation_ms"]
        row["ratio"] = row["flowlib_ms"] / row["torch_ms"]
        print(f"[{name} {size_name} {dtype}] torch {row['torch_ms']:.1f} ms, "
              f"ratio {row['ratio']:.2f}", file=sys.stderr, flush=True)
    return row


def evaluate_goals(rows: list[dict]) -> list[dict]:
    out = []
    for name, size_name, max_ratio, max_bound in GOALS:
        row = next((r for r in rows if r["model"] == name and r["size_name"] == size_name
                    and r["dtype"] == "float32"), None)
        goal = f"{name} {size_name} float32: flowlib/torch <= {max_ratio}"
        if max_bound is not None:
            goal += f", time <= {max_bound} x compute bound"
        if name == "cfnet":
            goal += f", XLA peak <= {CFNET_MEMORY_GOAL / 1e9:.0f} GB"
        if row is None or row.get("ratio") is None:
            out.append({"goal": goal, "met": None, "detail": "not measured in this run"})
            continue
        checks = [row["ratio"] <= max_ratio]
        detail = f"ratio {row['ratio']:.2f}"
        if max_bound is not None and row.get("bound_ms"):
            factor = row["flowlib_ms"] / row["bound_ms"]
            checks.append(factor <= max_bound)
            detail += f", {factor:.2f} x bound"
        if name == "cfnet" and row.get("xla_peak_bytes") is not None:
            checks.append(row["xla_peak_bytes"] <= CFNET_MEMORY_GOAL)
            detail += f", XLA peak {format_bytes(row['xla_peak_bytes'])}"
        out.append({"goal": goal, "met": all(checks), "detail": detail})
    return out


COLUMNS = [
    ("model", "model"), ("size", "size"), ("dtype", "dtype"),
    ("flowlib_ms", "flowlib ms"), ("flowlib_iqr_ms", "IQR"), ("flowlib_runs", "n"),
    ("compile_s", "compile s"),
    ("torch_ms", "torch ms"), ("torch_iqr_ms", "IQR"), ("torch_runs", "n"),
    ("ratio", "flowlib/torch"),
    ("gflop", "GFLOP"), ("bound_ms", "bound ms"), ("pct_bound", "% of bound"),
    ("xla_peak", "XLA peak"), ("rss", "RSS delta"), ("torch_rss", "torch RSS delta"),
    ("bf16", "bf16 convs"),
]


def _display(row: dict) -> dict:
    out = dict(row)
    out["xla_peak"] = format_bytes(row.get("xla_peak_bytes"))
    out["rss"] = format_bytes(row.get("rss_delta_bytes"))
    out["torch_rss"] = format_bytes(row.get("torch_rss_delta_bytes"))
    if row.get("convs"):
        out["bf16"] = (f"{row['bf16_convs_requested']}/{row['convs_requested']} asked, "
                       f"{row['bf16_convs']}/{row['convs']} run")
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    env = machine_record(args.dtypes)
    peaks = {}
    for dtype in args.dtypes:
        peaks[dtype] = conv_peak(dtype, args.repeats, use_torch=not args.no_torch)
        env["torch_threads"] = peaks[dtype].get("torch_threads", env["torch_threads"])
        p = peaks[dtype]
        print(f"conv peak {dtype}: jax {p['jax_gflops']:.1f} GFLOP/s"
              + (f", torch {p['torch_gflops']:.1f} GFLOP/s" if "torch_gflops" in p else ""),
              file=sys.stderr, flush=True)
    rows = []
    for name in args.models:
        sizes = args.sizes or DEFAULT_SIZES[name]
        for size_name in sizes:
            for dtype in args.dtypes:
                rows.append(bench_one(name, size_name, dtype, args, peaks))
    for dtype in args.dtypes:
        # Bounds use the better of the two yardstick measurements.
        peaks[dtype] = _best_peak(peaks[dtype], conv_peak(dtype, args.repeats, use_torch=False))
        for r in rows:
            if r["dtype"] == dtype and r.get("gflop") is not None:
                r["bound_ms"] = r["gflop"] / peaks[dtype]["jax_gflops"] * 1e3
                r["pct_bound"] = 100.0 * r["bound_ms"] / r["flowlib_ms"]
    env["loadavg_end"] = os.getloadavg()
    volumes = {}
    for r in rows:
        if r["model"] == "cfnet":
            volumes[r["size"]] = cfnet_volume_memory(SIZES[r["size_name"]])
    return {"environment": env, "conv_peak": peaks, "quick": args.quick, "repeats": args.repeats,
            "results": rows, "cfnet_cost_volumes": volumes, "goals": evaluate_goals(rows)}


def report(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [
        f"device {env['device']} ({env['backend']}), CPU {env['cpu_model']} "
        f"[{env['cpu_flags']}], {env['cpu_count']} cores",
        f"threads: jax {env['jax_threads']} (XLA CPU pool = schedulable cores), torch "
        f"{env['torch_threads']}; XLA_FLAGS={env['xla_flags'] or '-'}",
        f"jax {env['jax']}, jaxlib {env['jaxlib']}, flax {env.get('flax')}, torch {env['torch']}, "
        f"numpy {env['numpy']}, python {env['python']}",
        f"dtypes {env['dtype']}; matmul precision {env['default_matmul_precision']}; load average "
        f"start {', '.join(f'{x:.1f}' for x in env['loadavg_start'])} / end "
        f"{', '.join(f'{x:.1f}' for x in env['loadavg_end'])}",
    ]
    for dtype, p in result["conv_peak"].items():
        start, end = p.get("jax_gflops_start_end", (p["jax_gflops"], p["jax_gflops"]))
        lines.append(f"conv yardstick {dtype} {'x'.join(map(str, p['shape']))} (3x3, best run): jax "
                     f"{p['jax_gflops']:.1f} GFLOP/s (start {start:.1f}, end {end:.1f})"
                     + (f", torch {p['torch_gflops']:.1f} GFLOP/s" if "torch_gflops" in p else "")
                     + "; bound = XLA flops / jax figure")
    modes = {r["bf16_mode"] for r in result["results"] if r["dtype"] == "bfloat16"}
    if modes:
        lines.append(f"flowlib bfloat16: {'; '.join(sorted(modes))}; torch bfloat16: CPU autocast")
    lines.append("")
    lines.append(cpu_description())
    lines.append(format_table([_display(r) for r in result["results"]], COLUMNS))
    params = sorted({(r["model"], r["flowlib_params"], r.get("torch_params")) for r in result["results"]})
    lines.append("")
    lines.append("parameters (flowlib / torch peer = official): " + "; ".join(
        f"{m} {f:,} / {t:,}" if t else f"{m} {f:,}" for m, f, t in params))
    corr = {r["size"]: r["torch_correlation_ms"] for r in result["results"] if "torch_correlation_ms" in r}
    for size, times in corr.items():
        lines.append(f"torch FlowNetC correlation at {size} (fastest used): "
                     + ", ".join(f"{k} {v:.0f} ms" for k, v in times.items()))
    for size, stages in result["cfnet_cost_volumes"].items():
        lines.append(f"CFNet 3-D cost volumes at {size} (float32): " + "; ".join(
            f"{s['stage']} {s['shape']} {format_bytes(s['bytes'])}" for s in stages))
    for r in result["results"]:
        if "breakdown" not in r:
            continue
        b = r["breakdown"]
        lines.append("")
        lines.append(cpu_description())
        lines.append(f"where the time goes: {r['model']} {r['size']} {r['dtype']} "
                     f"({r['flowlib_ms']:.0f} ms; each distinct convolution timed alone x its count)")
        lines.append(format_table(b["kinds"], [("kind", "kind"), ("count", "n"), ("ms", "ms"),
                                               ("pct", "% of model")]))
        lines.append("  costliest convolutions: " + "; ".join(
            f"{t['kind']} x{tuple(t['x'])} k{tuple(t['k'])} x{t['count']}: {t['ms_total']:.0f} ms "
            f"({t['gflops']:.1f} GFLOP/s)" for t in b["top"][:4]))
    lines.append("")
    for g in result["goals"]:
        met = {True: "MET", False: "NOT MET", None: "n/a"}[g["met"]]
        lines.append(f"goal [{met}] {g['goal']}: {g['detail']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.models",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES),
                        help="input sizes (default: all three; CFNet: kitti)")
    parser.add_argument("--dtypes", nargs="+", choices=["float32", "bfloat16"], default=None)
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (default 5)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="stop timing a case after this many seconds (at least 2 runs)")
    parser.add_argument("--quick", action="store_true",
                        help="Chairs size, float32, 2 timed runs (unless given explicitly)")
    parser.add_argument("--no-torch", action="store_true", help="flowlib side only")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time every distinct convolution on its own and sum per kind")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    parser.add_argument("--torch-worker", metavar="TASK", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torch_worker:
        print(json.dumps(torch_worker(json.loads(args.torch_worker))))
        return 0
    if args.quick:
        args.sizes = args.sizes or ["chairs"]
        args.dtypes = args.dtypes or ["float32"]
        args.repeats = args.repeats or 2
        args.max_seconds = args.max_seconds or 10.0
    args.dtypes = args.dtypes or ["float32", "bfloat16"]
    args.repeats = args.repeats or 5
    result = run(args)
    print(report(result))
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
