"""PatchFlow: known motions recovered, refinement behaviour, sizes, settings, zoo wiring."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, map_coordinates

import flowlib
from flowlib import ops
from flowlib.models import patchflow
from flowlib.models.patchflow import PatchFlow, PatchStereo, inverse_search, pyramid_depth, variational_refinement


def _jit(fn, level: int = 0, **kwargs):
    """``jax.jit`` with the stages' XLA options at LLVM -O``level``: these tests check values,
    and on their small images code compiled at -O0 computes them to float rounding and
    compiles ~3x faster than at -O1 (a whole PatchFlow at 2 x 35 x 46: 2.6 against 7.9
    CPU-s), while it runs a few ms slower."""
    return jax.jit(fn, compiler_options=patchflow._compiler_options(level), **kwargs)


def _texture(h: int, w: int, seed: int = 0, blur: float = 1.5) -> np.ndarray:
    x = gaussian_filter(np.random.default_rng(seed).random((h, w)), blur)
    return (255 * (x - x.min()) / np.ptp(x)).astype(np.float32)


def _translated_pair(h: int, w: int, u: float, v: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Grey frames with image1[y, x] = image2[y + v, x + u] (cubic resampling of a big texture)."""
    m = int(abs(u) + abs(v)) + 8
    big = _texture(h + 2 * m, w + 2 * m, seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64) + m
    i1 = big[m : m + h, m : m + w]
    # image2 at q holds the texture at q - (u, v)
    i2 = map_coordinates(big, [yy - v, xx - u], order=3, mode="nearest").astype(np.float32)
    return i1, i2


def _rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat((grey / 255.0)[..., None], 3, axis=-1).astype(np.float32)


def test_pyramid_depth_by_hand():
    assert pyramid_depth(384, 512, patch_size=8, min_coarse_side=16) == 4  # 24 x 32 at level 4
    assert pyramid_depth(31, 500, patch_size=8, min_coarse_side=16) == 0
    assert pyramid_depth(32, 500, patch_size=8, min_coarse_side=16) == 1
    assert pyramid_depth(8, 8, patch_size=8, min_coarse_side=16) == 0


def test_inverse_search_recovers_a_subpixel_translation():
    i1, i2 = _translated_pair(48, 64, 1.3, -0.6)
    search = _jit(functools.partial(inverse_search, patch_size=8, patch_stride=4, iterations=16,
                                    propagation_rounds=1, jumps=(1,)))
    flow = search(jnp.asarray(i1)[None], jnp.asarray(i2)[None], jnp.zeros((1, 48, 64, 2)))
    inner = np.asarray(flow)[0, 8:-8, 8:-8]
    np.testing.assert_allclose(inner.mean(axis=(0, 1)), [1.3, -0.6], atol=0.03)
    assert np.abs(inner - [1.3, -0.6]).max() < 0.2


def test_patches_carried_beyond_half_a_patch_outside_frame_2_go_back_to_their_start():
    """By hand, on 16 x 20 images (3 x 4 patches of 8, stride 4; centres at y 3.5, 7.5,
    11.5 and x 3.5 .. 15.5): a patch stays if its centre lands in [-4, 19] x [-4, 23] (the
    frame extended by half a patch), else it takes its starting flow; with a traced size
    (images of 12 x 16 on the arrays), that of the images."""
    from flowlib.ops.patches import patch_grid

    grid = patch_grid(16, 20, size=8, stride=4)
    start = np.full((1, 3, 4, 2), 0.25, np.float32)
    u = np.zeros((1, 3, 4, 2), np.float32)
    u[0, 0, 0] = (-7.5, 0.0)  # centre at x = -4: on the bound
    u[0, 0, 1] = (-11.6, 0.0)  # x = -4.1
    u[0, 1, 0] = (0.0, -11.5)  # y = -4
    u[0, 1, 1] = (0.0, -11.6)
    u[0, 2, 3] = (7.5, 7.5)  # (23, 19): the far corner
    u[0, 2, 2] = (11.6, 0.0)  # x = 23.1
    u[0, 2, 1] = (0.0, 7.6)  # y = 19.1
    back = {(0, 1), (1, 1), (2, 2), (2, 1)}
    want = u.copy()
    for i, j in back:
        want[0, i, j] = start[0, i, j]
    got = patchflow._kept_in_frame(jnp.asarray(u), jnp.asarray(start), grid, (16, 20))
    np.testing.assert_array_equal(np.asarray(got), want)
    traced = jax.jit(lambda u, s, size: patchflow._kept_in_frame(u, s, grid, size))
    np.testing.assert_array_equal(np.asarray(traced(u, start, jnp.asarray([16, 20]))), want)
    # Images of 12 x 16: bounds [-4, 15] x [-4, 19].
    small = np.asarray(traced(u, start, jnp.asarray([12, 16])))
    want[0, 2, 3] = start[0, 2, 3]  # (23, 19) is beyond them
    want[0, 0, 0] = u[0, 0, 0]
    np.testing.assert_array_equal(small, want)


def test_exhaustive_search_finds_what_gauss_newton_alone_cannot():
    i1, i2 = _translated_pair(40, 40, 4.0, -3.0, seed=1)
    args = dict(patch_size=8, patch_stride=4, iterations=8, propagation_rounds=0, jumps=(1,))
    a, b, zero = jnp.asarray(i1)[None], jnp.asarray(i2)[None], jnp.zeros((1, 40, 40, 2))
    search = _jit(functools.partial(inverse_search, search_radius=5, **args))
    searched = np.asarray(search(a, b, zero))[0, 8:-8, 8:-8]
    np.testing.assert_allclose(np.median(searched.reshape(-1, 2), axis=0), [4.0, -3.0], atol=0.05)


