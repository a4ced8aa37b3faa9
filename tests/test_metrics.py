"""flowlib.metrics: hand-computed maps and reducers, the KITTI sample pair, Sintel breakdown."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from flowlib import metrics


def _flow(*uv):
    """(1, N, 2) flow from (u, v) pairs."""
    return np.array([uv], np.float64)


# --------------------------------------------------------------------------------------
# per-pixel maps: hand-computed values
# --------------------------------------------------------------------------------------


def test_epe_map_hand_values():
    est = _flow((3.0, 4.0), (1.0, 1.0), (-2.0, 0.5))
    gt = _flow((0.0, 0.0), (1.0, 1.0), (1.0, 4.5))
    np.testing.assert_allclose(metrics.epe_map(est, gt), [[5.0, 0.0, 5.0]])


def test_angular_error_hand_values():
    # (u, v, 1) vectors: (1,0,1) vs (0,0,1) -> 45 deg; (1,0,1) vs (-1,0,1) -> 90 deg;
    # (2,0,1) vs (0,0,1): cos = 1/sqrt(5) -> atan(2) = 63.43 deg; equal flows -> 0.
    est = _flow((1.0, 0.0), (1.0, 0.0), (2.0, 0.0), (3.0, -7.0))
    gt = _flow((0.0, 0.0), (-1.0, 0.0), (0.0, 0.0), (3.0, -7.0))
    np.testing.assert_allclose(
        metrics.angular_error_map(est, gt), [[45.0, 90.0, math.degrees(math.atan(2.0)), 0.0]], atol=1e-12
    )


def _angular_error_arccos(est, gt):
    """Baker et al.'s textbook formula, in float64."""
    num = est[..., 0] * gt[..., 0] + est[..., 1] * gt[..., 1] + 1.0
    den = np.sqrt(np.sum(est**2, -1) + 1.0) * np.sqrt(np.sum(gt**2, -1) + 1.0)
    return np.degrees(np.arccos(np.clip(num / den, -1.0, 1.0)))


def test_angular_error_matches_arccos_definition():
    rng = np.random.default_rng(0)
    est, gt = rng.normal(0, 5, (2, 7, 9, 2))
    np.testing.assert_allclose(metrics.angular_error_map(est, gt), _angular_error_arccos(est, gt), atol=1e-8)


def test_angular_error_small_angles_resolved_in_float32():
    # arccos in float32 rounds a 0.01 deg angle to 0 or ~0.03 deg; the atan2 form keeps it.
    gt = np.zeros((1, 1, 2), np.float32)
    est = np.array([[[math.tan(math.radians(0.01)), 0.0]]], np.float32)
    np.testing.assert_allclose(metrics.angular_error_map(est, gt), [[0.01]], rtol=1e-4)


@pytest.mark.parametrize(
    "est, gt, outlier",
    [
        ((3.0, 0.0), (0.0, 0.0), False),  # EPE exactly 3 is not > 3
        ((3.1, 0.0), (0.0, 0.0), True),  # |gt| = 0: outlier iff EPE > 3
        ((0.5, 0.0), (0.0, 0.0), False),  # |gt| = 0, infinite relative error, EPE <= 3
        ((0.0, 0.0), (0.0, 0.0), False),  # 0 > 0.05 * 0 is false
        ((104.0, 0.0), (100.0, 0.0), False),  # 4 px but 4 % < 5 %
        ((106.0, 0.0), (100.0, 0.0), True),  # 6 px and 6 %
        ((10.0, 8.0), (10.0, 0.0), True),  # 8 px and 80 %
        ((12.0, 0.0), (10.0, 0.0), False),  # 20 % but only 2 px
    ],
)
def test_fl_outlier_hand_cases(est, gt, outlier):
    with np.errstate(all="raise"):  # the zero-magnitude case must not divide by zero
        got = metrics.fl_outlier_map(_flow(est), _flow(gt))
    assert got.dtype == bool
    assert bool(got[0, 0]) is outlier


