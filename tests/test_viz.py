"""flowlib.viz: the Middlebury colour wheel (Baker et al. 2011), KITTI error colours, renderings."""

from __future__ import annotations

import math
import os
import stat

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowlib import io, viz

# The 55-colour wheel (index: R, G, B) of the Middlebury flow code (colorcode.cpp).
SPECS_WHEEL = [
    (255, 0, 0), (255, 17, 0), (255, 34, 0), (255, 51, 0), (255, 68, 0), (255, 85, 0),
    (255, 102, 0), (255, 119, 0), (255, 136, 0), (255, 153, 0), (255, 170, 0), (255, 187, 0),
    (255, 204, 0), (255, 221, 0), (255, 238, 0), (255, 255, 0), (213, 255, 0), (170, 255, 0),
    (128, 255, 0), (85, 255, 0), (43, 255, 0), (0, 255, 0), (0, 255, 63), (0, 255, 127),
    (0, 255, 191), (0, 255, 255), (0, 232, 255), (0, 209, 255), (0, 186, 255), (0, 163, 255),
    (0, 140, 255), (0, 116, 255), (0, 93, 255), (0, 70, 255), (0, 47, 255), (0, 24, 255),
    (0, 0, 255), (19, 0, 255), (39, 0, 255), (58, 0, 255), (78, 0, 255), (98, 0, 255),
    (117, 0, 255), (137, 0, 255), (156, 0, 255), (176, 0, 255), (196, 0, 255), (215, 0, 255),
    (235, 0, 255), (255, 0, 255), (255, 0, 213), (255, 0, 170), (255, 0, 128), (255, 0, 85),
    (255, 0, 43),
]

# Test vectors of the Middlebury code: already-normalised (u, v) -> RGB.
SPECS_VECTORS = [
    ((1.0, 0.0), (255, 0, 0)),
    ((0.0, 1.0), (255, 229, 0)),
    ((-1.0, 0.0), (0, 209, 255)),
    ((0.0, -1.0), (88, 0, 255)),
    ((0.5, 0.0), (255, 127, 127)),
    ((0.6, 0.8), (255, 135, 0)),
    ((-0.6, -0.8), (0, 24, 255)),
    ((0.0, 0.0), (255, 255, 255)),
    ((2.0, 0.0), (191, 0, 0)),  # rad > 1: 0.75 * red
    ((0.5, -0.0), (255, 127, 149)),  # v = -0.0 -> atan2(+0, -u) = +pi -> index 54
    ((1.0, -0.0), (255, 0, 43)),
]


def _rgb(u, v, **kw):
    return tuple(int(c) for c in viz.flow_to_rgb(np.array([[[u, v]]], np.float64), **kw)[0, 0])


# --------------------------------------------------------------------------------------
# colour wheel
# --------------------------------------------------------------------------------------


def test_colorwheel_equals_the_55_entry_table():
    wheel = viz.make_colorwheel()
    assert wheel.shape == (55, 3) and wheel.dtype == np.uint8
    for i, expected in enumerate(SPECS_WHEEL):
        assert tuple(int(c) for c in wheel[i]) == expected, f"entry {i}"


@pytest.mark.parametrize("uv, expected", SPECS_VECTORS, ids=[repr(uv) for uv, _ in SPECS_VECTORS])
def test_specs_test_vectors(uv, expected):
    assert _rgb(*uv, max_norm=1.0) == expected


def test_signed_zero_is_kept():
    assert math.copysign(1.0, -0.0) < 0  # the test relies on literal -0.0
    assert _rgb(0.5, 0.0, max_norm=1.0) != _rgb(0.5, -0.0, max_norm=1.0)
    # integer flow is floated first: its 0 is +0.0 (red side)
    rgb = viz.flow_to_rgb(np.array([[[2, 0]]], np.int32), max_norm=4.0)
    assert tuple(int(c) for c in rgb[0, 0]) == _rgb(0.5, 0.0, max_norm=1.0)


def test_each_wheel_entry_is_hit_at_its_angle():
    # fk = (atan2(-v, -u)/pi + 1)/2 * 54 = k exactly -> colour k, at radius 1.
    for k in range(1, 54):
        a = 2.0 * k / 54 - 1.0
        u, v = -math.cos(math.pi * a), -math.sin(math.pi * a)
        got = np.array(_rgb(u, v, max_norm=1.0))
        assert np.abs(got - np.array(SPECS_WHEEL[k])).max() <= 1, k  # 1 for float rounding of fk