def test_a_traced_switch_turns_the_exhaustive_search_on_and_off():
    i1, i2 = _translated_pair(40, 40, 4.0, -3.0, seed=1)
    args = dict(patch_size=8, patch_stride=4, iterations=2, propagation_rounds=1, jumps=(1,))
    a, b, zero = jnp.asarray(i1)[None], jnp.asarray(i2)[None], jnp.zeros((1, 40, 40, 2))
    switched = _jit(functools.partial(inverse_search, search_radius=5, **args))
    on, off = (np.asarray(switched(a, b, zero, exhaustive=jnp.bool_(s))) for s in (True, False))
    np.testing.assert_array_equal(on, np.asarray(_jit(functools.partial(
        inverse_search, search_radius=5, **args))(a, b, zero)))
    np.testing.assert_array_equal(off, np.asarray(_jit(functools.partial(
        inverse_search, search_radius=0, **args))(a, b, zero)))
    assert np.abs(on - off).max() > 1.0


def test_each_level_is_matched_on_its_canvas_or_bucket_shape():
    """_plan by hand: the levels' own sizes halve by floor; the canvas's levels share the
    finest one's shape; a bucket rounds the full-size sides up to its multiples and gives
    the searched levels an odd number of rows and a width of 8 modulo 16, so that KITTI's
    sizes share every shape."""
    from flowlib.models.patchflow import PatchStereo

    sizes, shapes, canvas = patchflow._plan(436, 1024, 4, PatchFlow(), 1)
    assert sizes == [(436, 1024), (218, 512), (109, 256), (54, 128), (27, 64)]
    assert shapes == ((436, 1024), (218, 512), (109, 256), (109, 256), (109, 256)) and canvas == 3
    sizes, shapes, canvas = patchflow._plan(436, 1024, 4, PatchFlow(bucket=32), 1)
    assert sizes == [(436, 1024), (218, 512), (109, 256), (54, 128), (27, 64)]
    assert shapes == ((448, 1024), (225, 520), (113, 264), (113, 264), (113, 264)) and canvas == 3
    sizes, shapes, canvas = patchflow._plan(436, 1024, 4, PatchFlow(bucket=32, finest_level=0), 0)
    assert shapes[:2] == ((449, 1032), (225, 520)) and canvas == 3  # level 0 is searched
    kitti = [patchflow._plan(h, w, 3, PatchStereo(), 1) for h, w in
             ((375, 1242), (370, 1224), (376, 1241), (374, 1238), (370, 1226))]
    assert kitti[0][0] == [(375, 1242), (187, 621), (93, 310), (46, 155)]
    assert {plan[1:] for plan in kitti} == {(((384, 1248), (193, 632), (97, 312), (97, 312)), 2)}
    assert patchflow._plan(375, 1242, 3, PatchStereo(bucket=0), 1)[1][0] == (375, 1242)


def test_the_pyramid_levels_are_extended_to_their_shapes_by_repeating_the_edge():
    rng = np.random.default_rng(2)
    i0, i1 = (jnp.asarray(rng.random((1, 19, 29), np.float32)) for _ in range(2))
    own = ((19, 29), (9, 14), (4, 7), (2, 3))
    plain = patchflow._pyramids(i0, i1, shapes=own)
    assert [p.shape[1:] for p in plain[0]] == list(own)
    shapes = ((32, 32), (16, 16), (9, 14), (9, 14))  # a bucket, then a canvas of two levels
    pyr0, pyr1 = patchflow._pyramids(i0, i1, shapes=shapes)
    assert [p.shape[1:] for p in pyr0] == list(shapes)
    for extended, levels in ((pyr0, plain[0]), (pyr1, plain[1])):
        for level, (h, w) in enumerate(shapes):
            want = np.asarray(levels[level])
            want = np.pad(want, ((0, 0), (0, h - want.shape[1]), (0, w - want.shape[2])),
                          mode="edge")
            np.testing.assert_array_equal(np.asarray(extended[level]), want)


def test_a_level_step_crops_a_level_and_starts_the_next_one_on_its_arrays():
    rng = np.random.default_rng(8)
    flow = rng.normal(size=(1, 12, 16, 2)).astype(np.float32)  # a 3 x 4 level on its canvas
    for horizontal in (False, True):
        for shape in ((12, 16), (7, 9)):  # the same canvas; a finer level's bucket arrays
            own, start = patchflow._next_level(jnp.asarray(flow), coarse_size=(3, 4),
                                               size=(6, 8), shape=shape, horizontal=horizontal)
            np.testing.assert_array_equal(own, flow[:, :3, :4])
            up = np.asarray(patchflow._upsample(jnp.asarray(flow[:, :3, :4]), (6, 8), horizontal))
            np.testing.assert_array_equal(start, np.pad(
                up, ((0, 0), (0, shape[0] - 6), (0, shape[1] - 8), (0, 0)), mode="edge"))


@pytest.mark.parametrize("h,w,size,stride", [(17, 23, 8, 4), (16, 16, 8, 4), (13, 11, 6, 3),
                                             (14, 10, 5, 5)])
def test_patch_centres_are_the_bilinear_samples_of_the_flow(h, w, size, stride):
    """Flow at the patch centres (between pixels for an even size, on one for an odd size,
    beyond the image for a grid that overhangs it): what the general bilinear sampler with
    border padding gives at those coordinates, to float32 rounding."""
    from flowlib.ops.patches import patch_grid

    flow = np.random.default_rng(2).normal(0, 3, (2, h, w, 2)).astype(np.float32)
    grid = patch_grid(h, w, size=size, stride=stride)
    half = (size - 1) / 2
    ys, xs = np.arange(grid.rows) * stride + half, np.arange(grid.cols) * stride + half
    coords = np.stack(np.meshgrid(xs, ys, indexing="xy"), axis=-1).astype(np.float32)
    want = ops.bilinear_sample(jnp.asarray(flow), jnp.broadcast_to(coords, (2, *coords.shape)),
                               padding="border")
    got = patchflow._patch_centres(jnp.asarray(flow), grid)
    assert got.shape == (2, grid.rows, grid.cols, 2)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-6)