def test_fl_outlier_custom_thresholds():
    est, gt = _flow((101.5, 0.0)), _flow((100.0, 0.0))
    assert not metrics.fl_outlier_map(est, gt)[0, 0]
    assert metrics.fl_outlier_map(est, gt, abs_threshold=1.0, rel_threshold=0.01)[0, 0]


def test_disparity_maps_hand_values():
    disp = np.array([[14.0, 104.0, 3.5, 50.5, 9.0]])
    gt = np.array([[10.0, 100.0, 0.0, 50.0, 0.0]])
    with np.errstate(all="raise"):
        np.testing.assert_allclose(metrics.disparity_error_map(disp, gt), [[4.0, 4.0, 3.5, 0.5, 9.0]])
        # 4 > 3 and 4 > 0.5 | 4 > 3 but 4 < 5 | gt 0: 3.5 > 3 | 0.5 | gt 0: 9 > 3
        np.testing.assert_array_equal(metrics.d1_outlier_map(disp, gt), [[True, False, True, False, True]])
    np.testing.assert_array_equal(metrics.bad_n_map(disp, gt, 3.5), [[True, True, False, False, True]])
    np.testing.assert_array_equal(metrics.bad_n_map(disp, gt, 0.5), [[True, True, True, False, True]])


def test_known_flow_mask():
    f = _flow((1.0, 2.0), (np.nan, 0.0), (0.0, 1e10), (1.6666668e9, 0.0), (1e9, -1e9), (np.inf, 0.0))
    np.testing.assert_array_equal(metrics.known_flow_mask(f), [[True, False, False, False, True, False]])


@pytest.mark.parametrize(
    "fn, a, b",
    [
        (metrics.epe_map, np.zeros((4, 5, 2)), np.zeros((4, 6, 2))),
        (metrics.epe_map, np.zeros((4, 5, 3)), np.zeros((4, 5, 3))),
        (metrics.angular_error_map, np.zeros((4, 5)), np.zeros((4, 5))),
        (metrics.fl_outlier_map, np.zeros((4, 5, 2)), np.zeros((1, 4, 5, 2))),
        (metrics.disparity_error_map, np.zeros((4, 5)), np.zeros((4, 6))),
        (metrics.d1_outlier_map, np.zeros((4, 5)), np.zeros((5, 4))),
    ],
)
def test_map_shape_errors(fn, a, b):
    with pytest.raises(ValueError, match="shape"):
        fn(a, b)


def test_maps_accept_integers_and_batches():
    est = np.arange(2 * 3 * 4 * 2).reshape(2, 3, 4, 2)
    gt = np.zeros_like(est)
    e = metrics.epe_map(est, gt)
    assert e.shape == (2, 3, 4) and np.issubdtype(e.dtype, np.floating)
    np.testing.assert_allclose(e[1], metrics.epe_map(est[1], gt[1]))


# --------------------------------------------------------------------------------------
# jax inputs
# --------------------------------------------------------------------------------------


FLOW_MAPS = [metrics.epe_map, metrics.angular_error_map, metrics.fl_outlier_map]
DISP_MAPS = [metrics.disparity_error_map, metrics.d1_outlier_map, lambda a, b: metrics.bad_n_map(a, b, 2.0)]


@pytest.mark.parametrize("fn", FLOW_MAPS)
def test_flow_maps_jax_equal_numpy(fn, jit):
    rng = np.random.default_rng(1)
    est, gt = rng.normal(0, 8, (2, 2, 5, 6, 2)).astype(np.float32)
    got = jit(fn)(jnp.asarray(est), jnp.asarray(gt))
    assert isinstance(got, jax.Array)
    ref = fn(est, gt)
    assert isinstance(ref, np.ndarray) and got.dtype == ref.dtype
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("fn", DISP_MAPS)
def test_disparity_maps_jax_equal_numpy(fn, jit):
    rng = np.random.default_rng(2)
    est, gt = rng.uniform(0, 60, (2, 2, 5, 6)).astype(np.float32)
    got = jit(fn)(jnp.asarray(est), jnp.asarray(gt))
    assert isinstance(got, jax.Array)
    np.testing.assert_allclose(np.asarray(got), fn(est, gt), rtol=1e-6)