def test_interpolation_between_neighbours():
    # Halfway between entries 0 (255,0,0) and 1 (255,17,0) at full radius: G = floor(8.5) = 8.
    a = 1.0 / 54 - 1.0
    assert _rgb(-math.cos(math.pi * a), -math.sin(math.pi * a), max_norm=1.0) == (255, 8, 0)


@settings(max_examples=60, deadline=None)
@given(st.floats(-math.pi, math.pi), st.floats(0.0, 0.999999))
def test_saturation_grows_with_radius(theta, r):
    u, v = math.cos(theta), math.sin(theta)
    inner = np.array(_rgb(r * u, r * v, max_norm=1.0))
    rim = np.array(_rgb(0.9999999 * u, 0.9999999 * v, max_norm=1.0))
    # on the rim one channel is 255 and one is 0 (every wheel colour and every blend of
    # neighbours has a full and an empty channel); inside, every channel is paler.
    assert rim.max() == 255 and rim.min() == 0
    assert np.all(inner >= rim)


# --------------------------------------------------------------------------------------
# flow_to_rgb normalisation, unknown pixels, batches
# --------------------------------------------------------------------------------------


def test_auto_normalisation_uses_the_largest_known_motion():
    flow = np.zeros((2, 3, 2))
    flow[0, 0] = (4.0, 0.0)  # the fastest pixel: full red
    flow[0, 1] = (2.0, 0.0)  # half: (255, 127, 127)
    flow[1, 2] = (np.nan, 0.0)  # unknown: black, not part of the maximum
    flow[1, 1] = (3e9, 0.0)
    rgb = viz.flow_to_rgb(flow)
    assert tuple(rgb[0, 0]) == (255, 0, 0)
    assert tuple(rgb[0, 1]) == (255, 127, 127)
    assert tuple(rgb[0, 2]) == (255, 255, 255)
    assert tuple(rgb[1, 1]) == tuple(rgb[1, 2]) == (0, 0, 0)
    np.testing.assert_array_equal(rgb, viz.flow_to_rgb(flow, max_norm=4.0))


def test_zero_flow_is_white_and_all_unknown_is_black():
    assert np.all(viz.flow_to_rgb(np.zeros((3, 4, 2))) == 255)
    assert np.all(viz.flow_to_rgb(np.full((3, 4, 2), np.nan)) == 0)
    assert np.all(viz.flow_to_rgb(np.ones((3, 4, 2)), valid=np.zeros((3, 4), bool)) == 0)


def test_unknown_markers_and_valid_are_black():
    flow = np.ones((1, 6, 2))
    flow[0, 0] = (1e10, 0.0)  # Middlebury writer's marker
    flow[0, 1] = (0.0, -1.6666668e9)  # Middlebury GT files
    flow[0, 2] = (np.inf, 0.0)
    flow[0, 3] = (0.0, np.nan)
    valid = np.array([[True, True, True, True, False, True]])
    rgb = viz.flow_to_rgb(flow, valid=valid)
    assert np.all(rgb[0, :5] == 0) and tuple(rgb[0, 5]) == _rgb(1.0, 1.0, max_norm=math.sqrt(2))
    # a component of exactly 1e9 is still known (Middlebury: unknown iff |.| > 1e9)
    assert viz.flow_to_rgb(np.array([[[1e9, 0.0]]]))[0, 0].tolist() == [255, 0, 0]


def test_fastest_pixel_is_not_dimmed():
    rng = np.random.default_rng(0)
    for _ in range(20):
        flow = rng.normal(0, 7, (5, 6, 2))
        rgb = viz.flow_to_rgb(flow)
        i = np.unravel_index(np.argmax(np.hypot(flow[..., 0], flow[..., 1])), flow.shape[:2])
        assert rgb[i].max() == 255 and rgb[i].min() == 0


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_fixed_max_norm_makes_colours_independent_of_other_pixels(seed):
    rng = np.random.default_rng(seed)
    flow = rng.normal(0, 10, (4, 5, 2))
    other = rng.normal(0, 40, (4, 5, 2))
    other[1, 2] = flow[1, 2]
    a = viz.flow_to_rgb(flow, max_norm=12.5)
    b = viz.flow_to_rgb(other, max_norm=12.5)
    np.testing.assert_array_equal(a[1, 2], b[1, 2])
    np.testing.assert_array_equal(a[1, 2], viz.flow_to_rgb(flow[1:2, 2:3], max_norm=12.5)[0, 0])