def test_patch_cost_is_the_zero_mean_ssd_in_one_pass():
    """The one-pass cost equals ``sum((x - mean(x) - (t - mean(t)))^2)`` computed naively in
    float64: on patches near their templates (a brightness change included, which the zero
    mean removes) to float32 rounding of their sums, and on unrelated patches of 0..255;
    in float64 (one variadic reduction), values and gradients are the naive formula's."""
    rng = np.random.default_rng(0)
    t = rng.uniform(0, 255, (3, 4, 5, 8, 8)).astype(np.float32)
    near = t + 40.0 + rng.normal(0, 2.0, t.shape).astype(np.float32)
    far = rng.uniform(0, 255, t.shape).astype(np.float32)

    def naive(x, t):
        def zero_mean(a):
            return a - jnp.mean(a, axis=(-2, -1), keepdims=True)

        return jnp.sum((zero_mean(x) - zero_mean(t)) ** 2, axis=(-2, -1))

    for x in near, far:  # SSDs of ~250 and ~4e5
        got = _jit(patchflow._patch_cost)(jnp.asarray(x), jnp.asarray(t))
        want = naive(x.astype(np.float64), t.astype(np.float64))
        # float32 rounding: ~1e-6 of sum((x - t)^2), ~1e5 for the near patches
        bound = 2e-6 * np.sum((x.astype(np.float64) - t) ** 2, axis=(-2, -1))
        assert np.all(np.abs(np.asarray(got) - want) <= bound)
    with jax.enable_x64(True):
        x64, t64 = jnp.asarray(far[:1, :2], jnp.float64), jnp.asarray(t[:1, :2], jnp.float64)
        assert patchflow._patch_cost(x64, t64).dtype == jnp.float64
        np.testing.assert_allclose(patchflow._patch_cost(x64, t64), naive(x64, t64), rtol=1e-10)
        weights = jnp.asarray(rng.normal(size=(1, 2, 5)))
        grads = [jax.grad(lambda x, f=f: jnp.sum(weights * f(x, t64)))(x64)
                 for f in (patchflow._patch_cost, naive)]
        np.testing.assert_allclose(grads[0], grads[1], rtol=1e-8, atol=1e-8)


def test_an_exhaustive_search_over_part_of_the_grid():
    """Restricted to the grid of a smaller image (``size``, the top-left patches): those
    patches get the flows and costs of the search over every patch (each patch's search is
    its own), every other patch keeps its state."""
    i1, i2 = _translated_pair(40, 44, 3.0, -2.0, seed=4)
    grid = patchflow.patch_grid(40, 44, size=8, stride=4)  # 9 x 10 patches
    a, b = jnp.asarray(i1)[None], jnp.asarray(i2)[None]
    templates = patchflow.extract_patches(a, grid)
    u0 = jnp.zeros((1, grid.rows, grid.cols, 2))
    state = (u0, patchflow._patch_cost(patchflow.sample_patches(b, grid, u0), templates))

    def search(size):
        return _jit(lambda st: patchflow._exhaustive_search(b, grid, templates, st, 3, False,
                                                            size=size))(state)

    whole, part = search(None), search((20, 23))
    rows, cols = 4, 5  # the grid of a 20 x 23 image
    np.testing.assert_array_equal(part[0][:, :rows, :cols], whole[0][:, :rows, :cols])
    np.testing.assert_allclose(part[1][:, :rows, :cols], whole[1][:, :rows, :cols], rtol=1e-6,
                               atol=1e-6)  # SSDs of ~3000: float rounding
    for got, kept in zip(part, state):
        np.testing.assert_array_equal(got[:, rows:], kept[:, rows:])
        np.testing.assert_array_equal(got[:, :, cols:], kept[:, :, cols:])
    assert np.abs(np.asarray(whole[0][:, :rows, :cols])).max() >= 1.0  # it did search there
    for got, want in zip(search((40, 44)), whole):  # the whole grid's own size: no restriction
        np.testing.assert_array_equal(got, want)


def _on_canvas(x: np.ndarray, canvas: tuple[int, int]) -> jnp.ndarray:
    """``(B, h, w, ...)`` edge-extended to ``(B, *canvas, ...)``, as the canvas pyramid does."""
    pad = [(0, 0), (0, canvas[0] - x.shape[1]), (0, canvas[1] - x.shape[2])]
    return jnp.asarray(np.pad(x, pad + [(0, 0)] * (x.ndim - 3), mode="edge"))


@pytest.mark.parametrize("horizontal", [False, True])
def test_a_level_on_a_canvas_is_matched_and_refined_as_the_level_alone(horizontal):
    """The search and the refinement of images in the top-left of larger arrays (``size``)
    give, there, what they give on the images alone, to float rounding: the canvas changes
    nothing but which compiled stage runs."""
    h, w, canvas = 21, 30, (44, 61)
    i1, i2 = _translated_pair(h, w, -2.6 if horizontal else 2.4, 0.0 if horizontal else -1.3,
                              seed=11)
    a, b = jnp.asarray(i1)[None], jnp.asarray(i2)[None]
    rng = np.random.default_rng(12)
    start = rng.normal(scale=0.5, size=(1, h, w, 2)).astype(np.float32)
    if horizontal:
        start[..., 1] = 0.0
    size = jnp.asarray([h, w], jnp.int32)
    search = dict(patch_size=8, patch_stride=4, iterations=4, propagation_rounds=1,
                  jumps=(2, 1), search_radius=2, horizontal=horizontal)
    alone = _jit(functools.partial(inverse_search, **search))(a, b, jnp.asarray(start))
    on = _jit(functools.partial(inverse_search, exhaustive_size=(h, w), **search))(
        _on_canvas(i1[None], canvas), _on_canvas(i2[None], canvas), _on_canvas(start, canvas),
        size=size)
    assert on.shape == (1, *canvas, 2)
    np.testing.assert_allclose(on[:, :h, :w], alone, atol=1e-4)

    refine = dict(alpha=20.0, delta=5.0, gamma=10.0, outer=3, inner=3, horizontal=horizontal)
    flow = np.asarray(alone)
    warped = np.asarray(patchflow._warp(b, alone, horizontal))
    alone = _jit(functools.partial(patchflow.refine_warped, **refine))(a, warped, flow)
    # Beyond the images the arrays may hold anything (here: other values than the edge).
    junk = lambda x: jnp.asarray(np.pad(x, [(0, 0), (0, canvas[0] - h), (0, canvas[1] - w)]
                                        + [(0, 0)] * (x.ndim - 3), mode="reflect"))
    on = _jit(functools.partial(patchflow.refine_warped, **refine))(
        _on_canvas(i1[None], canvas), junk(warped), junk(flow), size)
    np.testing.assert_allclose(on[:, :h, :w], alone, atol=1e-4)
    assert np.abs(np.asarray(alone) - flow).max() > 0.01  # the refinement did move the flow


