"""FFT overlap-add convolution (``flowlib.models._fft_conv``) and ``Conv(method="fft")``:
equal to ``lax.conv_general_dilated`` (float64 to 1e-10, float32 to float rounding), its
gradients too, jit equals eager, and clear errors for what it does not compute."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowlib.models._fft_conv import fft_conv2d, fft_tile
from flowlib.models._layers import Conv
from flowlib.models.spynet import LevelNetwork
from tests._gradients import check_grads


def _lax(x, k, padding):
    return jax.lax.conv_general_dilated(x, k, (1, 1), padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        precision=jax.lax.Precision.HIGHEST)


def _rand(shape, seed, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


CASES = [  # (x shape, kernel shape, padding, tile)
    ((1, 17, 23, 3), (7, 7, 3, 2), ((3, 3), (3, 3)), None),
    ((2, 64, 70, 4), (7, 7, 4, 2), ((3, 3), (3, 3)), 16),
    ((1, 9, 40, 2), (3, 5, 2, 3), ((1, 0), (2, 4)), None),
    ((1, 7, 7, 1), (7, 7, 1, 1), ((0, 0), (0, 0)), 12),  # one valid output pixel
    ((1, 130, 61, 2), (1, 1, 2, 2), ((0, 0), (0, 0)), 8),
]


@pytest.mark.parametrize("xs, ks, padding, tile", CASES)
def test_matches_lax_float64(xs, ks, padding, tile, x64):
    x, k = jnp.asarray(_rand(xs, 0)), jnp.asarray(_rand(ks, 1))
    # Compiled (one compile instead of one per operation); eager = jit: test_float32_and_jit.
    got = jax.jit(lambda a, b: fft_conv2d(a, b, padding, tile=tile))(x, k)
    want = _lax(x, k, padding)
    assert got.dtype == jnp.float64 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("xs, ks, padding, tile", CASES)
def test_float32_and_jit(xs, ks, padding, tile, jit):
    x = jnp.asarray(_rand(xs, 2, np.float32))
    k = jnp.asarray(_rand(ks, 3, np.float32) / np.sqrt(np.prod(ks[:3])))
    fn = (lambda a, b: fft_conv2d(a, b, padding, tile=tile))
    got = (jax.jit(fn) if jit else fn)(x, k)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, _lax(x, k, padding), rtol=1e-5, atol=2e-5)


def test_bfloat16_inputs_are_widened():
    x = jnp.asarray(_rand((1, 12, 12, 3), 4, np.float32)).astype(jnp.bfloat16)
    k = jnp.asarray(_rand((7, 7, 3, 2), 5, np.float32)).astype(jnp.bfloat16)
    got = fft_conv2d(x, k, ((3, 3), (3, 3)))
    assert got.dtype == jnp.float32
    want = _lax(x.astype(jnp.float32), k.astype(jnp.float32), ((3, 3), (3, 3)))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_gradients_float64(x64):
    x, k = jnp.asarray(_rand((1, 10, 13, 2), 6)), jnp.asarray(_rand((5, 5, 2, 2), 7))
    check_grads(lambda a, b: fft_conv2d(a, b, ((2, 2), (2, 2)), tile=8), (x, k), order=1,
                modes=("rev",), atol=1e-7, rtol=1e-7)
    ga = jax.jit(jax.grad(lambda a, b: jnp.sum(fft_conv2d(a, b, ((2, 2), (2, 2))) ** 2), (0, 1)))(x, k)
    gb = jax.jit(jax.grad(lambda a, b: jnp.sum(_lax(a, b, ((2, 2), (2, 2))) ** 2), (0, 1)))(x, k)
    for a, b in zip(ga, gb):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


def test_tile_choice():
    assert fft_tile(7, 448, 1024) == 64
    assert fft_tile(7, 20, 38) == 64  # one 64 tile covers it; 32 would need two blocks
    assert fft_tile(7, 20, 20) == 32
    assert fft_tile(7, 8, 8) == 16
    assert fft_tile(3, 4, 4) == 8
    assert fft_tile(40, 4, 4) == 78  # never below 2 k - 2


def test_errors():
    x, k = jnp.zeros((1, 8, 8, 3)), jnp.zeros((7, 7, 3, 2))
    with pytest.raises(ValueError, match=r"expected x \(N, H, W, C\) and kernel"):
        fft_conv2d(x[0], k)
    with pytest.raises(ValueError, match=r"expected x .* got \(1, 8, 8, 3\) and \(7, 7, 4, 2\)"):
        fft_conv2d(x, jnp.zeros((7, 7, 4, 2)))
    with pytest.raises(ValueError, match="padding must be non-negative"):
        fft_conv2d(x, k, ((-1, 0), (0, 0)))
    with pytest.raises(ValueError, match="output would be empty"):
        fft_conv2d(jnp.zeros((1, 5, 8, 3)), k)
    with pytest.raises(ValueError, match="FFT tile 8 too small for a 7x7 kernel"):
        fft_conv2d(x, k, ((3, 3), (3, 3)), tile=8)


def test_conv_module_fft_equals_lax():
    x = jnp.asarray(_rand((1, 21, 30, 16), 8, np.float32))
    lax_conv = Conv(2, 7, padding=3)
    variables = lax_conv.init(jax.random.PRNGKey(0), x)
    fft = Conv(2, 7, padding=3, method="fft")
    assert jax.tree.map(jnp.shape, fft.init(jax.random.PRNGKey(0), x)) == jax.tree.map(
        jnp.shape, variables)
    np.testing.assert_allclose(fft.apply(variables, x), lax_conv.apply(variables, x),
                               rtol=1e-5, atol=1e-5)
    bf16 = Conv(2, 7, padding=3, method="fft", dtype="bfloat16").apply(variables, x)
    assert bf16.dtype == jnp.float32
    np.testing.assert_allclose(bf16, lax_conv.apply(variables, x), rtol=0, atol=0.05)


def test_conv_module_method_errors():
    x = jax.ShapeDtypeStruct((1, 8, 8, 3), jnp.float32)
    x3 = jax.ShapeDtypeStruct((1, 1, 8, 8, 3), jnp.float32)

    def init(module, x):  # traced only: the settings are refused before anything runs
        return jax.eval_shape(module.init, jax.random.PRNGKey(0), x)

    with pytest.raises(ValueError, match=r"method must be one of \('lax', 'fft'\), got 'fast'"):
        init(Conv(2, 3, padding=1, method="fast"), x)
    with pytest.raises(ValueError, match="method='fft' needs a 2-D, stride-1"):
        init(Conv(2, 3, stride=2, padding=1, method="fft"), x)
    with pytest.raises(ValueError, match="method='fft' needs a 2-D, stride-1"):
        init(Conv(2, 3, padding=1, ndim=3, method="fft"), x3)


def test_spynet_level_network_uses_fft_for_the_flow_layer():
    x = jnp.zeros((1, 16, 16, 8))
    variables = jax.eval_shape(LevelNetwork().init, jax.random.PRNGKey(0), x)
    hlo = jax.jit(lambda v, a: LevelNetwork().apply(v, a)).lower(variables, x).as_text()
    assert hlo.count("stablehlo.convolution") == 4 and "stablehlo.fft" in hlo