def test_masked_sum_count_jax(jit):
    values = jnp.array([[1.0, jnp.nan], [3.0, 4.0]])
    mask = jnp.array([[True, False], [True, False]])
    s, c = jit(metrics.masked_sum_count)(values, mask)
    assert float(s) == 4.0 and int(c) == 2


def test_numpy_metrics_do_not_import_jax():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np; from flowlib import metrics;"
        "metrics.flow_metrics(np.ones((3, 3, 2)), np.zeros((3, 3, 2)), None);"
        "assert 'jax' not in sys.modules, 'jax imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------
# reducers
# --------------------------------------------------------------------------------------


def test_masked_sum_count_ignores_masked_out_nan():
    values = np.array([[1.0, np.nan, 5.0], [np.inf, 2.0, 0.5]], np.float32)
    mask = np.array([[True, False, True], [False, True, False]])
    s, c = metrics.masked_sum_count(values, mask)
    assert (s, c) == (8.0, 3) and isinstance(s, float) and isinstance(c, int)
    assert metrics.masked_sum_count(np.ones((2, 3)), None) == (6.0, 6)
    assert metrics.masked_sum_count(np.array([True, False, True]), np.ones(3, bool)) == (2.0, 3)


def test_masked_sum_count_accumulates_in_float64():
    values = np.full(2_000_000, 0.1, np.float32)
    s, c = metrics.masked_sum_count(values, np.ones_like(values, bool))
    assert c == 2_000_000 and abs(s - 2_000_000 * float(np.float32(0.1))) < 1e-6 * s


def test_masked_sum_count_errors():
    with pytest.raises(ValueError, match="shape"):
        metrics.masked_sum_count(np.ones((2, 3)), np.ones((3, 2), bool))
    with pytest.raises(ValueError, match="boolean"):
        metrics.masked_sum_count(np.ones((2, 3)), np.ones((2, 3)))


def test_empty_masks_give_nan_without_warning():
    values = np.ones((3, 4))
    empty = np.zeros((3, 4), bool)
    with np.errstate(all="raise"):
        assert metrics.masked_sum_count(values, empty) == (0.0, 0)
        assert math.isnan(metrics.masked_mean(values, empty))
        assert math.isnan(metrics.pixel_mean([values, values], [empty, empty]))
        assert math.isnan(metrics.image_mean([values, values], [empty, np.ones_like(empty)]))
        assert math.isnan(metrics.image_mean([], []))
        assert math.isnan(metrics.pooled_mean([(0.0, 0), (0.0, 0)]))
        assert math.isnan(metrics.flow_metrics(np.ones((2, 2, 2)), np.zeros((2, 2, 2)), np.zeros((2, 2), bool))["epe"])


def test_pixel_mean_and_image_mean_differ_as_constructed():
    # image A: one valid pixel of value 10; image B: three valid pixels of value 2.
    a = np.array([[10.0, 99.0], [99.0, 99.0]])
    ma = np.array([[True, False], [False, False]])
    b = np.array([[2.0, 2.0, 2.0]])
    mb = np.ones((1, 3), bool)
    assert metrics.pixel_mean([a, b], [ma, mb]) == pytest.approx((10 + 6) / 4)  # 4.0
    assert metrics.image_mean([a, b], [ma, mb]) == pytest.approx((10 + 2) / 2)  # 6.0
    pairs = [metrics.masked_sum_count(a, ma), metrics.masked_sum_count(b, mb)]
    assert metrics.pooled_mean(pairs) == pytest.approx(4.0)


