"""Routes to faster convolutions on XLA:CPU, each timed against ``lax.conv_general_dilated``
in float32 on the same shapes in the same run.

    python -m benchmarks.conv_routes [--quick]
        [--only dot conv wide strided narrow copy volume deconv] [--flag-sweep] [--json OUT]

XLA:CPU (jax 0.10.2) converts the operands of a bfloat16 convolution back to float32
(``benchmarks.models`` prints "bf16 convs 0/n run"), so the CPU's bfloat16 units are only
reachable through ``dot``. This benchmark keeps every formulation that was tried to get
there, and to beat the float32 convolution, so that the question can be re-asked in one
call on another CPU (AMX, a newer jaxlib):

* ``dot``: a 2048^3 matmul, float32 and bfloat16 operands with float32 accumulation:
  what the matrix / bf16 dot-product units give through XLA's dot on this CPU.
* ``conv``: SpyNet's 7x7 layers (8-32-64-32-16-2 channels) at half the Sintel network
  size, 224x512, as ``lax`` float32 (the peer, ratio 1), ``lax`` with bfloat16 operands,
  a row-tiled im2col + one bfloat16 dot per tile (K = 49 C), and a row-tiled
  kernel-row formulation (the kw taps stacked on the channels, K = 7 C, one dot per
  kernel row, summed), and (float32) an FFT overlap-add convolution.
* ``wide``: FlowNetS's deep 3x3 layers (7x16 to 55x128 pixels, 256 to 1024 channels) as
  one untiled im2col dot in float32 and bfloat16, and as kernel-row bfloat16 dots: the
  one place where the dot route wins (XLA's float32 convolution is slow on few pixels).
* ``strided``: FlowNet's stride-2 layers as ``lax`` (the peer), as a stride-1
  convolution over the space-to-depth input (zero-padded kernel), and as the sum of the
  four polyphase stride-1 convolutions (exact taps).
* ``narrow``: layers with 2 output channels (SpyNet's last layer, FlowNet's flow
  predictors) as ``lax`` and with the output channels zero-padded to 8 and 16.
* ``copy``: the data movement the rewrites need, in GB/s: the 49-tap im2col as one
  concatenate, the 7 kw taps concatenated, and an elementwise pass over the same bytes.
* ``volume``: CFNet's stride-1 3x3x3 convolutions at KITTI size (maxdisp 256) as ``lax``
  3-D convolutions (the peer) and by the routes :class:`flowlib.models._layers.Conv` takes
  on a CPU: depth taps stacked on the channels of one 2-D convolution and, for the
  one-channel cost heads, one dot plus shifted sums of the taps.
* ``deconv``: CFNet's stride-2 3-D transposed convolution input-dilated (``lax``, the peer;
  what other platforms run) and by sub-pixel phases (the CPU route).
* ``--flag-sweep``: the ``conv`` bfloat16-vs-float32 ratio of the 32->64 layer in a fresh
  process per ``XLA_FLAGS`` setting (library fusions, oneDNN, max ISA).

Every row: time (best of the runs: a peak is what the machine can do), GFLOP/s from the
nominal flop count, the ratio to the float32 ``lax`` peer of the same case (< 1: the
route is faster), and the largest error against the float32 peer relative to the
peer's largest magnitude. The CPU and its bf16/AMX flags head the output. Benchmarks
never assert on timings.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks._machine import cpu_description, machine_record
from benchmarks._timing import format_table, measure, write_json
from flowlib._argtypes import positive_int
from flowlib.models._fft_conv import fft_conv2d
from flowlib.models._layers import _conv3d_output_taps, _conv3d_stride1, conv_transpose

SECTIONS = ("dot", "conv", "wide", "strided", "narrow", "copy", "volume", "deconv")
_DN = ("NHWC", "HWIO", "NHWC")
BF16 = jnp.bfloat16
# XLA_FLAGS tried for bfloat16 convolutions (DEFAULTS-EVIDENCE; none changed the ratio).
FLAG_SWEEP = (
    "",
    "--xla_cpu_experimental_ynn_fusion_type=individual_convolution",
    "--xla_cpu_experimental_xnn_fusion_type=individual_convolution",
    "--xla_cpu_experimental_onednn_fusion_type=individual_convolution",
    "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_fusion_type=individual_convolution",
    "--xla_cpu_experimental_ynn_fusion_type=dot",
    "--xla_cpu_max_isa=AVX512",
)


# ------------------------------------------------------------------- formulations


def lax_conv(x: jax.Array, w: jax.Array, *, stride: int = 1, pad: int | None = None,
             accumulate: Any = None) -> jax.Array:
    """The peer: ``lax.conv_general_dilated``, NHWC x HWIO, symmetric padding."""
    p = w.shape[0] // 2 if pad is None else pad
    return jax.lax.conv_general_dilated(x, w, (stride, stride), [(p, p), (p, p)],
                                        dimension_numbers=_DN,
                                        preferred_element_type=accumulate)


def _row_tiles(x: jax.Array, k: int, rows: int) -> tuple[jax.Array, int]:
    """Zero-pad for a 'same' k x k convolution with the height rounded up to ``rows``."""
    h = x.shape[1]
    tiles = -(-h // rows)
    p = k // 2
    return jnp.pad(x, ((0, 0), (p, p + tiles * rows - h), (p, p), (0, 0))), tiles


def im2col_dot(x: jax.Array, w: jax.Array, *, rows: int = 8) -> jax.Array:
    """Stride-1 'same' convolution: per tile of ``rows`` output rows, the k*k shifted
    slices concatenated on the channels (K = k*k*C) and one dot, float32 accumulation."""
    n, h, width, c = x.shape
    k, f = w.shape[0], w.shape[-1]
    xp, tiles = _row_tiles(x, k, rows)
    wm = w.reshape(k * k * c, f)

    def tile(_, i):
        block = jax.lax.dynamic_slice_in_dim(xp, i * rows, rows + k - 1, axis=1)
        cols = jnp.concatenate([block[:, a:a + rows, b:b + width]
                                for a in range(k) for b in range(k)], axis=-1)
        y = jnp.dot(cols.reshape(-1, k * k * c), wm, preferred_element_type=jnp.float32)
        return None, y.reshape(n, rows, width, f)

    _, ys = jax.lax.scan(tile, None, jnp.arange(tiles))
    return jnp.moveaxis(ys, 0, 1).reshape(n, tiles * rows, width, f)[:, :h]


def kernel_row_dots(x: jax.Array, w: jax.Array, *, rows: int = 8) -> jax.Array:
    """As :func:`im2col_dot` with only the k horizontal taps on the channels (K = k*C):
    one dot per kernel row, the k row results summed in float32."""
    n, h, width, c = x.shape
    k, f = w.shape[0], w.shape[-1]
    xp, tiles = _row_tiles(x, k, rows)
    wm = w.reshape(k, k * c, f)

    def tile(_, i):
        block = jax.lax.dynamic_slice_in_dim(xp, i * rows, rows + k - 1, axis=1)
        cols = jnp.concatenate([block[:, :, b:b + width] for b in range(k)], axis=-1)
        y = sum(jnp.dot(cols[:, a:a + rows].reshape(-1, k * c), wm[a],
                        preferred_element_type=jnp.float32) for a in range(k))
        return None, y.reshape(n, rows, width, f)

    _, ys = jax.lax.scan(tile, None, jnp.arange(tiles))
    return jnp.moveaxis(ys, 0, 1).reshape(n, tiles * rows, width, f)[:, :h]


def fft_conv(x: jax.Array, w: jax.Array, *, tile: int = 64) -> jax.Array:
    """Stride-1 'same' convolution by FFT overlap-add (flowlib's
    :func:`~flowlib.models._fft_conv.fft_conv2d`, which SpyNet's 2-output layer uses)."""
    p = w.shape[0] // 2
    return fft_conv2d(x, w, ((p, p), (p, p)), tile=tile)


def _phase_input(x: jax.Array, k: int, pad: int) -> tuple[jax.Array, int, int, int]:
    """Pad ``x`` for a stride-2 k x k convolution so both sides are even and cover every
    phase's taps; returns (padded, out_h, out_w, taps per phase)."""
    _, h, width, _ = x.shape
    oh, ow = (h + 2 * pad - k) // 2 + 1, (width + 2 * pad - k) // 2 + 1
    t = (k + 1) // 2
    hp, wp = 2 * (oh + t - 1), 2 * (ow + t - 1)
    xp = jnp.pad(x, ((0, 0), (pad, max(0, hp - h - pad)), (pad, max(0, wp - width - pad)),
                     (0, 0)))
    return xp[:, :hp, :wp], oh, ow, t


def space_to_depth_conv(x: jax.Array, w: jax.Array, *, pad: int) -> jax.Array:
    """Stride-2 convolution as a stride-1 one over the 2x2 space-to-depth input, with the
    kernel zero-padded to an even size (``(k+1)^2 / k^2`` times the multiplies)."""
    n, _, _, c = x.shape
    k, f = w.shape[0], w.shape[-1]
    xp, _, _, t = _phase_input(x, k, pad)
    hp, wp = xp.shape[1:3]
    xs = (xp.reshape(n, hp // 2, 2, wp // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
          .reshape(n, hp // 2, wp // 2, 4 * c))
    wpad = jnp.pad(w, ((0, 2 * t - k), (0, 2 * t - k), (0, 0), (0, 0)))
    ws = wpad.reshape(t, 2, t, 2, c, f).transpose(0, 2, 1, 3, 4, 5).reshape(t, t, 4 * c, f)
    return jax.lax.conv_general_dilated(xs, ws, (1, 1), "VALID", dimension_numbers=_DN)


def polyphase_conv(x: jax.Array, w: jax.Array, *, pad: int) -> jax.Array:
    """Stride-2 convolution as the sum over the four input phases of a stride-1
    convolution with that phase's sub-kernel (exactly the k^2 taps)."""
    xp, oh, ow, _ = _phase_input(x, w.shape[0], pad)
    y = 0.0
    for i in range(2):
        for j in range(2):
            part = jax.lax.conv_general_dilated(xp[:, i::2, j::2], w[i::2, j::2], (1, 1),
                                                "VALID", dimension_numbers=_DN)
            y = y + part[:, :oh, :ow]
    return y


def padded_outputs_conv(x: jax.Array, w: jax.Array, *, to: int) -> jax.Array:
    """A narrow convolution with its output channels zero-padded to ``to``, then cropped."""
    f = w.shape[-1]
    return lax_conv(x, jnp.pad(w, ((0, 0), (0, 0), (0, 0), (0, to - f))))[..., :f]


# ------------------------------------------------------------------------- timing


def best_time(fn: Callable[..., Any], *args: Any, runs: int) -> tuple[float, jax.Array]:
    """The fastest of ``runs`` timed calls after one warm-up (:func:`benchmarks._timing.measure`),
    in seconds, and the output (for the error column)."""
    return measure(fn, *args, runs=runs, warmup=1).min_s, jax.jit(fn)(*args)


def _rel_error(y: jax.Array, ref: jax.Array) -> float:
    y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    if y.shape != ref.shape:
        raise AssertionError(f"route output {y.shape} != peer output {ref.shape}")
    return float(np.abs(y - ref).max() / max(np.abs(ref).max(), 1e-30))


def _inputs(shape: tuple[int, ...], kernel: tuple[int, ...], seed: int = 0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal(shape, np.float32))
    w = jnp.asarray(rng.standard_normal(kernel, np.float32) / np.sqrt(np.prod(kernel[:3])))
    return x, w


def compare(case: str, shape: tuple, kernel: tuple, routes: dict[str, Callable], *,
            runs: int, peer: Callable = lax_conv, flops: float | None = None,
            section: str) -> list[dict[str, Any]]:
    """Time ``peer`` (float32) and every route on the same inputs; one row each."""
    x, w = _inputs(shape, kernel)
    t_peer, ref = best_time(peer, x, w, runs=runs)
    flops = flops or 2.0 * np.prod(ref.shape) * np.prod(kernel[:3])
    rows = [{"section": section, "case": case, "route": "lax float32 (peer)",
             "ms": t_peer * 1e3, "gflops": flops / t_peer / 1e9, "ratio": 1.0, "rel_error": 0.0}]
    for name, (fn, dtype) in routes.items():
        xs, ws = x.astype(dtype), w.astype(dtype)
        t, y = best_time(fn, xs, ws, runs=runs)
        rows.append({"section": section, "case": case, "route": name, "ms": t * 1e3,
                     "gflops": flops / t / 1e9, "ratio": t / t_peer,
                     "rel_error": _rel_error(y, ref)})
    return rows


# ----------------------------------------------------------------------- sections


def dot_section(*, quick: bool, runs: int) -> list[dict[str, Any]]:
    n = 512 if quick else 2048
    case = f"dot {n}^3"
    return compare(case, (n, n), (n, n), {
        "dot bf16 operands, f32 accumulation": (
            lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32), BF16)},
        runs=runs, peer=lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32),
        flops=2.0 * n ** 3, section="dot")


SPYNET_LAYERS = ((8, 32), (32, 64), (64, 32), (32, 16), (16, 2))


def conv_section(*, quick: bool, runs: int) -> list[dict[str, Any]]:
    h, w = (32, 64) if quick else (224, 512)
    layers = SPYNET_LAYERS[1:2] if quick else SPYNET_LAYERS
    f32acc = functools.partial(lax_conv, accumulate=jnp.float32)
    rows = []
    for cin, cout in layers:
        rows += compare(f"7x7 {cin}->{cout} at {h}x{w}", (1, h, w, cin), (7, 7, cin, cout), {
            "lax bf16 operands": (f32acc, BF16),
            "im2col + bf16 dot, 8-row tiles": (im2col_dot, BF16),
            "kernel-row bf16 dots, 8-row tiles": (kernel_row_dots, BF16),
            "kernel-row bf16 dots, 4-row tiles": (
                functools.partial(kernel_row_dots, rows=4), BF16),
            "FFT overlap-add, 64x64 tiles, f32": (fft_conv, jnp.float32),
        }, runs=runs, peer=f32acc, section="conv")
    return rows


# FlowNetS's deep stride-1 layers at the Sintel size: few pixels, many channels.
FLOWNET_DEEP = (((1, 55, 128, 256), (3, 3, 256, 256)), ((1, 28, 64, 512), (3, 3, 512, 512)),
                ((1, 14, 32, 512), (3, 3, 512, 512)), ((1, 7, 16, 1024), (3, 3, 1024, 1024)))


def wide_section(*, quick: bool, runs: int) -> list[dict[str, Any]]:
    """Few pixels, many channels: one untiled im2col dot (float32 and bf16) and the
    kernel-row bf16 dots against lax float32."""
    cases = (((1, 7, 16, 256), (3, 3, 256, 256)),) if quick else FLOWNET_DEEP
    f32acc = functools.partial(lax_conv, accumulate=jnp.float32)
    rows = []
    for shape, kernel in cases:
        whole = shape[1]  # one tile: the whole height
        rows += compare(f"3x3 {kernel[2]}->{kernel[3]} at {shape[1]}x{shape[2]}", shape, kernel, {
            "im2col + one f32 dot": (functools.partial(im2col_dot, rows=whole), jnp.float32),
            "im2col + one bf16 dot": (functools.partial(im2col_dot, rows=whole), BF16),
            "kernel-row bf16 dots": (functools.partial(kernel_row_dots, rows=whole), BF16),
        }, runs=runs, peer=f32acc, section="wide")
    return rows


# FlowNetS/C stride-2 layers at the Sintel size (436x1024): (input, kernel, pad).
FLOWNET_STRIDED = (((1, 436, 1024, 6), (7, 7, 6, 64), 3), ((1, 218, 512, 64), (5, 5, 64, 128), 2),
                   ((1, 109, 256, 128), (5, 5, 128, 256), 2),
                   ((1, 55, 128, 256), (3, 3, 256, 512), 1))


def strided_section(*, quick: bool, runs: int) -> list[dict[str, Any]]:
    cases = (((1, 28, 64, 64), (5, 5, 64, 128), 2),) if quick else FLOWNET_STRIDED
    rows = []
    for shape, kernel, pad in cases:
        peer = functools.partial(lax_conv, stride=2, pad=pad)
        rows += compare(f"{kernel[0]}x{kernel[0]}/2 {kernel[2]}->{kernel[3]} at "
                        f"{shape[1]}x{shape[2]}", shape, kernel, {
                            "space-to-depth, stride 1": (
                                functools.partial(space_to_depth_conv, pad=pad), jnp.float32),
                            "4 polyphase convolutions": (
                                functools.partial(polyphase_conv, pad=pad), jnp.float32),
                        }, runs=runs, peer=peer, section="strided")
    return rows


def narrow_section(*, quick: bool, runs: int) -> list[dict[str, Any]]:
    cases = ((((1, 64, 128, 16), (7, 7, 16, 2)),) if quick else
             (((1, 448, 1024, 16), (7, 7, 16, 2)), ((1, 109, 256, 194), (3, 3, 194, 2))))
    rows = []
    for shape, kernel in cases:
        rows += compare(f"{kernel[0]}x{kernel[0]} {kernel[2]}->{kernel[3]} at "
                        f"{shape[1]}x{shape[2]}", shape, kernel, {
                            f"outputs padded to {to}": (
                                functools.partial(padded_outputs_conv, to=to), jnp.float32)
                            for to in (8, 16)}, runs=runs, section="narrow")
    return rows


def copy_section(*, quick: bool, runs: int) -> list[dict[str, Any]]:
    """GB/s of building conv operands for a dot, against an elementwise pass."""
    c, h, w, k = (32, 32, 64, 7) if quick else (32, 224, 512, 7)
    xp = jnp.ones((1, h + k - 1, w + k - 1, c), BF16)
    big = jnp.ones((1, h, w, k * k * c), BF16)
    cases = {
        "elementwise x2 over the im2col bytes (peer)": (lambda a: a * 2, big, 2 * big.nbytes),
        "im2col, 49 taps, one concatenate": (
            lambda a: jnp.concatenate([a[:, i:i + h, j:j + w] for i in range(k)
                                       for j in range(k)], -1), xp, big.nbytes),
        "kw taps, 7 on the channels": (
            lambda a: jnp.concatenate([a[:, :, j:j + w] for j in range(k)], -1), xp,
            big.nbytes // k),
    }
    rows, peer_gbps = [], None
    for name, (fn, arg, nbytes) in cases.items():
        t, _ = best_time(fn, arg, runs=runs)
        gbps = nbytes / t / 1e9
        peer_gbps = peer_gbps or gbps
        # ratio: time per byte moved, relative to the elementwise pass (> 1: slower).
        rows.append({"section": "copy", "case": f"{k}x{k} taps, C={c} at {h}x{w}, bf16",
                     "route": name, "ms": t * 1e3, "gbps": gbps, "ratio": peer_gbps / gbps})
    return rows


# CFNet's stride-1 3x3x3 layers at KITTI size, 375x1242 padded to 384x1248, maxdisp 256:
# a 32-channel aggregation layer and the three one-channel cost heads.
CFNET_VOLUME = (((1, 48, 96, 312, 32), (3, 3, 3, 32, 32)),
                ((1, 32, 48, 156, 32), (3, 3, 3, 32, 1)),
                ((1, 16, 96, 312, 32), (3, 3, 3, 32, 1)),
                ((1, 12, 192, 624, 16), (3, 3, 3, 16, 1)))
_PAD3 = [(1, 1)] * 3


def lax_conv3d(x: jax.Array, w: jax.Array) -> jax.Array:
    """The peer: a stride-1 ``lax`` 3-D convolution, NDHWC x DHWIO, padding 1."""
    return jax.lax.conv_general_dilated(x, w, (1, 1, 1), _PAD3,
                                        dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))


def volume_section(*, quick: bool, runs: int) -> list[dict[str, Any]]:
    cases = (((1, 8, 16, 32, 16), (3, 3, 3, 16, 1)),) if quick else CFNET_VOLUME
    rows = []
    for shape, kernel in cases:
        routes = {"depth taps, one 2-D convolution": (
            lambda x, w: _conv3d_stride1(x, w, _PAD3), jnp.float32)}
        if kernel[-1] == 1:
            routes["output taps: one dot, shifted sums"] = (
                lambda x, w: _conv3d_output_taps(x, w, _PAD3), jnp.float32)
        d, h, w = shape[1:4]
        rows += compare(f"3x3x3 {kernel[3]}->{kernel[4]} at {d}x{h}x{w}", shape, kernel,
                        routes, runs=runs, peer=lax_conv3d, section="volume",
                        flops=2.0 * np.prod(shape[:4]) * np.prod(kernel))
    return rows


def deconv_section(*, quick: bool, runs: int) -> list[dict[str, Any]]:
    """CFNet's DeconvBN: 3x3x3, stride 2, padding 1, output padding 1."""
    shape, kernel = (((1, 4, 8, 16, 16), (3, 3, 3, 16, 8)) if quick else
                     ((1, 24, 48, 156, 64), (3, 3, 3, 64, 32)))

    def transposed(method: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
        return lambda x, w: conv_transpose(x, w, (2, 2, 2), (1, 1, 1), (1, 1, 1), method=method)

    d, h, w = shape[1:4]
    return compare(f"3x3x3/2 transposed {kernel[3]}->{kernel[4]} at {d}x{h}x{w}", shape, kernel,
                   {"sub-pixel phases": (transposed("phases"), jnp.float32)}, runs=runs,
                   peer=transposed("dilated"), section="deconv",
                   flops=2.0 * np.prod(shape[:4]) * 8 * np.prod(kernel))


RUNNERS = {"dot": dot_section, "conv": conv_section, "wide": wide_section,
           "strided": strided_section, "narrow": narrow_section, "copy": copy_section,
           "volume": volume_section, "deconv": deconv_section}


def flag_sweep(*, quick: bool, runs: int) -> list[dict[str, Any]]:
    """The 32->64 7x7 bf16-operand conv vs float32, one fresh process per XLA_FLAGS."""
    rows = []
    for flags in FLAG_SWEEP:
        cmd = [sys.executable, "-m", "benchmarks.conv_routes", "--sweep-worker",
               "--runs", str(runs)] + (["--quick"] if quick else [])
        env = dict(os.environ, XLA_FLAGS=flags)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        try:
            result = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            result = {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:120]}
        rows.append({"section": "flags", "case": "7x7 32->64, bf16 / f32",
                     "route": flags or "(none)", **result})
    return rows


def _sweep_worker(*, quick: bool, runs: int) -> None:
    h, w = (32, 64) if quick else (224, 512)
    f32acc = functools.partial(lax_conv, accumulate=jnp.float32)
    x, k = _inputs((1, h, w, 32), (7, 7, 32, 64))
    t32, _ = best_time(f32acc, x, k, runs=runs)
    t16, _ = best_time(f32acc, x.astype(BF16), k.astype(BF16), runs=runs)
    print(json.dumps({"ms": t16 * 1e3, "f32_ms": t32 * 1e3, "ratio": t16 / t32}))


# --------------------------------------------------------------------------- main

COLUMNS = (("case", "case"), ("route", "route"), ("ms", "ms"), ("gflops", "GFLOP/s"),
           ("gbps", "GB/s"), ("ratio", "route / peer"), ("rel_error", "max rel. error"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.conv_routes",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="small shapes, for a smoke run")
    parser.add_argument("--runs", type=positive_int, default=None,
                        help="timed runs (default 5, quick 2)")
    parser.add_argument("--flag-sweep", action="store_true",
                        help="also time the bf16 conv under each XLA_FLAGS setting")
    parser.add_argument("--json", metavar="OUT", help="also write the rows as JSON")
    parser.add_argument("--sweep-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    runs = args.runs or (2 if args.quick else 5)
    if args.sweep_worker:
        _sweep_worker(quick=args.quick, runs=runs)
        return 0
    print(cpu_description())
    print(f"jax {jax.__version__}, XLA_FLAGS={os.environ.get('XLA_FLAGS') or '-'}; "
          f"best of {runs} runs; ratio = route time / float32 lax time (< 1: faster)")
    rows: list[dict[str, Any]] = []
    for section in args.only:
        section_rows = RUNNERS[section](quick=args.quick, runs=runs)
        rows += section_rows
        print(f"\n[{section}]\n" + format_table(section_rows, COLUMNS), flush=True)
    if args.flag_sweep:
        sweep = flag_sweep(quick=args.quick, runs=runs)
        rows += sweep
        print("\n[XLA_FLAGS, fresh process each]\n" + format_table(
            sweep, (("route", "XLA_FLAGS"), ("f32_ms", "f32 ms"), ("ms", "bf16 ms"),
                    ("ratio", "bf16 / f32"), ("error", "error"))))
    if args.json:
        write_json(args.json, {"machine": machine_record(["float32", "bfloat16"]),
                               "quick": args.quick, "runs": runs, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
