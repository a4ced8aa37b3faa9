"""Shared layers (flowlib.models._layers): the fast convolution formulations against the
plain ``lax`` ones they replace.

``conv3d`` (stride 1: depth taps stacked on the channels of a 2-D convolution) and
``conv_transpose`` (sub-pixel phases, any number of spatial dims) must equal
``lax.conv_general_dilated`` and the input-dilated formulation ``ConvTranspose`` used
before (``reference_conv_transpose``; the property test uses PyTorch's scatter definition,
``scatter_conv_transpose``, because XLA aborts on some random 3-D input-dilated
convolutions), up to float rounding: 1e-10 in
float64, ~1e-5 in float32 (unit-variance inputs, kernels scaled by 1/sqrt(fan_in)); the
gradients too, jitted and eager alike. The modules keep their parameter names and shapes
(the converters and the fixture parity of FlowNet and CFNet depend on them).
"""

from __future__ import annotations

import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowlib.models._layers import Conv, ConvTranspose, conv3d, conv_transpose, mish
from flowlib.models._spec import compute_dtype
from tests.conftest import fuzz_examples

LAYOUT = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}


def reference_conv(x, kernel, strides, padding, dilation=None):
    """The plain lax convolution (what ``nn.Conv`` runs)."""
    return jax.lax.conv_general_dilated(x, kernel, strides, padding, rhs_dilation=dilation,
                                        dimension_numbers=LAYOUT[x.ndim - 2])


def scatter_conv_transpose(x, kernel, strides, padding, output_padding):
    """PyTorch's definition, written out: every input pixel i adds ``x[i] w[t]`` at
    ``i * s + t - padding``; no convolution op involved (the hypothesis test's reference:
    XLA 0.10.2 aborts compiling some input-dilated 3-D convolutions, e.g. x (2, 3, 3, 2, 1),
    kernel (5, 2, 2, 1, 4), strides (2, 2, 3), padding (0, 1, 1), output padding (0, 0, 2):
    "Window dimensions do not match RHS shape" in its algebraic simplifier)."""
    nd = x.ndim - 2
    size, k = x.shape[1:-1], kernel.shape[:nd]
    out = [(n - 1) * s - 2 * p + ki + op
           for n, s, p, ki, op in zip(size, strides, padding, k, output_padding)]
    full = [max((n - 1) * s + ki, p + o) for n, s, ki, p, o in zip(size, strides, k, padding, out)]
    y = jnp.zeros((x.shape[0], *full, kernel.shape[-1]), x.dtype)
    for t in np.ndindex(*k):
        contrib = jnp.einsum("...c,cf->...f", x, kernel[t], precision=jax.lax.Precision.HIGHEST)
        where = tuple(slice(ti, ti + (n - 1) * s + 1, s) for ti, n, s in zip(t, size, strides))
        y = y.at[(slice(None), *where)].add(contrib)
    return y[(slice(None), *(slice(p, p + o) for p, o in zip(padding, out)))]


def reference_conv_transpose(x, kernel, strides, padding, output_padding):
    """The former ``ConvTranspose``: flipped kernel, input-dilated convolution."""
    nd = x.ndim - 2
    k = kernel.shape[:nd]
    return jax.lax.conv_general_dilated(
        x, jnp.flip(kernel, axis=tuple(range(nd))), (1,) * nd,
        [(ki - 1 - p, ki - 1 - p + op) for ki, p, op in zip(k, padding, output_padding)],
        lhs_dilation=strides, dimension_numbers=LAYOUT[nd])


def _arrays(seed, x_shape, k_shape, dtype):
    rng = np.random.default_rng(seed)
    fan_in = math.prod(k_shape[:-1])
    x = rng.standard_normal(x_shape)
    k = rng.standard_normal(k_shape) / math.sqrt(fan_in)
    return jnp.asarray(x, dtype), jnp.asarray(k, dtype)


