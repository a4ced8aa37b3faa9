"""Stereo cost volumes, integer-disparity gather, soft-argmin and variance."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowlib import ops
from tests.ops import _reference
from tests._gradients import check_grads

GWC_IMPLS = ["shifted", "stacked"]


def _nhwc(a: np.ndarray) -> jnp.ndarray:
    """(B, C, H, W) -> (B, H, W, C)."""
    return jnp.asarray(np.moveaxis(a, 1, -1))


def _volume(a: np.ndarray) -> np.ndarray:
    """(B, C, D, H, W) -> (B, D, H, W, C)."""
    return np.moveaxis(a, 1, -1)


def _random(shape, seed, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cfnet_ops(fixtures):
    tolerances = json.loads((fixtures / "tolerances.json").read_text())["files"]
    return np.load(fixtures / "primitives" / "cfnet_ops.npz"), tolerances[
        "primitives/cfnet_ops.npz"
    ]


@pytest.mark.data
@pytest.mark.parametrize("impl", GWC_IMPLS)
def test_fixture_gwc_and_concat_volumes(cfnet_ops, impl):
    ref, tol = cfnet_ops
    left, right = _nhwc(ref["gwc_left"]), _nhwc(ref["gwc_right"])
    gwc = ops.groupwise_cost_volume(left, right, max_disparity=8, groups=4, impl=impl)
    assert gwc.shape == (1, 8, 5, 20, 4)
    np.testing.assert_allclose(gwc, _volume(ref["gwc_volume"]), rtol=0, atol=tol["gwc_volume"])
    concat = ops.concat_cost_volume(
        _nhwc(ref["concat_left"]), _nhwc(ref["concat_right"]), max_disparity=8
    )
    np.testing.assert_allclose(
        concat, _volume(ref["concat_volume"]), rtol=0, atol=tol["concat_volume"]
    )
    # CF groupwise_correlation(left, right, 4): the D = 1 case of the 4-D version.
    single = ops.groupwise_correlation(left, right[:, None], groups=4)[:, 0]
    np.testing.assert_allclose(
        single, _nhwc(ref["groupwise_correlation"]), rtol=0, atol=tol["groupwise_correlation"]
    )


@pytest.mark.data
def test_fixture_stage_volumes(cfnet_ops):
    ref, tol = cfnet_ops
    samples = jnp.asarray(ref["stage_samples"])  # (1, 6, 5, 20), some < 0 and > W - 1
    warped = ops.gather_by_integer_disparity(_nhwc(ref["gwc_right"]), samples)
    np.testing.assert_allclose(
        warped, _volume(ref["stage_warped_right"]), rtol=0, atol=tol["stage_warped_right"]
    )
    gwc = ops.groupwise_correlation(_nhwc(ref["gwc_left"]), warped, groups=4)
    np.testing.assert_allclose(
        gwc, _volume(ref["stage_gwc_volume"]), rtol=0, atol=tol["stage_gwc_volume"]
    )
    # cost_volume_generator(..., 'concat'): the left features are NOT masked here.
    left = _nhwc(ref["concat_left"])
    right = ops.gather_by_integer_disparity(_nhwc(ref["concat_right"]), samples)
    concat = jnp.concatenate([jnp.broadcast_to(left[:, None], right.shape), right], axis=-1)
    np.testing.assert_allclose(
        concat, _volume(ref["stage_concat_volume"]), rtol=0, atol=tol["stage_concat_volume"]
    )
    # Integer-valued int32 hypotheses give the same gather as the float32 ones.
    as_int = ops.gather_by_integer_disparity(_nhwc(ref["gwc_right"]), samples.astype(jnp.int32))
    np.testing.assert_array_equal(as_int, warped)


@pytest.mark.data
def test_fixture_regression_and_variance(cfnet_ops):
    ref, tol = cfnet_ops
    prob = jnp.asarray(ref["reg_prob"])
    pred = ops.disparity_regression(prob, jnp.arange(12.0))
    np.testing.assert_allclose(
        pred, ref["disparity_regression"], rtol=0, atol=tol["disparity_regression"]
    )
    variance = ops.disparity_variance(prob, jnp.arange(12), pred)
    np.testing.assert_allclose(
        variance, ref["disparity_variance"][:, 0], rtol=0, atol=tol["disparity_variance"]
    )
    hypotheses = jnp.asarray(ref["reg_hypotheses"])
    pred_hyp = ops.disparity_regression(prob, hypotheses)
    np.testing.assert_allclose(
        pred_hyp, ref["reg_pred_hyp"][:, 0], rtol=0, atol=tol["reg_pred_hyp"]
    )
    confidence = ops.disparity_variance(prob, hypotheses, pred_hyp)
    np.testing.assert_allclose(
        confidence,
        ref["disparity_variance_confidence"][:, 0],
        rtol=0,
        atol=tol["disparity_variance_confidence"],
    )


# --------------------------------------------------------------------------- naive reference


@pytest.mark.parametrize("impl", GWC_IMPLS)
@pytest.mark.parametrize("max_disparity, groups", [(1, 1), (5, 2), (6, 6), (12, 3)])  # 12 > W
def test_groupwise_matches_naive_reference(impl, max_disparity, groups):
    left, right = _random((2, 3, 9, 6), 0), _random((2, 3, 9, 6), 1)
    got = ops.groupwise_cost_volume(
        left, right, max_disparity=max_disparity, groups=groups, impl=impl
    )
    want = _reference.groupwise_cost_volume(left, right, max_disparity=max_disparity, groups=groups)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("max_disparity", [1, 4, 11])
def test_concat_matches_naive_reference(max_disparity):
    left, right = _random((2, 3, 8, 3), 2), _random((2, 3, 8, 3), 3)
    got = ops.concat_cost_volume(left, right, max_disparity=max_disparity)
    np.testing.assert_array_equal(
        got, _reference.concat_cost_volume(left, right, max_disparity=max_disparity)
    )


def test_gather_matches_naive_reference_and_truncates_toward_zero():
    right = _random((2, 3, 7, 4), 4)
    rng = np.random.default_rng(5)
    ints = rng.integers(-3, 11, (2, 5, 3, 7))
    got = ops.gather_by_integer_disparity(right, jnp.asarray(ints, jnp.int32))
    np.testing.assert_array_equal(got, _reference.gather_by_integer_disparity(right, ints))
    # Non-integer hypotheses are truncated toward zero first (torch .long()).
    fractional = ints + rng.uniform(-0.99, 0.99, ints.shape)
    got = ops.gather_by_integer_disparity(right, jnp.asarray(fractional, jnp.float32))
    np.testing.assert_array_equal(
        got, _reference.gather_by_integer_disparity(right, np.trunc(fractional))
    )


# --------------------------------------------------------------------------- hand-computed


def test_groupwise_by_hand():
    # Left all ones, right = column index in every channel: gwc[d, x] = x - d for x >= d.
    left = jnp.ones((1, 1, 5, 4))
    right = jnp.broadcast_to(jnp.arange(5.0)[None, None, :, None], (1, 1, 5, 4))
    for impl in GWC_IMPLS:
        gwc = np.asarray(
            ops.groupwise_cost_volume(left, right, max_disparity=3, groups=2, impl=impl)
        )
        expected = np.array([[0, 1, 2, 3, 4], [0, 0, 1, 2, 3], [0, 0, 0, 1, 2]], np.float32)
        np.testing.assert_array_equal(gwc[0, :, 0, :, 0], expected)
        np.testing.assert_array_equal(gwc[0, :, 0, :, 1], expected)
    # Groups are consecutive channels: channel pairs (0, 1) and (2, 3).
    left = jnp.asarray([1.0, 3.0, 0.0, 2.0]).reshape(1, 1, 1, 4)
    right = jnp.asarray([2.0, 2.0, 5.0, 1.0]).reshape(1, 1, 1, 4)
    np.testing.assert_array_equal(
        ops.groupwise_cost_volume(left, right, max_disparity=1, groups=2)[0, 0, 0, 0], [4.0, 1.0]
    )


def test_gather_by_hand():
    right = jnp.arange(4.0).reshape(1, 1, 4, 1) + 10  # columns hold 10, 11, 12, 13
    d = jnp.asarray([[[[0, 1, 5, -1]], [[2, 2, 2, 2]]]], jnp.int32)  # (1, 2, 1, 4)
    out = np.asarray(ops.gather_by_integer_disparity(right, d))[0, :, 0, :, 0]
    # x - d: [0, 0, -3 (zero), 4 (> W-1, zero)] and [-2, -1, 0, 1].
    np.testing.assert_array_equal(out, [[10, 10, 0, 0], [0, 0, 10, 11]])


def test_regression_and_variance_by_hand():
    # One-hot probabilities: soft-argmin = index, variance 0.
    prob = jax.nn.one_hot(jnp.asarray([[[3, 0, 6]]]), 7, axis=1)  # (1, 7, 1, 3)
    pred = ops.disparity_regression(prob, jnp.arange(7))
    np.testing.assert_array_equal(pred, [[[3, 0, 6]]])
    np.testing.assert_array_equal(
        ops.disparity_variance(prob, jnp.arange(7), pred), np.zeros((1, 1, 3))
    )
    # Uniform over 0..D-1: mean (D-1)/2, variance (D^2 - 1)/12.
    uniform = jnp.full((2, 9, 2, 2), 1 / 9)
    mean = ops.disparity_regression(uniform, jnp.arange(9.0))
    np.testing.assert_allclose(mean, 4.0, rtol=1e-6)
    np.testing.assert_allclose(
        ops.disparity_variance(uniform, jnp.arange(9.0), mean), 80 / 12, rtol=1e-6
    )
    # Per-pixel hypotheses: 50/50 between 2 and 6 -> 4, variance 4.
    prob = jnp.asarray([0.5, 0.5]).reshape(1, 2, 1, 1)
    hyp = jnp.asarray([2.0, 6.0]).reshape(1, 2, 1, 1)
    np.testing.assert_allclose(ops.disparity_regression(prob, hyp), [[[4.0]]])
    np.testing.assert_allclose(
        ops.disparity_variance(prob, hyp, jnp.full((1, 1, 1), 4.0)), [[[4.0]]]
    )


# --------------------------------------------------------------------------- properties


@pytest.mark.parametrize("impl", GWC_IMPLS)
def test_jit_equals_eager_and_batch_independence(jit, impl):
    left, right = _random((3, 2, 7, 8), 6), _random((3, 2, 7, 8), 7)
    fn = jit(lambda a, b: ops.groupwise_cost_volume(a, b, max_disparity=4, groups=4, impl=impl))
    batched = fn(left, right)
    np.testing.assert_allclose(
        batched,
        _reference.groupwise_cost_volume(left, right, max_disparity=4, groups=4),
        rtol=1e-5,
        atol=1e-6,
    )
    for b in range(3):
        np.testing.assert_allclose(
            batched[b : b + 1], fn(left[b : b + 1], right[b : b + 1]), rtol=1e-6, atol=1e-7
        )


def test_bfloat16_group_mean_in_float32():
    ones = jnp.ones((1, 2, 3, 1024), jnp.bfloat16)
    for impl in GWC_IMPLS:
        gwc = ops.groupwise_cost_volume(ones, ones, max_disparity=2, groups=1, impl=impl)
        assert gwc.dtype == jnp.bfloat16
        np.testing.assert_array_equal(np.float32(gwc[0, 1, :, 1:]), 1.0)
    volume = ops.groupwise_correlation(ones, ones[:, None], groups=2)
    assert volume.dtype == jnp.bfloat16 and float(volume.min()) == 1.0
    prob = jnp.full((1, 512, 1, 1), 1 / 512, jnp.bfloat16)
    # 512 terms d/512 summed to 255.5: a bf16 running sum (8-bit mantissa) loses the
    # late terms, a float32 one is exact; only the final rounding to bf16 remains.
    np.testing.assert_allclose(
        float(ops.disparity_regression(prob, jnp.arange(512.0))[0, 0, 0]), 255.5, rtol=2**-8
    )


def test_gradients(x64):
    # Each function is jitted: check_grads evaluates it many times.
    left = jnp.asarray(_random((1, 2, 6, 4), 8, np.float64))
    right = jnp.asarray(_random((1, 2, 6, 4), 9, np.float64))
    for impl in GWC_IMPLS:
        check_grads(
            jax.jit(
                lambda a, b, impl=impl: ops.groupwise_cost_volume(
                    a, b, max_disparity=3, groups=2, impl=impl
                )
            ),
            (left, right),
            order=1,
            modes=("rev",),
        )
    check_grads(
        jax.jit(lambda a, b: ops.concat_cost_volume(a, b, max_disparity=3)),
        (left, right),
        order=1,
        modes=("rev",),
    )
    d = jnp.asarray(np.random.default_rng(10).integers(-1, 7, (1, 3, 2, 6)), jnp.int32)
    check_grads(
        jax.jit(lambda b: ops.gather_by_integer_disparity(b, d)), (right,), order=1, modes=("rev",)
    )
    volume = jnp.asarray(_random((1, 3, 2, 6, 4), 11, np.float64))
    check_grads(
        lambda a, v: ops.groupwise_correlation(a, v, groups=2),
        (left, volume),
        order=1,
        modes=("rev",),
    )
    prob = jax.nn.softmax(jnp.asarray(_random((1, 5, 2, 3), 12, np.float64)), axis=1)
    hyp = jnp.asarray(_random((1, 5, 2, 3), 13, np.float64)) + 3.0
    mean = jnp.asarray(_random((1, 2, 3), 14, np.float64))
    check_grads(ops.disparity_regression, (prob, hyp), order=1, modes=("rev",))
    check_grads(
        lambda p: ops.disparity_regression(p, jnp.arange(5.0)), (prob,), order=1, modes=("rev",)
    )
    check_grads(ops.disparity_variance, (prob, hyp, mean), order=1, modes=("rev",))


# --------------------------------------------------------------------------- errors


def test_bad_arguments():
    x = jnp.zeros((1, 2, 6, 6))
    with pytest.raises(ValueError, match="divisible by groups=4"):
        ops.groupwise_cost_volume(x, x, max_disparity=2, groups=4)
    with pytest.raises(ValueError, match="same shape"):
        ops.groupwise_cost_volume(x, jnp.zeros((1, 2, 5, 6)), max_disparity=2, groups=2)
    with pytest.raises(ValueError, match="max_disparity must be a positive int"):
        ops.concat_cost_volume(x, x, max_disparity=0)
    with pytest.raises(ValueError, match="impl must be one of"):
        ops.groupwise_cost_volume(x, x, max_disparity=2, groups=2, impl="loop")
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        ops.concat_cost_volume(x[0], x[0], max_disparity=2)
    with pytest.raises(ValueError, match=r"disparities must have shape \(B, D, H, W\)"):
        ops.gather_by_integer_disparity(x, jnp.zeros((1, 3, 2, 5)))
    with pytest.raises(ValueError, match="integer or float"):
        ops.gather_by_integer_disparity(x, jnp.zeros((1, 3, 2, 6), bool))
    with pytest.raises(ValueError, match=r"right_volume must have shape \(B, D, H, W, C\)"):
        ops.groupwise_correlation(x, x, groups=2)
    prob = jnp.zeros((1, 4, 2, 3))
    with pytest.raises(ValueError, match=r"disparities must have shape \(D,\) = \(4,\)"):
        ops.disparity_regression(prob, jnp.arange(5))
    with pytest.raises(ValueError, match=r"prob must have shape \(B, D, H, W\)"):
        ops.disparity_regression(prob[0], jnp.arange(4))
    with pytest.raises(ValueError, match=r"mean must have shape \(B, H, W\)"):
        ops.disparity_variance(prob, jnp.arange(4), jnp.zeros((1, 1, 2, 3)))
