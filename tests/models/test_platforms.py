"""What each learned model compiles to per platform (``flowlib.models._layers.on_cpu``).

Every model is exported on this CPU-only machine for ``cuda`` and for ``cpu``
(``jax.export.export(jax.jit(f), platforms=[...])``: tracing and lowering only, nothing is
compiled or run) with abstract parameters (``jax.eval_shape`` of ``init``) at a small size,
and the StableHLO modules are read: for a GPU only plain ``lax`` convolutions (no FFT, 3-D
convolutions as 3-D convolutions, transposed ones input-dilated); for a CPU the CPU routes
(SpyNet's FFT layer, CFNet's depth-tap and phase forms).
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import pytest

from flowlib import _zoo

#: model -> (settings, input size): the smallest sizes the models accept.
CASES = {
    "spynet": ({}, (64, 64)),
    "flownets": ({}, (64, 64)),
    "flownetc": ({}, (64, 64)),
    "cfnet": ({"maxdisp": 64}, (64, 64)),
}

_CONV = re.compile(r"stablehlo\.convolution\(.*?dim_numbers = (\[[^\]]*\])x[^\n]*")
_3D = "[b, 0, 1, 2, f]"


@functools.cache
def _variables(name: str):
    """The variable shapes of ``CASES[name]``'s model (one trace of its init for both exports)."""
    settings, (h, w) = CASES[name]
    image = jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32)
    module = _zoo.spec(name).build(**settings)
    return jax.eval_shape(module.init, jax.random.PRNGKey(0), image, image)


@functools.cache
def _exported(name: str, platform: str) -> str:
    spec = _zoo.spec(name)
    settings, (h, w) = CASES[name]
    module = spec.build(**settings)
    image = jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32)
    variables = _variables(name)
    field = "flow" if spec.task == "flow" else "disparity"

    def forward(variables, image1, image2):
        return getattr(module.apply(variables, image1, image2), field)

    exported = jax.export.export(jax.jit(forward), platforms=[platform])(variables, image, image)
    return exported.mlir_module()


def _convolutions(text: str) -> list[str]:
    return [m.group(0) for m in _CONV.finditer(text)]


@pytest.fixture(scope="module", params=sorted(CASES))
def exports(request) -> tuple[str, str, str]:
    """``(name, cuda export, cpu export)`` of each model: a parametrized module fixture, so
    pytest runs one model's tests one after the other (one xdist worker traces its exports)."""
    name = request.param
    return name, _exported(name, "cuda"), _exported(name, "cpu")


def test_gpu_export_holds_plain_convolutions(exports):
    name, gpu, cpu = exports
    convs = _convolutions(gpu)
    assert convs, "no convolution in the exported module"
    assert "stablehlo.fft" not in gpu
    # plain lax convolutions: at least as many as the CPU lowering has (whose routes turn
    # some into dots or FFTs), 3-D ones included
    assert len(convs) >= len(_convolutions(cpu))
    if name == "cfnet":
        three_d = [c for c in convs if _3D in c]
        assert three_d and any("lhs_dilate = [2, 2, 2]" in c for c in three_d)
        # stride-1 3x3x3 convolutions stay 3-D convolutions
        assert any(", tensor<3x3x3x" in c and "stride" not in c for c in three_d)


def test_cpu_lowering_takes_the_cpu_routes(exports):
    name, gpu, cpu = exports
    gpu_convs, cpu_convs = _convolutions(gpu), _convolutions(cpu)
    if name == "spynet":  # the 16 -> 2 layer of each level by FFT
        assert "stablehlo.fft" in cpu and len(cpu_convs) < len(gpu_convs)
    elif name == "cfnet":  # no input-dilated or stride-1 3-D convolution left
        three_d = [c for c in cpu_convs if _3D in c]
        assert not any("lhs_dilate = [2, 2, 2]" in c for c in three_d)
        # what stays a 3-D convolution on a CPU: the strided and the 1x1x1 ones
        assert all("stride = [2, 2, 2]" in c or ", tensor<1x1x1x" in c for c in three_d)
        assert len(three_d) < len([c for c in gpu_convs if _3D in c])
        assert "stablehlo.fft" not in cpu
    else:  # FlowNet: no CPU route, the same convolutions
        assert "stablehlo.fft" not in cpu and len(cpu_convs) == len(gpu_convs)