def _max_err(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


@st.composite
def conv3d_cases(draw):
    k = tuple(draw(st.integers(1, 4)) for _ in range(3))
    s = tuple(draw(st.integers(1, 3)) for _ in range(3))
    pad = [(draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(3)]
    # Input large enough for a non-empty output.
    size = tuple(max(draw(st.integers(1, 7)), ki - lo - hi)
                 for ki, (lo, hi) in zip(k, pad))
    batch, cin, cout = draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    return (batch, *size, cin), (*k, cin, cout), s, pad, draw(st.integers(0, 2**31 - 1))


@st.composite
def transpose_cases(draw):
    nd = draw(st.integers(1, 3))
    k = tuple(draw(st.integers(1, 5)) for _ in range(nd))
    s = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    p = tuple(draw(st.integers(0, ki - 1)) for ki in k)
    # PyTorch requires output_padding < stride (or < dilation, which is 1 here).
    op = tuple(draw(st.integers(0, si - 1)) for si in s)
    size = tuple(draw(st.integers(1, 5)) for _ in range(nd))
    for n, si, pi, ki, oi in zip(size, s, p, k, op):
        if (n - 1) * si - 2 * pi + ki + oi < 1:
            p = tuple(0 for _ in range(nd))  # keep the output non-empty
            break
    batch, cin, cout = draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    return (batch, *size, cin), (*k, cin, cout), s, p, op, draw(st.integers(0, 2**31 - 1))


# ------------------------------------------------------------------ values, float64


@settings(max_examples=40, deadline=None)
@given(conv3d_cases())
def test_conv3d_matches_lax_float64(case):
    x_shape, k_shape, s, pad, seed = case
    with jax.enable_x64(True):
        x, k = _arrays(seed, x_shape, k_shape, jnp.float64)
        got, want = conv3d(x, k, s, pad), reference_conv(x, k, s, pad)
        assert got.shape == want.shape
        assert _max_err(got, want) < 1e-10


# Each example compiles (about 0.5 s on 2 cores): 8 by default, more in a fuzzing campaign.
@settings(max_examples=fuzz_examples(8), deadline=None)
@given(transpose_cases())
def test_conv_transpose_matches_input_dilated_float64(case):
    x_shape, k_shape, s, p, op, seed = case
    with jax.enable_x64(True):
        x, k = _arrays(seed, x_shape, k_shape, jnp.float64)
        got = conv_transpose(x, k, s, p, op, method="phases")
        # Jitted: eager, each kernel tap's scatter (a new slice) compiles on its own.
        want = jax.jit(scatter_conv_transpose, static_argnums=(2, 3, 4))(x, k, s, p, op)
        nd = len(s)
        out = tuple((n - 1) * si - 2 * pi + ki + oi
                    for n, si, pi, ki, oi in zip(x_shape[1:-1], s, p, k_shape[:nd], op))
        assert got.shape == want.shape == (x_shape[0], *out, k_shape[-1])
        assert _max_err(got, want) < 1e-10


# ------------------------------------------------- CFNet-like shapes, float32, jit


# (x shape, kernel shape, strides, padding): CFNet's 3x3x3 convbn_3d, its stride-2
# downsampling convs (odd and even sizes), the 1x1x1 redir convs.
CONV3D_CASES = [
    ((1, 6, 12, 20, 16), (3, 3, 3, 16, 8), (1, 1, 1), [(1, 1)] * 3),
    ((2, 7, 9, 11, 5), (3, 3, 3, 5, 6), (2, 2, 2), [(1, 1)] * 3),
    ((1, 8, 12, 16, 8), (3, 3, 3, 8, 16), (2, 2, 2), [(1, 1)] * 3),
    ((1, 4, 6, 10, 8), (1, 1, 1, 8, 4), (1, 1, 1), [(0, 0)] * 3),
]
# (x shape, kernel shape, strides, padding, output_padding): CFNet's DeconvBN, FlowNet's
# 2-D deconv (k4 s2 p1), mixed strides.
TRANSPOSE_CASES = [
    ((1, 3, 6, 10, 16), (3, 3, 3, 16, 8), (2, 2, 2), (1, 1, 1), (1, 1, 1)),
    ((2, 5, 7, 6), (4, 4, 6, 2), (2, 2), (1, 1), (0, 0)),
    ((1, 3, 4, 5, 3), (3, 2, 4, 3, 2), (2, 1, 3), (1, 0, 2), (1, 0, 2)),
]



def _conv_id(case) -> str:
    return f"k{case[1][0]}s{case[2][0]}-{case[0][-1]}to{case[1][-1]}"


def _transpose_id(case) -> str:
    return f"{len(case[2])}d-s{''.join(map(str, case[2]))}"


@pytest.mark.parametrize("case", CONV3D_CASES, ids=_conv_id)
def test_conv3d_float32(case, jit):
    x_shape, k_shape, s, pad = case
    x, k = _arrays(0, x_shape, k_shape, jnp.float32)
    got = jit(lambda x, k: conv3d(x, k, s, pad))(x, k)
    assert _max_err(got, reference_conv(x, k, s, pad)) < 1e-5


@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=_transpose_id)
def test_conv_transpose_float32(case, jit):
    x_shape, k_shape, s, p, op = case
    x, k = _arrays(1, x_shape, k_shape, jnp.float32)
    for method in ("auto", "phases"):
        got = jit(lambda x, k: conv_transpose(x, k, s, p, op, method=method))(x, k)
        assert _max_err(got, reference_conv_transpose(x, k, s, p, op)) < 1e-5


# ---------------------------------------------------------------------- gradients
# Compiled only: eager and compiled forwards agree (the float32 tests above), and an eager
# backward pass dispatches each transposed primitive on its own (~6x the time).


@pytest.mark.parametrize("case", CONV3D_CASES[:3], ids=_conv_id)
def test_conv3d_gradients(case, x64):
    x_shape, k_shape, s, pad = case
    x, k = _arrays(2, x_shape, k_shape, jnp.float64)
    y = reference_conv(x, k, s, pad)
    ct = jnp.asarray(np.random.default_rng(3).standard_normal(y.shape))

    def loss(f):
        return jax.jit(jax.grad(lambda x, k: jnp.sum(f(x, k, s, pad) * ct), argnums=(0, 1)))

    for got, want in zip(loss(conv3d)(x, k), loss(reference_conv)(x, k)):
        assert _max_err(got, want) < 1e-10


@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=_transpose_id)
def test_conv_transpose_gradients(case, x64):
    x_shape, k_shape, s, p, op = case
    x, k = _arrays(4, x_shape, k_shape, jnp.float64)
    y = reference_conv_transpose(x, k, s, p, op)
    ct = jnp.asarray(np.random.default_rng(5).standard_normal(y.shape))

    def loss(f):
        return jax.jit(jax.grad(lambda x, k: jnp.sum(f(x, k, s, p, op) * ct), argnums=(0, 1)))

    phases = functools.partial(conv_transpose, method="phases")
    for got, want in zip(loss(phases)(x, k), loss(reference_conv_transpose)(x, k)):
        assert _max_err(got, want) < 1e-10


