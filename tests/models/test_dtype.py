"""The ``dtype="bfloat16"`` option of every model: float32 parameters and outputs, bfloat16
products in every convolution, and results close to float32.

Small random-weight models (``channel_divisor``) on small inputs; the accuracy on real pairs
with official weights is measured by ``benchmarks/dtype_accuracy.py`` (README "Speed").
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowlib.models.cfnet import CFNet
from flowlib.models.flownet import FlowNet
from flowlib.models.spynet import SpyNet
from tests._random_weights import random_variables

# (model, input (B, H, W, 3), output field). Tiny widths keep this tier fast.
_MODELS = {
    "spynet": (SpyNet(), (1, 64, 96, 3), "flow"),
    "flownets": (FlowNet(channel_divisor=16), (1, 64, 64, 3), "flow"),
    "flownetc": (FlowNet(correlation=True, channel_divisor=16), (1, 64, 64, 3), "flow"),
    "cfnet": (CFNet(maxdisp=64, channel_divisor=8), (1, 64, 64, 3), "disparity"),
}
# bfloat16 keeps 8 significant bits (relative rounding <= 2**-9 ~ 0.2 %) of each operand of
# each product; over the 5 to ~60 layers of these random-weight nets the output moved by
# <= 1 % of its range in the runs that set this bound, so 3 % leaves room without letting a
# float16 or all-bfloat16 path (activations rounded too, measured ~2-5x larger) hide.
_REL_TOL = 0.03


def _pair(shape, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.random(shape, np.float32)
    return jnp.asarray(a), jnp.asarray(np.roll(a, 3, axis=2))


# CFNet's and FlowNetC's compiles take 110 s and 24 s on 2 cores: those two run with -m slow.
_SLOW = ("cfnet", "flownetc")


@pytest.fixture(scope="module", params=[
    pytest.param(name, marks=pytest.mark.slow) if name in _SLOW else name for name in sorted(_MODELS)
])
def run(request):
    name = request.param
    model, shape, field = _MODELS[name]
    a, b = _pair(shape)
    # One-channel kernels (CFNet's cost heads) scaled down so the logits stay O(1), as in a
    # trained network: He-normal alone makes p(d) one-hot, where bfloat16 rounding flips
    # the argmax.
    variables = random_variables(model, a, b, seed=1, head_gain=0.02)
    bf16 = model.clone(dtype="bfloat16")
    fwd = jax.jit(lambda m, v, x, y: getattr(m.apply(v, x, y), field), static_argnums=0)
    return (name, model, bf16, variables, a, b, fwd(model, variables, a, b),
            fwd(bf16, variables, a, b))


def test_parameters_and_outputs_stay_float32(run):
    name, _, bf16, variables, a, b, _, out = run
    init = jax.eval_shape(bf16.init, jax.random.PRNGKey(1), a, b)
    assert {v.dtype for v in jax.tree.leaves(init)} == {jnp.dtype(jnp.float32)}, name
    assert out.dtype == jnp.float32, name
    assert jax.tree.structure(init) == jax.tree.structure(variables)


def test_close_to_float32(run):
    name, _, _, _, _, _, ref, out = run
    scale = float(jnp.max(jnp.abs(ref)))
    err = float(jnp.max(jnp.abs(out - ref)))
    assert scale > 0 and np.all(np.isfinite(out))
    assert 0 < err <= _REL_TOL * scale, (name, err, scale)


def test_every_convolution_multiplies_in_bfloat16(run):
    """Each convolution of the bf16 model has bfloat16 operands and a float32 result; the
    float32 model has no bfloat16 anywhere."""
    name, model, bf16, variables, a, b, _, _ = run
    text = jax.jit(bf16.apply).lower(variables, a, b).as_text()
    convs = re.findall(r"stablehlo\.convolution.*?:\s*\((.*?)\)\s*->\s*(tensor<[^>]*>)", text)
    assert convs, name
    for operands, result in convs:
        assert operands.count("bf16") == 2 and "f32" in result, (name, operands, result)
    assert "bf16" not in jax.jit(model.apply).lower(variables, a, b).as_text()


@pytest.mark.parametrize("bad", ["float16", "bf16", "int8"])
def test_invalid_dtype_is_rejected(bad):
    a, b = _pair((1, 32, 32, 3))
    for model in (SpyNet(dtype=bad), FlowNet(channel_divisor=16, dtype=bad),
                  CFNet(maxdisp=64, channel_divisor=8, dtype=bad)):
        with pytest.raises(ValueError, match="dtype must be None, 'float32' or 'bfloat16'"):
            jax.eval_shape(model.init, jax.random.PRNGKey(0), a, b)


def test_load_model_dtype(tmp_path, monkeypatch):
    """``flowlib.load_model(..., dtype=...)``: validated before any weights are touched,
    float32 outputs, recorded in ``meta``; the CLI's ``--dtype`` reaches it."""
    import flowlib
    from flowlib import cli

    monkeypatch.setenv("FLOWLIB_COMPILATION_CACHE", "0")
    with pytest.raises(ValueError, match="dtype must be None, 'float32' or 'bfloat16'"):
        flowlib.load_model("spynet", tmp_path / "does-not-exist.npz", dtype="float16")
    m32 = flowlib.load_model("spynet")
    m16 = flowlib.load_model("spynet", dtype="bfloat16")
    assert m16.meta["dtype"] == "bfloat16" and "dtype" not in m32.meta
    assert flowlib.load_model("spynet", dtype="float32").module == m32.module
    a, b = (np.asarray(x) for x in _pair((40, 56, 3)))
    f32, f16 = flowlib.estimate(a, b, model=m32), flowlib.estimate(a, b, model=m16)
    assert f16.dtype == np.float32 and f16.shape == f32.shape
    assert 0 < np.abs(f16 - f32).max() <= _REL_TOL * max(np.abs(f32).max(), 1.0)
    args = cli.build_parser().parse_args(["estimate", "--dtype", "bfloat16", "a.png", "b.png"])
    assert args.dtype == "bfloat16"
    args = cli.build_parser().parse_args(["stereo", "l.png", "r.png", "-o", "d.pfm"])
    assert args.dtype == "float32"