def test_a_malformed_canvas_size_is_refused_with_what_is_expected():
    a = jnp.zeros((1, 12, 16))
    flow = jnp.zeros((1, 12, 16, 2))
    search = dict(patch_size=8, patch_stride=4, iterations=1, propagation_rounds=0, jumps=(1,))
    refine = dict(alpha=20.0, delta=5.0, gamma=10.0, outer=1, inner=1)
    for size in (jnp.asarray([12, 16, 1]), jnp.asarray([12.0, 16.0])):
        with pytest.raises(ValueError, match=r"integer \(height, width\) array of shape \(2,\)"):
            inverse_search(a, a, flow, size=size, **search)
        with pytest.raises(ValueError, match=r"integer \(height, width\) array of shape \(2,\)"):
            patchflow.refine_warped(a, a, flow, size, **refine)


def test_derivatives_are_central_differences_with_the_edge_repeated():
    a = np.random.default_rng(3).standard_normal((2, 5, 7)).astype(np.float32)
    p = np.pad(a, ((0, 0), (1, 1), (1, 1)), mode="edge")
    dx = _jit(patchflow._dx)(jnp.asarray(a))
    dy = _jit(patchflow._dy)(jnp.asarray(a))
    np.testing.assert_array_equal(dx, np.float32(0.5) * (p[:, 1:-1, 2:] - p[:, 1:-1, :-2]))
    np.testing.assert_array_equal(dy, np.float32(0.5) * (p[:, 2:, 1:-1] - p[:, :-2, 1:-1]))
    assert dx[0, 2, 0] == 0.5 * (a[0, 2, 1] - a[0, 2, 0])  # the border by hand
    after = patchflow._edge_pad(jnp.asarray(a), 1, before=False)
    np.testing.assert_array_equal(after, np.pad(a, ((0, 0), (0, 1), (0, 0)), mode="edge"))


def test_neighbour_cells_replicate_the_grid_edge_in_every_direction():
    """Each direction's candidates are the cells (dy, dx) away, the nearest edge cell where
    that falls off the grid (a naive numpy loop); with ``cells`` the grid is the top-left
    part of the array and its own edge is replicated, beyond it too."""
    rng = np.random.default_rng(13)
    u = rng.normal(size=(2, 7, 9, 2)).astype(np.float32)
    directions = [(0, 4), (0, -2), (1, 0), (-3, 0), (2, -1)]
    for cells in (None, (5, 6)):
        rows, cols = (7, 9) if cells is None else cells
        want = np.empty((len(directions), *u.shape), np.float32)
        for k, (dy, dx) in enumerate(directions):
            for i in range(7):
                for j in range(9):
                    want[k, :, i, j] = u[:, min(max(i + dy, 0), rows - 1),
                                         min(max(j + dx, 0), cols - 1)]
        got = _jit(lambda u, c: patchflow._neighbour_cells(u, directions, c))(
            jnp.asarray(u), None if cells is None else jnp.asarray(cells, jnp.int32))
        np.testing.assert_array_equal(got, want)


def test_checkerboard_splits_red_and_black_pixels_and_back():
    a = jnp.asarray(np.arange(6, dtype=np.float32).reshape(1, 2, 3))
    red, black = patchflow._checkerboard(a)
    # (y + x) even is red; the odd width gets a zero column on the right.
    np.testing.assert_array_equal(red[0], [[0, 2], [4, 0]])
    np.testing.assert_array_equal(black[0], [[1, 0], [3, 5]])
    for shape in [(2, 3, 5, 7), (1, 1, 4, 1), (2, 1, 6, 8)]:
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        np.testing.assert_array_equal(patchflow._from_checkerboard(*patchflow._checkerboard(jnp.asarray(x)), shape[-1]), x)


@pytest.mark.parametrize("width", [7, 8])
def test_checkerboard_neighbours_equal_the_full_grid_sum(width):
    """Each colour's weighted four-neighbour sum, from the other colour alone, equals the
    full grid's (zero outside the image) at that colour's pixels: naive numpy reference."""
    rng = np.random.default_rng(5)
    d = rng.standard_normal((2, 2, 6, width)).astype(np.float32)
    w = rng.random((4, 2, 6, width)).astype(np.float32)  # right, left, down, up
    p = np.pad(d, ((0, 0), (0, 0), (1, 1), (1, 1)))
    full = (w[0] * p[:, :, 1:-1, 2:] + w[1] * p[:, :, 1:-1, :-2] + w[2] * p[:, :, 2:, 1:-1]
            + w[3] * p[:, :, :-2, 1:-1])
    d_red, d_black = patchflow._checkerboard(jnp.asarray(d))
    w_red, w_black = patchflow._checkerboard(jnp.asarray(w))
    want_red, want_black = patchflow._checkerboard(jnp.asarray(full))
    got_red = patchflow._checkerboard_neighbours(patchflow._bordered(d_black), w_red, red=True)
    got_black = patchflow._checkerboard_neighbours(patchflow._bordered(d_red), w_black, red=False)
    # (An odd width's zero column has zero weights: zero on both sides.)
    np.testing.assert_allclose(got_red, want_red, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got_black, want_black, rtol=1e-6, atol=1e-6)