def test_reducers_accept_stacked_batches_and_no_masks():
    stack = np.arange(12.0).reshape(3, 2, 2)
    assert metrics.pixel_mean(stack) == pytest.approx(5.5)
    assert metrics.image_mean(stack) == pytest.approx(5.5)
    with pytest.raises(ValueError, match="3 value arrays but 2 masks"):
        metrics.pixel_mean(stack, [np.ones((2, 2), bool)] * 2)


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 5)),
               elements=st.floats(0, 100)),
    st.data(),
)
def test_pixel_mean_equals_mean_of_concatenation(values, data):
    masks = data.draw(hnp.arrays(bool, values.shape))
    expected = values[masks].mean() if masks.any() else math.nan
    got = metrics.pixel_mean(list(values), list(masks))
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


# --------------------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------------------


def test_flow_metrics_hand_values():
    # EPEs 0, 2, 4, 10 at GT magnitudes 0, 0, 100, 10; one unknown-GT and one invalid pixel.
    est = _flow((0.0, 0.0), (2.0, 0.0), (100.0, 4.0), (10.0, 10.0), (5.0, 5.0), (7.0, 7.0))
    gt = _flow((0.0, 0.0), (0.0, 0.0), (100.0, 0.0), (10.0, 0.0), (1e10, 0.0), (0.0, 0.0))
    valid = np.array([[True, True, True, True, True, False]])
    m = metrics.flow_metrics(est, gt, valid)
    assert m["count"] == 4
    assert m["epe"] == pytest.approx(16 / 4)
    assert (m["1px"], m["3px"], m["5px"]) == (0.25, 0.5, 0.75)
    assert m["fl"] == 0.25  # only the 10 px error on a 10 px motion (4 px is 4 % of 100)
    ae = _angular_error_arccos(est[0, :4], gt[0, :4]).mean()
    assert m["angular_error"] == pytest.approx(ae)
    # valid=None counts every known-GT pixel (the last one too)
    assert metrics.flow_metrics(est, gt, None)["count"] == 5


def test_flow_metrics_valid_shape_error():
    with pytest.raises(ValueError, match="valid must have shape"):
        metrics.flow_metrics(np.zeros((2, 3, 2)), np.zeros((2, 3, 2)), np.ones((3, 2), bool))


def test_kitti_flow_metrics_bg_fg_and_out_n():
    est = _flow((0.0, 0.0), (5.0, 0.0), (0.0, 2.5), (100.0, 0.0))
    gt = _flow((0.0, 0.0), (0.0, 0.0), (0.0, 0.0), (90.0, 0.0))
    obj = np.array([[0, 0, 1, 1]])
    m = metrics.kitti_flow_metrics(est, gt, np.ones((1, 4), bool), obj_map=obj)
    assert m["epe"] == pytest.approx(17.5 / 4)
    assert m["fl_all"] == 0.5 and m["fl_bg"] == 0.5 and m["fl_fg"] == 0.5
    assert (m["out_2"], m["out_3"], m["out_4"], m["out_5"]) == (0.75, 0.5, 0.5, 0.25)


def test_disparity_metrics_hand_values():
    disp = np.array([[14.0, 104.0, 5.0, 50.5, 1.0]])
    gt = np.array([[10.0, 100.0, 0.0, 50.0, np.inf]])  # 0 = KITTI invalid, inf = Middlebury unknown
    m = metrics.disparity_metrics(disp, gt, None)
    assert m["count"] == 3
    assert m["epe"] == pytest.approx(8.5 / 3)
    assert m["d1"] == pytest.approx(1 / 3)
    assert m["bad_0.5"] == pytest.approx(2 / 3)  # 0.5 is not > 0.5
    assert m["bad_1"] == m["bad_3"] == pytest.approx(2 / 3)
    assert m["bad_4"] == m["bad_5"] == 0.0
    # an explicit mask may count gt = 0 (d1 there: |err| = 5 > 3); inf stays excluded
    m = metrics.disparity_metrics(disp, gt, np.ones_like(gt, bool), obj_map=np.array([[0, 0, 1, 1, 1]]))
    assert m["count"] == 4 and m["d1"] == 0.5
    assert m["d1_bg"] == 0.5 and m["d1_fg"] == 0.5