# ------------------------------------------------------------------------ modules


@pytest.mark.parametrize("stride, dilation", [(1, 1), (2, 1), (1, 2)])
def test_conv_module_3d(stride, dilation, x64):
    """Same parameters as nn.Conv (conv/kernel, conv/bias); dilated convs take lax."""
    x, _ = _arrays(6, (1, 7, 8, 9, 3), (3, 3, 3, 3, 4), jnp.float64)
    mod = Conv(4, 3, stride=stride, padding=1, dilation=dilation, ndim=3)
    params = mod.init(jax.random.PRNGKey(0), x)["params"]
    assert jax.tree_util.tree_map(jnp.shape, params) == {
        "conv": {"kernel": (3, 3, 3, 3, 4), "bias": (4,)}}
    kernel = jnp.asarray(np.random.default_rng(7).standard_normal((3, 3, 3, 3, 4)))
    bias = jnp.arange(4.0)
    got = mod.apply({"params": {"conv": {"kernel": kernel, "bias": bias}}}, x)
    want = reference_conv(x, kernel, (stride,) * 3, [(1, 1)] * 3, (dilation,) * 3) + bias
    assert _max_err(got, want) < 1e-10


@pytest.mark.parametrize("ndim, k, stride, pad, out_pad",
                         [(3, 3, 2, 1, 1), (2, 4, 2, 1, 0), (3, 3, 1, 1, 0)])