def test_horizontal_refinement_moves_u_only_and_towards_the_shift():
    """Stereo: only u is refined; v comes back exactly as given and u moves from a rough
    start towards the true horizontal shift, without passing it."""
    a, b = _translated_pair(40, 56, -2.5, 0.0, seed=4)
    start = jnp.zeros((1, 40, 56, 2)).at[..., 0].set(-2.0)
    refine = _jit(functools.partial(variational_refinement, alpha=20.0, delta=5.0, gamma=10.0,
                                    outer=4, inner=5, horizontal=True))
    out = np.asarray(refine(jnp.asarray(a)[None], jnp.asarray(b)[None], start))
    assert np.all(out[..., 1] == 0)
    inner = out[0, 6:-6, 6:-6, 0]
    assert np.median(inner) < -2.01  # one linearisation, weighted against smoothness: a step
    assert np.all(inner > -2.6)
    given_v = np.asarray(refine(jnp.asarray(a)[None], jnp.asarray(b)[None], start.at[..., 1].set(0.3)))
    assert np.all(given_v[..., 1] == np.float32(0.3))  # v is passed through


def test_densify_is_the_weighted_mean_of_the_covering_patches_and_stereo_sums_u_alone():
    """Each pixel's flow is the mean of its covering patches' flows weighted by
    1 / max(1, |I1(x + u_i) - I0(x)|) (a naive loop over patches); with ``horizontal`` the
    same u, and v exactly 0."""
    from flowlib.ops.patches import extract_patches, patch_grid

    i0, i1 = (jnp.asarray(x)[None] for x in _translated_pair(14, 19, 1.5, 0.0, seed=5))
    grid = patch_grid(14, 19, size=4, stride=2)
    template = extract_patches(i0, grid)
    u = np.random.default_rng(6).uniform(-2, 2, (1, grid.rows, grid.cols, 2)).astype(np.float32)
    u[..., 1] = 0.0
    # at the stages' optimisation level, where flow's u and stereo's are the same bits
    dense = np.asarray(_jit(patchflow.densify, 1, static_argnums=3)(i1, template, jnp.asarray(u),
                                                                     grid))
    num, den = np.zeros((14, 19)), np.zeros((14, 19))
    big = np.pad(np.asarray(i1[0], np.float64), 8, mode="edge")
    for r in range(grid.rows):
        for c in range(grid.cols):
            for y in range(r * 2, min(r * 2 + 4, 14)):
                for x in range(c * 2, min(c * 2 + 4, 19)):
                    xs = x + u[0, r, c, 0] + 8  # u has a fractional x, y = 0
                    x0 = int(np.floor(xs))
                    sampled = big[y + 8, x0] + (xs - x0) * (big[y + 8, x0 + 1] - big[y + 8, x0])
                    w = 1.0 / max(1.0, abs(sampled - float(i0[0, y, x])))
                    num[y, x] += w * u[0, r, c, 0]
                    den[y, x] += w
    np.testing.assert_allclose(dense[0, ..., 0], num / den, rtol=1e-5, atol=1e-5)
    assert np.all(dense[..., 1] == 0)
    stereo = np.asarray(_jit(functools.partial(patchflow.densify, horizontal=True), 1,
                             static_argnums=3)(i1, template, jnp.asarray(u), grid))
    np.testing.assert_array_equal(stereo[..., 0], dense[..., 0])
    assert np.all(stereo[..., 1] == 0)


def _naive_refinement(i0, warped, flow, *, alpha, delta, gamma, outer, inner, horizontal,
                      omega=1.6, zeta=0.1):
    """DIS's variational refinement pixel by pixel in float64 numpy: lagged-weight
    fixed-point iterations of red-black SOR ((y + x) even first) on the per-pixel
    Euler-Lagrange system, Neumann boundaries (no smoothness across the image border)."""
    h, w = i0.shape

    def dx(a):
        p = np.pad(a, ((0, 0), (1, 1)), mode="edge")
        return 0.5 * (p[:, 2:] - p[:, :-2])

    def dy(a):
        p = np.pad(a, ((1, 1), (0, 0)), mode="edge")
        return 0.5 * (p[2:] - p[:-2])

    def psi(s2):
        return 0.5 / np.sqrt(s2 + 1e-6)

    mean, iz = 0.5 * (warped + i0), warped - i0
    ix, iy = dx(mean), dy(mean)
    ixx, ixy, iyy, ixz, iyz = dx(ix), dy(ix), dy(iy), dx(iz), dy(iz)
    n_i, n_x, n_y = ix**2 + iy**2 + zeta**2, ixx**2 + ixy**2 + zeta**2, ixy**2 + iyy**2 + zeta**2
    n = 1 if horizontal else 2
    uv = np.moveaxis(flow, -1, 0)[:n]
    d = np.zeros((n, h, w))
    for _ in range(outer):
        du, dv = d[0], (d[1] if n == 2 else 0.0)
        p_i = delta * psi((iz + ix * du + iy * dv) ** 2 / n_i)
        p_g = gamma * psi((ixz + ixx * du + ixy * dv) ** 2 / n_x + (iyz + ixy * du + iyy * dv) ** 2 / n_y)
        a11 = p_i * ix * ix / n_i + p_g * (ixx * ixx / n_x + ixy * ixy / n_y)
        a12 = p_i * ix * iy / n_i + p_g * (ixx * ixy / n_x + ixy * iyy / n_y)
        a22 = p_i * iy * iy / n_i + p_g * (ixy * ixy / n_x + iyy * iyy / n_y)
        b = [p_i * ix * iz / n_i + p_g * (ixx * ixz / n_x + ixy * iyz / n_y),
             p_i * iy * iz / n_i + p_g * (ixy * ixz / n_x + iyy * iyz / n_y)]
        t = uv + d
        grad2 = np.zeros((h, w))
        for y in range(h):
            for x in range(w):
                for c in range(n):
                    if x + 1 < w:
                        grad2[y, x] += (t[c, y, x + 1] - t[c, y, x]) ** 2
                    if y + 1 < h:
                        grad2[y, x] += (t[c, y + 1, x] - t[c, y, x]) ** 2
        s = alpha * psi(grad2)

        def weight(y, x, yy, xx):  # the edge's weight; zero across the border
            return 0.5 * (s[y, x] + s[yy, xx]) if 0 <= yy < h and 0 <= xx < w else 0.0

        for _ in range(inner):
            for colour in (0, 1):
                for y in range(h):
                    for x in range(w):
                        if (y + x) % 2 != colour:
                            continue
                        nbrs = [(y, x + 1), (y, x - 1), (y + 1, x), (y - 1, x)]
                        ws = [weight(y, x, yy, xx) for yy, xx in nbrs]
                        r = [sum(wk * (uv[c, yy, xx] + d[c, yy, xx]) for wk, (yy, xx) in zip(ws, nbrs) if wk)
                             - sum(ws) * uv[c, y, x] - b[c][y, x] for c in range(n)]
                        m11, m22 = a11[y, x] + sum(ws), a22[y, x] + sum(ws)
                        if n == 1:
                            new = [r[0] / m11]
                        else:
                            det = m11 * m22 - a12[y, x] ** 2
                            new = [(m22 * r[0] - a12[y, x] * r[1]) / det,
                                   (m11 * r[1] - a12[y, x] * r[0]) / det]
                        for c in range(n):
                            d[c, y, x] = (1 - omega) * d[c, y, x] + omega * new[c]
    out = flow.copy()
    out[..., :n] += np.moveaxis(d, 0, -1)
    return out


