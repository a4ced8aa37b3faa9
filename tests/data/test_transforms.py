"""Augmentations keep images and ground truth consistent."""

from __future__ import annotations

import numpy as np
import pytest

from flowlib.data import transforms as T


def _shifted_sample(u=3, v=-2, h=40, w=50, seed=0):
    rng = np.random.default_rng(seed)
    big = rng.random((h + 20, w + 20, 3)).astype(np.float32)
    image1 = big[10 : 10 + h, 10 : 10 + w]
    image2 = big[10 - v : 10 - v + h, 10 - u : 10 - u + w]  # image2(x + u) = image1(x)
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0], flow[..., 1] = u, v
    return {"image1": image1, "image2": image2, "flow": flow, "valid": np.ones((h, w), bool)}


def _consistent(sample):
    h, w = sample["flow"].shape[:2]
    y, x = np.mgrid[0:h, 0:w]
    xs = (x + np.round(sample["flow"][..., 0])).astype(int)
    ys = (y + np.round(sample["flow"][..., 1])).astype(int)
    inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    return np.allclose(sample["image2"][ys[inside], xs[inside]], sample["image1"][inside])


def test_shift_sample_is_consistent():
    assert _consistent(_shifted_sample())


@pytest.mark.parametrize("seed", range(6))
def test_flip_and_crop_keep_correspondence(seed):
    rng = np.random.default_rng(seed)
    s = T.random_flip(rng, _shifted_sample(), p_horizontal=0.5, p_vertical=0.5)
    s = T.random_crop(rng, s, (30, 33))
    assert s["image1"].shape == (30, 33, 3) and _consistent(s)


def test_horizontal_flip_negates_u():
    s = T.random_flip(np.random.default_rng(0), _shifted_sample(), p_horizontal=1.0, p_vertical=0.0)
    assert np.all(s["flow"][..., 0] == -3) and np.all(s["flow"][..., 1] == -2)
    assert _consistent(s)


def test_scale_multiplies_vectors():
    s = _shifted_sample()
    out = T.random_scale(np.random.default_rng(0), s, min_scale=2.0, max_scale=2.0)
    assert out["image1"].shape == (80, 100, 3)
    np.testing.assert_allclose(out["flow"][..., 0], 6.0, atol=1e-5)
    np.testing.assert_allclose(out["flow"][..., 1], -4.0, atol=1e-5)


def test_sparse_scale_never_blends_invalid():
    s = _shifted_sample()
    s["valid"][:, ::2] = False
    s["flow"][~s["valid"]] = 0
    out = T.random_scale(np.random.default_rng(1), s, min_scale=1.37, max_scale=1.37)
    vals = out["flow"][out["valid"]][..., 0]
    np.testing.assert_allclose(vals, 3 * out["flow"].shape[1] / 50, rtol=1e-5)


def test_photometric_changes_images_only_and_stays_in_range():
    s = _shifted_sample()
    out = T.gaussian_noise(np.random.default_rng(0), T.color_jitter(np.random.default_rng(0), s))
    assert out["image1"].min() >= 0 and out["image1"].max() <= 1
    assert np.array_equal(out["flow"], s["flow"]) and not np.array_equal(out["image1"], s["image1"])


def test_augment_is_deterministic_in_the_generator():
    s = _shifted_sample(h=60, w=80)
    a = T.augment(np.random.default_rng([1, 2, 3]), s, (32, 48))
    b = T.augment(np.random.default_rng([1, 2, 3]), s, (32, 48))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_crop_too_large():
    with pytest.raises(ValueError, match="larger"):
        T.random_crop(np.random.default_rng(0), _shifted_sample(), (100, 10))