def test_conv_transpose_module(ndim, k, stride, pad, out_pad, x64):
    """Kernel (*k, in, out) = PyTorch (in, out, *k) moved, not flipped; bias optional."""
    x, _ = _arrays(8, (2, *(4,) * ndim, 3), (1, 1), jnp.float64)
    for use_bias in (False, True):
        mod = ConvTranspose(5, k, stride=stride, padding=pad, output_padding=out_pad,
                            use_bias=use_bias, ndim=ndim)
        params = mod.init(jax.random.PRNGKey(0), x)["params"]
        want_shapes = {"kernel": (*(k,) * ndim, 3, 5)} | ({"bias": (5,)} if use_bias else {})
        assert jax.tree_util.tree_map(jnp.shape, params) == want_shapes
        params = {"kernel": jnp.asarray(np.random.default_rng(9).standard_normal(
            want_shapes["kernel"]))} | ({"bias": jnp.arange(5.0)} if use_bias else {})
        got = mod.apply({"params": params}, x)
        want = reference_conv_transpose(x, params["kernel"], (stride,) * ndim, (pad,) * ndim,
                                        (out_pad,) * ndim)
        assert got.shape == (2, *((4 - 1) * stride - 2 * pad + k + out_pad,) * ndim, 5)
        assert _max_err(got, want + params.get("bias", 0.0)) < 1e-10


def _convs(f, *args) -> list[tuple[int, bool]]:
    """(lhs rank, input-dilated?) of every convolution ``f(*args)`` lowers to for a CPU
    (the layers choose their route per lowering platform)."""
    text = jax.jit(f).lower(*args).as_text()
    return [(len(m.group(1).split(",")),
             bool(re.search(r"lhs_dilate = \[[^\]]*[2-9]", m.group(0))))
            for m in re.finditer(r"stablehlo\.convolution\(.*?dim_numbers = \[([^\]]*)\][^\n]*",
                                 text)]


def test_fast_paths_taken():
    """CFNet's 3x3x3 convbn and DeconvBN lower to 2-D convolutions, no input dilation; its
    one-channel cost heads to a dot; strided and 1x1x1 3-D convolutions and 2-D
    deconvolutions stay as they were."""
    x = jnp.zeros((1, 4, 6, 8, 4))

    def layer(mod):
        variables = jax.eval_shape(mod.init, jax.random.PRNGKey(0), x)
        return _convs(mod.apply, variables, x)

    assert layer(Conv(4, 3, padding=1, use_bias=False, ndim=3)) == [(4, False)]
    assert layer(ConvTranspose(4, 3, stride=2, padding=1, output_padding=1, use_bias=False,
                               ndim=3)) == [(4, False)]
    assert layer(Conv(4, 3, stride=2, padding=1, use_bias=False, ndim=3)) == [(5, False)]
    assert layer(Conv(4, 1, use_bias=False, ndim=3)) == [(5, False)]
    assert layer(Conv(1, 3, padding=1, use_bias=False, ndim=3)) == []  # a dot, no conv
    assert layer(Conv(1, 3, stride=2, padding=1, use_bias=False, ndim=3)) == [(5, False)]
    x = jnp.zeros((1, 6, 8, 4))
    assert layer(ConvTranspose(2, 4, stride=2, padding=1, ndim=2)) == [(4, True)]