@pytest.mark.parametrize("horizontal", [False, True])
@pytest.mark.parametrize("width", [7, 8])
def test_refinement_equals_a_naive_red_black_sor(x64, horizontal, width):
    """The refinement (stacked system, colours stored apart, flow's colours carried in a
    zero border) computes what the pixel-by-pixel float64 reference does."""
    rng = np.random.default_rng(11)
    i0 = _texture(6, width, seed=1).astype(np.float64)
    warped = _texture(6, width, seed=2).astype(np.float64)
    flow = rng.normal(0, 1, (6, width, 2))
    if horizontal:
        flow[..., 1] = 0.0
    settings = dict(alpha=20.0, delta=5.0, gamma=10.0, outer=2, inner=3, horizontal=horizontal)
    got = jax.jit(functools.partial(patchflow.refine_warped, **settings))(
        jnp.asarray(i0)[None], jnp.asarray(warped)[None], jnp.asarray(flow)[None])
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(got[0]), _naive_refinement(i0, warped, flow, **settings),
                               rtol=1e-9, atol=1e-9)


def test_variational_refinement_keeps_zero_flow_on_identical_frames():
    i = jnp.asarray(_texture(32, 40))[None]
    refine = _jit(functools.partial(variational_refinement, alpha=20.0, delta=5.0, gamma=10.0,
                                    outer=3, inner=3))
    out = refine(i, i, jnp.zeros((1, 32, 40, 2)))
    np.testing.assert_allclose(np.asarray(out), 0.0, atol=1e-5)


def test_variational_refinement_improves_a_perturbed_flow():
    i1, i2 = _translated_pair(40, 48, 1.0, 0.5, seed=2)
    truth = np.broadcast_to(np.float32([1.0, 0.5]), (1, 40, 48, 2))
    noisy = truth + np.random.default_rng(0).normal(0, 0.3, truth.shape).astype(np.float32)
    refine = _jit(functools.partial(variational_refinement, alpha=20.0, delta=5.0, gamma=10.0,
                                    outer=5, inner=5))
    out = refine(jnp.asarray(i1)[None], jnp.asarray(i2)[None], jnp.asarray(noisy))
    err_before = np.linalg.norm(noisy - truth, axis=-1)[:, 4:-4, 4:-4].mean()
    err_after = np.linalg.norm(np.asarray(out) - truth, axis=-1)[:, 4:-4, 4:-4].mean()
    assert err_after < 0.5 * err_before


@pytest.fixture(scope="module")
def small_model():
    # Fewer iterations keep compile and run time small; the algorithm is the same.
    return PatchFlow(iterations=8, refine_outer=2, refine_inner=2)


@pytest.fixture(scope="module")
def small_apply(small_model):
    """The small model's apply, run as ``flowlib.Model`` runs it: stage by stage, each stage
    compiled once per shape for the process (small levels at -O1, side by side)."""
    return small_model.apply


def test_large_translation_is_recovered(small_apply):
    i1, i2 = _translated_pair(96, 128, 21.0, -9.0, seed=3)
    out = small_apply({}, _rgb(i1)[None], _rgb(i2)[None])
    inner = np.asarray(out.flow)[0, 16:-16, 24:-24]
    np.testing.assert_allclose(np.median(inner.reshape(-1, 2), axis=0), [21.0, -9.0], atol=0.1)
    assert sorted(out.aux["levels"]) == list(range(pyramid_depth(96, 128, patch_size=8, min_coarse_side=16) + 1))


@pytest.mark.parametrize("h,w", [(8, 8), (13, 37)])
def test_odd_and_tiny_sizes(small_apply, h, w):
    rng = np.random.default_rng(h * w)
    a = rng.random((1, h, w, 3)).astype(np.float32)
    flow = np.asarray(small_apply({}, a, a).flow)
    assert flow.shape == (1, h, w, 2) and flow.dtype == np.float32
    assert np.all(np.isfinite(flow)) and np.abs(flow).max() < 1e-3  # identical frames: no motion


def _reverse_and_forward(f, x, v):
    """``f``'s gradient at ``x`` by reverse mode (``jax.grad``'s linearise-and-transpose) and
    its directional derivative along ``v`` by forward mode, from one primal run (so the same
    argmin choices: rounding could flip them between two compiles)."""
    def both_ways(x):
        y, forward = jax.linearize(f, x)
        (grad,) = jax.linear_transpose(forward, x)(jnp.ones_like(y))
        return grad, forward(v)

    return _jit(both_ways)(x)


