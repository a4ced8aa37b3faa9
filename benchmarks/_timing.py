"""Timing helpers shared by the benchmark scripts.

What a measurement means, everywhere in ``benchmarks/``:

* the function is jitted, lowered and compiled once; that wall time is ``compile_s``
  and never enters the run times;
* ``warmup`` calls of the compiled executable follow (caches, allocator, thread pools);
* each timed run calls it and waits with ``jax.block_until_ready``; we report the median
  and the interquartile range (q75 - q25) of the run times;
* memory and cost figures come from XLA's own analysis of the compiled executable
  (``memory_analysis()``, ``cost_analysis()``), when the backend provides them.

Typical use::

    env = environment(dtype="float32", precision="highest")
    m = measure(fn, x, y, runs=10)
    print(m.median_s, m.iqr_s, m.compile_s, m.peak_bytes)

Benchmarks never assert; they print and optionally write JSON (``write_json``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flowlib._files import atomic_write

__all__ = [
    "Measurement",
    "compiled_cost",
    "compiled_memory",
    "environment",
    "format_bytes",
    "format_table",
    "forward_backward",
    "matmul_peak_flops",
    "measure",
    "summarize_times",
    "time_host",
    "write_json",
]


@dataclasses.dataclass(frozen=True)
class Measurement:
    """Timing of one compiled function (all times in seconds, sizes in bytes).

    ``peak_bytes`` is XLA's static estimate for one call: arguments + outputs +
    temporaries - aliased buffers. ``xla_flops`` / ``xla_bytes`` are XLA's cost model
    (None where the backend does not report them).
    """

    median_s: float
    iqr_s: float
    min_s: float
    runs: int
    compile_s: float | None
    times_s: tuple[float, ...]
    temp_bytes: int | None = None
    output_bytes: int | None = None
    argument_bytes: int | None = None
    peak_bytes: int | None = None
    xla_flops: float | None = None
    xla_bytes: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _versions() -> dict[str, str]:
    import jaxlib
    import ml_dtypes

    versions = {
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
    }
    versions["numpy"] = np.__version__
    versions["ml_dtypes"] = ml_dtypes.__version__  # JAX's dependency: sets JAX's import time
    try:
        import flax

        versions["flax"] = flax.__version__
    except ImportError:  # the ops benchmarks do not need flax
        pass
    return versions


def environment(*, dtype: str, precision: str | None) -> dict[str, Any]:
    """The record every result line carries: device, versions, dtype, matmul precision."""
    device = jax.devices()[0]
    return {
        "backend": jax.default_backend(),
        "device": getattr(device, "device_kind", str(device)),
        "device_count": jax.device_count(),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "dtype": dtype,
        "precision": precision,
        "default_matmul_precision": jax.config.jax_default_matmul_precision,
        **_versions(),
    }


def summarize_times(times: Sequence[float]) -> tuple[float, float, float]:
    """``(median, interquartile range, fastest)`` of run times (IQR 0 for one run)."""
    median = statistics.median(times)
    if len(times) >= 2:
        q = statistics.quantiles(times, n=4, method="inclusive")
        iqr = q[2] - q[0]
    else:
        iqr = 0.0
    return median, iqr, min(times)


def compiled_memory(compiled: Any) -> dict[str, int | None]:
    """XLA's memory analysis of a compiled function as ``*_bytes`` fields (``None`` where
    the backend has none); ``peak_bytes`` = arguments + outputs + temporaries - aliased."""
    try:
        mem = compiled.memory_analysis()
    except (NotImplementedError, RuntimeError, AttributeError):  # missing on some backends
        mem = None
    if mem is None:
        return {
            "temp_bytes": None,
            "output_bytes": None,
            "argument_bytes": None,
            "peak_bytes": None,
        }
    temp = int(getattr(mem, "temp_size_in_bytes", 0))
    out = int(getattr(mem, "output_size_in_bytes", 0))
    arg = int(getattr(mem, "argument_size_in_bytes", 0))
    alias = int(getattr(mem, "alias_size_in_bytes", 0))
    return {
        "temp_bytes": temp,
        "output_bytes": out,
        "argument_bytes": arg,
        "peak_bytes": arg + out + temp - alias,
    }


def compiled_cost(compiled: Any) -> dict[str, float | None]:
    """XLA's cost analysis of a compiled function: ``xla_flops``, ``xla_bytes`` (or ``None``)."""
    try:
        cost = compiled.cost_analysis()
    except (NotImplementedError, RuntimeError, AttributeError):
        cost = None
    if isinstance(cost, (list, tuple)):  # older jax: one dict per computation
        cost = cost[0] if cost else None
    if not cost:
        return {"xla_flops": None, "xla_bytes": None}
    flops = cost.get("flops")
    nbytes = cost.get("bytes accessed")
    return {
        "xla_flops": float(flops) if flops is not None and flops >= 0 else None,
        "xla_bytes": float(nbytes) if nbytes is not None and nbytes >= 0 else None,
    }


