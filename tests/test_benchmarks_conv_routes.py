"""``python -m benchmarks.conv_routes``: every rewrite it times computes the same convolution
as its ``lax`` peer (so a ratio in the closing notes compares like with like), and the
quick run writes a row for every route."""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import conv_routes as cr


def _rand(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


@pytest.mark.parametrize("h, w, rows", [(9, 13, 4), (16, 8, 8), (5, 7, 8)])
@pytest.mark.parametrize("route", [cr.im2col_dot, cr.kernel_row_dots])
def test_dot_routes_equal_lax_conv(route, h, w, rows):
    x, k = _rand((2, h, w, 3), 0), _rand((5, 5, 3, 4), 1)
    want = cr.lax_conv(x, k)
    got = jax.jit(functools.partial(route, rows=rows))(x, k)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("h, w", [(11, 14), (12, 9), (7, 7)])
@pytest.mark.parametrize("k, pad", [(7, 3), (5, 2), (3, 1), (4, 1)])
@pytest.mark.parametrize("route", [cr.space_to_depth_conv, cr.polyphase_conv])
def test_strided_routes_equal_lax_stride_2(route, h, w, k, pad):
    x, kern = _rand((1, h, w, 3), 2), _rand((k, k, 3, 5), 3)
    want = cr.lax_conv(x, kern, stride=2, pad=pad)
    got = jax.jit(functools.partial(route, pad=pad))(x, kern)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_padded_outputs_equal_lax_conv():
    x, k = _rand((1, 8, 9, 4), 4), _rand((3, 3, 4, 2), 5)
    np.testing.assert_allclose(cr.padded_outputs_conv(x, k, to=8), cr.lax_conv(x, k),
                               rtol=1e-5, atol=1e-5)


def test_bf16_operands_accumulate_in_float32():
    x, k = _rand((1, 8, 8, 32), 6), _rand((7, 7, 32, 4), 7)
    y = cr.kernel_row_dots(x.astype(jnp.bfloat16), k.astype(jnp.bfloat16), rows=4)
    assert y.dtype == jnp.float32
    ref = cr.lax_conv(x, k)
    assert float(jnp.abs(y - ref).max() / jnp.abs(ref).max()) < 2e-2


@pytest.mark.slow
def test_quick_run_writes_every_route(tmp_path, capsys):
    out = tmp_path / "routes.json"
    assert cr.main(["--quick", "--runs", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert {r["section"] for r in rows} == set(cr.SECTIONS)
    for r in rows:
        assert r["ms"] > 0 and r["ratio"] > 0
        if "rel_error" in r:  # bf16 routes round the operands; float32 ones are exact-ish
            assert r["rel_error"] < (3e-2 if "bf16" in r["route"] else 1e-4), r
    assert sum(r["route"].endswith("(peer)") for r in rows) == len(cr.SECTIONS)
    text = capsys.readouterr().out
    assert "avx512_bf16" in text and "amx_bf16" in text  # the CPU's bf16 units, named
    assert text.count("route / peer") == len(cr.SECTIONS)


@pytest.mark.parametrize("h, w, tile", [(61, 50, 16), (20, 9, 32), (64, 64, 64), (3, 4, 8)])
@pytest.mark.parametrize("k", [7, 3, 1])
def test_fft_conv_equals_lax_conv(h, w, tile, k):
    x, kern = _rand((2, h, w, 3), 8), _rand((k, k, 3, 4), 9)
    if tile < 2 * k - 2:
        with pytest.raises(ValueError, match="FFT tile 8 too small for a 7x7 kernel"):
            cr.fft_conv(x, kern, tile=tile)
        return
    got = jax.jit(functools.partial(cr.fft_conv, tile=tile))(x, kern)
    np.testing.assert_allclose(got, cr.lax_conv(x, kern), rtol=1e-5, atol=2e-5)
