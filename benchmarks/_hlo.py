"""Convolutions in compiled programs: which run in bfloat16, and where the time goes.

Parses StableHLO / optimised HLO text (``jax.jit(...).lower(...).as_text()`` and
``.compile().as_text()``) for ``benchmarks.models``' per-convolution breakdown
(``benchmarks.models.conv_breakdown`` times what :func:`parse_convolutions` finds).
"""

from __future__ import annotations

import re

__all__ = ["conv_dtypes", "requested_conv_dtypes", "parse_convolutions", "conv_kind"]


def conv_dtypes(hlo: str) -> tuple[int, int]:
    """(convolutions with bf16 operands, all convolutions) in an optimised HLO module's
    text (flowlib's bfloat16 convolutions take bf16 operands and give float32 results)."""
    # Optimised HLO names its operands without their types: look them up by name.
    types = dict(re.findall(r"^\s*(?:ROOT\s+)?%?([\w.-]+)\s*=\s*(\w+)\[", hlo, re.M))
    convs = re.findall(r"\bconvolution\(\s*(?:(\w+)\[[^\]]*\]\S*\s+)?%?([\w.-]+)", hlo)
    kinds = [inline or types.get(name, "") for inline, name in convs]
    return sum(t == "bf16" for t in kinds), len(kinds)


def requested_conv_dtypes(stablehlo: str) -> tuple[int, int]:
    """(convolutions with bf16 operands, all convolutions) as the program asks for them
    (StableHLO, before XLA's CPU pipeline, which may run a bf16 convolution in float32)."""
    convs = re.findall(r"stablehlo\.convolution.*:\s*\(tensor<(?:\d+x)*(\w+)>", stablehlo)
    return sum(t == "bf16" for t in convs), len(convs)


_CONV_LINE = re.compile(
    r"stablehlo\.convolution\(.*dim_numbers = \[([^\]]*)\]x\[([^\]]*)\]->\[([^\]]*)\]"
    r"(?:, window = \{(.*?)\})?.*feature_group_count = (\d+).*"
    r": \(tensor<([^>]*)>, tensor<([^>]*)>\) -> tensor<([^>]*)>\s*$")


def _window_field(window: str, name: str, ndim: int) -> list:
    m = re.search(name + r" = (\[\[.*?\]\]|\[.*?\])", window or "")
    if m is None:
        return [[0, 0]] * ndim if name == "pad" else [1] * ndim
    return eval(m.group(1).replace("false", "False").replace("true", "True"))  # noqa: S307


_MLIR_DTYPES = {"f32": "float32", "bf16": "bfloat16", "f16": "float16", "f64": "float64"}


def _tensor(spec: str) -> tuple[tuple[int, ...], str]:
    *dims, dtype = spec.split("x")
    return tuple(int(d) for d in dims), _MLIR_DTYPES.get(dtype, dtype)


def parse_convolutions(stablehlo: str) -> list[dict]:
    """Every convolution of a lowered (StableHLO) module with channels-last layouts:
    input / kernel shapes, dtype, strides, padding, input (lhs) dilation, kernel dilation."""
    convs = []
    for line in stablehlo.splitlines():
        m = _CONV_LINE.search(line)
        if m is None:
            continue
        lhs, rhs, out = ([d.strip() for d in g.split(",")] for g in m.groups()[:3])
        ndim = len(lhs) - 2
        spatial = [str(i) for i in range(ndim)]
        if (lhs != ["b", *spatial, "f"] or out != lhs or rhs != [*spatial, "i", "o"]
                or int(m.group(5)) != 1):
            continue  # not the NHWC / HWIO layout the models use: not rebuilt
        x_shape, dtype = _tensor(m.group(6))
        k_shape, _ = _tensor(m.group(7))
        window = m.group(4)
        convs.append({
            "x": x_shape, "k": k_shape, "dtype": dtype, "out": _tensor(m.group(8))[0],
            "stride": tuple(_window_field(window, "stride", ndim)),
            "pad": tuple(tuple(p) for p in _window_field(window, "pad", ndim)),
            "lhs_dilate": tuple(_window_field(window, "lhs_dilate", ndim)),
            "rhs_dilate": tuple(_window_field(window, "rhs_dilate", ndim)),
        })
    return convs


def conv_kind(conv: dict) -> str:
    nd = len(conv["x"]) - 2
    if any(d > 1 for d in conv["lhs_dilate"]):
        return f"conv{nd}d transposed (lhs-dilated)"
    if any(s > 1 for s in conv["stride"]):
        return f"conv{nd}d strided"
    return f"conv{nd}d"