def measure(
    fn: Callable[..., Any],
    *args: Any,
    runs: int = 10,
    warmup: int = 2,
    max_seconds: float | None = None,
) -> Measurement:
    """Jit-compile ``fn(*args)`` and time the compiled executable.

    Args:
      fn: a jittable function of array arguments (close over static options).
      *args: its arguments (arrays or pytrees of arrays), already on the device.
      runs: number of timed calls.
      warmup: untimed calls after compiling.
      max_seconds: stop early once the timed calls exceed this (at least 3 are kept),
        so that big sizes stay within a quick run.

    Returns:
      A :class:`Measurement`.
    """
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - start
    for _ in range(warmup):
        jax.block_until_ready(compiled(*args))
    times: list[float] = []
    budget_start = time.perf_counter()
    for _ in range(runs):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
        if (
            max_seconds is not None
            and len(times) >= 3
            and time.perf_counter() - budget_start > max_seconds
        ):
            break
    median, iqr, fastest = summarize_times(times)
    return Measurement(
        median_s=median,
        iqr_s=iqr,
        min_s=fastest,
        runs=len(times),
        compile_s=compile_s,
        times_s=tuple(times),
        **compiled_memory(compiled),
        **compiled_cost(compiled),
    )


def time_host(fn: Callable[..., Any], *args: Any, runs: int = 3, warmup: int = 0) -> Measurement:
    """Time a plain host function (e.g. a NumPy reference): no compile, no device sync."""
    for _ in range(warmup):
        fn(*args)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    median, iqr, fastest = summarize_times(times)
    return Measurement(
        median_s=median, iqr_s=iqr, min_s=fastest, runs=runs, compile_s=None, times_s=tuple(times)
    )


def forward_backward(
    fn: Callable[..., Any], args: Sequence[Any], *, argnums: int | Sequence[int] = 0, seed: int = 0
) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """``fn`` followed by its backward pass, ready for :func:`measure`.

    Returns ``(step, step_args)``: ``step(*args, cotangent)`` computes ``fn(*args)`` and
    the vector-Jacobian product with ``cotangent`` for the arguments in ``argnums``;
    ``step_args`` is ``(*args, cotangent)`` with a random cotangent of ``fn``'s output
    shape. A random cotangent stands for an upstream gradient: with the all-ones
    cotangent of ``sum(fn(...))`` XLA can constant-fold or simplify the backward pass.

    Usage: ``measure(*forward_backward(fn, (x, y), argnums=(0, 1)))``.
    """
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    out = jax.eval_shape(fn, *args)
    leaves, treedef = jax.tree_util.tree_flatten(out)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    cotangent = jax.tree_util.tree_unflatten(
        treedef,
        [
            jax.random.normal(k, leaf.shape, jnp.float32).astype(leaf.dtype)
            for k, leaf in zip(keys, leaves)
        ],
    )

    def step(*step_args: Any) -> tuple[Any, Any]:
        *inputs, ct = step_args

        def of_diff(*diff: Any) -> Any:
            full = list(inputs)
            for i, v in zip(nums, diff):
                full[i] = v
            return fn(*full)

        value, vjp = jax.vjp(of_diff, *(inputs[i] for i in nums))
        return value, vjp(ct)

    return step, (*args, cotangent)


def matmul_peak_flops(
    *,
    n: int = 2048,
    dtype: Any = jnp.float32,
    precision: str | None = "highest",
    runs: int = 5,
    max_seconds: float | None = 10.0,
) -> tuple[float, Measurement]:
    """Measured FLOP/s of one large ``n x n`` matmul on the default device.

    This is the yardstick that op throughputs are compared with, measured in the same
    process (on a shared CPU the datasheet peak means little).

    Returns:
      (flops_per_second, measurement), from the median time and 2 n^3 flops.
    """
    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(key_a, (n, n), dtype)
    b = jax.random.normal(key_b, (n, n), dtype)
    m = measure(
        lambda x, y: jnp.dot(x, y, precision=precision),
        a,
        b,
        runs=runs,
        warmup=1,
        max_seconds=max_seconds,
    )
    return 2.0 * n**3 / m.median_s, m


def format_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Plain-text table: ``columns`` = [(key, header), ...]; missing values print as '-'."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    cells = [[cell(row.get(key)) for key, _ in columns] for row in rows]
    widths = [
        max([len(header)] + [len(r[i]) for r in cells]) for i, (_, header) in enumerate(columns)
    ]
    lines = ["  ".join(h.ljust(w) for (_, h), w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    for r in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    return "\n".join(lines)


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """Write ``payload`` (dicts, lists, Measurement objects) as indented JSON."""

    def default(obj: Any) -> Any:
        if isinstance(obj, Measurement):
            return obj.as_dict()
        if isinstance(obj, (np.generic,)):
            return obj.item()
        raise TypeError(f"cannot serialise {type(obj).__name__}")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, indent=1, default=default) + "\n"
    # Atomically (temp file + rename): benchmarks rewrite their JSON after every case, and a
    # run cut short must leave the previous complete file, not half of one.
    atomic_write(path, text.encode())


