"""Tests for flowlib.ops.normalize.l2_normalize."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowlib import ops
from tests._gradients import check_grads


def naive_l2_normalize(x: np.ndarray, axis: int, eps: float = 1e-12) -> np.ndarray:
    """torch.nn.functional.normalize: x / max(||x||_2, eps), float64."""
    x = x.astype(np.float64)
    norm = np.sqrt((x**2).sum(axis=axis, keepdims=True))
    return x / np.maximum(norm, eps)


@pytest.mark.parametrize("axis", [-1, 0, 1, 3])
def test_matches_naive_reference(axis, jit):
    x = np.random.default_rng(50).standard_normal((2, 3, 4, 5)).astype(np.float32)
    out = jit(lambda a: ops.l2_normalize(a, axis=axis))(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(out), naive_l2_normalize(x, axis), atol=1e-6)
    norms = np.linalg.norm(np.asarray(out, np.float64), axis=axis)
    np.testing.assert_allclose(norms, 1.0, atol=1e-6)


def test_hand_values_and_scale():
    x = jnp.asarray([[3.0, 4.0], [0.0, 0.0], [1e-13, 0.0]])
    out = ops.l2_normalize(x, axis=-1)
    # The zero vector stays zero; norms below eps are divided by eps.
    np.testing.assert_allclose(np.asarray(out), [[0.6, 0.8], [0.0, 0.0], [0.1, 0.0]], rtol=1e-6)
    scaled = ops.l2_normalize(x, axis=-1, scale=jnp.asarray([2.0, 10.0]))
    np.testing.assert_allclose(np.asarray(scaled[0]), [1.2, 8.0], rtol=1e-6)
    # Larger eps (e.g. 1e-6 in some ports) changes only the small vectors.
    big_eps = ops.l2_normalize(jnp.asarray([[3e-7, 4e-7], [3.0, 4.0]]), axis=-1, eps=1e-6)
    np.testing.assert_allclose(np.asarray(big_eps), [[0.3, 0.4], [0.6, 0.8]], rtol=1e-5)


def test_scale_broadcasts_along_the_given_axis():
    # NCHW-style channel axis 1 (as in SSD's L2Norm) and NHWC channel axis -1.
    rng = np.random.default_rng(51)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    scale = np.asarray([1.0, 2.0, 3.0], np.float32)
    out = ops.l2_normalize(jnp.asarray(x), axis=1, scale=jnp.asarray(scale))
    expected = naive_l2_normalize(x, 1) * scale[None, :, None, None]
    np.testing.assert_allclose(np.asarray(out), expected, atol=1e-5)
    scale5 = np.arange(1.0, 6.0, dtype=np.float32)
    out = ops.l2_normalize(jnp.asarray(x), axis=-1, scale=jnp.asarray(scale5))
    np.testing.assert_allclose(np.asarray(out), naive_l2_normalize(x, -1) * scale5, atol=1e-5)


def test_gradients(x64):
    rng = np.random.default_rng(52)
    x = jnp.asarray(rng.standard_normal((2, 3, 4)))
    scale = jnp.asarray(rng.uniform(0.5, 2.0, (4,)))
    assert x.dtype == jnp.float64
    check_grads(lambda a: ops.l2_normalize(a, axis=-1), (x,), order=2, modes=("rev", "fwd"))
    check_grads(lambda a, s: ops.l2_normalize(a, axis=-1, scale=s), (x, scale), order=1,
                modes=("rev",))
    check_grads(lambda a: ops.l2_normalize(a, axis=1), (x,), order=1, modes=("rev",))


def test_gradient_is_finite_at_zero_vectors():
    grad = jax.grad(lambda a: ops.l2_normalize(a, axis=-1).sum())(jnp.zeros((2, 3)))
    assert np.all(np.isfinite(np.asarray(grad)))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_dtype_preserved(dtype):
    x = jnp.asarray([[3.0, 4.0], [0.0, 0.0]], dtype)
    out = ops.l2_normalize(x, axis=-1)
    assert out.dtype == dtype
    # float16 cannot hold eps^2 = 1e-24; the float32 reduction keeps zero vectors at 0.
    np.testing.assert_allclose(np.asarray(out, np.float32), [[0.6, 0.8], [0, 0]], atol=1e-2)


def test_batch_independence():
    x = jnp.asarray(np.random.default_rng(53).standard_normal((3, 4, 5, 6)), jnp.float32)
    full = ops.l2_normalize(x, axis=-1)
    for b in range(3):
        np.testing.assert_array_equal(np.asarray(full[b]),
                                      np.asarray(ops.l2_normalize(x[b : b + 1], axis=-1)[0]))


def test_bad_inputs():
    x = jnp.zeros((2, 3, 4))
    with pytest.raises(ValueError, match=r"scale must have shape \(4,\)"):
        ops.l2_normalize(x, axis=-1, scale=jnp.ones((3,)))
    with pytest.raises(ValueError, match=r"scale must have shape \(3,\)"):
        ops.l2_normalize(x, axis=1, scale=jnp.ones((1, 3, 1)))
    with pytest.raises(ValueError, match="axis must be in"):
        ops.l2_normalize(x, axis=3)
    with pytest.raises(ValueError, match="floating-point"):
        ops.l2_normalize(x.astype(jnp.int32), axis=-1)
    with pytest.raises(TypeError):
        ops.l2_normalize(x, -1)  # axis is keyword-only