def test_out_of_range_is_dimmed_by_three_quarters():
    # twice max_norm, pointing down: 0.75 * (255, 229.5, 0) -> (191, 172, 0)
    assert _rgb(0.0, 20.0, max_norm=10.0) == (191, 172, 0)


def test_batch_is_normalised_per_image():
    rng = np.random.default_rng(1)
    batch = rng.normal(0, 5, (3, 4, 6, 2))
    batch[1] *= 10
    rgb = viz.flow_to_rgb(batch)
    assert rgb.shape == (3, 4, 6, 3) and rgb.dtype == np.uint8
    for i in range(3):
        np.testing.assert_array_equal(rgb[i], viz.flow_to_rgb(batch[i]))
    fixed = viz.flow_to_rgb(batch, max_norm=7.0, valid=np.ones((3, 4, 6), bool))
    np.testing.assert_array_equal(fixed[2], viz.flow_to_rgb(batch[2], max_norm=7.0))


@pytest.mark.parametrize(
    "flow, kw, match",
    [
        (np.zeros((4, 5)), {}, r"\(H, W, 2\)"),
        (np.zeros((4, 5, 3)), {}, r"\(H, W, 2\)"),
        (np.zeros((1, 2, 4, 5, 2)), {}, r"\(H, W, 2\)"),
        (np.zeros((4, 5, 2), complex), {}, "real-valued"),
        (np.zeros((4, 5, 2)), {"max_norm": 0.0}, "max_norm"),
        (np.zeros((4, 5, 2)), {"max_norm": -1.0}, "max_norm"),
        (np.zeros((4, 5, 2)), {"max_norm": float("nan")}, "max_norm"),
        (np.zeros((4, 5, 2)), {"max_norm": float("inf")}, "max_norm"),
        (np.zeros((4, 5, 2)), {"valid": np.ones((5, 4), bool)}, r"valid must have shape \(4, 5\)"),
    ],
)
def test_flow_to_rgb_rejects_bad_input(flow, kw, match):
    with pytest.raises(ValueError, match=match):
        viz.flow_to_rgb(flow, **kw)


def test_accepts_jax_arrays():
    jnp = pytest.importorskip("jax.numpy")
    flow = np.random.default_rng(2).normal(0, 3, (4, 5, 2)).astype(np.float32)
    np.testing.assert_array_equal(viz.flow_to_rgb(jnp.asarray(flow)), viz.flow_to_rgb(flow))


# --------------------------------------------------------------------------------------
# legend
# --------------------------------------------------------------------------------------


def test_legend_landmarks():
    size = 101  # odd: a pixel sits exactly on the centre and on the axes
    leg = viz.colorwheel_legend(size)
    assert leg.shape == (size, size, 3) and leg.dtype == np.uint8
    c = size // 2
    assert tuple(leg[c, c]) == (255, 255, 255)  # no motion
    assert tuple(leg[c, -1]) == (255, 0, 0)  # angle 0 (right): red
    assert tuple(leg[-1, c]) == (255, 229, 0)  # down (+v)
    assert tuple(leg[c, 0]) == (0, 209, 255)  # left
    assert tuple(leg[0, c]) == (88, 0, 255)  # up
    assert tuple(leg[0, 0]) == tuple(leg[-1, -1]) == (0, 0, 0)  # outside the disc


def test_legend_symmetries():
    leg = viz.colorwheel_legend(64)
    drawn = leg.any(axis=-1)
    # the disc is symmetric under flips and transposition
    for t in (drawn[::-1], drawn[:, ::-1], drawn.T):
        np.testing.assert_array_equal(drawn, t)
    # mirroring in the horizontal axis (v -> -v) mirrors the hue: the legend equals the
    # colours of the mirrored flow grid
    c = 31.5
    y, x = np.mgrid[0:64, 0:64]
    flow = np.stack([(x - c) / c, (c - y) / c], -1)
    np.testing.assert_array_equal(leg[::-1], viz.flow_to_rgb(flow, max_norm=1.0, valid=drawn[::-1]))
    # saturation grows outward along every ray: the colours' minimum channel decreases
    row = leg[31, 32:].astype(int)  # just below the centre line, to the right
    assert np.all(np.diff(row.min(axis=-1)[: int(c)]) <= 0)