@pytest.mark.parametrize("horizontal", [False, True])
def test_reverse_mode_gradients_run_through_the_search(horizontal):
    """Reverse mode runs through a level's search (every loop has a static trip count; an
    odd ``iterations`` too) and a flat patch's zero Gauss-Newton step, where a norm has no
    finite gradient, gives a finite one: the gradient is finite and is the transpose of the
    forward linearisation."""
    i1, i2 = _translated_pair(24, 32, 1.3, 0.0 if horizontal else -0.6, seed=2)
    a, b = jnp.asarray(i1)[None], jnp.asarray(i2)[None]
    a = a.at[:, :12, :12].set(100.0)  # flat templates: zero Gauss-Newton steps
    search = functools.partial(inverse_search, patch_size=8, patch_stride=4, iterations=3,
                               propagation_rounds=1, jumps=(1,), horizontal=horizontal)
    v = jnp.asarray(np.random.default_rng(0).normal(size=a.shape).astype(np.float32))
    grad, forward = _reverse_and_forward(
        lambda x: jnp.sum(search(x, b, jnp.zeros((1, 24, 32, 2))) ** 2), a, v)
    assert np.all(np.isfinite(grad)) and float(jnp.abs(grad).max()) > 0
    np.testing.assert_allclose(float(jnp.sum(grad * v)), float(forward), rtol=1e-3)


@pytest.mark.slow
def test_reverse_mode_gradients_run_through_the_whole_algorithm():
    """As the search's test, for the whole of PatchFlow (odd ``iterations``) and PatchStereo
    (even): the gradient is finite and the transpose of the forward linearisation."""
    rng = np.random.default_rng(3)
    a = jnp.asarray(rng.uniform(size=(1, 16, 32, 3)).astype(np.float32))
    a = a.at[:, :8, :8].set(0.5)  # a flat corner: zero Gauss-Newton steps
    v = jnp.asarray(rng.normal(size=a.shape).astype(np.float32))
    small = dict(propagation_rounds=1, refine_outer=1, refine_inner=2)
    flow = PatchFlow(iterations=3, coarse_radius=1, min_coarse_side=8, **small)
    stereo = PatchStereo(iterations=2, maxdisp=6, levels=1, **small)
    for f in (lambda x: jnp.sum(patchflow.patchflow(x, jnp.roll(a, 2, axis=2), flow).flow ** 2),
              lambda x: jnp.sum(patchflow.patchstereo(x, jnp.roll(a, -2, axis=2),
                                                      stereo).disparity ** 2)):
        grad, forward = _reverse_and_forward(f, a, v)
        assert np.all(np.isfinite(grad)) and float(jnp.abs(grad).max()) > 0
        np.testing.assert_allclose(float(jnp.sum(grad * v)), float(forward), rtol=1e-3)


def test_jit_equals_eager_and_batch_items_are_independent_on_tiny_pairs():
    """Two pairs as one batch through one jitted function (every stage inline), and each pair
    alone through an eager call (which runs the algorithm as separately compiled stages):
    the same flows, at every level. Levels 2 (8 x 11) and 1 (17 x 23) share a canvas."""
    model = PatchFlow(iterations=1, propagation_rounds=1, refine_outer=1, refine_inner=1,
                      coarse_radius=1, min_coarse_side=8)
    assert patchflow._coarse_canvas(35, 46, 2, model, model.finest_level) == 2
    pairs = [_translated_pair(35, 46, -2.0, 0.0, seed=9),
             _translated_pair(35, 46, 1.0, 1.0, seed=7)]
    a = np.stack([_rgb(i1) for i1, _ in pairs])
    b = np.stack([_rgb(i2) for _, i2 in pairs])
    jitted = _jit(model.apply)({}, a, b)
    for k in range(2):
        eager = model.apply({}, a[k : k + 1], b[k : k + 1])
        for x, y in zip(jax.tree.leaves(jitted), jax.tree.leaves(eager), strict=True):
            np.testing.assert_allclose(np.asarray(x, np.float32)[k : k + 1],
                                       np.asarray(y, np.float32), atol=1e-3)


def test_stereo_stages_equal_one_jitted_function():
    model = PatchStereo(maxdisp=8, levels=0, iterations=1, propagation_rounds=1, refine_outer=1,
                        refine_inner=1)
    i1, i2 = _translated_pair(16, 32, -3.0, 0.0, seed=4)
    a, b = _rgb(i1)[None], _rgb(i2)[None]
    jitted = _jit(model.apply)({}, a, b)
    staged = model.apply({}, a, b)
    np.testing.assert_allclose(np.asarray(staged.disparity), np.asarray(jitted.disparity), atol=1e-3)
    np.testing.assert_array_equal(np.asarray(staged.aux["consistent"]), np.asarray(jitted.aux["consistent"]))


def test_model_announces_a_compile_once_per_new_size(tmp_path, monkeypatch):
    """flowlib.Model runs PatchFlow stage by stage; on_compile hears of a new size once, and
    not again once every stage is compiled."""
    monkeypatch.setenv("FLOWLIB_HOME", str(tmp_path))
    config = PatchFlow(iterations=1, propagation_rounds=1, refine_outer=1, refine_inner=1,
                       coarse_radius=1)
    model = flowlib.Model("patchflow", config, {}, task="flow", meta={})
    heard = []
    model.on_compile = heard.append
    a = np.zeros((1, 16, 40, 3), np.float32)
    first, again = model(a, a), model(a, a)
    assert heard == [(1, 16, 40, 3)]
    np.testing.assert_array_equal(np.asarray(first), np.asarray(again))


@pytest.mark.parametrize("kwargs,match", [({"patch_stride": 3}, "multiple of stride"),
                                          ({"iterations": -1}, "iterations"),
                                          ({"refine_inner": 1.5}, "refine_inner")])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PatchFlow(**kwargs)


def test_bad_input_shapes_are_refused(small_model):
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        small_model.apply({}, jnp.zeros((1, 16, 16, 3)), jnp.zeros((1, 16, 17, 3)))


def test_parameters_are_refused_and_init_is_empty():
    model = PatchFlow()
    assert model.init(jax.random.PRNGKey(0), None, None) == {}
    with pytest.raises(ValueError, match="no learned parameters"):
        model.apply({"params": {"w": jnp.zeros(1)}}, jnp.zeros((1, 8, 8, 3)), jnp.zeros((1, 8, 8, 3)))