def _kitti_png(path):
    import png

    with open(path, "rb") as f:
        w, h, rows, info = png.Reader(file=f).read()
        assert info["bitdepth"] == 16 and info["planes"] == 3
        raw = np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(h, w, 3)
    flow = (raw[..., :2].astype(np.float64) - 2**15) / 64.0
    return flow, raw[..., 2] > 0


@pytest.mark.data
def test_kitti_sample_pair_epe_and_fl(data):
    folder = data / "kitti-flow-pair"
    with np.load(folder / "flow_gt.decoded.npz") as z:
        gt = dict(z)
    with np.load(folder / "flow_est.decoded.npz") as z:
        est = dict(z)
    m = metrics.kitti_flow_metrics(est["flow"], gt["flow"], gt["valid"])
    # README of the shared data: EPE 18.95 and Fl-all 45.2 % over valid GT pixels.
    assert round(m["epe"], 2) == 18.95
    # Exactly 73399 / 162583 = 45.146 %: the README's "45.2 %" is that value rounded via
    # 45.15 (the KITTI 2012 Out-3 rule without the 5 % term gives 45.17 %).
    assert 100 * m["fl_all"] == pytest.approx(45.2, abs=0.06)
    assert m["count"] == gt["valid"].sum() == 162583
    assert round(m["fl_all"] * m["count"]) == 73399
    # the same through the explicit map + reducer path (pooled over pixels)
    s, c = metrics.masked_sum_count(metrics.fl_outlier_map(est["flow"], gt["flow"]), gt["valid"])
    assert s / c == pytest.approx(m["fl_all"])
    # and from the PNGs themselves (decoded here with pypng, independently of flowlib.io)
    gt_flow, gt_valid = _kitti_png(folder / "flow_gt.png")
    est_flow, _ = _kitti_png(folder / "flow_est.png")
    np.testing.assert_array_equal(gt_valid, gt["valid"])
    m_png = metrics.kitti_flow_metrics(est_flow, gt_flow, gt_valid)
    assert m_png["epe"] == pytest.approx(m["epe"], rel=1e-6)
    assert m_png["fl_all"] == m["fl_all"]


# --------------------------------------------------------------------------------------
# Sintel breakdown
# --------------------------------------------------------------------------------------


def test_occlusion_distance_matches_brute_force():
    rng = np.random.default_rng(3)
    occ = rng.random((9, 11)) < 0.1
    occ[4, 5] = True
    dist = metrics.occlusion_distance(occ)
    oy, ox = np.nonzero(occ)
    yy, xx = np.mgrid[0:9, 0:11]
    brute = np.sqrt((yy[..., None] - oy) ** 2 + (xx[..., None] - ox) ** 2).min(-1)
    np.testing.assert_allclose(dist, brute)
    assert np.all(dist[occ] == 0) and np.all(dist[~occ] >= 1)


def test_occlusion_distance_without_occlusions_is_inf():
    assert np.all(np.isinf(metrics.occlusion_distance(np.zeros((4, 5), bool))))
    both = metrics.occlusion_distance(np.stack([np.zeros((4, 5), bool), np.eye(4, 5, dtype=bool)]))
    assert np.isinf(both[0]).all() and np.isfinite(both[1]).all()


def _sintel_case():
    """3 x 200 frame: column 0 occluded, so a pixel's boundary distance is its column."""
    h, w = 3, 200
    x = np.broadcast_to(np.arange(w, dtype=np.float64), (h, w))
    occ = np.zeros((h, w), bool)
    occ[:, 0] = True
    gt = np.zeros((h, w, 2))
    gt[..., 0] = x / 4.0  # speeds 0 .. 49.75
    est = gt.copy()
    est[..., 1] = 1.0 + (x % 3)  # EPE 1, 2, 3 repeating with the column
    return est, gt, occ, x