def test_legend_rejects_bad_size():
    for size in (1, 0, 2.5):
        with pytest.raises(ValueError, match="size"):
            viz.colorwheel_legend(size)


# --------------------------------------------------------------------------------------
# disparity and errors
# --------------------------------------------------------------------------------------


def test_disparity_to_rgb_follows_the_colormap():
    import matplotlib

    disp = np.array([[0.0, 16.0, 32.0, 64.0, 100.0, np.inf, 8.0]])
    valid = np.array([[True, True, True, True, True, True, False]])
    rgb = viz.disparity_to_rgb(disp, max_disp=64.0, valid=valid)
    assert rgb.shape == (1, 7, 3) and rgb.dtype == np.uint8
    cmap = matplotlib.colormaps["magma"]
    expected = cmap(np.array([0.0, 0.25, 0.5, 1.0, 1.0]), bytes=True)[:, :3]  # 100 clips to 64
    np.testing.assert_array_equal(rgb[0, :5], expected)
    assert np.all(rgb[0, 5:] == 0)  # inf and valid False: black
    auto = viz.disparity_to_rgb(disp[:, :5], cmap="viridis")
    np.testing.assert_array_equal(auto[0, 4], matplotlib.colormaps["viridis"](1.0, bytes=True)[:3])
    batch = viz.disparity_to_rgb(np.stack([disp[0, :5] / 2, disp[0, :5]])[:, None])
    np.testing.assert_array_equal(batch[0], batch[1])  # per-image maximum


def test_disparity_to_rgb_errors():
    with pytest.raises(ValueError, match=r"\(H, W\) or \(B, H, W\)"):
        viz.disparity_to_rgb(np.zeros(5))
    with pytest.raises(ValueError, match="max_disp"):
        viz.disparity_to_rgb(np.zeros((2, 2)), max_disp=0)
    with pytest.raises(ValueError, match="colour map"):
        viz.disparity_to_rgb(np.zeros((2, 2)), cmap="no-such-map")


def test_error_colours_for_chosen_disparity_errors():
    gt = np.array([[100.0, 100.0, 100.0, 10.0, 10.0, 100.0, 0.0, 0.0, 50.0]])
    err = np.array([[0.0, 0.2, 3.0, 0.1875, 4.0, 1000.0, 60.0, 0.1, np.nan]])
    # e = min(err/3, err/(0.05 gt)): 0 | min(.067, .04) | min(1, .6) | min(1/16, 3/8) = 1/16
    #     exactly | min(1.33, 8) | min(333, 200) | gt 0: invalid by default | same | NaN
    #     estimate: worst
    rgb = viz.error_to_rgb(gt + err, gt, None)
    expected = [(49, 54, 149), (49, 54, 149), (224, 243, 248), (69, 117, 180), (254, 224, 144),
                (165, 0, 38), (0, 0, 0), (0, 0, 0), (165, 0, 38)]
    assert [tuple(int(c) for c in p) for p in rgb[0]] == expected
    # with an explicit mask gt = 0 counts: e = err / 3 (no division by zero)
    with np.errstate(all="raise"):
        rgb = viz.error_to_rgb(gt + err, gt, np.ones_like(gt, bool))
    assert tuple(rgb[0, 6]) == (165, 0, 38)  # 60 / 3 = 20 >= 16
    assert tuple(rgb[0, 7]) == (49, 54, 149)  # 0.1 / 3 < 1/16


def test_error_colour_intervals_are_half_open():
    # gt = 0 (counted through the mask): e = err / 3 exactly, as the bounds are binary fractions
    gt = np.zeros((1, 2))
    for lower, colour in viz.ERROR_COLORS:
        if lower == 0:
            continue
        est = np.array([[3 * lower, 3 * lower * (1 - 1e-9)]])
        rgb = viz.error_to_rgb(est, gt, np.ones((1, 2), bool))
        assert tuple(rgb[0, 0]) == colour
        assert tuple(rgb[0, 1]) != colour