@pytest.mark.parametrize("name", ["patchflow", "patchstereo"])
def test_presets_replace_the_settings_and_unknown_ones_are_refused(name):
    for preset, settings in patchflow.PRESETS[name].items():
        m = flowlib.load_model(name, preset=preset)
        for key, value in settings.items():
            assert getattr(m.module, key) == value
        assert preset in patchflow.PRESET_MEASURED[name]
    assert flowlib.load_model(name, preset="default").module == flowlib.load_model(name).module
    with pytest.raises(ValueError, match="preset must be one of fast, default, accurate"):
        flowlib.load_model(name, preset="fastest")


@pytest.mark.parametrize("name,default", [("patchflow", 0), ("patchstereo", 32)])
def test_the_bucket_is_a_setting_and_an_option(name, default):
    """``bucket``: flow matches each size on its own by default, stereo in buckets of 32;
    ``load_model(..., bucket=N)`` (CLI ``--bucket N``) overrides it, a bad one is refused."""
    assert flowlib.load_model(name).module.bucket == default
    assert flowlib.load_model(name, bucket=64).module.bucket == 64
    with pytest.raises(ValueError, match=r"bucket must be an integer in \[0, 1024\]"):
        flowlib.load_model(name, bucket=-1)


def test_models_command_lists_each_preset_with_its_measurements(capsys):
    from flowlib import cli

    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    for name, measured in patchflow.PRESET_MEASURED.items():
        for preset, line in measured.items():
            assert f"{name} --preset {preset:<8} {line}" in out


def test_zoo_loads_the_embedded_settings_and_refuses_checkpoints(tmp_path):
    m = flowlib.load_model("patchflow")
    assert m.task == "flow" and m.variables == {}
    assert m.meta["model_kwargs"] == patchflow.default_settings()
    fake = tmp_path / "net.pth"
    fake.write_bytes(b"PK\x03\x04")
    with pytest.raises(ValueError, match="no converter"):
        flowlib.load_model("patchflow", fake)


def test_settings_file_round_trip(tmp_path):
    path = tmp_path / "pf.npz"
    patchflow.write_settings(str(path), iterations=12)
    m = flowlib.load_model("patchflow", path)
    assert m.module.iterations == 12
    with pytest.raises(ValueError, match="multiple of stride"):
        patchflow.write_settings(str(tmp_path / "bad.npz"), patch_stride=3)
    assert not (tmp_path / "bad.npz").exists()


@pytest.fixture(scope="module")
def stereo_out():
    """PatchStereo (left-right check on) on a pair with a 37 px disparity, run once."""
    i1, i2 = _translated_pair(48, 160, -37.0, 0.0, seed=6)  # left[x] = right[x - 37]
    model = PatchStereo(maxdisp=64, iterations=8, refine_outer=2, refine_inner=2)
    return model.apply({}, _rgb(i1)[None], _rgb(i2)[None])  # stage by stage


def test_patch_stereo_recovers_a_large_disparity_and_stays_in_range(stereo_out):
    disp = np.asarray(stereo_out.disparity)[0]
    assert disp.shape == (48, 160) and disp.min() >= 0 and disp.max() <= 64
    assert np.median(disp[8:-8, 48:-8]) == pytest.approx(37.0, abs=0.1)


def test_consistency_check_keeps_the_plain_match_where_views_agree(stereo_out):
    # aux["raw"] is the left view's matching alone (what consistency=0 returns).
    inner = (slice(None), slice(8, -8), slice(48, -8))
    np.testing.assert_allclose(np.asarray(stereo_out.disparity)[inner],
                               np.asarray(stereo_out.aux["raw"])[inner], atol=1e-4)
    assert float(np.asarray(stereo_out.aux["consistent"])[inner].mean()) > 0.95


def test_patch_stereo_settings_and_zoo():
    from flowlib.models.patchflow import PatchStereo

    with pytest.raises(ValueError, match="maxdisp"):
        PatchStereo(maxdisp=-1)
    m = flowlib.load_model("patchstereo")
    assert m.task == "stereo" and m.meta["model_kwargs"] == patchflow.default_settings(PatchStereo)


def test_left_right_consistency_by_hand():
    from flowlib.models.patchflow import left_right_consistent

    left = jnp.asarray([[[0.0, 1.0, 1.0, 3.0, 2.0]]])
    right = jnp.asarray([[[1.0, 1.0, 2.0, 0.0, 0.0]]])
    # x=0: d=0 -> right[0]=1, off by 1 (ok at tol 1); x=1: d=1 -> right[0]=1 ok;
    # x=2: d=1 -> right[1]=1 ok; x=3: d=3 -> right[0]=1 off by 2; x=4: d=2 -> right[2]=2 ok.
    got = np.asarray(left_right_consistent(left, right, 1.0))[0, 0]
    np.testing.assert_array_equal(got, [True, True, True, False, True])
    strict = np.asarray(left_right_consistent(left, right, 0.5))[0, 0]
    np.testing.assert_array_equal(strict, [False, True, True, False, True])
    # A disparity pointing outside the right image is never consistent.
    assert not bool(left_right_consistent(jnp.asarray([[[2.0]]]), jnp.asarray([[[2.0]]]), 1.0)[0, 0, 0])


def test_fill_from_background_by_hand():
    from flowlib.models.patchflow import fill_from_background

    d = jnp.asarray([[[5.0, 9.0, 9.0, 2.0, 7.0], [1.0, 1.0, 1.0, 1.0, 1.0]]])
    valid = jnp.asarray([[[True, False, False, True, False], [False] * 5]])
    got = np.asarray(fill_from_background(d, valid))[0]
    # Row 0: pixels 1-2 lie between 5 and 2 -> the farther (smaller) 2; pixel 4 has only 2 to
    # its left. Row 1 has no valid pixel and keeps its values.
    np.testing.assert_array_equal(got[0], [5.0, 2.0, 2.0, 2.0, 2.0])
    np.testing.assert_array_equal(got[1], [1.0] * 5)
