"""The machine a benchmark runs on: CPU model and ISA flags, threads, RSS probes, versions."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
from typing import Any, Callable

import jax

from benchmarks._timing import environment

__all__ = ["cpu_description", "jax_threads", "peak_rss_delta", "torch_version", "machine_record",
           "cpu_model", "cpu_flags"]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))
    except OSError:
        pass
    return []


def cpu_description() -> str:
    """One line naming the CPU and its bfloat16 ISA, printed with every table (sessions run
    on different CPUs: bfloat16 speed depends on AVX-512 BF16 and AMX)."""
    flags = set(cpu_flags())
    isa = ", ".join(f"{f} {'yes' if f in flags else 'no'}"
                    for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile"))
    return f"CPU: {cpu_model()}; {isa}; {os.cpu_count()} cores, jax threads {jax_threads()}"


def jax_threads() -> int:
    """Threads of XLA's CPU client: its Eigen pool is sized to the schedulable cores."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _read_status(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss_delta(call: Callable[[], Any]) -> int | None:
    """Growth of the process's peak RSS while ``call()`` runs (Linux; None elsewhere).

    The peak (VmHWM) is reset first, so this is ``max RSS during the call - RSS before``.
    Memory the allocator already holds from earlier work is reused without showing up, so
    this is a lower bound on what the call needs when it runs first.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        call()
        return None
    before = _read_status("VmRSS")
    call()
    peak = _read_status("VmHWM")
    return None if before is None or peak is None else peak - before


def torch_version() -> str | None:
    """Installed torch version, without importing torch into this (jax) process."""
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_record(dtypes: list[str]) -> dict[str, Any]:
    env = environment(dtype=",".join(dtypes), precision=jax.config.jax_default_matmul_precision)
    env.update({
        "cpu_model": cpu_model(),
        "cpu_flags": " ".join(cpu_flags()),
        "jax_threads": jax_threads(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "torch": torch_version(),
        "torch_threads": None,  # filled in from the worker's report
        "loadavg_start": os.getloadavg(),
    })
    return env