def test_error_colours_for_flow():
    gt = np.zeros((2, 2, 2))
    gt[..., 0] = 1000.0
    est = gt.copy()
    est[0, 0] += (3.0, 4.0)  # EPE 5: e = min(5/3, 5/50) = 0.1
    est[0, 1] += (0.0, 300.0)  # EPE 300: e = min(100, 6) = 6 in [4, 8)
    gt[1, 1] = (np.nan, 0.0)  # unknown GT
    valid = np.array([[True, True], [False, True]])
    rgb = viz.error_to_rgb(est, gt, valid)
    assert tuple(rgb[0, 0]) == (69, 117, 180)
    assert tuple(rgb[0, 1]) == (244, 109, 67)
    assert tuple(rgb[1, 0]) == tuple(rgb[1, 1]) == (0, 0, 0)
    assert viz.error_to_rgb(est[None], gt[None], valid[None]).shape == (1, 2, 2, 3)


def test_error_to_rgb_shape_errors():
    with pytest.raises(ValueError, match="same shape"):
        viz.error_to_rgb(np.zeros((3, 4)), np.zeros((4, 3)), None)
    with pytest.raises(ValueError, match="valid must have shape"):
        viz.error_to_rgb(np.zeros((3, 4, 2)), np.zeros((3, 4, 2)), np.ones((3, 5), bool))


# --------------------------------------------------------------------------------------
# arrows, figures, tiles, files
# --------------------------------------------------------------------------------------


def _one_arrow_case(u, v):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    flow = np.zeros((40, 40, 2))
    flow[20, 20] = (u, v)  # step 40: the only grid point is (20, 20)
    return image, flow


def test_arrows_change_only_the_arrow_pixels():
    image, flow = _one_arrow_case(10.0, 0.0)
    out = viz.draw_arrows(image, flow, step=40, scale=1.0, color="red", width=1.0)
    assert out.shape == image.shape and out.dtype == np.uint8
    ys, xs = np.nonzero(np.any(out != image, axis=-1))
    assert ys.size > 10  # something was drawn
    # arrow from (20, 20) to (30, 20), plus a few pixels for the head and antialiasing
    assert xs.min() >= 18 and xs.max() <= 32 and ys.min() >= 16 and ys.max() <= 24
    # drawn in red
    changed = out[ys, xs].astype(int) - image[ys, xs]
    assert np.mean(changed[:, 0] >= 0) > 0.9


def test_arrows_point_down_for_positive_v_and_scale():
    image, flow = _one_arrow_case(0.0, 6.0)
    out = viz.draw_arrows(image, flow, step=40, scale=2.0, width=1.0)
    ys, xs = np.nonzero(np.any(out != image, axis=-1))
    assert ys.min() >= 18 and ys.max() >= 30 and ys.max() <= 34  # 2 * 6 px downward
    assert xs.min() >= 16 and xs.max() <= 24


def test_arrows_skip_unknown_flow_and_accept_grey_float_images():
    image, flow = _one_arrow_case(np.nan, 0.0)
    np.testing.assert_array_equal(viz.draw_arrows(image, flow, step=40), image)
    _, flow = _one_arrow_case(5.0, 5.0)
    grey = np.linspace(0, 1, 40 * 40).reshape(40, 40)
    out = viz.draw_arrows(grey, flow, step=40, valid=np.zeros((40, 40), bool))
    np.testing.assert_array_equal(out, np.repeat(np.round(grey * 255).astype(np.uint8)[..., None], 3, -1))


