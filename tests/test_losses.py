"""Training losses: hand-computed values and zero at the optimum."""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowlib import losses


def _adaptive_avg_pool_numpy(x, oh, ow):
    b, h, w, c = x.shape
    out = np.zeros((b, oh, ow, c), np.float64)
    for i in range(oh):
        for j in range(ow):
            y0, y1 = (i * h) // oh, -((-(i + 1) * h) // oh)
            x0, x1 = (j * w) // ow, -((-(j + 1) * w) // ow)
            out[:, i, j] = x[:, y0:y1, x0:x1].mean(axis=(1, 2))
    return out


@pytest.mark.parametrize("size", [(4, 5), (3, 7), (8, 10)])
def test_area_downsample_matches_adaptive_pooling(size):
    x = np.random.default_rng(0).normal(size=(2, 16, 20, 2)).astype(np.float32)
    np.testing.assert_allclose(losses._area_downsample(jnp.asarray(x), size), _adaptive_avg_pool_numpy(x, *size),
                               atol=1e-5)


@jax.jit
def _flownet_loss(gt, flows):
    """flownet_loss on ground truth ``gt`` and the pyramid ``flows`` (compiled once: eagerly,
    every operation of the five levels would compile on its own)."""
    return losses.flownet_loss(SimpleNamespace(flow=gt, aux={"flows": flows}), {"flow": gt})


def test_flownet_loss_is_zero_at_the_target_and_weights_scales():
    gt = jnp.asarray(np.random.default_rng(1).normal(size=(2, 64, 64, 2)).astype(np.float32) * 5)
    flows = jax.jit(lambda g: tuple(losses._area_downsample(g / 20, (64 // 2**k, 64 // 2**k))
                                    for k in range(2, 7)))(gt)
    loss, metrics = _flownet_loss(gt, flows)
    assert float(loss) < 1e-3 and float(metrics["epe"]) < 1e-5
    assert float(metrics["zero_epe"]) == pytest.approx(np.linalg.norm(gt, axis=-1).mean(), rel=1e-5)
    # a unit error on flow6 only (1x1 px per batch element... 1 pixel of 1/64 res) costs its weight
    bad = list(flows)
    bad[4] = bad[4] + jnp.array([1.0, 0.0])
    loss, _ = _flownet_loss(gt, tuple(bad))
    assert float(loss) == pytest.approx(0.32 * 1.0 * 1, abs=2e-3)  # 1 pixel at 1/64, summed, / batch


def test_cfnet_loss_smooth_l1_by_hand():
    gt = jnp.array([[[10.0, 0.0, 300.0, 50.0]]])  # 0 and >= maxdisp are masked out
    pred = jnp.array([[[10.5, 7.0, 1.0, 53.0]]])
    out = SimpleNamespace(disparity=pred, aux={"train_disparities": (pred,) * 9})
    loss, metrics = losses.cfnet_loss(out, {"disparity": gt}, maxdisp=192)
    per_pixel = (0.5 * 0.5**2 + (3.0 - 0.5)) / 2  # smooth-L1 of 0.5 and 3, mean over the 2 masked pixels
    assert float(loss) == pytest.approx(sum(losses.CFNET_WEIGHTS) * per_pixel)
    assert float(metrics["epe"]) == pytest.approx((0.5 + 3.0) / 2)
    assert float(metrics["zero_epe"]) == pytest.approx((10.0 + 50.0) / 2)


def test_spynet_loss_zero_for_exact_levels():
    from flowlib import ops

    @jax.jit  # compiled once: eagerly, every operation would compile on its own
    def exact_levels_loss(gt):
        levels = []
        for k in (2, 1, 0):
            h, w = 32 // 2**k, 48 // 2**k
            levels.append(ops.resize_bilinear(gt, (h, w), align_corners=False) * jnp.array([w / 48, h / 32]))
        return losses.spynet_loss(SimpleNamespace(flow=gt, aux={"level_flows": levels}), {"flow": gt})

    gt = jnp.asarray(np.random.default_rng(2).normal(size=(1, 32, 48, 2)).astype(np.float32))
    loss, metrics = exact_levels_loss(gt)
    assert float(loss) < 1e-4 and set(metrics) >= {"epe_level0", "epe_level2", "epe"}
    assert float(metrics["zero_epe"]) == pytest.approx(float(jnp.linalg.norm(gt, axis=-1).mean()), rel=1e-5)


def test_raft_loss_by_hand():
    # Two predictions on a 1x2 image; gt (3, 4) (|gt| 5) and (500, 0) (beyond max_flow: masked).
    gt = jnp.asarray([[[[3.0, 4.0], [500.0, 0.0]]]])
    first = gt + jnp.asarray([[[[1.0, -1.0], [7.0, 7.0]]]])  # L1 2 at the valid pixel
    last = gt + jnp.asarray([[[[0.0, 2.0], [9.0, 9.0]]]])  # L1 2, EPE 2
    out = SimpleNamespace(aux={"flow_predictions": [first, last]})
    loss, metrics = losses.raft_loss(out, {"flow": gt})
    # mean over 2 pixels x 2 channels = 4 elements: 0.8 * 2 / 4 + 1.0 * 2 / 4
    np.testing.assert_allclose(float(loss), 0.8 * 0.5 + 0.5, rtol=1e-6)
    np.testing.assert_allclose(float(metrics["epe"]), 2.0, rtol=1e-6)
    np.testing.assert_allclose(float(metrics["zero_epe"]), 5.0, rtol=1e-6)
    # valid < 0.5 masks the other pixel too: nothing left, loss 0
    loss, _ = losses.raft_loss(out, {"flow": gt, "valid": jnp.asarray([[[0.0, 1.0]]])})
    assert float(loss) == 0.0
    loss, _ = losses.raft_loss(out, {"flow": gt}, gamma=0.5, max_flow=1000.0)
    np.testing.assert_allclose(float(loss), 0.5 * (2 + 14) / 4 + (2 + 18) / 4, rtol=1e-6)