@pytest.mark.parametrize("ndim", [2, 3])
def test_bfloat16_dtype(ndim):
    """dtype="bfloat16" applies to the fast paths too: float32 parameters and outputs, and
    the result equals the float32 layer run on bfloat16-rounded input and kernel (the
    products are exact in float32, only the summation order differs)."""
    x, _ = _arrays(10, (1, 4, 6, 8, 4)[-ndim - 2:], (1, 1), jnp.float32)
    for kind in (Conv, ConvTranspose):
        kw = {"padding": 1, "ndim": ndim} if kind is Conv else {
            "stride": 2, "padding": 1, "output_padding": 1, "ndim": ndim}
        mod = kind(4, 3, dtype="bfloat16", **kw)
        variables = mod.init(jax.random.PRNGKey(0), x)
        assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(variables))
        out = mod.apply(variables, x)
        assert out.dtype == jnp.float32
        rounded = jax.tree.map(
            lambda v: v.astype(jnp.bfloat16).astype(jnp.float32)
            if v.ndim > 1 else v, variables)
        want = kind(4, 3, **kw).apply(rounded, x.astype(jnp.bfloat16).astype(jnp.float32))
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
        # and differs from plain float32 by bfloat16 rounding only (8 bits of mantissa)
        full = kind(4, 3, **kw).apply(variables, x)
        assert 0 < float(jnp.max(jnp.abs(out - full))) < 0.02 * float(jnp.max(jnp.abs(full)))


def test_compute_dtype_validation():
    assert compute_dtype(None) is None and compute_dtype("float32") is None
    assert compute_dtype(jnp.float32) is None
    assert compute_dtype("bfloat16") == jnp.bfloat16 == compute_dtype(jnp.bfloat16)
    for bad in ("float16", "bf16", "int8", 3):
        with pytest.raises(ValueError, match="dtype must be None, 'float32' or 'bfloat16'"):
            compute_dtype(bad)
    with pytest.raises(ValueError, match="dtype must be"):
        Conv(4, 3, dtype="float16").init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 2)))


# ------------------------------------------------------------------------- errors


def test_errors():
    x = jnp.zeros((1, 4, 4, 4, 2))
    with pytest.raises(ValueError, match=r"kernel \(kd, kh, kw, C, F\)"):
        conv3d(x, jnp.zeros((3, 3, 3, 5, 2)), (1, 1, 1), [(1, 1)] * 3)
    with pytest.raises(ValueError, match="output would be empty"):
        conv3d(x, jnp.zeros((7, 3, 3, 2, 2)), (1, 1, 1), [(1, 1)] * 3)
    with pytest.raises(ValueError, match="3 positive strides"):
        conv3d(x, jnp.zeros((3, 3, 3, 2, 2)), (1, 1), [(1, 1)] * 3)
    with pytest.raises(ValueError, match=r"kernel \(\*k, C, F\)"):
        conv_transpose(x, jnp.zeros((3, 3, 2, 2)), (2,) * 3, (1,) * 3, (1,) * 3)
    with pytest.raises(ValueError, match="output would be empty"):
        conv_transpose(x[:, :1], jnp.zeros((1, 3, 3, 2, 2)), (2,) * 3, (1,) * 3, (0,) * 3)
    with pytest.raises(ValueError, match="3 strides"):
        conv_transpose(x, jnp.zeros((3, 3, 3, 2, 2)), (2,) * 2, (1,) * 3, (1,) * 3)
    with pytest.raises(ValueError, match="method must be"):
        conv_transpose(x, jnp.zeros((3, 3, 3, 2, 2)), (2,) * 3, (1,) * 3, (1,) * 3,
                       method="fft")


def _mish_float64(x):
    """Mish as written in the paper and CFNet: x * tanh(softplus(x)), softplus = x above 20."""
    x = np.asarray(x, np.float64)
    return x * np.tanh(np.where(x > 20.0, x, np.log1p(np.exp(np.minimum(x, 20.0)))))