def test_arrows_input_errors():
    image, flow = _one_arrow_case(1.0, 0.0)
    with pytest.raises(ValueError, match="match the image"):
        viz.draw_arrows(image, flow[:-1])
    with pytest.raises(ValueError, match="step"):
        viz.draw_arrows(image, flow, step=0)
    with pytest.raises(ValueError, match="scale"):
        viz.draw_arrows(image, flow, scale=-1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        viz.draw_arrows(image * 2.0, flow)


def test_comparison_figure_shape_and_atomic_save(tmp_path):
    import png

    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (30, 60, 3), dtype=np.uint8)
    gt = rng.normal(0, 4, (30, 60, 2))
    flow = gt + rng.normal(0, 1, gt.shape)
    path = tmp_path / "cmp.png"
    fig = viz.comparison_figure(image, flow, gt, path=path, dpi=50)
    # 4 panels of 4 in at 50 dpi; height 4 * 30/60 in + 0.35 in of titles
    assert fig.dtype == np.uint8 and fig.shape == (round((2.0 + 0.35) * 50), 4 * 4 * 50, 3)
    with open(path, "rb") as f:
        w, h, rows, _ = png.Reader(file=f).asRGB8()
        back = np.vstack([np.asarray(r, np.uint8) for r in rows]).reshape(h, w, 3)
    np.testing.assert_array_equal(back, fig)
    assert [p.name for p in tmp_path.iterdir()] == ["cmp.png"]  # no temporary left behind
    two = viz.comparison_figure(image, flow, dpi=50)
    assert two.shape[1] == 2 * 4 * 50
    assert len(np.unique(two.reshape(-1, 3), axis=0)) > 50


def test_tile_layout():
    a = np.full((2, 3, 3), 10, np.uint8)
    b = np.full((2, 3, 3), 20, np.uint8)
    c = np.full((2, 3, 3), 30, np.uint8)
    t = viz.tile([a, b, c], columns=2, padding=1)
    assert t.shape == (5, 7, 3)
    assert t[0, 0, 0] == 10 and t[0, 4, 0] == 20 and t[3, 0, 0] == 30
    assert t[2].max() == 0 and t[:, 3].max() == 0 and t[3:, 4:].max() == 0
    np.testing.assert_array_equal(viz.tile(np.stack([a, b])), np.concatenate([a, b], axis=1))
    with pytest.raises(ValueError, match="one shape"):
        viz.tile([a, a[:1]])


def test_save_png_roundtrip_and_atomicity(tmp_path):
    import png

    rgb = np.random.default_rng(4).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    viz.save_png(path, rgb)
    with open(path, "rb") as f:
        w, h, rows, info = png.Reader(file=f).read()
        back = np.vstack([np.asarray(r, np.uint8) for r in rows]).reshape(h, w, 3)
    np.testing.assert_array_equal(back, rgb)
    assert stat.S_IMODE(os.stat(path).st_mode) & stat.S_IRUSR
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask
    before = path.read_bytes()
    with pytest.raises(ValueError, match="uint8"):
        viz.save_png(path, rgb.astype(np.float32))
    assert path.read_bytes() == before and len(list(tmp_path.iterdir())) == 1
    viz.save_png(tmp_path / "g.png", rgb[..., 0])
    viz.save_png(tmp_path / "a.png", np.concatenate([rgb, rgb[..., :1]], -1))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        viz.save_png(tmp_path / "missing" / "x.png", rgb)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        viz.save_png(tmp_path / "y.png", rgb[..., :2])


@pytest.mark.data
def test_real_sintel_flow_renders(data):
    raw = (data / "sintel" / "training" / "flow" / "alley_1" / "frame_0002.flo").read_bytes()
    w, h = np.frombuffer(raw[4:12], "<i4")
    flow = np.frombuffer(raw[12:], "<f4").reshape(h, w, 2)
    rgb = viz.flow_to_rgb(flow)
    assert rgb.shape == (436, 1024, 3) and rgb.any(axis=-1).all()  # every pixel known
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 1000
    # colours agree with the per-pixel rule (recomputed here from normalised float64 flow;
    # the radius is then re-derived from (u, v), so floor() may differ by one level)
    flow = flow.astype(np.float64)
    scale = np.hypot(flow[..., 0], flow[..., 1]).max()
    for y, x in [(0, 0), (200, 500), (435, 1023), (300, 420)]:
        u, v = flow[y, x] / scale
        assert np.abs(rgb[y, x].astype(int) - _rgb(u, v, max_norm=1.0)).max() <= 1


