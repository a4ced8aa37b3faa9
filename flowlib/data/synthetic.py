"""Procedural training and demo data with exact ground truth (FlyingChairs-like and stereo).

Flow scenes: a textured background and several textured foreground objects (random
ellipses and star-shaped polygons), each layer with its own random similarity or affine
motion. Every layer maps canonical texture coordinates c to image coordinates
``p_t = A_t c + b_t``; rendering at time t inverts that map per pixel, so the flow of a
pixel p of frame t, ``p_{t+1} - p`` for the topmost layer at p, is exact (no
interpolation), and a pixel is *occluded* when a different layer (or the image border)
covers its destination in frame t+1.

Stereo scenes: fronto-parallel or slightly slanted planes, each with disparity
``d(x, y) = a + b x + c y`` in left-image coordinates; closer layers (larger disparity)
are drawn on top. The right image is rendered by inverting ``x_r = x_l - d`` per layer,
so the disparity is exact.

Textures: multi-octave value noise, stripes and checkers, and crops of the photographs
and elevation maps that matplotlib ships in ``mpl-data/sample_data`` (read from the
installed package, never copied). Everything is numpy, vectorised over pixels and
deterministic from a seed.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "flow_sequence",
    "flow_pair",
    "warp_pair",
    "translation_pair",
    "stereo_pair",
    "texture",
    "write_chairs_layout",
    "write_sintel_layout",
    "final_pass",
    "write_sceneflow_layout",
    "write_kitti_layout",
    "write_middlebury_layout",
    "benchmark_set",
    "BENCHMARK_SETS",
]


# ----------------------------------------------------------------------------- textures


@functools.lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    """RGB float32 photos / colour-mapped elevation maps shipped with matplotlib."""
    import matplotlib
    from matplotlib import colormaps

    folder = Path(matplotlib.get_data_path()) / "sample_data"
    out = []
    for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png"):
        path = folder / name
        if path.is_file():
            import imageio.v3 as iio

            img = np.asarray(iio.imread(path))[..., :3].astype(np.float32) / 255.0
            out.append(img)
    for name, key, cmap in (("topobathy.npz", "topo", "gist_earth"), ("jacksboro_fault_dem.npz", "elevation", "terrain")):
        path = folder / name
        if path.is_file():
            with np.load(path) as z:
                elev = np.asarray(z[key], dtype=np.float64)
            elev = (elev - elev.min()) / max(np.ptp(elev), 1e-9)
            out.append(colormaps[cmap](elev)[..., :3].astype(np.float32))
    return tuple(out)


def _value_noise(rng: np.random.Generator, size: int, octaves: int = 5) -> np.ndarray:
    """(size, size, 3) multi-octave value noise in [0, 1]."""
    acc = np.zeros((size, size, 3), np.float64)
    total = 0.0
    for o in range(octaves):
        cells = 2 ** (o + 2)
        grid = rng.random((cells + 1, cells + 1, 3))
        t = np.linspace(0, cells, size, endpoint=False)
        i = t.astype(int)
        f = t - i
        f = f * f * (3 - 2 * f)  # smoothstep
        rows = grid[i] * (1 - f)[:, None, None] + grid[i + 1] * f[:, None, None]
        layer = rows[:, i] * (1 - f)[None, :, None] + rows[:, i + 1] * f[None, :, None]
        weight = 0.55**o
        acc += weight * layer
        total += weight
    acc /= total
    acc = (acc - acc.min()) / max(np.ptp(acc), 1e-9)
    return acc.astype(np.float32)


def _fine_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 1) zero-mean grey noise with 2-4 texel features, in [-0.5, 0.5]."""
    cells = int(rng.choice([size // 4, size // 2]))
    grid = rng.random((cells + 1, cells + 1))
    t = np.linspace(0, cells, size, endpoint=False)
    i = t.astype(int)
    f = t - i
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]
    out = rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]
    return (out - 0.5)[..., None].astype(np.float32)


def texture(rng: np.random.Generator, size: int = 256, *, detail: float = 0.0, flat: float = 0.0) -> np.ndarray:
    """A random (size, size, 3) float32 texture in [0, 1].

    ``detail`` > 0 adds fine grey noise of that amplitude (features of 2-4 texels): every
    surface then has texture at the pixel scale, which makes motion observable everywhere
    and lets flow networks leave the zero-flow plateau far sooner when trained from
    scratch. 0 (the default) draws nothing extra from ``rng``, so scenes are unchanged.
    ``flat`` is the probability of a nearly uniform surface instead (one colour, faint
    noise): where nothing is observable a trained model should fall back to small flow,
    not invent motion. 0 (the default) likewise draws nothing.
    """
    if flat > 0 and rng.random() < flat:
        tone = rng.random(3)
        return np.clip(tone + 0.02 * _fine_noise(rng, size), 0, 1).astype(np.float32)
    kind = rng.integers(0, 4)
    photos = _photos()
    if kind == 0 and photos:
        img = photos[rng.integers(len(photos))]
        h, w = img.shape[:2]
        s = int(rng.integers(min(h, w) // 4, min(h, w)))
        y, x = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
        crop = img[y : y + s, x : x + s]
        idx = (np.arange(size) * s // size).astype(int)
        tex = crop[idx][:, idx]
    elif kind == 1:
        tex = _value_noise(rng, size)
    else:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        angle = rng.uniform(0, math.pi)
        freq = rng.uniform(4, 24)
        u = np.cos(angle) * xx + np.sin(angle) * yy
        if kind == 2:
            base = 0.5 + 0.5 * np.sin(2 * math.pi * freq * u)
        else:
            v = -np.sin(angle) * xx + np.cos(angle) * yy
            base = ((np.floor(freq * u) + np.floor(freq * v)) % 2).astype(np.float32)
        c1, c2 = rng.random(3), rng.random(3)
        tex = base[..., None] * c1 + (1 - base[..., None]) * c2
        tex = 0.8 * tex + 0.2 * _value_noise(rng, size, octaves=4)
    # random colour gain / offset so photos do not dominate the colour statistics
    tex = np.clip(tex * rng.uniform(0.7, 1.3, 3) + rng.uniform(-0.1, 0.1, 3), 0, 1)
    if detail > 0:
        tex = np.clip(tex + detail * _fine_noise(rng, size), 0, 1)
    return tex.astype(np.float32)


def _sample_texture(tex: np.ndarray, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    """Bilinear lookup with wrap-around; cx, cy in texture pixels."""
    h, w = tex.shape[:2]
    x0, y0 = np.floor(cx), np.floor(cy)
    fx, fy = (cx - x0)[..., None], (cy - y0)[..., None]
    x0, y0 = x0.astype(np.int64) % w, y0.astype(np.int64) % h
    x1, y1 = (x0 + 1) % w, (y0 + 1) % h
    top = tex[y0, x0] * (1 - fx) + tex[y0, x1] * fx
    bottom = tex[y1, x0] * (1 - fx) + tex[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


# ----------------------------------------------------------------------------- flow scenes


def _random_affine(rng: np.random.Generator, *, small: float) -> np.ndarray:
    """A 2x3 incremental motion: rotation, scale, (optional) shear and translation."""
    angle = rng.normal(0, 0.03 * small)
    scale = math.exp(rng.normal(0, 0.04 * small))
    shear = rng.normal(0, 0.02 * small) if rng.random() < 0.5 else 0.0
    c, s = math.cos(angle), math.sin(angle)
    lin = scale * np.array([[c, -s], [s, c]]) @ np.array([[1.0, shear], [0.0, 1.0]])
    t = rng.normal(0, 6.0 * small, 2)
    return np.concatenate([lin, t[:, None]], axis=1)


def _compose(step: np.ndarray, pose: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Apply ``step`` (about ``centre``) after ``pose``; both 2x3."""
    lin = step[:, :2] @ pose[:, :2]
    t = step[:, :2] @ (pose[:, 2] - centre) + centre + step[:, 2]
    return np.concatenate([lin, t[:, None]], axis=1)


def _inverse_map(pose: np.ndarray, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    inv = np.linalg.inv(pose[:, :2])
    dx, dy = px - pose[0, 2], py - pose[1, 2]
    return inv[0, 0] * dx + inv[0, 1] * dy, inv[1, 0] * dx + inv[1, 1] * dy


def _shape_mask(shape: dict[str, Any], cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    """Inside test in canonical coordinates (object centred at the origin)."""
    r = np.hypot(cx, cy)
    if shape["kind"] == "ellipse":
        return (cx / shape["a"]) ** 2 + (cy / shape["b"]) ** 2 <= 1.0
    theta = np.arctan2(cy, cx)
    radius = shape["r0"] * (1 + sum(a * np.cos(k * theta + p) for k, a, p in shape["harmonics"]))
    return r <= radius


def _random_shape(rng: np.random.Generator, size: float) -> dict[str, Any]:
    if rng.random() < 0.4:
        return {"kind": "ellipse", "a": size * rng.uniform(0.5, 1.0), "b": size * rng.uniform(0.3, 1.0)}
    harmonics = [(int(k), rng.uniform(0, 0.25), rng.uniform(0, 2 * math.pi)) for k in rng.integers(2, 7, 3)]
    return {"kind": "star", "r0": size * rng.uniform(0.5, 0.9), "harmonics": harmonics}


def flow_sequence(
    seed: int,
    height: int = 384,
    width: int = 512,
    *,
    frames: int = 2,
    objects: tuple[int, int] = (3, 8),
    motion: float = 1.0,
    detail: float = 0.0,
    flat: float = 0.0,
) -> dict[str, np.ndarray]:
    """Render a sequence with exact forward flow between consecutive frames.

    Args:
      seed: the scene is a deterministic function of it.
      height, width: image size.
      frames: number of frames (>= 2).
      objects: (min, max) number of foreground objects.
      motion: scale of the random motions (1.0 ~ FlyingChairs: up to ~20-40 px).
      detail: amplitude of fine texture noise added to every layer (see :func:`texture`).
      flat: probability of an untextured layer (see :func:`texture`).

    Returns:
      dict with ``images`` (frames, H, W, 3) float32 in [0, 1], ``flow``
      (frames - 1, H, W, 2) float32 (frame t -> t+1) and ``occlusions`` (frames - 1, H, W)
      bool (the pixel's destination is hidden by another layer or outside the image).
    """
    if frames < 2 or height < 8 or width < 8:
        raise ValueError(f"need frames >= 2 and size >= 8x8, got {frames} frames of {height}x{width}")
    rng = np.random.default_rng(seed)
    centre = np.array([width / 2, height / 2])
    diag = math.hypot(height, width)
    layers = []
    # Background: a large texture plane covering the image at every time.
    bg_scale = diag / 256 * rng.uniform(1.2, 2.0)
    pose = np.array([[bg_scale, 0, centre[0]], [0, bg_scale, centre[1]]], dtype=np.float64)
    layers.append({"tex": texture(rng, detail=detail, flat=flat), "shape": None, "pose0": pose, "step": _random_affine(rng, small=0.6 * motion)})
    for _ in range(int(rng.integers(objects[0], objects[1] + 1))):
        size = rng.uniform(0.08, 0.25) * diag
        tex_scale = size / 128 * rng.uniform(0.8, 1.5)
        angle = rng.uniform(0, 2 * math.pi)
        c, s = math.cos(angle), math.sin(angle)
        pos = rng.uniform([0, 0], [width, height])
        pose = np.array([[c * tex_scale, -s * tex_scale, pos[0]], [s * tex_scale, c * tex_scale, pos[1]]])
        layers.append({
            "tex": texture(rng, detail=detail, flat=flat),
            "shape": _random_shape(rng, 128.0),
            "pose0": pose,
            "step": _random_affine(rng, small=1.5 * motion),
        })
    poses = [[layer["pose0"]] for layer in layers]
    for layer, seq in zip(layers, poses):
        for _ in range(frames - 1):
            seq.append(_compose(layer["step"], seq[-1], seq[-1][:, 2]))

    py, px = np.mgrid[0:height, 0:width].astype(np.float64)

    def cover(t: int, qx: np.ndarray, qy: np.ndarray) -> tuple[np.ndarray, list]:
        """Index of the topmost layer at points (qx, qy) of frame t, and canonical coords."""
        top = np.zeros(qx.shape, np.int64)
        coords = []
        for k, layer in enumerate(layers):
            cx, cy = _inverse_map(poses[k][t], qx, qy)
            coords.append((cx, cy))
            if layer["shape"] is not None:
                top = np.where(_shape_mask(layer["shape"], cx, cy), k, top)
        return top, coords

    images, flows, occ = [], [], []
    for t in range(frames):
        top, coords = cover(t, px, py)
        img = np.zeros((height, width, 3), np.float32)
        for k, layer in enumerate(layers):
            sel = top == k
            if sel.any():
                img[sel] = _sample_texture(layer["tex"], coords[k][0][sel] + 128, coords[k][1][sel] + 128)
        images.append(img)
        if t == frames - 1:
            break
        fx, fy = np.zeros_like(px), np.zeros_like(py)
        for k in range(len(layers)):
            sel = top == k
            cx, cy = coords[k][0][sel], coords[k][1][sel]
            nxt = poses[k][t + 1]
            fx[sel] = nxt[0, 0] * cx + nxt[0, 1] * cy + nxt[0, 2] - px[sel]
            fy[sel] = nxt[1, 0] * cx + nxt[1, 1] * cy + nxt[1, 2] - py[sel]
        qx, qy = px + fx, py + fy
        top_next, _ = cover(t + 1, qx, qy)
        outside = (qx < 0) | (qx > width - 1) | (qy < 0) | (qy > height - 1)
        occ.append((top_next != top) | outside)
        flows.append(np.stack([fx, fy], axis=-1).astype(np.float32))
    return {"images": np.stack(images), "flow": np.stack(flows), "occlusions": np.stack(occ)}


def flow_pair(seed: int, height: int = 384, width: int = 512, **kwargs: Any) -> dict[str, np.ndarray]:
    """One FlyingChairs-like pair: ``image1``, ``image2``, ``flow``, ``occlusions``."""
    seq = flow_sequence(seed, height, width, frames=2, **kwargs)
    return {"image1": seq["images"][0], "image2": seq["images"][1],
            "flow": seq["flow"][0], "occlusions": seq["occlusions"][0]}


def warp_pair(seed: int, height: int = 384, width: int = 512, *, motion: float = 1.0,
              detail: float = 0.3, textures: int = 3, flat: float = 0.0) -> dict[str, np.ndarray]:
    """A textured surface under a smooth random deformation: exact flow, no occlusions.

    ``image1[p] = S(p + f(p))`` and ``image2[q] = S(q)`` for a surface ``S`` (a blend of
    :func:`texture` s under random similarity maps), so ``image1[p] = image2[p + f(p)]``
    exactly with no inversion. ``f`` is a random global affine motion plus a few smooth
    Gaussian bumps (up to ``~10 * motion`` px). Easier than :func:`flow_pair` (no object
    boundaries, no occlusions): a curriculum stage in which flow networks trained from
    scratch learn local matching in far fewer steps. ``detail`` and ``flat`` are passed to
    :func:`texture`.

    Returns:
      dict with ``image1``, ``image2`` (H, W, 3) float32, ``flow`` (H, W, 2) float32 and
      ``occlusions`` (H, W) bool (pixels whose destination leaves the image).
    """
    if height < 8 or width < 8:
        raise ValueError(f"need size >= 8x8, got {height}x{width}")
    rng = np.random.default_rng(seed)
    py, px = np.mgrid[0:height, 0:width].astype(np.float64)
    cx, cy = px - width / 2, py - height / 2
    a = _random_affine(rng, small=0.6 * motion)
    fx = (a[0, 0] - 1) * cx + a[0, 1] * cy + a[0, 2]
    fy = a[1, 0] * cx + (a[1, 1] - 1) * cy + a[1, 2]
    for _ in range(int(rng.integers(1, 5))):
        mx, my = rng.uniform(0, width), rng.uniform(0, height)
        sigma = rng.uniform(0.1, 0.4) * math.hypot(height, width)
        amp = rng.normal(0, 4.0 * motion, 2)
        g = np.exp(-((px - mx) ** 2 + (py - my) ** 2) / (2 * sigma**2))
        fx, fy = fx + amp[0] * g, fy + amp[1] * g
    layers = []
    for _ in range(max(1, textures)):
        angle, scale = rng.uniform(0, 2 * math.pi), rng.uniform(0.5, 2.0)
        layers.append((texture(rng, detail=detail, flat=flat), angle, scale, rng.uniform(0, 256, 2), rng.random()))
    weights = np.array([w for *_, w in layers]) + 0.2
    weights /= weights.sum()

    def surface(qx: np.ndarray, qy: np.ndarray) -> np.ndarray:
        out = np.zeros((*qx.shape, 3), np.float32)
        for (tex, angle, scale, offset, _), weight in zip(layers, weights):
            c, s = math.cos(angle) / scale, math.sin(angle) / scale
            out += weight * _sample_texture(tex, c * qx - s * qy + offset[0], s * qx + c * qy + offset[1])
        return out

    image2 = surface(px, py)
    image1 = surface(px + fx, py + fy)
    lo = min(image1.min(), image2.min())
    span = max(max(image1.max(), image2.max()) - lo, 1e-6)
    flow = np.stack([fx, fy], axis=-1).astype(np.float32)
    qx, qy = px + fx, py + fy
    outside = (qx < 0) | (qx > width - 1) | (qy < 0) | (qy > height - 1)
    return {"image1": (image1 - lo) / span, "image2": (image2 - lo) / span, "flow": flow,
            "occlusions": outside}


def translation_pair(seed: int, height: int = 384, width: int = 512, *, max_shift: int = 2,
                     blur: float = 1.0) -> dict[str, np.ndarray]:
    """Blurred colour noise under one integer translation: the easiest matching problem.

    ``image1[y, x] = image2[y + v, x + u]`` exactly for one ``(u, v)`` drawn uniformly
    from ``{-max_shift, ..., max_shift}^2``. Useless on its own, but SpyNet trained from
    scratch on :func:`flow_pair` scenes sits at the zero-flow plateau for hundreds of CPU
    steps, while on these pairs it starts matching within ~100 steps (measured: EPE / zero
    -flow EPE 0.78 after 100 steps of batch 8 at 48x64); a short first curriculum stage
    on them gives the later stages features to start from.

    Returns:
      dict with ``image1``, ``image2`` (H, W, 3) float32 in [0, 1], ``flow`` (H, W, 2)
      float32 (constant) and ``occlusions`` (H, W) bool (destination outside the image).
    """
    from scipy.ndimage import gaussian_filter

    if height < 1 or width < 1 or max_shift < 0:
        raise ValueError(f"need size >= 1x1 and max_shift >= 0, got {height}x{width}, {max_shift}")
    rng = np.random.default_rng(seed)
    m = int(max_shift)
    big = gaussian_filter(rng.random((height + 2 * m, width + 2 * m, 3)), (blur, blur, 0))
    big = ((big - big.min()) / max(np.ptp(big), 1e-9)).astype(np.float32)
    u, v = (int(x) for x in rng.integers(-m, m + 1, 2))
    image1 = big[m:m + height, m:m + width]
    image2 = big[m - v:m - v + height, m - u:m - u + width]
    py, px = np.mgrid[0:height, 0:width]
    outside = (px + u < 0) | (px + u > width - 1) | (py + v < 0) | (py + v > height - 1)
    flow = np.broadcast_to(np.array([u, v], np.float32), (height, width, 2)).copy()
    return {"image1": image1.copy(), "image2": image2.copy(), "flow": flow, "occlusions": outside}


# ----------------------------------------------------------------------------- stereo scenes


def stereo_pair(
    seed: int,
    height: int = 384,
    width: int = 512,
    *,
    layers: tuple[int, int] = (3, 8),
    max_disparity: float = 64.0,
    slant: float = 0.1,
    detail: float = 0.0,
) -> dict[str, np.ndarray]:
    """A layered stereo pair with exact left-view disparity.

    Args:
      seed: deterministic scene seed.
      height, width: image size.
      layers: (min, max) number of foreground planes.
      max_disparity: largest disparity (pixels).
      slant: scale of the per-plane disparity gradients (0 = fronto-parallel).
      detail: amplitude of fine texture noise added to every plane (see :func:`texture`).

    Returns:
      dict with ``left``, ``right`` (H, W, 3) float32, ``disparity`` (H, W) float32
      (left view, right x = left x - d) and ``occlusions`` (H, W) bool (left pixels not
      visible in the right image).
    """
    rng = np.random.default_rng(seed)
    py, px = np.mgrid[0:height, 0:width].astype(np.float64)
    n = int(rng.integers(layers[0], layers[1] + 1))
    base = np.sort(rng.uniform(0.02, 1.0, n + 1)) * max_disparity
    planes = []
    for k in range(n + 1):
        b = rng.normal(0, slant * 0.1)
        c = rng.normal(0, slant * 0.1)
        a = base[k] - b * width / 2 - c * height / 2
        if k == 0:
            shape, pose = None, None
        else:
            size = rng.uniform(0.08, 0.3) * math.hypot(height, width)
            angle = rng.uniform(0, 2 * math.pi)
            co, si = math.cos(angle), math.sin(angle)
            s = size / 128
            pos = rng.uniform([0, 0], [width, height])
            pose = np.array([[co * s, -si * s, pos[0]], [si * s, co * s, pos[1]]])
            shape = _random_shape(rng, 128.0)
        planes.append({"abc": (a, b, c), "tex": texture(rng, detail=detail), "shape": shape, "pose": pose,
                       "tex_scale": rng.uniform(0.5, 2.0)})

    def layer_at(qx: np.ndarray, qy: np.ndarray) -> np.ndarray:
        """Topmost plane at left-image points (planes are sorted by disparity)."""
        top = np.zeros(qx.shape, np.int64)
        for k, plane in enumerate(planes[1:], start=1):
            cx, cy = _inverse_map(plane["pose"], qx, qy)
            top = np.where(_shape_mask(plane["shape"], cx, cy), k, top)
        return top

    def render(top: np.ndarray, qx: np.ndarray, qy: np.ndarray) -> np.ndarray:
        img = np.zeros(qx.shape + (3,), np.float32)
        for k, plane in enumerate(planes):
            sel = top == k
            if sel.any():
                s = plane["tex_scale"]
                img[sel] = _sample_texture(plane["tex"], qx[sel] / s, qy[sel] / s)
        return img

    top_left = layer_at(px, py)
    disp = np.zeros((height, width))
    for k, plane in enumerate(planes):
        a, b, c = plane["abc"]
        sel = top_left == k
        disp[sel] = a + b * px[sel] + c * py[sel]
    left = render(top_left, px, py)
    # Right image: for right pixel x_r, plane k covers left x_l = (x_r + a + c y) / (1 - b).
    best = np.full((height, width), -np.inf)
    top_right = np.zeros((height, width), np.int64)
    src_x = np.zeros((height, width))
    for k, plane in enumerate(planes):
        a, b, c = plane["abc"]
        xl = (px + a + c * py) / (1 - b)
        d = a + b * xl + c * py
        visible = (layer_at(xl, py) == k) & (d > best)
        best = np.where(visible, d, best)
        top_right = np.where(visible, k, top_right)
        src_x = np.where(visible, xl, src_x)
    right = render(top_right, src_x, py)
    # A left pixel is occluded in the right view when a closer plane covers x - d there.
    xr = px - disp
    col = np.clip(np.round(xr).astype(np.int64), 0, width - 1)
    occ = (xr < 0) | (best[py.astype(np.int64), col] > disp + 0.5)
    return {"left": left, "right": right, "disparity": disp.astype(np.float32), "occlusions": occ}


# ----------------------------------------------------------------------------- writers


def _u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


def write_chairs_layout(root: str | os.PathLike, count: int, *, seed: int = 0,
                        height: int = 384, width: int = 512) -> Path:
    """Write ``count`` pairs as ``<root>/data/NNNNN_img1.ppm, _img2.ppm, _flow.flo``."""
    from flowlib import io

    data = Path(root) / "data"
    data.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pair = flow_pair(seed + i, height, width)
        io.write_image(data / f"{i + 1:05d}_img1.ppm", _u8(pair["image1"]))
        io.write_image(data / f"{i + 1:05d}_img2.ppm", _u8(pair["image2"]))
        io.write_flow(data / f"{i + 1:05d}_flow.flo", pair["flow"])
    return Path(root)


def final_pass(image: np.ndarray, seed: int) -> np.ndarray:
    """A Sintel-"final"-like rendering of a clean frame: defocus blur (Gaussian, sigma 1 px),
    atmospheric fog (a blend toward light grey, up to 35 % at the top of the frame, where the
    scene is farthest) and sensor noise (Gaussian, sigma 0.02), clipped to [0, 1].
    Deterministic from ``seed``; the flow is unchanged (no motion blur)."""
    from scipy.ndimage import gaussian_filter

    image = np.asarray(image, np.float64)
    h = image.shape[0]
    blurred = gaussian_filter(image, sigma=(1.0, 1.0, 0.0), mode="nearest")
    fog = (0.35 * (1.0 - np.arange(h) / max(h - 1, 1)))[:, None, None]
    foggy = (1.0 - fog) * blurred + fog * np.array([0.8, 0.82, 0.85])
    noise = np.random.default_rng(seed).normal(0.0, 0.02, image.shape)
    return np.clip(foggy + noise, 0.0, 1.0).astype(np.float32)


def write_sintel_layout(root: str | os.PathLike, *, scenes: int = 2, frames: int = 3, seed: int = 0,
                        height: int = 218, width: int = 512) -> Path:
    """Write a small MPI-Sintel-layout training set (documented synthetic): the clean pass
    as rendered, the final pass through :func:`final_pass` (blur, fog, noise).

    ``<root>/training/{clean,final}/synthetic_<k>/frame_%04d.png``, ``training/flow/..flo``,
    ``training/occlusions/..png`` (255 = occluded) and an all-valid ``training/invalid``.
    """
    from flowlib import io

    root = Path(root)
    for k in range(scenes):
        seq = flow_sequence(seed + 1000 * k, height, width, frames=frames)
        scene = f"synthetic_{k + 1}"
        for t, img in enumerate(seq["images"]):
            passes = (("clean", img), ("final", final_pass(img, seed + 1000 * k + t)))
            for pass_, rendered in passes:
                path = root / "training" / pass_ / scene / f"frame_{t + 1:04d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                io.write_image(path, _u8(rendered))
        for t, (flow, occ) in enumerate(zip(seq["flow"], seq["occlusions"])):
            for kind, writer in (("flow", None), ("occlusions", occ), ("invalid", np.zeros_like(occ))):
                path = root / "training" / kind / scene / f"frame_{t + 1:04d}.{'flo' if kind == 'flow' else 'png'}"
                path.parent.mkdir(parents=True, exist_ok=True)
                if kind == "flow":
                    io.write_flow(path, flow)
                else:
                    io.write_image(path, np.repeat((writer.astype(np.uint8) * 255)[..., None], 3, -1))
    return root


def write_sceneflow_layout(root: str | os.PathLike, count: int, *, seed: int = 0,
                           height: int = 384, width: int = 512) -> Path:
    """Write stereo pairs as FlyingThings3D: ``frames_cleanpass/TRAIN/A/0000/{left,right}/%04d.png``
    and ``disparity/TRAIN/A/0000/left/%04d.pfm``."""
    from flowlib import io

    root = Path(root)
    for i in range(count):
        pair = stereo_pair(seed + i, height, width)
        for side in ("left", "right"):
            path = root / "frames_cleanpass" / "TRAIN" / "A" / "0000" / side / f"{i:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            io.write_image(path, _u8(pair[side]))
        path = root / "disparity" / "TRAIN" / "A" / "0000" / "left" / f"{i:04d}.pfm"
        path.parent.mkdir(parents=True, exist_ok=True)
        io.write_pfm(path, pair["disparity"])
    return root


def write_kitti_layout(root: str | os.PathLike, *, task: str, pairs: int = 3, seed: int = 0,
                       height: int = 375, width: int = 1242) -> Path:
    """Write a small KITTI-2015-layout training set of ``task`` ("flow" or "stereo").

    Flow: ``<root>/training/image_2/NNNNNN_{10,11}.png``, ``flow_occ`` (every pixel) and
    ``flow_noc`` (the pixels not occluded in the second frame) as KITTI 16-bit PNGs. Stereo:
    ``image_2`` (left), ``image_3`` (right), ``disp_occ_0`` and ``disp_noc_0``, disparities up
    to 96 px. Pair ``i`` is scene ``seed + i``.
    """
    from flowlib import io

    if task not in ("flow", "stereo"):
        raise ValueError(f"task must be 'flow' or 'stereo', got {task!r}")
    t = Path(root) / "training"
    folders = (("image_2", "flow_occ", "flow_noc") if task == "flow"
               else ("image_2", "image_3", "disp_occ_0", "disp_noc_0"))
    for folder in folders:
        (t / folder).mkdir(parents=True, exist_ok=True)
    for i in range(pairs):
        name = f"{i:06d}_10.png"
        if task == "flow":
            pair = flow_pair(seed + i, height, width)
            io.write_image(t / "image_2" / name, _u8(pair["image1"]))
            io.write_image(t / "image_2" / f"{i:06d}_11.png", _u8(pair["image2"]))
            io.write_kitti_flow(t / "flow_occ" / name, pair["flow"])
            io.write_kitti_flow(t / "flow_noc" / name, pair["flow"], valid=~pair["occlusions"])
        else:
            st = stereo_pair(seed + i, height, width, max_disparity=96)
            io.write_image(t / "image_2" / name, _u8(st["left"]))
            io.write_image(t / "image_3" / name, _u8(st["right"]))
            io.write_kitti_disparity(t / "disp_occ_0" / name, st["disparity"])
            io.write_kitti_disparity(t / "disp_noc_0" / name, st["disparity"],
                                     valid=~st["occlusions"])
    return Path(root)


#: Middlebury 2001 stores disparity as a grey level of ``disparity * scale`` (venus: 8).
_MIDDLEBURY_SCALE = 8


def write_middlebury_layout(root: str | os.PathLike, *, task: str, scenes: int = 2,
                            seed: int = 0, height: int = 288, width: int = 384) -> Path:
    """Write small Middlebury-layout scenes of ``task`` ("flow" or "stereo").

    Flow (the "other" set, motions up to about a third of a Chairs-like scene's):
    ``<root>/other-data/synthetic_<k>/frame{10,11}.png`` and
    ``other-gt-flow/synthetic_<k>/flow10.flo``. Stereo (2001 style, disparities up to
    30 px): ``<root>/synthetic_<k>/imL.png, imR.png``, ``groundtruth.png`` (grey level =
    disparity * 8), the ``all.png`` and ``nonocc.png`` masks and ``info.txt`` (scale, largest
    disparity). Scene ``k`` (from 1) is seed ``seed + k - 1``.
    """
    from flowlib import io

    if task not in ("flow", "stereo"):
        raise ValueError(f"task must be 'flow' or 'stereo', got {task!r}")
    root = Path(root)
    grey = lambda x: np.repeat(x[..., None], 3, -1)  # noqa: E731  (stored as RGB, like 2001's)
    for k in range(scenes):
        scene = f"synthetic_{k + 1}"
        if task == "flow":
            pair = flow_pair(seed + k, height, width, motion=0.3)
            d, g = root / "other-data" / scene, root / "other-gt-flow" / scene
            d.mkdir(parents=True, exist_ok=True)
            g.mkdir(parents=True, exist_ok=True)
            io.write_image(d / "frame10.png", _u8(pair["image1"]))
            io.write_image(d / "frame11.png", _u8(pair["image2"]))
            io.write_flow(g / "flow10.flo", pair["flow"])
            continue
        st = stereo_pair(seed + k, height, width, max_disparity=30.0)
        d = root / scene
        d.mkdir(parents=True, exist_ok=True)
        io.write_image(d / "imL.png", _u8(st["left"]))
        io.write_image(d / "imR.png", _u8(st["right"]))
        gt = np.clip(np.round(st["disparity"] * _MIDDLEBURY_SCALE), 1, 255).astype(np.uint8)
        io.write_image(d / "groundtruth.png", grey(gt))
        io.write_image(d / "all.png", grey(np.full((height, width), 255, np.uint8)))
        io.write_image(d / "nonocc.png", grey(np.where(st["occlusions"], 0, 255).astype(np.uint8)))
        (d / "info.txt").write_text(f"{_MIDDLEBURY_SCALE}\n{int(np.ceil(st['disparity'].max()))}\n")
    return root


def _render_sintel(root: Path) -> None:
    write_sintel_layout(root, scenes=2, frames=3, seed=2024)


def _render_kitti(root: Path) -> None:
    write_kitti_layout(root / "flow", task="flow", seed=7000)
    write_kitti_layout(root / "stereo", task="stereo", seed=8000)


def _render_middlebury(root: Path) -> None:
    write_middlebury_layout(root / "flow", task="flow", seed=9100)
    write_middlebury_layout(root / "stereo", task="stereo", seed=9200)


#: The synthetic stand-ins of the benchmarks: ``name -> (cache folder, sub-folder, renderer)``.
#: A folder's name changes with what is rendered into it, so a cached set is never stale.
BENCHMARK_SETS = {
    "sintel": ("synthetic-sintel-v2", "", _render_sintel),
    "kitti-flow": ("synthetic-kitti-v1", "flow", _render_kitti),
    "kitti-stereo": ("synthetic-kitti-v1", "stereo", _render_kitti),
    "middlebury-flow": ("synthetic-middlebury-v1", "flow", _render_middlebury),
    "middlebury-stereo": ("synthetic-middlebury-v1", "stereo", _render_middlebury),
}


def benchmark_set(name: str) -> Path:
    """The root of a small synthetic set in a benchmark's official layout, rendered on first
    use into ``$FLOWLIB_HOME`` (:func:`flowlib.hub.cache_dir`) and reused after.

    The sets: ``"sintel"`` (2 scenes of 3 frames, 218x512, clean and final passes),
    ``"kitti-flow"`` and ``"kitti-stereo"`` (3 pairs each at 375x1242),
    ``"middlebury-flow"`` and ``"middlebury-stereo"`` (2 scenes each at 288x384). They
    demonstrate a benchmark's pipeline with no download; their figures are not the
    benchmark's. A set is rendered into a temporary folder and renamed into place when
    complete, so an interrupted rendering is started again, never reused.

    Args:
      name: one of :data:`BENCHMARK_SETS`.

    Returns:
      the folder to index (``flowlib.data.index_sintel`` etc.).
    """
    import shutil

    from flowlib import hub

    if name not in BENCHMARK_SETS:
        raise ValueError(f"no synthetic set for {name!r}; sets: {', '.join(BENCHMARK_SETS)}")
    folder, sub, render = BENCHMARK_SETS[name]
    root = hub.cache_dir() / folder
    if not (root / ".complete").is_file():
        tmp = root.with_name(root.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        render(tmp)
        (tmp / ".complete").write_text(f"flowlib synthetic set {folder}\n")
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
    return root / sub if sub else root