def test_sintel_breakdown_hand_counts():
    est, gt, occ, x = _sintel_case()
    epe = 1.0 + (x % 3)
    valid = np.ones(occ.shape, bool)
    valid[2, 150:] = False
    b = metrics.sintel_breakdown(est, gt, valid=valid, occluded=occ)

    def expect(region):
        sel = region & valid
        return pytest.approx(epe[sel].sum()), int(sel.sum())

    assert b["all"] == (pytest.approx(epe[valid].sum()), 600 - 50)
    assert b["unmatched"] == expect(occ)
    assert b["matched"] == expect(~occ)
    assert b["s0-10"] == expect(x < 40)  # speed x/4 < 10
    assert b["s10-40"] == expect((x >= 40) & (x < 160))
    assert b["s40+"] == expect(x >= 160)
    assert b["d0-10"] == expect((x >= 1) & (x < 10))
    assert b["d10-60"] == expect((x >= 10) & (x < 60))
    assert b["d60-140"] == expect((x >= 60) & (x < 140))
    assert b["d0-10"][1] == 3 * 9 and b["d60-140"][1] == 3 * 80
    assert all(isinstance(s, float) and isinstance(c, int) for s, c in b.values())


def test_sintel_breakdown_without_occlusions():
    est, gt, _, _ = _sintel_case()
    b = metrics.sintel_breakdown(est, gt)
    assert set(b) == {"all", "s0-10", "s10-40", "s40+"}
    none_occluded = metrics.sintel_breakdown(est, gt, occluded=np.zeros(est.shape[:2], bool))
    assert none_occluded["unmatched"] == (0.0, 0)
    assert none_occluded["d0-10"] == none_occluded["d10-60"] == none_occluded["d60-140"] == (0.0, 0)


def test_sintel_breakdown_batch_pools_frames():
    est, gt, occ, _ = _sintel_case()
    est2 = est[:, ::-1] * 1.5
    occ2 = occ[:, ::-1]
    batch = metrics.sintel_breakdown(np.stack([est, est2]), np.stack([gt, gt[:, ::-1]]),
                                     occluded=np.stack([occ, occ2]))
    one = metrics.sintel_breakdown(est, gt, occluded=occ)
    two = metrics.sintel_breakdown(est2, gt[:, ::-1], occluded=occ2)
    for k in batch:
        assert batch[k][0] == pytest.approx(one[k][0] + two[k][0])
        assert batch[k][1] == one[k][1] + two[k][1]


def test_sintel_breakdown_shape_errors():
    est, gt, occ, _ = _sintel_case()
    with pytest.raises(ValueError, match="occluded must have shape"):
        metrics.sintel_breakdown(est, gt, occluded=occ[:, :10])
    with pytest.raises(ValueError, match=r"\(H, W, 2\) or \(B, H, W, 2\)"):
        metrics.sintel_breakdown(est[0], gt[0])


@pytest.mark.data
def test_sintel_breakdown_on_real_frame(data):
    import imageio.v3 as iio

    root = data / "sintel" / "training"
    raw = (root / "flow" / "alley_1" / "frame_0002.flo").read_bytes()
    assert np.frombuffer(raw[:4], "<f4")[0] == 202021.25
    w, h = np.frombuffer(raw[4:12], "<i4")
    gt = np.frombuffer(raw[12:], "<f4").reshape(h, w, 2)
    occ = iio.imread(root / "occlusions" / "alley_1" / "frame_0002.png") > 0
    valid = iio.imread(root / "invalid" / "alley_1" / "frame_0002.png") == 0
    est = gt + np.random.default_rng(0).normal(0, 1.0, gt.shape)
    b = metrics.sintel_breakdown(est, gt, valid=valid, occluded=occ)
    total = b["all"]
    assert total[1] == valid.sum() > 0 and 0 < b["unmatched"][1] < total[1]
    for parts in (("matched", "unmatched"), ("s0-10", "s10-40", "s40+")):
        assert sum(b[p][1] for p in parts) == total[1]
        assert sum(b[p][0] for p in parts) == pytest.approx(total[0])
    assert sum(b[p][1] for p in ("d0-10", "d10-60", "d60-140")) <= b["matched"][1]
    # EPE of N(0, 1) noise in 2-D is Rayleigh with mean sqrt(pi/2)
    assert metrics.pooled_mean([total]) == pytest.approx(math.sqrt(math.pi / 2), rel=0.01)
