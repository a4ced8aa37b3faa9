"""PatchFlow: coarse-to-fine patch matching with variational refinement, in JAX.

flowlib's embedded default flow estimator. It follows DIS (Kroeger, Timofte, Dai, Van Gool,
"Fast Optical Flow using Dense Inverse Search", ECCV 2016), with three changes measured on
flowlib's own rendered validation set (``benchmarks/validation.py``; never on the benchmark
datasets):

* an exhaustive zero-mean SSD search of +-``coarse_radius`` pixels at the coarsest level,
  so motions larger than the pyramid's reach start from a match, not from zero;
* parallel spatial propagation with long jumps (a patch tries the flows of the patches 4, 2
  and 1 cells away in each direction, all as one batched cost, keeping the best by SSD)
  instead of DIS's sequential scan-line passes, which do not vectorise;
* guarded Gauss-Newton: each inverse-compositional step is at most one pixel long, and a
  patch keeps its new flow only if it lowers the patch SSD and moved less than a patch size.

Per pyramid level l (coarsest first, grey images in 0..255):

1. initial flow: the finer upsampling of level l+1's flow (zero, then exhaustive search,
   at the coarsest level);
2. inverse search on the ``patch_size`` patches of a grid with ``patch_stride``: patch
   flow u minimises ``sum_x (I1(x + u) - mean - (T(x) - mean))^2`` (zero-mean SSD) by
   propagation + Gauss-Newton, ``u <- u - H^-1 sum_x grad T(x) r(x)`` with the template's
   gradients (inverse compositional: H is fixed per patch);
3. densification: pixel flow = sum_i w_i u_i / sum_i w_i over the patches i covering the
   pixel, ``w_i = 1 / max(1, |I1(x + u_i) - I0(x)|)``;
4. variational refinement of the dense flow (DIS's energy: robust brightness constancy
   ``delta``, gradient constancy ``gamma``, robust smoothness ``alpha``; normalised
   linearised data terms; ``refine_outer`` fixed-point x ``refine_inner`` red-black SOR
   iterations).

Levels finer than ``finest_level`` (PatchFlow's default 1: half size, as DIS's medium preset)
get no inverse search: the flow is upsampled and, with ``upsampled_refine_outer`` > 0,
refined variationally at each of them. The coarsest levels, up to the last small one, are
matched and refined on that level's canvas (their images extended by repeating the last row
and column), so they share their compiled stages; each gives, in the canvas's corner, the
flow it gives alone (:func:`_coarse_canvas`). With ``bucket`` (PatchStereo's default) every
level is matched on arrays rounded up the same way for all image sizes of a bucket, so those
sizes share their compiled searches and refinements (:func:`_plan`).

It has no learned parameters: the "weights" file holds only its settings and their
provenance. The algorithm is a pure function, :func:`patchflow` / :func:`patchstereo`,
of the images and a frozen settings dataclass (:class:`PatchFlow` / :class:`PatchStereo`,
which also give :class:`flowlib.Model` its ``init`` / ``apply``); :data:`PRESETS` holds
faster and more accurate settings. Every step is plain JAX, differentiable almost everywhere
(argmin choices are piecewise constant), so it can sit inside a larger trainable model: under
a caller's ``jax.jit`` / ``grad`` it traces as one computation; called on arrays it runs as
separately compiled stages (the pyramids; per level the search, then the refinement), each
compiled once per shape and settings (the canvas's levels once for all) and kept in
flowlib's compilation cache. The first call at a new size plans every stage from the input
shapes before running any, so the compiles run side by side on the compile threads while the
stages execute in order.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import threading
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from flowlib import _compilation_cache, ops
from flowlib.models._outputs import FlowOutput, StereoOutput
from flowlib.models._spec import ModelSpec, Option, int_in
from flowlib.ops.patches import (PatchGrid, extract_patches, overlap_add, patch_grid, patch_means,
                                 sample_patches)

__all__ = ["PatchFlow", "PatchStereo", "patchflow", "patchstereo", "coarse_to_fine", "inverse_search",
           "variational_refinement", "pyramid_depth", "PRESETS", "SPECS"]

#: The validator of PatchStereo's ``maxdisp`` (the module's and ``load_model``'s).
_check_maxdisp = int_in(1, 1024)

#: Grey conversion (ITU-R BT.601 luma), images scaled to 0..255 as DIS's parameters assume.
_LUMA = (0.299, 0.587, 0.114)


def pyramid_depth(height: int, width: int, *, patch_size: int, min_coarse_side: int) -> int:
    """Index of the coarsest level: the deepest one whose shorter side is >= min_coarse_side."""
    side = min(height, width)
    depth = 0
    while (side >> (depth + 1)) >= max(min_coarse_side, patch_size):
        depth += 1
    return depth


def _gradients(img: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Sobel-normalised derivatives (central difference, [1, 2, 1]/4 across), edge padding."""
    p = jnp.pad(img, ((0, 0), (1, 1), (1, 1)), mode="edge")
    dx = 0.5 * (p[:, :, 2:] - p[:, :, :-2])
    dy = 0.5 * (p[:, 2:, :] - p[:, :-2, :])
    gx = 0.25 * (dx[:, :-2, :] + 2 * dx[:, 1:-1, :] + dx[:, 2:, :])
    gy = 0.25 * (dy[:, :, :-2] + 2 * dy[:, :, 1:-1] + dy[:, :, 2:])
    return gx, gy


def _replicate_beyond(x: jax.Array, size: jax.Array) -> jax.Array:
    """``(B, H, W, ...)`` arrays whose top-left ``size`` (traced ``(height, width)``) is the
    image: every row from ``height`` on repeats row ``height - 1``, every column from
    ``width`` on column ``width - 1``, as ``jnp.pad(mode="edge")`` of the image would."""
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    last = jax.lax.dynamic_slice_in_dim(x, size[0] - 1, 1, axis=1)
    x = jnp.where(jnp.arange(x.shape[1]).reshape(shape) < size[0], x, last)
    shape = (1, 1, x.shape[2]) + (1,) * (x.ndim - 3)
    last = jax.lax.dynamic_slice_in_dim(x, size[1] - 1, 1, axis=2)
    return jnp.where(jnp.arange(x.shape[2]).reshape(shape) < size[1], x, last)


def _check_size(size: Any) -> None:
    """A level's ``size`` on a canvas is an integer ``(height, width)`` array."""
    if size is not None and (np.shape(size) != (2,)
                             or not jnp.issubdtype(jnp.result_type(size), jnp.integer)):
        raise ValueError("size must be an integer (height, width) array of shape (2,), got "
                         f"shape {np.shape(size)} and dtype {jnp.result_type(size)}")


def _neighbour_cells(u: jax.Array, directions: Sequence[tuple[int, int]],
                     cells: jax.Array | None = None) -> jax.Array:
    """``(D, B, rows, cols, 2)``: for each direction ``(dy, dx)``, ``u[:, i + dy, j + dx]``
    with the grid's edge replicated (``u`` ``(B, rows, cols, 2)``; ``cells``: traced
    ``(rows, cols)``, the grid is that top-left part of ``u`` and its edge is replicated
    there, as :func:`_replicate_beyond` then an edge pad would). One gather for all the
    directions: its indices are the clipped cell coordinates."""
    rows, cols = u.shape[1:3]
    last_row, last_col = (rows - 1, cols - 1) if cells is None else (cells[0] - 1, cells[1] - 1)
    dy, dx = (np.asarray([d[k] for d in directions])[:, None] for k in (0, 1))
    i = jnp.clip(np.arange(rows)[None] + dy, 0, last_row)  # (D, rows)
    j = jnp.clip(np.arange(cols)[None] + dx, 0, last_col)  # (D, cols)
    return jnp.moveaxis(u[:, i[:, :, None], j[:, None, :]], 1, 0)


