"""PatchFlow: coarse-to-fine patch matching with variational refinement, in JAX.

flowlib's embedded default flow estimator. It follows DIS (Kroeger, Timofte, Dai, Van Gool,
"Fast Optical Flow using Dense Inverse Search", ECCV 2016), with three changes measured on
flowlib's own rendered validation set (``benchmarks/validation.py``; never on the benchmark
datasets):

* an exhaustive zero-mean SSD search of +-``coarse_radius`` pixels at the coarsest level,
  so motions larger than the pyramid's reach start from a match, not from zero;
* parallel spatial propagation with long jumps (a patch tries the flow of the patches 4, 2
  and 1 cells away in each direction, keeping the best by SSD) instead of DIS's sequential
  scan-line passes, which do not vectorise;
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

It has no learned parameters: the "weights" file holds only its settings and their
provenance. Every step is plain JAX, jit-compiled per image size, and differentiable
almost everywhere (argmin choices are piecewise constant), so it can sit inside a larger
trainable model.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flowlib import ops
from flowlib.models._outputs import FlowOutput, StereoOutput
from flowlib.models._spec import ModelSpec, Option, int_in
from flowlib.ops.patches import PatchGrid, extract_patches, overlap_add, patch_grid, sample_patches

__all__ = ["PatchFlow", "PatchStereo", "coarse_to_fine", "inverse_search", "variational_refinement",
           "pyramid_depth", "SPECS"]

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


def _zero_mean(x: jax.Array) -> jax.Array:
    return x - jnp.mean(x, axis=(-2, -1), keepdims=True)


def _shift_cells(u: jax.Array, dy: int, dx: int) -> jax.Array:
    """``u[:, i + dy, j + dx]`` with edge replication, u ``(B, rows, cols, 2)``."""
    m = max(abs(dy), abs(dx))
    padded = jnp.pad(u, ((0, 0), (m, m), (m, m), (0, 0)), mode="edge")
    rows, cols = u.shape[1:3]
    return padded[:, m + dy : m + dy + rows, m + dx : m + dx + cols]


def _patch_centres(flow: jax.Array, grid: PatchGrid) -> jax.Array:
    """Dense flow ``(B, H, W, 2)`` sampled at the patch centres: ``(B, rows, cols, 2)``."""
    half = (grid.size - 1) / 2
    ys = jnp.arange(grid.rows) * grid.stride + half
    xs = jnp.arange(grid.cols) * grid.stride + half
    coords = jnp.stack(jnp.meshgrid(xs, ys, indexing="xy"), axis=-1).astype(flow.dtype)
    coords = jnp.broadcast_to(coords, (flow.shape[0], *coords.shape))
    return ops.bilinear_sample(flow, coords, padding="border")


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
    horizontal: bool = False,
) -> jax.Array:
    """One level of patch matching: dense flow ``(B, H, W, 2)`` from grey ``(B, H, W)`` images.

    Args:
      i0, i1: frame 1 and frame 2, grey, 0..255.
      flow_init: ``(B, H, W, 2)`` initial flow (upsampled from the coarser level).
      patch_size, patch_stride: the patch grid (size a multiple of stride).
      iterations: Gauss-Newton steps, in two halves, each after a propagation pass.
      propagation_rounds: rounds of each propagation pass.
      jumps: cell distances a patch looks at in each of the four directions.
      search_radius: > 0: first try every integer offset within +-radius of the initial
        patch flow (exhaustive zero-mean SSD search).
      horizontal: stereo: the flow is ``(u, 0)`` with ``u <= 0`` (``u = -disparity``); the
        search tries ``u0 - k`` for ``k = 0 .. search_radius`` and Gauss-Newton moves u only.
    """
    grid = patch_grid(i0.shape[1], i0.shape[2], size=patch_size, stride=patch_stride)
    template = extract_patches(i0, grid)
    t0 = _zero_mean(template)
    gx, gy = _gradients(i0)
    gx, gy = _zero_mean(extract_patches(gx, grid)), _zero_mean(extract_patches(gy, grid))
    # Inverse compositional: the Gauss-Newton matrix depends on the template only.
    reg = 1e-2 * patch_size * patch_size
    hxx = jnp.sum(gx * gx, axis=(-2, -1)) + reg
    hxy = jnp.sum(gx * gy, axis=(-2, -1))
    hyy = jnp.sum(gy * gy, axis=(-2, -1)) + reg
    det = hxx * hyy - hxy * hxy

    def cost(u: jax.Array) -> jax.Array:
        return jnp.sum((_zero_mean(sample_patches(i1, grid, u)) - t0) ** 2, axis=(-2, -1))

    def keep_better(state: tuple[jax.Array, jax.Array], cand: jax.Array) -> tuple[jax.Array, jax.Array]:
        u, c = state
        cc = cost(cand)
        better = cc < c
        return jnp.where(better[..., None], cand, u), jnp.where(better, cc, c)

    u = _patch_centres(flow_init, grid)
    state = (u, cost(u))
    if search_radius > 0:
        n = 2 * search_radius + 1
        origin = u

        def search(k: jax.Array, st: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            if horizontal:
                off = jnp.stack([-k, 0 * k]).astype(u.dtype)
            else:
                off = jnp.stack([k % n - search_radius, k // n - search_radius]).astype(u.dtype)
            return keep_better(st, origin + off)

        count = search_radius + 1 if horizontal else n * n
        state = jax.lax.fori_loop(0, count, search, state)

    directions = [(0, j) for j in jumps] + [(0, -j) for j in jumps]
    directions += [(j, 0) for j in jumps] + [(-j, 0) for j in jumps]

    def propagate(st: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        def one_round(_: Any, st: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            for dy, dx in directions:
                st = keep_better(st, _shift_cells(st[0], dy, dx))
            return st

        return jax.lax.fori_loop(0, propagation_rounds, one_round, st)

    def gauss_newton(st: tuple[jax.Array, jax.Array], steps: int) -> tuple[jax.Array, jax.Array]:
        def step(_: Any, u: jax.Array) -> jax.Array:
            r = _zero_mean(sample_patches(i1, grid, u)) - t0
            bx = jnp.sum(gx * r, axis=(-2, -1))
            by = jnp.sum(gy * r, axis=(-2, -1))
            if horizontal:
                delta = jnp.stack([bx / hxx, jnp.zeros_like(bx)], -1)
            else:
                delta = jnp.stack([(hyy * bx - hxy * by) / det, (hxx * by - hxy * bx) / det], -1)
            norm = jnp.linalg.norm(delta, axis=-1, keepdims=True)
            return u - delta / jnp.maximum(1.0, norm)  # at most one pixel per step

        u0, c0 = st
        u1 = jax.lax.fori_loop(0, steps, step, u0)
        c1 = cost(u1)
        keep = (c1 < c0) & (jnp.max(jnp.abs(u1 - u0), axis=-1) < patch_size)
        return jnp.where(keep[..., None], u1, u0), jnp.where(keep, c1, c0)

    state = gauss_newton(propagate(state), iterations // 2)
    u, _ = gauss_newton(propagate(state), iterations - iterations // 2)
    return densify(i1, template, u, grid)


def densify(i1: jax.Array, template: jax.Array, u: jax.Array, grid: PatchGrid) -> jax.Array:
    """Dense flow ``(B, H, W, 2)`` from patch flows ``u`` ``(B, rows, cols, 2)``: at each pixel
    the average of the covering patches' flows weighted by ``1 / max(1, |I1(x + u_i) - I0(x)|)``
    (``template`` holds the frame-1 patches)."""
    weights = 1.0 / jnp.maximum(1.0, jnp.abs(sample_patches(i1, grid, u) - template))
    num_u = overlap_add(weights * u[..., 0, None, None], grid)
    num_v = overlap_add(weights * u[..., 1, None, None], grid)
    den = overlap_add(weights, grid)
    return jnp.stack([num_u / den, num_v / den], axis=-1)


def _dx(a: jax.Array) -> jax.Array:
    p = jnp.pad(a, ((0, 0), (0, 0), (1, 1)), mode="edge")
    return 0.5 * (p[:, :, 2:] - p[:, :, :-2])


def _dy(a: jax.Array) -> jax.Array:
    p = jnp.pad(a, ((0, 0), (1, 1), (0, 0)), mode="edge")
    return 0.5 * (p[:, 2:] - p[:, :-2])


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
    per-pixel Euler-Lagrange system; Neumann boundaries. ``horizontal``: stereo, v stays 0
    and only the u equation is solved.
    """
    b, h, w = i0.shape
    warped = ops.backward_warp(i1[..., None], flow, padding="border", align_corners=True)[..., 0]
    i0x, i0y, i1x, i1y = _dx(i0), _dy(i0), _dx(warped), _dy(warped)
    ix, iy, iz = 0.5 * (i1x + i0x), 0.5 * (i1y + i0y), warped - i0
    ixx = 0.5 * (_dx(i1x) + _dx(i0x))
    ixy = 0.5 * (_dy(i1x) + _dy(i0x))
    iyy = 0.5 * (_dy(i1y) + _dy(i0y))
    ixz, iyz = i1x - i0x, i1y - i0y
    n_i = ix * ix + iy * iy + zeta * zeta
    n_x = ixx * ixx + ixy * ixy + zeta * zeta
    n_y = ixy * ixy + iyy * iyy + zeta * zeta
    u, v = flow[..., 0], flow[..., 1]
    yy, xx = np.mgrid[0:h, 0:w]
    red = jnp.asarray((yy + xx) % 2 == 0)

    def fixed_point(_: Any, duv: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        du, dv = duv
        p_i = delta * _robust_weight((iz + ix * du + iy * dv) ** 2 / n_i)
        p_g = gamma * _robust_weight(
            (ixz + ixx * du + ixy * dv) ** 2 / n_x + (iyz + ixy * du + iyy * dv) ** 2 / n_y
        )
        a11 = p_i * ix * ix / n_i + p_g * (ixx * ixx / n_x + ixy * ixy / n_y)
        a12 = p_i * ix * iy / n_i + p_g * (ixx * ixy / n_x + ixy * iyy / n_y)
        a22 = p_i * iy * iy / n_i + p_g * (ixy * ixy / n_x + iyy * iyy / n_y)
        b1 = p_i * ix * iz / n_i + p_g * (ixx * ixz / n_x + ixy * iyz / n_y)
        b2 = p_i * iy * iz / n_i + p_g * (ixy * ixz / n_x + iyy * iyz / n_y)
        tu, tv = u + du, v + dv
        fwd = lambda a, ax: jnp.diff(a, axis=ax, append=jnp.take(a, jnp.array([-1]), axis=ax))  # noqa: E731
        s = alpha * _robust_weight(fwd(tu, 2) ** 2 + fwd(tu, 1) ** 2 + fwd(tv, 2) ** 2 + fwd(tv, 1) ** 2)
        # Edge weights (mean of the two pixels' weights), zero across the image border.
        w_r = jnp.pad(0.5 * (s[:, :, :-1] + s[:, :, 1:]), ((0, 0), (0, 0), (0, 1)))
        w_d = jnp.pad(0.5 * (s[:, :-1] + s[:, 1:]), ((0, 0), (0, 1), (0, 0)))
        w_l = jnp.pad(w_r[:, :, :-1], ((0, 0), (0, 0), (1, 0)))
        w_u = jnp.pad(w_d[:, :-1], ((0, 0), (1, 0), (0, 0)))
        w_sum = w_r + w_d + w_l + w_u

        def neighbours(a: jax.Array) -> jax.Array:
            p = jnp.pad(a, ((0, 0), (1, 1), (1, 1)), mode="edge")
            return (w_r * p[:, 1:-1, 2:] + w_l * p[:, 1:-1, :-2] + w_d * p[:, 2:, 1:-1]
                    + w_u * p[:, :-2, 1:-1])

        m11, m22 = a11 + w_sum, a22 + w_sum
        det = m11 * m22 - a12 * a12
        base_u = neighbours(u) - w_sum * u - b1
        base_v = neighbours(v) - w_sum * v - b2

        def sor(_: Any, duv: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            du, dv = duv
            for colour in (red, ~red):
                ru, rv = base_u + neighbours(du), base_v + neighbours(dv)
                if horizontal:
                    nu, nv = ru / m11, jnp.zeros_like(rv)
                else:
                    nu, nv = (m22 * ru - a12 * rv) / det, (m11 * rv - a12 * ru) / det
                du = jnp.where(colour, (1 - omega) * du + omega * nu, du)
                dv = jnp.where(colour, (1 - omega) * dv + omega * nv, dv)
            return du, dv

        return jax.lax.fori_loop(0, inner, sor, (du, dv))

    zeros = jnp.zeros_like(u)
    du, dv = jax.lax.fori_loop(0, outer, fixed_point, (zeros, zeros))
    return jnp.stack([u + du, v + dv], axis=-1)


def _check_counts(module: nn.Module, names: Sequence[str]) -> None:
    """Each named setting of ``module`` is an int >= 0 (a clear error naming it otherwise)."""
    for name in names:
        value = getattr(module, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{type(module).__name__}.{name} must be an int >= 0, got {value!r}")


def coarse_to_fine(i0: jax.Array, i1: jax.Array, settings: Any, *, depth: int,
                   search_radius: int, horizontal: bool) -> dict[int, jax.Array]:
    """The pyramid loop shared by :class:`PatchFlow` and :class:`PatchStereo`.

    Grey ``(B, H, W)`` images, levels ``depth .. 0``: upsample the coarser flow, inverse
    search (exhaustive ``search_radius`` at the coarsest level, long jumps on the
    ``settings.long_jump_levels`` coarsest), then variational refinement. ``settings`` is the
    module (its patch, iteration and refinement fields). Returns ``{level: flow}``.
    """
    pyr0 = [p[..., 0] for p in ops.image_pyramid(i0[..., None], levels=depth + 1)]
    pyr1 = [p[..., 0] for p in ops.image_pyramid(i1[..., None], levels=depth + 1)]
    flow = jnp.zeros((*pyr0[depth].shape, 2), jnp.float32)
    levels = {}
    for level in range(depth, -1, -1):
        a, b = pyr0[level], pyr1[level]
        if level < depth:
            flow = ops.upsample_flow(flow, a.shape[1:], align_corners=False)
            if horizontal:
                flow = flow.at[..., 1].set(0.0)
        long = depth - level < settings.long_jump_levels
        flow = inverse_search(
            a, b, flow,
            patch_size=settings.patch_size, patch_stride=settings.patch_stride,
            iterations=settings.iterations, propagation_rounds=settings.propagation_rounds,
            jumps=(4, 2, 1) if long else (1,),
            search_radius=search_radius if level == depth else 0,
            horizontal=horizontal,
        )
        if settings.refine_outer:
            flow = variational_refinement(
                a, b, flow, alpha=settings.alpha, delta=settings.delta, gamma=settings.gamma,
                outer=settings.refine_outer, inner=settings.refine_inner, horizontal=horizontal,
            )
        levels[level] = flow
    return levels


class PatchFlow(nn.Module):
    """Coarse-to-fine patch matching + variational refinement (see the module docstring).

    Attributes:
      patch_size, patch_stride: the patch grid at every level (size a multiple of stride).
      iterations: Gauss-Newton steps per level.
      propagation_rounds: rounds of each of the two propagation passes per level.
      long_jump_levels: on this many of the coarsest levels propagation also looks 4 and 2
        cells away; finer levels look at direct neighbours only (cheaper at full size).
      coarse_radius: exhaustive search radius (pixels of the coarsest level).
      min_coarse_side: the coarsest level is the deepest whose shorter side is at least this.
      alpha, delta, gamma, refine_outer, refine_inner: the variational refinement
        (``refine_outer = 0`` turns it off).
    """

    patch_size: int = 8
    patch_stride: int = 4
    iterations: int = 32
    propagation_rounds: int = 2
    long_jump_levels: int = 3
    coarse_radius: int = 4
    min_coarse_side: int = 16
    alpha: float = 20.0
    delta: float = 5.0
    gamma: float = 10.0
    refine_outer: int = 5
    refine_inner: int = 5

    def __post_init__(self) -> None:
        patch_grid(self.patch_size, self.patch_size, size=self.patch_size, stride=self.patch_stride)
        _check_counts(self, ("iterations", "propagation_rounds", "long_jump_levels", "coarse_radius",
                             "refine_outer", "refine_inner"))
        super().__post_init__()

    @nn.compact
    def __call__(self, image1: jax.Array, image2: jax.Array, *, train: bool = False) -> FlowOutput:
        """Flow from ``image1`` to ``image2``: RGB ``(B, H, W, 3)`` in [0, 1] -> FlowOutput."""
        del train  # nothing is learned
        grey = _grey_pair(image1, image2)
        _, h, w = grey[0].shape
        depth = pyramid_depth(h, w, patch_size=self.patch_size, min_coarse_side=self.min_coarse_side)
        levels = coarse_to_fine(grey[0], grey[1], self, depth=depth,
                                search_radius=self.coarse_radius, horizontal=False)
        flow = levels[0]
        return FlowOutput(flow=flow, aux={"levels": levels})


class PatchStereo(nn.Module):
    """PatchFlow's matching restricted to rectified stereo: flow ``(-d, 0)``, ``d >= 0``.

    Same steps as :class:`PatchFlow` with a horizontal-only search, Gauss-Newton and
    refinement. The pyramid has ``levels`` levels below full size (fewer on small images);
    at the coarsest one every disparity in ``0 .. maxdisp`` (scaled to that level) is
    tried exhaustively, so KITTI-range disparities (~200 px) are found however far they are.

    Attributes:
      maxdisp: largest disparity searched, full-resolution pixels.
      levels: pyramid levels below full resolution (the coarsest is at 1 / 2**levels).
      others: as :class:`PatchFlow`.
    """

    maxdisp: int = 192
    levels: int = 3
    patch_size: int = 8
    patch_stride: int = 4
    iterations: int = 16
    propagation_rounds: int = 2
    long_jump_levels: int = 2
    alpha: float = 20.0
    delta: float = 5.0
    gamma: float = 10.0
    refine_outer: int = 5
    refine_inner: int = 5
    consistency: float = 1.0

    def __post_init__(self) -> None:
        patch_grid(self.patch_size, self.patch_size, size=self.patch_size, stride=self.patch_stride)
        if not self.consistency >= 0:
            raise ValueError(f"PatchStereo.consistency must be >= 0, got {self.consistency!r}")
        _check_maxdisp("maxdisp", self.maxdisp)
        _check_counts(self, ("levels", "iterations", "propagation_rounds",
                             "long_jump_levels", "refine_outer", "refine_inner"))
        super().__post_init__()

    @nn.compact
    def __call__(self, left: jax.Array, right: jax.Array, *, train: bool = False) -> StereoOutput:
        """Disparity of the left view: RGB ``(B, H, W, 3)`` in [0, 1] -> StereoOutput."""
        del train
        i0, i1 = _grey_pair(left, right)
        if not self.consistency:
            return StereoOutput(disparity=self._match(i0, i1), aux={})
        # The right view's disparity is the same matching on the mirrored pair: both run as
        # one batch of 2B, so XLA compiles the pyramid once.
        b = i0.shape[0]
        both = self._match(jnp.concatenate([i0, i1[:, :, ::-1]]),
                           jnp.concatenate([i1, i0[:, :, ::-1]]))
        disparity, right_disp = both[:b], both[b:, :, ::-1]
        valid = left_right_consistent(disparity, right_disp, self.consistency)
        return StereoOutput(disparity=fill_from_background(disparity, valid),
                            aux={"raw": disparity, "consistent": valid})

    def _match(self, i0: jax.Array, i1: jax.Array) -> jax.Array:
        _, h, w = i0.shape
        depth = min(self.levels, pyramid_depth(h, w, patch_size=self.patch_size,
                                               min_coarse_side=self.patch_size))
        flow = coarse_to_fine(i0, i1, self, depth=depth, search_radius=-(-self.maxdisp // 2**depth),
                              horizontal=True)[0]
        return jnp.clip(-flow[..., 0], 0.0, float(self.maxdisp))


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


def _grey_pair(image1: jax.Array, image2: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Two RGB ``(B, H, W, 3)`` images of one shape -> their grey ``(B, H, W)`` in 0..255."""
    if image1.ndim != 4 or image1.shape[-1] != 3 or image1.shape != image2.shape:
        raise ValueError(f"expected two (B, H, W, 3) images of one shape, got {image1.shape}"
                         f" and {image2.shape}")
    return _grey(image1), _grey(image2)


def default_settings(module: type = None) -> dict[str, Any]:  # type: ignore[assignment]
    """A module's constructor defaults as a plain dict (what its settings file records)."""
    module = PatchFlow if module is None else module
    return {f: getattr(module, f) for f in module.__dataclass_fields__ if f not in ("parent", "name")}



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



SPECS = (
    ModelSpec(
        name="patchflow",
        task="flow",
        summary="PatchFlow: coarse-to-fine patch matching with variational refinement (DIS-like, "
        "no learned parameters)",
        build=PatchFlow,
        embedded="patchflow.npz",
    ),
    ModelSpec(
        name="patchstereo",
        task="stereo",
        summary="PatchStereo: PatchFlow's matching along rectified rows, left-right checked",
        build=PatchStereo,
        options=(Option("maxdisp", _check_maxdisp, flag="--max-disp", metavar="D",
                        help="largest disparity searched, in [1, 1024] (default: what the "
                        "settings record, 192 embedded)"),),
        embedded="patchstereo.npz",
    ),
)

if __name__ == "__main__":
    import json
    import sys

    # python -m flowlib.models.patchflow OUT.npz [patchflow|patchstereo] [JSON overrides]
    write_settings(sys.argv[1], *sys.argv[2:3], **(json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}))