def test_stereo_figure_panels_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    gt = rng.uniform(1, 20, (30, 40))
    gt[0, 0] = 0.0  # unknown
    est = gt.copy()
    est[5, 5] += 10.0  # one outlier
    image = rng.random((30, 40, 3))
    out = viz.stereo_figure(image, est, gt, path=tmp_path / "s.png", dpi=50)
    assert out.shape == (round((4 * 30 / 40 + 0.35) * 50), 4 * 4 * 50, 3)
    np.testing.assert_array_equal(io.read_image(tmp_path / "s.png", dtype="uint8"), out)
    assert viz.stereo_figure(None, est, dpi=50).shape[1] == 4 * 50  # disparity panel only
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        viz.stereo_figure(image, est[None])
    with pytest.raises(ValueError, match="gt must have"):
        viz.stereo_figure(image, est, gt[:-1])
    with pytest.raises(ValueError, match="image must be 30x40"):
        viz.stereo_figure(image[:-1], est)


# ----------------------------------------------------------------- pictures to look at


def _arrow_extent(u):
    image = np.full((64, 64, 3), 255, np.uint8)
    flow = np.zeros((64, 64, 2))
    flow[..., 0] = u
    out = viz.draw_arrows(image, flow, step=32, width=1.0)
    xs = np.nonzero(np.any(out[16] != 255, axis=-1))[0]
    return xs[xs < 48].max() - xs[xs < 48].min()  # the arrow starting at x = 16


@pytest.mark.parametrize("u", [0.2, 3.0, 150.0])
def test_default_arrow_length_follows_the_spacing_not_the_motion(u):
    # 0.9 * step = 28.8 px whatever the motion: no dots for tiny flow, no lines across the
    # image for large flow.
    assert 24 <= _arrow_extent(u) <= 32, u


def test_arrow_scale_uses_a_robust_percentile():
    mags = np.concatenate([np.full(99, 2.0), [500.0]])
    assert viz.arrow_scale(mags, 10) == pytest.approx(9.0 / 2.0)
    assert viz.arrow_scale(np.zeros(5), 10) == 1.0
    assert viz.arrow_scale(np.array([np.nan]), 10) == 1.0


def test_flow_legend_has_a_label_and_no_black_padding():
    legend = viz.flow_legend(120, 7.5)
    assert legend.shape[0] == 120 and legend.shape[1] >= 96
    corners = legend[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners == 255).all()
    # the label under the wheel: dark text pixels below the wheel's bottom edge
    assert (legend[110:, :].min(axis=-1) < 100).any()
    assert not (legend[110:, :].min(axis=-1) < 100).all()


def test_disparity_range_ignores_outliers_and_invalid_pixels():
    disp = np.linspace(0, 100, 9999).reshape(101, 99)
    assert viz.disparity_range(disp) == pytest.approx((1.0, 99.0))
    disp[0, 0] = 1e6
    valid = np.ones(disp.shape, bool)
    valid[:50] = False
    low, high = viz.disparity_range(disp, valid)
    assert 49 < low < 51 and high < 100
    assert viz.disparity_range(np.full((4, 4), 5.0)) == (4.5, 5.5)
    assert viz.disparity_range(np.full((4, 4), np.nan)) == (0.0, 1.0)


def test_disparity_to_rgb_min_disp_and_colorbar():
    disp = np.array([[10.0, 20.0, 30.0]])
    rgb = viz.disparity_to_rgb(disp, min_disp=10.0, max_disp=30.0)
    ref = viz.disparity_to_rgb(disp - 10.0, max_disp=20.0)
    np.testing.assert_array_equal(rgb, ref)
    with pytest.raises(ValueError, match="larger than min_disp"):
        viz.disparity_to_rgb(disp, min_disp=30.0, max_disp=10.0)
    bar = viz.colorbar(100, 10.0, 30.0)
    assert bar.shape == (100, 72, 3)
    # the bar's column holds the colour map from the top (30) to the bottom (10)
    import matplotlib

    top = np.array(matplotlib.colormaps["magma"](1.0, bytes=True)[:3])
    first, last = max(_ink_runs((bar[:, 12] != 255).any(axis=-1)), key=lambda r: r[1] - r[0])
    assert last - first > 50  # the ramp, framed by one dark row at each end
    assert np.abs(bar[first + 1, 12].astype(int) - top).max() < 40
    with pytest.raises(ValueError, match="at least 32"):
        viz.colorbar(20, 0, 1)