def _patch_centres(flow: jax.Array, grid: PatchGrid) -> jax.Array:
    """Dense flow ``(B, H, W, 2)`` sampled bilinearly at the patch centres, its edge
    replicated beyond the image: ``(B, rows, cols, 2)``. A centre lies on a pixel (odd patch
    size) or between four (even: their mean, what bilinear weights of 1/2 give), so it is
    strided slices of the flow edge-extended to the grid."""
    p, s = grid.size, grid.stride
    ext = jnp.pad(flow, ((0, 0), (0, grid.height - flow.shape[1]),
                         (0, grid.width - flow.shape[2]), (0, 0)), mode="edge")

    def at(y: int, x: int) -> jax.Array:  # the grid's pixels (s*i + y, s*j + x)
        return ext[:, y : y + s * (grid.rows - 1) + 1 : s, x : x + s * (grid.cols - 1) + 1 : s]

    if p % 2:
        return at(p // 2, p // 2)
    c = p // 2 - 1
    return ((at(c, c) + at(c, c + 1)) * 0.5 + (at(c + 1, c) + at(c + 1, c + 1)) * 0.5) * 0.5


def inverse_search(
    i0: jax.Array,
    i1: jax.Array,
    flow_init: jax.Array,
    *,
    patch_size: int,
    patch_stride: int,
    iterations: int,
    propagation_rounds: int,
    jumps: Sequence[int],
    search_radius: int = 0,
    exhaustive: jax.Array | None = None,
    exhaustive_size: tuple[int, int] | None = None,
    size: jax.Array | None = None,
    horizontal: bool = False,
) -> jax.Array:
    """One level of patch matching: dense flow ``(B, H, W, 2)`` from grey ``(B, H, W)`` images.

    Args:
      i0, i1: frame 1 and frame 2, grey, 0..255.
      flow_init: ``(B, H, W, 2)`` initial flow (upsampled from the coarser level).
      patch_size, patch_stride: the patch grid (size a multiple of stride).
      iterations: Gauss-Newton steps, in two halves, each after a propagation pass.
      propagation_rounds: rounds of each propagation pass; in a round every patch tries the
        flows of the cells ``jumps`` away in the four directions at once (one batched cost)
        and keeps the best if it beats its own.
      jumps: cell distances a patch looks at in each of the four directions.
      search_radius: > 0: first try every integer offset within +-radius of the initial
        patch flow (exhaustive zero-mean SSD search).
      exhaustive: a traced boolean that turns that search on (``None``: on): one compiled
        search serves a level with and a level without it.
      exhaustive_size: ``(height, width)``: that search tries only the patches of the grid of
        an image of that size, the top-left ones (with ``size``, the images' own).
      size: traced ``(height, width)``: the images are the top-left ``height x width`` of
        the arrays, which beyond hold them edge-extended (a level on a larger canvas,
        :func:`_pyramids`). The flow there is that of the images alone (up to float
        rounding): only the patches of the images' own grid count, and their gradients are
        edge-extended as at any image border; beyond, the flow is undefined.
      horizontal: stereo: the flow is ``(u, 0)`` with ``u <= 0`` (``u = -disparity``); the
        search tries ``u0 - k`` for ``k = 0 .. search_radius`` and Gauss-Newton moves u only.

    Flow (not ``horizontal``): a patch that the search carries more than half a patch beyond
    frame 2 keeps the flow it started with (:func:`_kept_in_frame`).
    """
    _check_size(size)
    grid = patch_grid(i0.shape[1], i0.shape[2], size=patch_size, stride=patch_stride)
    cells = None
    if size is not None:  # the images' own grid: its rows and columns of patches
        cells = jnp.maximum(1, (size - patch_size + patch_stride - 1) // patch_stride + 1)
    # The patches' means from block sums (ops.patch_means): reduced over the extracted
    # patches' layout, the three means alone would be ~30 % of the search's compiled code.
    template = extract_patches(i0, grid)
    t0 = template - patch_means(i0, grid)[..., None, None]
    gx, gy = _gradients(i0)
    if size is not None:
        gx, gy = _replicate_beyond(gx, size), _replicate_beyond(gy, size)
    gx = extract_patches(gx, grid) - patch_means(gx, grid)[..., None, None]
    gy = extract_patches(gy, grid) - patch_means(gy, grid)[..., None, None]
    # Inverse compositional: the Gauss-Newton matrix depends on the template only, and so
    # does the template's share of the right-hand side (the gradients are zero-mean, so the
    # sampled patch's mean drops out of sum(g * r)).
    reg = 1e-2 * patch_size * patch_size
    g = jnp.stack([gx, gy])
    hxx, hxy, hyy, cx, cy = jnp.sum(jnp.stack([gx * gx, gx * gy, gy * gy, gx * t0, gy * t0]),
                                    axis=(-2, -1))
    hxx, hyy = hxx + reg, hyy + reg
    det = hxx * hyy - hxy * hxy

    def sample(u: jax.Array) -> jax.Array:
        return sample_patches(i1, grid, u, horizontal=horizontal)

    def cost(u: jax.Array) -> jax.Array:
        return _patch_cost(sample(u), template)

    u = _patch_centres(flow_init, grid)
    state = (u, cost(u))
    if search_radius > 0:
        def search(st: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            return _exhaustive_search(i1, grid, template, st, search_radius, horizontal,
                                      size=exhaustive_size)

        if exhaustive is None:
            state = search(state)
        else:
            state = jax.lax.cond(exhaustive, search, lambda st: st, state)

    directions = [(0, j) for j in jumps] + [(0, -j) for j in jumps]
    directions += [(j, 0) for j in jumps] + [(-j, 0) for j in jumps]

    def propagate(_: Any, st: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        u, c = st
        # Beyond the images' own grid, its edge patches: what its edge replication reads.
        cands = _neighbour_cells(u, directions, cells)
        costs = jax.vmap(cost)(cands)
        best = jnp.argmin(costs, axis=0)
        best_u = jnp.take_along_axis(cands, best[None, ..., None], axis=0)[0]
        best_c = jnp.min(costs, axis=0)
        better = best_c < c
        return jnp.where(better[..., None], best_u, u), jnp.where(better, best_c, c)

    def step(_: Any, u: jax.Array) -> jax.Array:
        if horizontal:
            bx = jnp.sum(gx * sample(u), axis=(-2, -1)) - cx
            delta = jnp.stack([bx / hxx, jnp.zeros_like(bx)], -1)
        else:
            bx, by = jnp.sum(g * sample(u), axis=(-2, -1))
            bx, by = bx - cx, by - cy
            delta = jnp.stack([(hyy * bx - hxy * by) / det, (hxx * by - hxy * bx) / det], -1)
        # At most one pixel per step. |delta| floored far below 1, where it does not matter:
        # the gradient of a norm is not finite at zero (a flat patch's step).
        norm = jnp.sqrt(jnp.maximum(jnp.sum(delta * delta, axis=-1, keepdims=True), 1e-30))
        return u - delta / jnp.maximum(1.0, norm)

    def one_pass(i: jax.Array, st: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        u0, c0 = jax.lax.fori_loop(0, propagation_rounds, propagate, st)
        # Static trip counts (reverse-mode differentiable): both passes take the second's
        # ceil(iterations / 2) steps, the first skipping its last for an odd count.
        steps = iterations - iterations // 2
        if iterations % 2:
            def first_skips_last(k: jax.Array, u: jax.Array) -> jax.Array:
                return jnp.where((i == 0) & (k == steps - 1), u, step(k, u))

            u1 = jax.lax.fori_loop(0, steps, first_skips_last, u0)
        else:
            u1 = jax.lax.fori_loop(0, steps, step, u0)
        c1 = cost(u1)
        keep = (c1 < c0) & (jnp.max(jnp.abs(u1 - u0), axis=-1) < patch_size)
        return jnp.where(keep[..., None], u1, u0), jnp.where(keep, c1, c0)

    start = state[0]
    u, _ = jax.lax.fori_loop(0, 2, one_pass, state)
    if not horizontal:
        u = _kept_in_frame(u, start, grid, i0.shape[1:] if size is None else size)
    return densify(i1, template, u, grid, horizontal=horizontal, cells=cells)


def _kept_in_frame(u: jax.Array, start: jax.Array, grid: PatchGrid, size: Any) -> jax.Array:
    """Patch flows ``(B, rows, cols, 2)`` that carry a patch's centre more than half a patch
    beyond frame 2 (``size``: its ``(height, width)``, traced or not) go back to ``start``,
    where the level's search started them. Out there a patch is matched against the frame's
    replicated edge alone: its search has no data, and what it finds (often far off, and
    spread to its neighbours by propagation) is worse than the coarser level's flow, which
    extrapolates the flow inside the frame. Flow only: stereo's pixels whose match leaves
    the frame are occluded, and its consistency check removes them."""
    half, margin = (grid.size - 1) / 2, grid.size / 2
    y = np.arange(grid.rows)[:, None] * grid.stride + half + u[..., 1]
    x = np.arange(grid.cols)[None, :] * grid.stride + half + u[..., 0]
    inside = ((x >= -margin) & (x <= size[1] - 1 + margin)
              & (y >= -margin) & (y <= size[0] - 1 + margin))
    return jnp.where(inside[..., None], u, start)


def _patch_sums(*values: jax.Array) -> tuple[jax.Array, ...]:
    """The sums over the last two axes of same-shaped ``(..., p, p)`` arrays, as one
    variadic reduction: XLA:CPU computes them in one pass over the sampled patches they
    share (separate sums fused into the propagation's argmin ran ~4x slower)."""
    return tuple(jax.lax.reduce(values, tuple(jnp.zeros((), v.dtype) for v in values),
                                lambda a, b: tuple(x + y for x, y in zip(a, b)),
                                (values[0].ndim - 2, values[0].ndim - 1)))


def _patch_cost(patches: jax.Array, templates: jax.Array) -> jax.Array:
    """Zero-mean SSD of ``(..., p, p)`` patches to their templates,
    ``sum((x - mean(x) - (t - mean(t)))^2)``: the variance of ``r = x - t`` times ``n = p^2``,
    ``sum(r^2) - sum(r)^2 / n``, both sums in one pass over the patches. Its float32
    rounding is ~1e-6 of ``sum(r^2)``: ~0.1 for a patch that matches its 8 x 8 template but
    for a brightness change of 40 (a zero-mean SSD of the noise left), far below the
    differences between the candidates a search compares."""
    r = patches - templates
    s1, s2 = _patch_sums(r, r * r)
    return s2 - s1 * s1 / (patches.shape[-2] * patches.shape[-1])


def _exhaustive_search(i1: jax.Array, grid: PatchGrid, templates: jax.Array,
                       state: tuple[jax.Array, jax.Array], radius: int,
                       horizontal: bool, size: tuple[int, int] | None = None
                       ) -> tuple[jax.Array, jax.Array]:
    """Every integer offset within +-``radius`` of each patch's flow ``u`` (stereo: ``u - k``,
    ``k = 0 .. radius``), in order, replacing ``(u, cost)`` where its zero-mean SSD to the
    patch's template (:func:`_patch_cost`) is lower.

    The offsets' patches are sub-windows of one bilinear window per patch, sampled once:
    the offsets are whole pixels, so every patch shares the window's bilinear weights.
    ``size``: ``(height, width)``: only the patches of an image of that size's own grid
    (:func:`~flowlib.ops.patches.patch_grid`, the top-left rows and columns) are searched;
    the others keep their state.
    """
    rows, cols = grid.rows, grid.cols
    if size is not None:
        own = patch_grid(*size, size=grid.size, stride=grid.stride)
        rows, cols = min(rows, own.rows), min(cols, own.cols)
    if (rows, cols) != (grid.rows, grid.cols):
        part = _exhaustive_search(i1, grid._replace(rows=rows, cols=cols),
                                  templates[:, :rows, :cols],
                                  (state[0][:, :rows, :cols], state[1][:, :rows, :cols]),
                                  radius, horizontal)
        return tuple(jax.lax.dynamic_update_slice(whole, new, (0,) * whole.ndim)
                     for whole, new in zip(state, part))
    origin, _ = state
    p = grid.size
    n = 2 * radius + 1
    if horizontal:  # columns u - radius .. u + p - 1
        corner = origin - jnp.asarray([radius, 0], origin.dtype)
        window = sample_patches(i1, grid, corner, horizontal=True, window=(p, p + radius))
    else:
        window = sample_patches(i1, grid, origin - radius, window=(p + n - 1, p + n - 1))

    def search(k: jax.Array, st: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        if horizontal:
            dx, dy = radius - k, 0 * k
            off = jnp.stack([-k, 0 * k]).astype(origin.dtype)
        else:
            dx, dy = k % n, k // n
            off = jnp.stack([dx - radius, dy - radius]).astype(origin.dtype)
        zero = jnp.zeros((), k.dtype)
        patch = jax.lax.dynamic_slice(window, (zero, zero, zero, dy, dx), (*window.shape[:3], p, p))
        cost = _patch_cost(patch, templates)
        u, c = st
        better = cost < c
        return jnp.where(better[..., None], origin + off, u), jnp.where(better, cost, c)

    return jax.lax.fori_loop(0, radius + 1 if horizontal else n * n, search, state)


def densify(i1: jax.Array, template: jax.Array, u: jax.Array, grid: PatchGrid, *,
            horizontal: bool = False, cells: jax.Array | None = None) -> jax.Array:
    """Dense flow ``(B, H, W, 2)`` from patch flows ``u`` ``(B, rows, cols, 2)``: at each pixel
    the average of the covering patches' flows weighted by ``1 / max(1, |I1(x + u_i) - I0(x)|)``
    (``template`` holds the frame-1 patches; ``horizontal``: stereo, ``u``'s y is 0;
    ``cells``: traced ``(rows, cols)``, only that top-left part of the grid counts, and
    pixels no counted patch covers get zero flow)."""
    sampled = sample_patches(i1, grid, u, horizontal=horizontal)
    weights = 1.0 / jnp.maximum(1.0, jnp.abs(sampled - template))
    if cells is not None:
        counted = ((jnp.arange(grid.rows) < cells[0])[:, None]
                   & (jnp.arange(grid.cols) < cells[1])[None, :])
        weights = jnp.where(counted[None, :, :, None, None], weights, 0.0)
    b = u.shape[0]
    n = 1 if horizontal else 2  # the flow components summed: stereo's v is 0
    # One overlap-add of the weighted components and the weights, stacked along the batch.
    sums = jnp.concatenate([weights * u[..., k, None, None] for k in range(n)] + [weights])
    sums = overlap_add(sums, grid)
    den = sums[n * b :]
    if cells is not None:
        den = jnp.where(den > 0, den, 1.0)
    flow = [sums[k * b : (k + 1) * b] / den for k in range(n)]
    return jnp.stack(flow + [jnp.zeros_like(den)] * (2 - n), axis=-1)


def _edge_pad(a: jax.Array, axis: int, before: bool = True, after: bool = True) -> jax.Array:
    """``a`` with one line added ``before`` and/or ``after`` along ``axis``, repeating the
    edge line: ``jnp.pad(mode="edge")`` by one, built as a zero pad with the border lines
    written in place (on XLA:CPU the concatenation that ``jnp.pad`` emits runs as a kernel of
    its own, several times slower than a pad of the same size)."""
    axis %= a.ndim
    n = a.shape[axis]
    pad = [(0, 0, 0)] * a.ndim
    pad[axis] = (int(before), int(after), 0)
    p = jax.lax.pad(a, jnp.zeros((), a.dtype), pad)
    if before:
        p = jax.lax.dynamic_update_slice_in_dim(p, jax.lax.slice_in_dim(a, 0, 1, axis=axis), 0, axis)
    if after:
        p = jax.lax.dynamic_update_slice_in_dim(p, jax.lax.slice_in_dim(a, n - 1, n, axis=axis),
                                                p.shape[axis] - 1, axis)
    return p


def _dx(a: jax.Array, width: jax.Array | None = None) -> jax.Array:
    """Central differences along rows, the edge repeated (``width``: traced, the image is
    the arrays' first ``width`` columns: its last column's right neighbour is itself)."""
    p = _edge_pad(a, -1)
    right = p[:, :, 2:]
    if width is not None:
        right = _select(jnp.arange(a.shape[2]) == width - 1, a, right)
    return 0.5 * (right - p[:, :, :-2])


def _dy(a: jax.Array, height: jax.Array | None = None) -> jax.Array:
    """Central differences along columns (``height``: as :func:`_dx`'s ``width``)."""
    p = _edge_pad(a, -2)
    down = p[:, 2:]
    if height is not None:
        down = _select((jnp.arange(a.shape[1]) == height - 1)[:, None], a, down)
    return 0.5 * (down - p[:, :-2])


def _select(mask: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
    """``where(mask, x, y)`` for finite ``x`` and ``y``, as ``x * m + y * (1 - m)``: the same
    values, as products. :func:`refine_warped` at one outer iteration is one loop: XLA:CPU
    fuses its masks into the kernel that builds the system, which selects keep from
    vectorising (448 x 1024: ~82 instead of ~48 ms) and products do not."""
    m = mask.astype(x.dtype)
    return x * m + y * (1 - m)


def _robust_weight(x: jax.Array, eps: float = 1e-3) -> jax.Array:
    """Psi'(x) for Psi(s^2) = sqrt(s^2 + eps^2): the fixed-point (lagged) weight."""
    return 0.5 / jnp.sqrt(x + eps * eps)


def variational_refinement(
    i0: jax.Array,
    i1: jax.Array,
    flow: jax.Array,
    *,
    alpha: float,
    delta: float,
    gamma: float,
    outer: int,
    inner: int,
    omega: float = 1.6,
    zeta: float = 0.1,
    horizontal: bool = False,
) -> jax.Array:
    """Refine a dense flow ``(B, H, W, 2)`` by minimising DIS's variational energy.

    ``E(du) = sum delta Psi(E_I) + gamma Psi(E_G) + alpha Psi(|grad(u + du)|^2)``, with the
    brightness and gradient constancy terms linearised at ``flow`` and normalised by the
    local gradient magnitude (``E_I = (I_z + I_x du + I_y dv)^2 / (|grad I|^2 + zeta^2)``),
    ``Psi(s^2) = sqrt(s^2 + 1e-6)``. Solved by ``outer`` lagged-weight fixed-point
    iterations, each ``inner`` red-black SOR sweeps (relaxation ``omega``) of the 2x2
    per-pixel Euler-Lagrange system; Neumann boundaries. ``horizontal``: stereo, only u is
    refined (its data terms with v's increment 0, its own smoothness); v is returned as given.
    """
    return refine_warped(i0, _warp(i1, flow, horizontal), flow, alpha=alpha, delta=delta,
                         gamma=gamma, outer=outer, inner=inner, omega=omega, zeta=zeta,
                         horizontal=horizontal)


def _warp(i1: jax.Array, flow: jax.Array, horizontal: bool) -> jax.Array:
    """Frame 2 ``(B, H, W)`` backward-warped by ``flow`` (border padding; ``horizontal``:
    along rows, ``flow``'s v is 0)."""
    return ops.backward_warp(i1[..., None], flow, padding="border", align_corners=True,
                             horizontal=horizontal)[..., 0]


def refine_warped(
    i0: jax.Array,
    warped: jax.Array,
    flow: jax.Array,
    size: jax.Array | None = None,
    *,
    alpha: float,
    delta: float,
    gamma: float,
    outer: int,
    inner: int,
    omega: float = 1.6,
    zeta: float = 0.1,
    horizontal: bool = False,
) -> jax.Array:
    """:func:`variational_refinement` given frame 2 already warped by ``flow``.

    ``size``: traced ``(height, width)``: the images are the top-left ``height x width`` of
    the arrays (a level on a larger canvas). The flow there is that of the images alone (up
    to float rounding): their derivatives are taken with the edge repeated and no smoothness
    couples them to what lies beyond, where the flow is undefined.
    """
    _check_size(size)
    w = i0.shape[-1]
    height, width = (None, None) if size is None else (size[0], size[1])
    if size is not None:
        # Nothing inside the images reads beyond them: their derivatives repeat their edge,
        # and the flow's forward differences and the smoothness weights to the right and
        # downwards are zero on their last column and row (beyond, the arrays make a
        # problem of their own).
        right = jnp.arange(w) != size[1] - 1
        down = (jnp.arange(i0.shape[1]) != size[0] - 1)[:, None]
    # The edge-replicated central difference is linear: the mean of the frames' derivatives
    # is the derivative of their mean, and the difference of their derivatives the
    # derivative of their difference (7 derivative passes in all).
    mean, iz = 0.5 * (warped + i0), warped - i0
    ix, iy = _dx(mean, width), _dy(mean, height)
    ixx, ixy, iyy = _dx(ix, width), _dy(ix, height), _dy(iy, height)
    ixz, iyz = _dx(iz, width), _dy(iz, height)
    n_i = ix * ix + iy * iy + zeta * zeta
    n_x = ixx * ixx + ixy * ixy + zeta * zeta
    n_y = ixy * ixy + iyy * iyy + zeta * zeta
    # The per-pixel constants, stacked: XLA computes them in one pass and the loops read
    # slices of one array (one fused kernel each, instead of one per quantity).
    data = jnp.stack([ix, iy, iz, ixx, ixy, iyy, ixz, iyz, n_i, n_x, n_y])
    uv = jnp.stack([flow[..., 0], flow[..., 1]])  # (2, B, H, W)
    n = 1 if horizontal else 2  # the components refined: u, or u and v
    uv_n = uv[:n]

    def fixed_point(_: Any, d: jax.Array) -> jax.Array:  # d (n, B, H, W)
        ix, iy, iz, ixx, ixy, iyy, ixz, iyz, n_i, n_x, n_y = data
        du, dv = (d[0], d[1]) if n == 2 else (d[0], 0.0)
        p_i = delta * _robust_weight((iz + ix * du + iy * dv) ** 2 / n_i)
        p_g = gamma * _robust_weight(
            (ixz + ixx * du + ixy * dv) ** 2 / n_x + (iyz + ixy * du + iyy * dv) ** 2 / n_y
        )
        a11 = p_i * ix * ix / n_i + p_g * (ixx * ixx / n_x + ixy * ixy / n_y)
        a12 = p_i * ix * iy / n_i + p_g * (ixx * ixy / n_x + ixy * iyy / n_y)
        a22 = p_i * iy * iy / n_i + p_g * (ixy * ixy / n_x + iyy * iyy / n_y)
        b1 = p_i * ix * iz / n_i + p_g * (ixx * ixz / n_x + ixy * iyz / n_y)
        b2 = p_i * iy * iz / n_i + p_g * (ixy * ixz / n_x + iyy * iyz / n_y)
        t = uv_n + d
        fwd_x = jnp.diff(_edge_pad(t, 3, before=False), axis=3)
        fwd_y = jnp.diff(_edge_pad(t, 2, before=False), axis=2)
        if size is not None:
            fwd_x, fwd_y = jnp.where(right, fwd_x, 0.0), jnp.where(down, fwd_y, 0.0)
        s = alpha * _robust_weight(jnp.sum(fwd_x * fwd_x + fwd_y * fwd_y, axis=0))
        # Edge weights (mean of the two pixels' weights), zero across the image border.
        w_r = jnp.pad(0.5 * (s[:, :, :-1] + s[:, :, 1:]), ((0, 0), (0, 0), (0, 1)))
        w_d = jnp.pad(0.5 * (s[:, :-1] + s[:, 1:]), ((0, 0), (0, 1), (0, 0)))
        if size is not None:  # products, not selects (_select); the weights are >= 0
            w_r, w_d = w_r * right.astype(w_r.dtype), w_d * down.astype(w_d.dtype)
        w_l = jnp.pad(w_r[:, :, :-1], ((0, 0), (0, 0), (1, 0)))
        w_u = jnp.pad(w_d[:, :-1], ((0, 0), (1, 0), (0, 0)))
        w_sum = w_r + w_d + w_l + w_u
        m11, m22 = a11 + w_sum, a22 + w_sum
        if horizontal:  # v stays 0: only the u equation is solved
            inv: tuple[jax.Array, ...] = (1 / m11,)
        else:
            det = m11 * m22 - a12 * a12
            inv = (m22 / det, -a12 / det, m11 / det)
        weights = jnp.stack([w_r, w_l, w_d, w_u])
        # The weights across the image border are zero, so what the padding holds is never
        # used: a zero pad, which XLA fuses into the sum.
        p = jnp.pad(uv_n, ((0, 0), (0, 0), (1, 1), (1, 1)))
        nb = (weights[0] * p[:, :, 1:-1, 2:] + weights[1] * p[:, :, 1:-1, :-2]
              + weights[2] * p[:, :, 2:, 1:-1] + weights[3] * p[:, :, :-2, 1:-1])
        base = nb - w_sum * uv_n - jnp.stack([b1, b2][:n])
        # Red-black SOR on the two colours stored apart (half the pixels each, _checkerboard):
        # each half-sweep reads only its colour's system and the other colour's values.
        # The system: the inverse's entries, the four weights, the right-hand side.
        sys_r, sys_b = _checkerboard(jnp.stack([*inv, *weights, *base]))
        k = len(inv)

        # Flow (two components) carries each colour in a border of zeros, written by the
        # kernel that updates it, so that the other colour's neighbours are slices of it:
        # XLA:CPU runs the pad of a stacked two-component array as a kernel of its own
        # (~7 % of a refinement at 240 x 320), while it fuses stereo's into the update
        # (where carrying the border made the update ~7 % slower).
        bordered = n == 2

        def update(system: jax.Array, d: jax.Array, other: jax.Array, red: bool) -> jax.Array:
            p = other if bordered else _bordered(other)
            r = system[k + 4 :] + _checkerboard_neighbours(p, system[k : k + 4], red)
            if n == 1:
                new = system[:1] * r
            else:
                c11, c12, c22 = system[0], system[1], system[2]
                new = jnp.stack([c11 * r[0] + c12 * r[1], c12 * r[0] + c22 * r[1]])
            if bordered:
                return _bordered((1 - omega) * d[:, :, 1:-1, 1:-1] + omega * new)
            return (1 - omega) * d + omega * new

        def sor(_: Any, dd: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            d_r, d_b = dd
            d_r = update(sys_r, d_r, d_b, True)
            d_b = update(sys_b, d_b, d_r, False)
            return d_r, d_b

        d_r, d_b = _checkerboard(d)
        if bordered:
            d_r, d_b = _bordered(d_r), _bordered(d_b)
        d_r, d_b = jax.lax.fori_loop(0, inner, sor, (d_r, d_b))
        if bordered:
            d_r, d_b = d_r[:, :, 1:-1, 1:-1], d_b[:, :, 1:-1, 1:-1]
        return _from_checkerboard(d_r, d_b, w)

    d = jax.lax.fori_loop(0, outer, fixed_point, jnp.zeros_like(uv_n))
    return jnp.stack([uv[0] + d[0], uv[1] + d[1] if n == 2 else uv[1]], axis=-1)


def _row_parity(a: jax.Array) -> jax.Array:
    """``True`` on the even rows of ``(..., H, J)`` arrays (broadcastable ``(H, 1)``)."""
    return jax.lax.broadcasted_iota(jnp.int32, (a.shape[-2], 1), 0) % 2 == 0


def _checkerboard(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(..., H, W)`` -> its red (``(y + x)`` even) and black pixels, each ``(..., H, J)``,
    ``J = ceil(W / 2)``: row ``y``'s red pixels are columns ``2j + y % 2``, its black ones
    ``2j + 1 - y % 2`` (an odd ``W`` gets a zero column on the right first)."""
    if a.shape[-1] % 2:
        a = jnp.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, 1)])
    pairs = a.reshape(*a.shape[:-1], a.shape[-1] // 2, 2)
    even = _row_parity(a)
    return (jnp.where(even, pairs[..., 0], pairs[..., 1]),
            jnp.where(even, pairs[..., 1], pairs[..., 0]))


def _from_checkerboard(red: jax.Array, black: jax.Array, width: int) -> jax.Array:
    """The inverse of :func:`_checkerboard`: ``(..., H, width)``."""
    even = _row_parity(red)
    pairs = jnp.stack([jnp.where(even, red, black), jnp.where(even, black, red)], axis=-1)
    return pairs.reshape(*red.shape[:-1], 2 * red.shape[-1])[..., :width]


def _bordered(a: jax.Array) -> jax.Array:
    """``(..., H, J)`` -> ``(..., H + 2, J + 2)``: ``a`` in a border of zeros."""
    return jnp.pad(a, [(0, 0)] * (a.ndim - 2) + [(1, 1), (1, 1)])


def _checkerboard_neighbours(p: jax.Array, weights: jax.Array, red: bool) -> jax.Array:
    """``w_r * right + w_l * left + w_d * down + w_u * up`` for one colour's pixels, whose
    four neighbours are all of the other colour, ``p`` (``(C, B, H + 2, J + 2)``: its
    ``(C, B, H, J)`` pixels in a border of zeros, :func:`_bordered`)."""
    same, before, after = p[:, :, 1:-1, 1:-1], p[:, :, 1:-1, :-2], p[:, :, 1:-1, 2:]
    even = _row_parity(same)
    # Red pixel j of an even row is column 2j: its right neighbour is black j, its left
    # black j - 1; on an odd row (column 2j + 1) they are black j + 1 and j. Black: mirrored.
    if red:
        right, left = jnp.where(even, same, after), jnp.where(even, before, same)
    else:
        right, left = jnp.where(even, after, same), jnp.where(even, same, before)
    return (weights[0] * right + weights[1] * left
            + weights[2] * p[:, :, 2:, 1:-1] + weights[3] * p[:, :, :-2, 1:-1])


def _check_counts(config: Any, names: Sequence[str]) -> None:
    """Each named setting of ``config`` is an int >= 0 (a clear error naming it otherwise)."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{type(config).__name__}.{name} must be an int >= 0, got {value!r}")


def coarse_to_fine(i0: jax.Array, i1: jax.Array, settings: Any, *, depth: int, finest: int,
                   search_radius: int, horizontal: bool) -> dict[int, jax.Array]:
    """The pyramid loop shared by :func:`patchflow` and :func:`patchstereo`.

    Grey ``(B, H, W)`` images, levels ``depth .. finest``: upsample the coarser flow, inverse
    search (exhaustive ``search_radius`` at the coarsest level, long jumps on the
    ``settings.long_jump_levels`` coarsest), then variational refinement; below ``finest``,
    ``settings.upsampled_refine_outer`` > 0 refines the upsampled flow at each finer level.
    ``settings`` is the configuration (its patch, iteration and refinement fields). Returns
    ``{level: flow}`` (level ``l`` at ``1 / 2**l`` of the input size).
    """
    sizes, shapes, canvas = _plan(i0.shape[1], i0.shape[2], depth, settings, finest)
    pyr0, pyr1 = _stage(_pyramids, i0, i1, shapes=shapes)
    levels, flow, last = _levels(pyr0, pyr1, settings, sizes=sizes, finest=finest,
                                 search_radius=search_radius, horizontal=horizontal,
                                 canvas=canvas)
    levels[last] = _own_size(flow, sizes[last])
    return levels


def _plan(height: int, width: int, depth: int, settings: Any,
          finest: int) -> tuple[list[tuple[int, int]], tuple[tuple[int, int], ...], int]:
    """Where each level of a ``height x width`` image is matched: ``(sizes, shapes, canvas)``.

    ``sizes[l]``: level ``l``'s own size (the pyramid halves by floor, ops.image_pyramid);
    ``shapes[l]``: the size of the arrays it is matched and refined on, which hold it in
    their top-left corner and its edge-extension beyond; ``canvas``: how many of the
    coarsest levels share one canvas (:func:`_coarse_canvas`).

    With ``settings.bucket`` > 0 the full-size arrays have sides rounded up to multiples of
    it, halved at each level: every image size that rounds to the same sides (and has the
    same pyramid depth) gets the same shapes, so its searches and refinements, the stages
    that take most of a first call's compile, are those compiled for any other size of the
    bucket, and a new size compiles only the small stages that crop the flow, upsample it and
    move it from one level to the next. The searches and refinements take the level's traced
    size and give, in the corner, what the level alone gives, up to float rounding
    (:func:`inverse_search`, :func:`refine_warped`). The searched levels' arrays also get an
    odd number of rows and a width of 8 modulo 16: the refinement reads ~11 per-pixel arrays
    stacked along one axis at the same pixel, and arrays that each span a multiple of 4 KiB
    fall into the same cache sets (2-core Zen 3, level 1's refinement: 328 ns per pixel at
    224 x 512 against 253 at 225 x 520; stereo's 264 at 2 x 192 x 624 against 237 at
    2 x 193 x 624). The price of a bucket: the extra pixels (a KITTI pair of 1242 x 375 runs
    on 1248 x 384, level 1 on 193 x 632) and the size masks on every level, ~7-9 % of the
    steady state at 1024 x 436 and 1242 x 375.
    """
    bucket = settings.bucket or 1
    full = (-(-height // bucket) * bucket, -(-width // bucket) * bucket)
    canvas = _coarse_canvas(*full, depth, settings, finest)
    sizes = [(height >> level, width >> level) for level in range(depth + 1)]
    shapes = [(full[0] >> level, full[1] >> level) for level in range(depth + 1)]
    for level in range(min(finest, depth), depth + 1) if settings.bucket else ():
        h, w = shapes[level]
        shapes[level] = (h | 1, w + (8 - w % 16) % 16)
    for level in range(depth - canvas + 2, depth + 1) if canvas else ():
        shapes[level] = shapes[depth - canvas + 1]
    return sizes, tuple(shapes), canvas


def _pyramids(i0: jax.Array, i1: jax.Array, *,
              shapes: Sequence[tuple[int, int]]) -> tuple[list[jax.Array], list[jax.Array]]:
    """Grey ``(B, H, W)`` images -> their pyramids, levels ``0 .. len(shapes) - 1``, level
    ``l`` extended to ``shapes[l]`` by repeating its last row and column (:func:`_plan`)."""
    pyramids = []
    for image in (i0, i1):
        pyr = [p[..., 0] for p in ops.image_pyramid(image[..., None], levels=len(shapes))]
        for level, (h, w) in enumerate(shapes):
            hl, wl = pyr[level].shape[1:]
            if (hl, wl) != (h, w):
                pyr[level] = jnp.pad(pyr[level], ((0, 0), (0, h - hl), (0, w - wl)), mode="edge")
        pyramids.append(pyr)
    return pyramids[0], pyramids[1]


def _coarse_canvas(height: int, width: int, depth: int, settings: Any, finest: int) -> int:
    """How many of the coarsest levels run on one canvas, so that they share one compiled
    search and one compiled refinement: 0 (none), or 2 or more.

    The canvas is the size of the finest of them; the coarser levels' images are extended to
    it by repeating their last row and column (:func:`_pyramids`), each level is matched and
    refined on the whole canvas, and its flow is the canvas's top-left corner: there, what the
    level alone would give, up to float rounding (:func:`inverse_search` and
    :func:`refine_warped` with the level's ``size``; beyond, nothing reads). Measured on a
    2-core Zen 4: a level's search and refinement compile in ~1.2 CPU-s whatever the level's
    size, so each level moved onto the canvas saves ~1.5 CPU-s of a first call with its
    tracing (~0.7 s on two cores), while running the coarse levels on the canvas costs
    ~5-7 ms per call and level moved at 640x480 and 1024x436 (flow), more on larger
    canvases. So the canvas spans the coarsest levels up to the last searched level of at
    most :data:`_CANVAS_PIXELS` pixels, among those that use the same propagation jumps
    (``settings.long_jump_levels`` 0, or at least the number of levels on the canvas).
    """
    shared = 0
    for level in range(depth, min(finest, depth) - 1, -1):
        count = depth - level + 1
        if (height >> level) * (width >> level) > _CANVAS_PIXELS:
            break
        if settings.long_jump_levels and settings.long_jump_levels < count:
            break
        shared = count
    return shared if shared >= 2 else 0


def _levels(pyr0: Sequence[jax.Array], pyr1: Sequence[jax.Array], settings: Any, *,
            sizes: Sequence[tuple[int, int]], finest: int, search_radius: int, horizontal: bool,
            canvas: int = 0) -> tuple[dict[int, jax.Array], jax.Array, int]:
    """:func:`coarse_to_fine` on given pyramids (coarsest level ``len(pyr0) - 1``, on the
    shapes of :func:`_plan`; ``sizes``: the levels' own sizes; ``canvas``: the number of
    coarsest levels on a canvas), one :func:`_stage` per level and step.

    Returns ``(levels, flow, last)``: ``{level: flow}`` of every level but the finest
    computed, ``last``, each of its own size, and ``last``'s flow on its arrays (its own size
    in the top-left corner)."""
    depth = len(pyr0) - 1
    refine = dict(alpha=settings.alpha, delta=settings.delta, gamma=settings.gamma,
                  inner=settings.refine_inner, horizontal=horizontal)
    # On the canvas, the coarsest level's exhaustive search covers the patches of a bound on
    # its own size that every image of the bucket shares (its own patches are among them).
    exhaustive = _bucket_level(pyr0, depth, canvas) if canvas else None
    flow = None
    levels = {}
    for level in range(depth, min(finest, depth) - 1, -1):
        a, b = pyr0[level], pyr1[level]
        on_canvas = bool(canvas) and level > depth - canvas
        # The level's size is traced on a canvas and in a bucket: one compiled search and
        # refinement serve every level and size that shares their arrays.
        traced = on_canvas or bool(settings.bucket)
        size = np.asarray(sizes[level], np.int32) if traced else None
        long = depth - level < settings.long_jump_levels
        search = dict(patch_size=settings.patch_size, patch_stride=settings.patch_stride,
                      iterations=settings.iterations, propagation_rounds=settings.propagation_rounds,
                      jumps=(4, 2, 1) if long else (1,), horizontal=horizontal,
                      warp=bool(settings.refine_outer))
        start = flow  # a coarser level's flow of its own size: the search upsamples it
        if flow is not None and (traced or flow.shape[1:3] != sizes[level + 1]):
            levels[level + 1], start = _stage(_next_level, flow, coarse_size=sizes[level + 1],
                                              size=sizes[level], shape=a.shape[1:],
                                              horizontal=horizontal)
        elif flow is not None:
            levels[level + 1] = flow
        if on_canvas:  # one compiled search for the canvas's levels: the switch is traced
            if start is None:
                start = np.zeros((*a.shape, 2), np.float32)
            flow, warped = _stage(_search_level, a, b, start, np.bool_(level == depth), size,
                                  search_radius=search_radius, exhaustive_size=exhaustive,
                                  **search)
        else:
            flow, warped = _stage(_search_level, a, b, start, None, size,
                                  search_radius=search_radius if level == depth else 0, **search)
        if settings.refine_outer:
            flow = _stage(refine_warped, a, warped, flow, size, outer=settings.refine_outer,
                          **refine)
        last = level
    for level in range(min(finest, depth) - 1, -1, -1) if settings.upsampled_refine_outer else ():
        a, b = pyr0[level], pyr1[level]
        size = np.asarray(sizes[level], np.int32) if settings.bucket else None
        levels[level + 1], flow, warped = _stage(_upsample_level, b, flow,
                                                 coarse_size=sizes[level + 1], size=sizes[level],
                                                 horizontal=horizontal)
        flow = _stage(refine_warped, a, warped, flow, size, outer=settings.upsampled_refine_outer,
                      **refine)
        last = level
    return levels, flow, last


def _bucket_level(pyr: Sequence[jax.Array], level: int, canvas: int) -> tuple[int, int]:
    """A bound on ``level``'s own size that depends only on the arrays' shapes: the canvas of
    ``canvas`` levels halved once per level below its finest (the canvas holds its finest
    level, so each halving holds the next coarser one). Without a bucket, the level's own
    size."""
    h, w = pyr[level].shape[1:]
    below = level - (len(pyr) - canvas)
    return h >> below, w >> below


def _crop(flow: jax.Array, *, size: tuple[int, int]) -> jax.Array:
    """A level's flow on its arrays -> its own ``size`` (the top-left corner)."""
    return flow[:, : size[0], : size[1]]


def _own_size(flow: jax.Array, size: tuple[int, int]) -> jax.Array:
    """The finest computed level's flow on its arrays -> its own ``size``: the flow itself
    when its arrays have that size, else cropped (a :func:`_stage`)."""
    return flow if flow.shape[1:3] == tuple(size) else _stage(_crop, flow, size=size)


def _next_level(coarse: jax.Array, *, coarse_size: tuple[int, int], size: tuple[int, int],
                shape: tuple[int, int], horizontal: bool) -> tuple[jax.Array, jax.Array]:
    """A level's flow on its arrays ``(B, Hc, Wc, 2)`` -> its own ``coarse_size`` (the
    top-left corner), and the next finer level's starting flow on that level's arrays of
    ``shape``: the flow upsampled to the finer level's ``size``, extended to ``shape`` by
    repeating its last row and column."""
    coarse = _crop(coarse, size=coarse_size)
    start = _upsample(coarse, size, horizontal)
    return coarse, jnp.pad(start, ((0, 0), (0, shape[0] - size[0]), (0, shape[1] - size[1]),
                                   (0, 0)), mode="edge")


def _upsample(flow: jax.Array, size: tuple[int, ...], horizontal: bool) -> jax.Array:
    flow = ops.upsample_flow(flow, size, align_corners=False)
    return flow.at[..., 1].set(0.0) if horizontal else flow


def _search_level(a: jax.Array, b: jax.Array, start: jax.Array | None,
                  exhaustive: jax.Array | None = None, size: jax.Array | None = None, *,
                  warp: bool, horizontal: bool, **search: Any) -> tuple[jax.Array, jax.Array | None]:
    """One level's inverse search from its starting flow ``start`` (``None``: zero flow, the
    coarsest level; on the level's arrays: itself, :func:`_next_level`; otherwise the coarser
    level's flow, upsampled to the arrays); with ``warp``, also frame 2 warped by the result
    (what the refinement reads). ``exhaustive``, ``size``: :func:`inverse_search`'s."""
    if start is None:
        flow = jnp.zeros((*a.shape, 2), jnp.float32)
    elif start.shape[1:3] == a.shape[1:]:
        flow = start
    else:
        flow = _upsample(start, a.shape[1:], horizontal)
    flow = inverse_search(a, b, flow, horizontal=horizontal, exhaustive=exhaustive, size=size,
                          **search)
    return flow, (_warp(b, flow, horizontal) if warp else None)


def _upsample_level(b: jax.Array, coarse: jax.Array, *, coarse_size: tuple[int, int],
                    size: tuple[int, int],
                    horizontal: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A level below ``finest_level``: the coarser level's flow cropped to its own size, the
    flow upsampled to this level's ``size`` and extended to ``b``'s arrays
    (:func:`_next_level`), and frame 2 ``b`` warped by it."""
    coarse, flow = _next_level(coarse, coarse_size=coarse_size, size=size, shape=b.shape[1:],
                               horizontal=horizontal)
    return coarse, flow, _warp(b, flow, horizontal)


def _to_full_size(flow: jax.Array, *, own: tuple[int, int], size: tuple[int, int],
                  horizontal: bool) -> tuple[jax.Array, jax.Array]:
    """The finest computed level's flow on its arrays -> ``(flow of its own size, flow
    bilinearly upsampled to the input size)``."""
    flow = _crop(flow, size=own)
    return flow, _upsample(flow, size, horizontal)


#: Compiled stages, one per (function, static settings, compiler options): shared by every
#: call in the process.
_STAGES: dict[tuple[Any, ...], _compilation_cache.CachedFunction] = {}
_STAGES_LOCK = threading.Lock()
#: Whether :func:`_stage` only starts its compile and returns the output shapes
#: (:func:`_planned`).
_PLANNING: contextvars.ContextVar[bool] = contextvars.ContextVar("patchflow_planning",
                                                                default=False)
#: (driver, settings, input shapes) whose stages have all been started.
_PLANNED: set[tuple[Any, ...]] = set()


def _stage(fn: Any, *args: Any, **static: Any) -> Any:
    """``fn(*args, **static)``, as its own jit-compiled executable.

    Inside a caller's trace (``jax.jit``, ``grad``, ``vmap`` of :func:`patchflow`) the stage is
    traced inline, so the caller sees one differentiable computation (and under
    ``jax.disable_jit()`` it runs op by op). Called on concrete
    arrays, each stage (a level's search, its refinement, ...) is compiled once per static
    settings and input shapes, kept for the process and saved in flowlib's compilation cache
    (:mod:`flowlib._compilation_cache`). Separate executables keep XLA from fusing a
    producer (the bilinear warp) into each of its many consumers (the refinement's
    derivatives): less code to compile and less recomputation at run time.
    """
    if _inline(args):
        return fn(*args, **static)
    options = _compiler_options(_cpu_optimisation_level(fn, args, static))
    key = (fn, tuple(sorted(static.items())), tuple(sorted((options or {}).items())))
    compiled = _STAGES.get(key)
    if compiled is None:
        with _STAGES_LOCK:
            compiled = _STAGES.get(key)
            if compiled is None:
                jitted = jax.jit(functools.partial(fn, **static))
                name = "patchflow-" + fn.__name__.strip("_").replace("_", "-")
                identity = f"{fn.__module__}.{fn.__qualname__} {key[1]!r}"
                compiled = _STAGES[key] = _compilation_cache.CachedFunction(
                    jitted, name, identity, compiler_options=options)
    if _PLANNING.get():
        return compiled.prepare(*args)
    return compiled(*args)


def _inline(args: Any) -> bool:
    """Whether stages on ``args`` run inline, not as compiled executables: inside a caller's
    trace (any argument a tracer) or under ``jax.disable_jit()``."""
    traced = any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(args))
    return traced or jax.config.jax_disable_jit


def _planned(driver: Any, first: jax.Array, second: jax.Array, config: Any) -> None:
    """Before ``driver`` (:func:`patchflow`, :func:`patchstereo`) first runs on concrete
    arrays of these shapes: run it on their shapes alone, so that every stage's compile
    starts at once (:meth:`~flowlib._compilation_cache.CachedFunction.prepare`) and the
    compiles run side by side while the stages execute in order, each as soon as its
    executable is ready."""
    if _PLANNING.get() or _inline((first, second)):
        return
    shapes = tuple(jax.ShapeDtypeStruct(np.shape(x), x.dtype) for x in (first, second))
    key = (driver, config, tuple((s.shape, str(s.dtype)) for s in shapes))
    if key in _PLANNED:
        return
    token = _PLANNING.set(True)
    try:
        driver(*shapes, config)
    finally:
        _PLANNING.reset(token)
    _PLANNED.add(key)


def _compiler_options(level: int = 3) -> dict[str, Any] | None:
    """XLA options the stages compile with, on XLA:CPU: the loop emitters without the YNN
    reduction kernels compile the many small kernels in ~40 % less time; code generation split
    in two LLVM modules (XLA's default splits more) takes ~10 % less CPU time, and the stages
    already compile side by side; ``level`` is LLVM's optimisation level
    (:func:`_cpu_optimisation_level`)."""
    if jax.default_backend() != "cpu":
        return None
    options = dict(_CPU_COMPILER_OPTIONS)
    if level != 3:  # XLA's default
        options["xla_backend_optimization_level"] = level
    return options


def _cpu_optimisation_level(fn: Any, args: tuple, static: dict[str, Any]) -> int:
    """LLVM's optimisation level for the stage ``fn(*args, **static)`` on XLA:CPU.

    A stage's compile time hardly depends on its size (LLVM compiles each of its kernels
    once, at ~20 ms per kernel at -O3), but its run time does, so optimisation pays only on
    the larger levels. Measured per stage on a 2-core Zen 4 (``-O3`` / ``-O2`` / ``-O1``):

    - a search compiles in 1.1 / 0.85 / 0.75 CPU-s. Flow's runs within ~1.5 ms of -O3 at
      -O1 on levels of up to :data:`_O1_PIXELS` and within ~2 ms at -O2 above (240x320:
      ~15 ms); stereo's (one component, two views) runs as fast at -O1 as at -O2 up to
      :data:`_O1_PIXELS_HORIZONTAL` (2x93x310: 12 ms) and within ~2.5-4.5 ms of -O3 at
      -O2 above (2x187x621: ~21 ms);
    - the refinement compiles in 0.7-0.9 / 0.5-0.65 / 0.5-0.6 CPU-s and runs 2-3x slower
      below -O3 (the kernel that builds the per-pixel system, 10x: LLVM vectorises its
      branches on the stacked index only after -O3's loop unswitching); at
      -O1 it costs ~1 ms on flow's levels of up to :data:`_O1_PIXELS`, and ~3.5 ms on
      stereo's of up to :data:`_O1_PIXELS_HORIZONTAL` for 0.27 CPU-s less compile;
    - the pyramids and the canvas steps run no slower at -O1.
    """
    if fn in (_pyramids, _grey_pyramids, _stereo_pyramids, _checked_disparity, _next_level, _crop):
        return 1
    pixels = int(np.prod(np.shape(args[0])[1:3]))
    small = pixels <= (_O1_PIXELS_HORIZONTAL if static.get("horizontal") else _O1_PIXELS)
    if fn is _search_level:
        return 1 if small else 2
    if fn is refine_warped:
        return 1 if small else 3
    return 3


#: The largest levels (pixels) whose searches and refinements compile at LLVM -O1: flow's,
#: and stereo's (``horizontal``).
_O1_PIXELS, _O1_PIXELS_HORIZONTAL = 10_000, 40_000
#: The largest level (pixels) that the coarser levels share as a canvas (:func:`_coarse_canvas`).
_CANVAS_PIXELS = 40_000


_CPU_COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False, "xla_cpu_experimental_ynn_fusion_type": "",
                         "xla_cpu_parallel_codegen_split_count": 2}


class _NoParameters:
    """What :class:`flowlib.Model` needs of a model without learned parameters: ``init``
    returns an empty variable tree (nothing traced), ``apply`` checks that it is empty and
    runs the algorithm, ``clone`` returns the configuration with some settings changed."""

    def init(self, rng: Any, image1: Any, image2: Any) -> dict[str, Any]:
        del rng, image1, image2
        return {}

    def apply(self, variables: Any, image1: jax.Array, image2: jax.Array, *, train: bool = False) -> Any:
        del train  # nothing is learned
        if jax.tree_util.tree_leaves(variables):
            raise ValueError(f"{type(self).__name__} has no learned parameters; expected empty "
                             f"variables {{}}, got {jax.tree_util.tree_structure(variables)}")
        return self(image1, image2)

    def clone(self, **changes: Any) -> Any:
        return dataclasses.replace(self, **changes)

    @property
    def compiler_options(self) -> dict[str, Any] | None:
        """XLA options to compile the whole algorithm with, as one function (``jax.jit``)."""
        return _compiler_options()

    #: :class:`flowlib.Model` runs the algorithm unjitted: it compiles itself stage by stage
    #: (:func:`_stage`), which compiles faster and runs faster than one jitted function.
    runs_in_stages = True


@dataclasses.dataclass(frozen=True)
class PatchFlow(_NoParameters):
    """Settings of :func:`patchflow` (a frozen dataclass; calling it runs the algorithm).

    Attributes:
      patch_size, patch_stride: the patch grid at every level (size a multiple of stride).
      iterations: Gauss-Newton steps per level.
      propagation_rounds: rounds of each of the two propagation passes per level.
      long_jump_levels: on this many of the coarsest levels propagation also looks 4 and 2
        cells away; finer levels look at direct neighbours only (cheaper at full size).
      coarse_radius: exhaustive search radius (pixels of the coarsest level).
      min_coarse_side: the coarsest level is the deepest whose shorter side is at least this.
      finest_level: the finest level computed (0: full size; 1: half size, then bilinear
        upsampling, as DIS's ``finest_scale``).
      upsampled_refine_outer: outer iterations of the variational refinement on each level
        finer than ``finest_level`` (0: the finest computed level is only upsampled).
      alpha, delta, gamma, refine_outer, refine_inner: the variational refinement
        (``refine_outer = 0`` turns it off).
      bucket: > 0: match on arrays whose sides are rounded up to multiples of this (the image
        edge-extended beyond, the flow the same up to float rounding), so that image sizes
        that round alike share their compiled searches and refinements: a new size in a
        bucket already compiled compiles ~5x faster, at ~7-9 % more steady-state time
        (:func:`_plan`). 0: the image's own size.
    """

    patch_size: int = 8
    patch_stride: int = 4
    iterations: int = 32
    propagation_rounds: int = 2
    long_jump_levels: int = 3
    coarse_radius: int = 4
    min_coarse_side: int = 16
    finest_level: int = 1
    upsampled_refine_outer: int = 1
    alpha: float = 20.0
    delta: float = 5.0
    gamma: float = 10.0
    refine_outer: int = 5
    refine_inner: int = 5
    bucket: int = 0

    def __post_init__(self) -> None:
        patch_grid(self.patch_size, self.patch_size, size=self.patch_size, stride=self.patch_stride)
        _check_counts(self, ("iterations", "propagation_rounds", "long_jump_levels", "coarse_radius",
                             "finest_level", "upsampled_refine_outer", "refine_outer", "refine_inner",
                             "bucket"))

    def __call__(self, image1: jax.Array, image2: jax.Array) -> FlowOutput:
        return patchflow(image1, image2, self)


def patchflow(image1: jax.Array, image2: jax.Array, config: PatchFlow = PatchFlow()) -> FlowOutput:
    """Flow from ``image1`` to ``image2``: RGB ``(B, H, W, 3)`` in [0, 1] -> FlowOutput
    (``aux["levels"]``: ``{level: flow}`` of the levels computed)."""
    _check_pair(image1, image2)
    _planned(patchflow, image1, image2, config)
    _, h, w, _ = image1.shape
    depth = pyramid_depth(h, w, patch_size=config.patch_size, min_coarse_side=config.min_coarse_side)
    sizes, shapes, canvas = _plan(h, w, depth, config, config.finest_level)
    pyr0, pyr1 = _stage(_grey_pyramids, image1, image2, shapes=shapes)
    levels, flow, last = _levels(pyr0, pyr1, config, sizes=sizes, finest=config.finest_level,
                                 search_radius=config.coarse_radius, horizontal=False,
                                 canvas=canvas)
    if sizes[last] != (h, w):  # finest_level > 0 and no upsampled refinement
        levels[last], flow = _stage(_to_full_size, flow, own=sizes[last], size=(h, w),
                                    horizontal=False)
    else:
        levels[last] = flow = _own_size(flow, (h, w))
    return FlowOutput(flow=flow, aux={"levels": dict(sorted(levels.items(), reverse=True))})


def _grey_pyramids(image1: jax.Array, image2: jax.Array, *,
                   shapes: Sequence[tuple[int, int]]) -> tuple[list[jax.Array], list[jax.Array]]:
    return _pyramids(_grey(image1), _grey(image2), shapes=shapes)


@dataclasses.dataclass(frozen=True)
class PatchStereo(_NoParameters):
    """Settings of :func:`patchstereo`: PatchFlow's matching restricted to rectified stereo,
    flow ``(-d, 0)``, ``d >= 0``.

    Same steps as :func:`patchflow` with a horizontal-only search, Gauss-Newton and
    refinement. The pyramid has ``levels`` levels below full size (fewer on small images);
    at the coarsest one every disparity in ``0 .. maxdisp`` (scaled to that level) is
    tried exhaustively, so KITTI-range disparities (~200 px) are found however far they are.

    Attributes:
      maxdisp: largest disparity searched, full-resolution pixels.
      levels: pyramid levels below full resolution (the coarsest is at 1 / 2**levels).
      consistency: left-right check tolerance (pixels; 0 turns the check off): the right
        view's disparity comes from the same matching on the mirrored pair, and left
        pixels that disagree take the farther of their row's nearest consistent values.
      bucket: as :class:`PatchFlow`'s; on by default (32), so that the several sizes of a
        KITTI evaluation (1224-1242 x 370-376) share one compile.
      others: as :class:`PatchFlow`.
    """

    maxdisp: int = 192
    levels: int = 3
    patch_size: int = 8
    patch_stride: int = 4
    iterations: int = 16
    propagation_rounds: int = 2
    long_jump_levels: int = 2
    finest_level: int = 1
    upsampled_refine_outer: int = 1
    alpha: float = 20.0
    delta: float = 5.0
    gamma: float = 10.0
    refine_outer: int = 5
    refine_inner: int = 5
    consistency: float = 1.0
    bucket: int = 32

    def __post_init__(self) -> None:
        patch_grid(self.patch_size, self.patch_size, size=self.patch_size, stride=self.patch_stride)
        if not self.consistency >= 0:
            raise ValueError(f"PatchStereo.consistency must be >= 0, got {self.consistency!r}")
        _check_maxdisp("maxdisp", self.maxdisp)
        _check_counts(self, ("levels", "iterations", "propagation_rounds", "long_jump_levels",
                             "finest_level", "upsampled_refine_outer", "refine_outer", "refine_inner",
                             "bucket"))

    def __call__(self, left: jax.Array, right: jax.Array) -> StereoOutput:
        return patchstereo(left, right, self)


def patchstereo(left: jax.Array, right: jax.Array, config: PatchStereo = PatchStereo()) -> StereoOutput:
    """Disparity of the left view: RGB ``(B, H, W, 3)`` in [0, 1] -> StereoOutput
    (``aux``: ``raw`` and ``consistent`` when the left-right check is on)."""
    _check_pair(left, right)
    _planned(patchstereo, left, right, config)
    b, h, w, _ = left.shape
    depth = min(config.levels, pyramid_depth(h, w, patch_size=config.patch_size,
                                             min_coarse_side=config.patch_size))
    # The right view's disparity is the same matching on the mirrored pair: both run as
    # one batch of 2B, so XLA compiles the pyramid once.
    both = bool(config.consistency)
    sizes, shapes, canvas = _plan(h, w, depth, config, config.finest_level)
    pyr0, pyr1 = _stage(_stereo_pyramids, left, right, both=both, shapes=shapes)
    _, flow, last = _levels(pyr0, pyr1, config, sizes=sizes, finest=config.finest_level,
                            search_radius=-(-config.maxdisp // 2**depth), horizontal=True,
                            canvas=canvas)
    if not both:
        disparity = _stage(_disparity, flow, own=sizes[last], size=(h, w), maxdisp=config.maxdisp)
        return StereoOutput(disparity=disparity, aux={})
    disparity, raw, valid = _stage(_checked_disparity, flow, own=sizes[last], size=(h, w),
                                   maxdisp=config.maxdisp, tolerance=config.consistency)
    return StereoOutput(disparity=disparity, aux={"raw": raw, "consistent": valid})


def _stereo_pyramids(left: jax.Array, right: jax.Array, *, both: bool,
                     shapes: Sequence[tuple[int, int]]) -> tuple[list[jax.Array], list[jax.Array]]:
    """Grey pyramids of the pair; with ``both``, the mirrored pair (right view as the
    reference) appended along the batch."""
    i0, i1 = _grey(left), _grey(right)
    if both:
        i0, i1 = jnp.concatenate([i0, i1[:, :, ::-1]]), jnp.concatenate([i1, i0[:, :, ::-1]])
    return _pyramids(i0, i1, shapes=shapes)


def _disparity(flow: jax.Array, *, own: tuple[int, int], size: tuple[int, int],
               maxdisp: int) -> jax.Array:
    """The finest computed level's horizontal flow on its arrays (its ``own`` size in the
    top-left corner) -> full-size disparity in ``0 .. maxdisp``."""
    flow = _crop(flow, size=own)
    if own != tuple(size):
        flow = _upsample(flow, size, horizontal=True)
    return jnp.clip(-flow[..., 0], 0.0, float(maxdisp))


def _checked_disparity(flow: jax.Array, *, own: tuple[int, int], size: tuple[int, int],
                       maxdisp: int, tolerance: float) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Left and mirrored-right matching (batch 2B) -> the left disparity with inconsistent
    pixels filled from the background, the raw left disparity, and the consistent pixels."""
    both = _disparity(flow, own=own, size=size, maxdisp=maxdisp)
    b = both.shape[0] // 2
    disparity, right_disp = both[:b], both[b:, :, ::-1]
    valid = left_right_consistent(disparity, right_disp, tolerance)
    return fill_from_background(disparity, valid), disparity, valid


#: Presets, as DIS offers them: settings that replace the settings file's for a faster or a
#: more accurate run (``load_model("patchflow", preset="fast")``, CLI ``--preset``).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "patchflow": {
        "fast": {"iterations": 16, "upsampled_refine_outer": 0},
        "default": {},
        "accurate": {"finest_level": 0},
    },
    "patchstereo": {
        "fast": {"iterations": 8, "upsampled_refine_outer": 0},
        "default": {},
        "accurate": {"finest_level": 0},
    },
}

#: What each preset costs and gives (shown by ``flowlib models``): steady-state time on a
#: 2-core AMD EPYC (Zen 3), ``python -m benchmarks.defaults --speed --presets`` (the presets
#: and the OpenCV peer called in turn in one process, median of 15 rounds; median of 3 runs),
#: and mean errors on flowlib's validation set, 24 pairs per group,
#: ``python -m benchmarks.validation [--task stereo] --pairs 24 [--preset NAME]``.
PRESET_MEASURED: dict[str, dict[str, str]] = {
    "patchflow": {
        "fast": "1024x436: 128 ms; validation EPE (chairs-small, -medium, warp, chairs-large) "
                "0.664, 3.692, 0.095, 13.526",
        "default": "1024x436: 182 ms (DIS medium 49 ms); validation EPE 0.613, 3.405, 0.071, 13.318 "
                   "(DIS medium 0.628, 3.700, 0.084, 14.663)",
        "accurate": "1024x436: 494 ms; validation EPE 0.518, 3.084, 0.063, 12.748",
    },
    "patchstereo": {
        "fast": "1242x375: 151 ms; validation EPE / D1 (stereo-64, stereo-160) 3.24 / 11.9 %, "
                "5.86 / 11.5 %",
        "default": "1242x375: 219 ms (SGBM 3-way 139 ms); validation 2.97 / 10.9 %, 5.56 / 10.8 % "
                   "(SGBM 9.43 / 25.0 %, 13.91 / 19.3 %)",
        "accurate": "1242x375: 545 ms; validation 2.45 / 8.3 %, 4.68 / 8.2 %",
    },
}


def build_patchflow(preset: str = "default", **settings: Any) -> PatchFlow:
    """:class:`PatchFlow` from a settings file's values with a preset's on top."""
    return PatchFlow(**{**settings, **PRESETS["patchflow"][preset]})


def build_patchstereo(preset: str = "default", **settings: Any) -> PatchStereo:
    """:class:`PatchStereo` from a settings file's values with a preset's on top."""
    return PatchStereo(**{**settings, **PRESETS["patchstereo"][preset]})


def left_right_consistent(left: jax.Array, right: jax.Array, tolerance: float) -> jax.Array:
    """Pixels whose left disparity d agrees with the right view's at ``x - d`` (``(B, H, W)``)."""
    w = left.shape[-1]
    xs = jnp.arange(w, dtype=left.dtype)
    target = jnp.clip(jnp.round(xs - left), 0, w - 1).astype(jnp.int32)
    back = jnp.take_along_axis(right, target, axis=-1)
    return (jnp.abs(back - left) <= tolerance) & (xs - left >= 0)


def fill_from_background(disparity: jax.Array, valid: jax.Array) -> jax.Array:
    """Replace invalid pixels by the smaller of the nearest valid disparities left and right
    in their row (occlusions belong to the farther surface); rows with none keep theirs."""
    w = disparity.shape[-1]
    idx = jnp.arange(w)
    left_idx = jax.lax.cummax(jnp.where(valid, idx, -1), axis=disparity.ndim - 1)
    right_idx = jax.lax.cummin(jnp.where(valid, idx, w), axis=disparity.ndim - 1, reverse=True)
    inf = jnp.asarray(jnp.inf, disparity.dtype)
    from_left = jnp.where(left_idx >= 0, jnp.take_along_axis(disparity, jnp.clip(left_idx, 0, w - 1), -1), inf)
    from_right = jnp.where(right_idx < w,
                           jnp.take_along_axis(disparity, jnp.clip(right_idx, 0, w - 1), -1), inf)
    fill = jnp.minimum(from_left, from_right)
    return jnp.where(valid | ~jnp.isfinite(fill), disparity, fill)


def _grey(x: jax.Array) -> jax.Array:
    luma = jnp.asarray(_LUMA, jnp.float32)
    return 255.0 * jnp.einsum("bhwc,c->bhw", x.astype(jnp.float32), luma)


def _check_pair(image1: jax.Array, image2: jax.Array) -> None:
    """Two RGB ``(B, H, W, 3)`` images of one shape (a clear error otherwise)."""
    if image1.ndim != 4 or image1.shape[-1] != 3 or image1.shape != image2.shape:
        raise ValueError(f"expected two (B, H, W, 3) images of one shape, got {image1.shape}"
                         f" and {image2.shape}")


def default_settings(module: type = None) -> dict[str, Any]:  # type: ignore[assignment]
    """A module's constructor defaults as a plain dict (what its settings file records)."""
    module = PatchFlow if module is None else module
    return {f.name: f.default for f in dataclasses.fields(module)}



def write_settings(path: str, model: str = "patchflow", **overrides: Any) -> None:
    """Write a settings file (a flowlib ``.npz`` with no arrays, only ``__meta__``).

    ``model`` is ``"patchflow"`` or ``"patchstereo"``; ``overrides`` change its defaults.
    """
    from flowlib import __version__
    from flowlib.weights import save_weights

    module = {"patchflow": PatchFlow, "patchstereo": PatchStereo}[model]
    settings = {**default_settings(module), **overrides}
    module(**settings)  # validate
    meta = {
        "model": model,
        "weights": f"embedded:{model}",
        "model_kwargs": settings,
        "license": "MIT",
        "training_data": "none (no learned parameters); settings chosen on benchmarks/validation.py",
        "flowlib_version": __version__,
    }
    save_weights(path, {}, meta)



def _check_preset(name: str, value: Any) -> str:
    if value not in _PRESET_NAMES:
        raise ValueError(f"{name} must be one of {', '.join(_PRESET_NAMES)}, got {value!r}")
    return value


_PRESET_NAMES = ("fast", "default", "accurate")
_PRESET = Option("preset", _check_preset, type=str, choices=_PRESET_NAMES, metavar="NAME",
                 help="a faster or a more accurate setting, as DIS's presets: fast, default, "
                 "accurate (default: the embedded settings; time and error of each: flowlib models)")

_BUCKET = Option("bucket", int_in(0, 1024), metavar="N",
                 help="match on arrays whose sides are rounded up to multiples of N pixels, so "
                 "that image sizes which round alike share one compile (0: every size its own; "
                 "default: what the settings record, 0 for flow, 32 for stereo)")

SPECS = (
    ModelSpec(
        name="patchflow",
        task="flow",
        summary="PatchFlow: coarse-to-fine patch matching with variational refinement (DIS-like, "
        "no learned parameters)",
        build=build_patchflow,
        options=(_PRESET, _BUCKET),
        embedded="patchflow.npz",
    ),
    ModelSpec(
        name="patchstereo",
        task="stereo",
        summary="PatchStereo: PatchFlow's matching along rectified rows, left-right checked",
        build=build_patchstereo,
        options=(Option("maxdisp", _check_maxdisp, flag="--max-disp", metavar="D",
                        help="largest disparity searched, in [1, 1024] (default: what the "
                        "settings record, 192 embedded)"), _PRESET, _BUCKET),
        embedded="patchstereo.npz",
    ),
)

if __name__ == "__main__":
    import json
    import sys

    # python -m flowlib.models.patchflow OUT.npz [patchflow|patchstereo] [JSON overrides]
    write_settings(sys.argv[1], *sys.argv[2:3], **(json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}))
