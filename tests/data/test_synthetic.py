"""Procedural data: deterministic, exact ground truth, official layouts."""

from __future__ import annotations

import numpy as np
import pytest

from flowlib import data
from flowlib.data import synthetic


def _nearest_warp(img, fx, fy):
    h, w = img.shape[:2]
    y, x = np.mgrid[0:h, 0:w]
    xs = np.clip(np.round(x + fx).astype(int), 0, w - 1)
    ys = np.clip(np.round(y + fy).astype(int), 0, h - 1)
    return img[ys, xs]


def test_flow_is_deterministic_and_exact():
    a = synthetic.flow_pair(11, 96, 128)
    b = synthetic.flow_pair(11, 96, 128)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["flow"], synthetic.flow_pair(12, 96, 128)["flow"])
    flow, occ = a["flow"], a["occlusions"]
    warped = _nearest_warp(a["image2"], flow[..., 0], flow[..., 1])
    err = np.abs(warped - a["image1"]).mean(-1)
    zero = np.abs(a["image2"] - a["image1"]).mean(-1)
    # Visible pixels land on their own texture (up to the half-pixel rounding above).
    assert err[~occ].mean() < 0.25 * zero[~occ].mean()
    assert 0 < occ.mean() < 0.5 and np.abs(flow).max() > 1


def test_sequence_flows_chain():
    seq = synthetic.flow_sequence(3, 64, 80, frames=3)
    assert seq["images"].shape == (3, 64, 80, 3) and seq["flow"].shape == (2, 64, 80, 2)
    assert seq["images"].min() >= 0 and seq["images"].max() <= 1


def test_stereo_is_exact():
    s = synthetic.stereo_pair(4, 96, 160, max_disparity=32)
    d, occ = s["disparity"], s["occlusions"]
    assert d.min() > 0 and d.max() <= 32 + 1e-3
    warped = _nearest_warp(s["right"], -d, np.zeros_like(d))
    err = np.abs(warped - s["left"]).mean(-1)
    zero = np.abs(s["right"] - s["left"]).mean(-1)
    assert err[~occ].mean() < 0.25 * zero[~occ].mean()


def test_writers_follow_the_official_layouts(tmp_path):
    synthetic.write_sintel_layout(tmp_path / "sintel", scenes=1, frames=3, height=32, width=48)
    s = data.index_sintel(tmp_path / "sintel", pass_="final")
    assert len(s) == 2 and data.load_sample(s[0])["flow"].shape == (32, 48, 2)
    synthetic.write_chairs_layout(tmp_path / "chairs", 2, height=32, width=48)
    c = data.index_flyingchairs(tmp_path / "chairs")
    loaded = data.load_sample(c[1])
    np.testing.assert_allclose(loaded["flow"], synthetic.flow_pair(1, 32, 48)["flow"])
    synthetic.write_sceneflow_layout(tmp_path / "things", 1, height=32, width=48)
    t = data.load_sample(data.index_flyingthings3d(tmp_path / "things")[0])
    np.testing.assert_allclose(t["disparity"], synthetic.stereo_pair(0, 32, 48)["disparity"])


def test_bad_sizes():
    with pytest.raises(ValueError, match="8x8"):
        synthetic.flow_sequence(0, 4, 4)


def test_translation_pair_is_an_exact_integer_shift():
    d = synthetic.translation_pair(7, 20, 30, max_shift=3)
    u, v = d["flow"][0, 0].astype(int)
    assert np.all(d["flow"] == [u, v]) and max(abs(u), abs(v)) <= 3
    y, x = np.mgrid[0:20, 0:30]
    inside = ~d["occlusions"]
    np.testing.assert_array_equal(d["image2"][(y + v)[inside], (x + u)[inside]], d["image1"][inside])
    assert d["occlusions"].sum() == 20 * 30 - (20 - abs(v)) * (30 - abs(u))
    shifts = {tuple(synthetic.translation_pair(s, 8, 8)["flow"][0, 0]) for s in range(60)}
    assert len(shifts) > 15  # the 25 shifts of max_shift=2 are all reachable
    with pytest.raises(ValueError, match="max_shift"):
        synthetic.translation_pair(0, 8, 8, max_shift=-1)


def test_warp_pair_flow_explains_the_images():
    d = synthetic.warp_pair(3, 64, 96, motion=0.5)
    b = synthetic.warp_pair(3, 64, 96, motion=0.5)
    for k in d:
        np.testing.assert_array_equal(d[k], b[k])
    flow, occ = d["flow"], d["occlusions"]
    assert np.abs(flow).max() > 0.5 and 0.0 <= d["image1"].min() and d["image1"].max() <= 1.0
    warped = _nearest_warp(d["image2"], flow[..., 0], flow[..., 1])
    err = np.abs(warped - d["image1"]).mean(-1)
    zero = np.abs(d["image2"] - d["image1"]).mean(-1)
    assert err[~occ].mean() < 0.5 * zero[~occ].mean()


def test_texture_detail_adds_fine_structure_and_zero_changes_nothing():
    plain = synthetic.texture(np.random.default_rng(5))
    np.testing.assert_array_equal(synthetic.texture(np.random.default_rng(5), detail=0.0), plain)
    fine = synthetic.texture(np.random.default_rng(5), detail=0.5)
    hf = lambda t: np.abs(np.diff(t, axis=0)).mean()  # noqa: E731
    assert hf(fine) > 1.5 * hf(plain)
    np.testing.assert_array_equal(synthetic.flow_pair(11, 32, 40, detail=0.0)["image1"],
                                  synthetic.flow_pair(11, 32, 40)["image1"])


def test_flat_textures_are_nearly_uniform_and_zero_changes_nothing():
    flat = synthetic.texture(np.random.default_rng(1), flat=1.0)
    assert flat.shape == (256, 256, 3) and flat.std(axis=(0, 1)).max() < 0.02
    np.testing.assert_array_equal(synthetic.texture(np.random.default_rng(1), flat=0.0),
                                  synthetic.texture(np.random.default_rng(1)))
    scene = synthetic.flow_pair(2, 48, 64, flat=1.0)  # every layer untextured
    assert scene["image1"].std(axis=(0, 1)).max() < 0.5 and np.isfinite(scene["flow"]).all()


def test_sintel_layout_final_pass_is_rendered_not_a_copy(tmp_path):
    synthetic.write_sintel_layout(tmp_path / "s", scenes=1, frames=2, height=40, width=64, seed=9)
    clean = data.load_sample(data.index_sintel(tmp_path / "s", pass_="clean")[0])
    final = data.load_sample(data.index_sintel(tmp_path / "s", pass_="final")[0])
    np.testing.assert_array_equal(clean["flow"], final["flow"])
    for key in ("image1", "image2"):
        diff = np.abs(final[key] - clean[key])
        assert 0.01 < diff.mean() < 0.2  # visibly different, still the same scene
        # fog: the top is pulled toward light grey more than the bottom
        assert diff[:5].mean() > diff[-5:].mean()
    # deterministic; blurred: less high-frequency energy than clean, the noise included
    rendered = synthetic.final_pass(clean["image1"], 3)
    np.testing.assert_array_equal(rendered, synthetic.final_pass(clean["image1"], 3))
    assert np.abs(np.diff(rendered, axis=1)).mean() < np.abs(np.diff(clean["image1"], axis=1)).mean()