def _ink_runs(ink_rows: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) row of each run of rows holding dark text pixels."""
    runs, start = [], None
    for y, ink in enumerate(list(ink_rows) + [False]):
        if ink and start is None:
            start = y
        elif not ink and start is not None:
            runs.append((start, y - 1))
            start = None
    return runs


def test_colorbar_labels_grow_with_the_picture_and_the_unit_is_not_cropped():
    bar = viz.colorbar(480, 0.0, 60.0)
    top, bottom = max(_ink_runs((bar[:, 12] != 255).any(axis=-1)), key=lambda r: r[1] - r[0])
    assert bottom - top > 300  # the colour ramp
    assert bottom < bar.shape[0] - 5  # the bottom label has room under the bar
    # The unit above the bar: whole (white rows above and below it), >= 8 px of ink
    above = bar[:top, :24].min(axis=-1) < 100  # over the ramp, left of the top tick label
    (first, last), = _ink_runs(above.any(axis=1))
    assert first > 0 and last < top - 1
    assert last - first + 1 >= 8
    # Tick labels (right of the ramp and its ticks): each digit run >= 8 px tall at this size
    labels = bar[:, 40:].min(axis=-1) < 100
    runs = _ink_runs(labels.any(axis=1))
    assert len(runs) >= 3 and min(b - a + 1 for a, b in runs) >= 8
    # A small picture keeps the old compact key
    assert viz.colorbar(100, 10.0, 30.0).shape == (100, 72, 3)


def test_flow_legend_label_grows_with_the_picture():
    legend = viz.flow_legend(480, 7.07)
    ink = legend.max(axis=-1) < 120  # grey-to-black text; every wheel colour is bright
    label = _ink_runs(ink.any(axis=1))
    assert len(label) == 1 and label[0][1] - label[0][0] + 1 >= 10
    # the label fits across: white margins left and right of it
    cols = np.flatnonzero(ink.any(axis=0))
    assert cols[0] > 0 and cols[-1] < legend.shape[1] - 1


def test_flow_picture_puts_the_legend_of_the_largest_valid_motion_beside_the_colours():
    flow = np.zeros((40, 30, 2), np.float32)
    flow[..., 0] = np.linspace(-2, 2, 30)
    flow[0, 0] = 50.0  # invalid: left out of the scale
    valid = np.ones((40, 30), bool)
    valid[0, 0] = False
    np.testing.assert_array_equal(viz.flow_picture(flow, valid=valid),
                                  viz.flow_to_rgb(flow, valid=valid))
    picture = viz.flow_picture(flow, valid=valid, legend=True)
    key = viz.flow_legend(64, 2.0)  # 64 px: the smallest legend; the flow is padded white
    assert picture.shape == (64, 30 + key.shape[1], 3)
    np.testing.assert_array_equal(picture[:40, :30], viz.flow_to_rgb(flow, valid=valid))
    assert (picture[40:, :30] == 255).all()
    np.testing.assert_array_equal(picture[:, 30:], key)
    fixed = viz.flow_picture(flow, max_norm=8.0, legend=True)
    np.testing.assert_array_equal(fixed[:, 30:], viz.flow_legend(64, 8.0))
    still = viz.flow_picture(np.zeros((70, 20, 2)), legend=True)  # no motion: scale 1 px
    np.testing.assert_array_equal(still[:, 20:], viz.flow_legend(70, 1.0))


def test_disparity_picture_range_and_colour_bar():
    disp = np.tile(np.linspace(1, 50, 40), (30, 1))
    disp[0, 0] = 1000.0  # one far-out value does not darken the rest
    low, high = viz.disparity_range(disp)
    np.testing.assert_array_equal(viz.disparity_picture(disp),
                                  viz.disparity_to_rgb(disp, min_disp=low, max_disp=high))
    np.testing.assert_array_equal(viz.disparity_picture(disp, min_disp=0, max_disp=100),
                                  viz.disparity_to_rgb(disp, max_disp=100.0))
    picture = viz.disparity_picture(disp, max_disp=100, legend=True)
    assert picture.shape == (96, 40 + 72, 3)
    np.testing.assert_array_equal(picture[30:, :40], 255)
    np.testing.assert_array_equal(picture[:, 40:], viz.colorbar(96, low, 100.0))
    with pytest.raises(ValueError, match="the colour range is empty: min 60 >= max 50"):
        viz.disparity_picture(disp, min_disp=60, max_disp=50)