@pytest.mark.parametrize("jit", [False, True])
def test_mish_one_exp_form_matches_definition(jit):
    x = np.concatenate([np.linspace(-120, 120, 200_001), [-1e30, -88.0, -1e-30, 0.0, 1e-30,
                                                          19.999, 20.0, 20.001, 1e30]])
    fn = jax.jit(mish) if jit else mish
    got = np.asarray(fn(jnp.asarray(x, jnp.float32)), np.float64)
    want = _mish_float64(np.float32(x))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-30)
    assert float(mish(jnp.float32(-1.0))) == pytest.approx(-0.3034014613, rel=1e-6)  # by hand


def test_mish_gradient_float64(x64):
    x = jnp.asarray([-30.0, -5.0, -1.0, -0.3, 0.0, 0.7, 3.0, 19.0, 25.0], jnp.float64)
    got = jax.vmap(jax.grad(mish))(x)
    # d/dx x tanh(sp(x)) = tanh(sp) + x sech^2(sp) sigmoid(x); sp = softplus (x above 20)
    xn = np.asarray(x)
    sp = np.where(xn > 20, xn, np.log1p(np.exp(np.minimum(xn, 20))))
    sig = np.where(xn > 20, 0.0, 1 / (1 + np.exp(-xn)))
    want = np.tanh(sp) + xn * (1 - np.tanh(sp) ** 2) * sig
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("x_shape, k, pad", [
    ((1, 5, 6, 7, 3), (3, 3, 3), [(1, 1)] * 3),
    ((2, 4, 3, 9, 2), (2, 3, 4), [(0, 1), (2, 0), (1, 2)]),
    ((1, 6, 5, 4, 5), (3, 1, 2), [(-1, 0), (0, 0), (0, 1)]),  # negative: crop
    ((1, 1, 1, 1, 4), (1, 1, 1), [(0, 0)] * 3),
])
def test_conv3d_one_output_channel_float64(x_shape, k, pad, x64):
    """The output-taps path (one output channel, stride 1): values and gradients."""
    x, kern = _arrays(7, x_shape, (*k, x_shape[-1], 1), jnp.float64)
    got, want = conv3d(x, kern, (1, 1, 1), pad), reference_conv(x, kern, (1, 1, 1), pad)
    assert got.shape == want.shape
    assert _max_err(got, want) < 1e-10
    loss = lambda f: lambda a, b: jnp.sum(jnp.sin(f(a, b)))  # noqa: E731
    # Gradients compiled, as in the gradient tests below.
    g_got = jax.jit(jax.grad(loss(lambda a, b: conv3d(a, b, (1, 1, 1), pad)), (0, 1)))(x, kern)
    g_want = jax.jit(jax.grad(loss(lambda a, b: reference_conv(a, b, (1, 1, 1), pad)),
                              (0, 1)))(x, kern)
    for a, b in zip(g_got, g_want):
        assert _max_err(a, b) < 1e-10


@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=_transpose_id)
def test_scatter_reference_matches_input_dilated(case, x64):
    """The two references agree on the fixed cases (so either can stand for PyTorch)."""
    x_shape, k_shape, s, p, op = case
    x, k = _arrays(6, x_shape, k_shape, jnp.float64)
    want = reference_conv_transpose(x, k, s, p, op)
    assert _max_err(scatter_conv_transpose(x, k, s, p, op), want) < 1e-10
    # By hand: 1-D, stride 2, kernel [1, 10, 100], one input pair [1, 2], padding 1 drops
    # the first and last of the full [1, 10, 102, 20, 200].
    y = scatter_conv_transpose(jnp.asarray([[[1.0], [2.0]]]), jnp.asarray([[[1.0]], [[10.0]],
                                                                          [[100.0]]]),
                               (2,), (1,), (0,))
    np.testing.assert_array_equal(np.asarray(y)[0, :, 0], [10.0, 102.0, 20.0])
