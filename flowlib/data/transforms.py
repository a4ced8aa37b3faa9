"""Flow- and disparity-aware augmentation (numpy, explicit random generator).

Every function takes a ``numpy.random.Generator`` (``rng``) first and returns new arrays;
the training loop seeds it from (seed, step), so a resumed run sees the same data.
Geometry keeps the ground truth consistent with the images: a horizontal flip negates u
(flow) or swaps and mirrors the views (stereo), scaling multiplies the vectors, crops
keep them. Photometric changes touch the images only.

A sample is a dict with ``image1``, ``image2`` (H, W, 3) float32 in [0, 1] and either
``flow`` (H, W, 2) or ``disparity`` (H, W), plus ``valid`` (H, W) bool.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["random_crop", "random_flip", "random_scale", "color_jitter", "gaussian_noise", "augment"]

Sample = dict[str, Any]


def _target_key(sample: Sample) -> str:
    if "flow" in sample:
        return "flow"
    if "disparity" in sample:
        return "disparity"
    raise ValueError("sample needs a 'flow' or a 'disparity' entry")


def random_crop(rng: np.random.Generator, sample: Sample, size: tuple[int, int]) -> Sample:
    """Crop all maps to ``size`` (h, w) at a random position (flow values unchanged)."""
    h, w = sample["image1"].shape[:2]
    ch, cw = size
    if ch > h or cw > w:
        raise ValueError(f"crop {size} is larger than the sample ({h}, {w})")
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return {k: (v[y : y + ch, x : x + cw] if isinstance(v, np.ndarray) and v.ndim >= 2 else v)
            for k, v in sample.items()}


def random_flip(rng: np.random.Generator, sample: Sample, *, p_horizontal: float = 0.5,
                p_vertical: float = 0.1) -> Sample:
    """Mirror the sample, keeping the ground truth consistent.

    Flow: horizontal flip negates u, vertical flip negates v. Stereo: a horizontal flip
    makes the mirrored right view the new left one, so the pair is swapped and mirrored;
    the disparity of the new left view is not known densely, so stereo only flips
    vertically (which preserves rectification).
    """
    out = dict(sample)
    key = _target_key(sample)
    if key == "flow" and rng.random() < p_horizontal:
        out = {k: (v[:, ::-1] if isinstance(v, np.ndarray) and v.ndim >= 2 else v) for k, v in out.items()}
        out["flow"] = out["flow"] * np.array([-1.0, 1.0], np.float32)
    if rng.random() < p_vertical:
        out = {k: (v[::-1] if isinstance(v, np.ndarray) and v.ndim >= 2 else v) for k, v in out.items()}
        if key == "flow":
            out["flow"] = out["flow"] * np.array([1.0, -1.0], np.float32)
    return {k: (np.ascontiguousarray(v) if isinstance(v, np.ndarray) else v) for k, v in out.items()}


def _resize(x: np.ndarray, h: int, w: int, *, nearest: bool) -> np.ndarray:
    """Bilinear (align_corners=False) or nearest resize of an (H, W, ...) array."""
    H, W = x.shape[:2]
    sy, sx = H / h, W / w
    yy = np.clip((np.arange(h) + 0.5) * sy - 0.5, 0, H - 1)
    xx = np.clip((np.arange(w) + 0.5) * sx - 0.5, 0, W - 1)
    if nearest:
        return x[np.minimum(np.floor((np.arange(h) + 0.5) * sy), H - 1).astype(int)][
            :, np.minimum(np.floor((np.arange(w) + 0.5) * sx), W - 1).astype(int)]
    y0, x0 = np.floor(yy).astype(int), np.floor(xx).astype(int)
    y1, x1 = np.minimum(y0 + 1, H - 1), np.minimum(x0 + 1, W - 1)
    fy, fx = (yy - y0).reshape(-1, 1, *([1] * (x.ndim - 2))), (xx - x0).reshape(1, -1, *([1] * (x.ndim - 2)))
    top = x[y0][:, x0] * (1 - fx) + x[y0][:, x1] * fx
    bottom = x[y1][:, x0] * (1 - fx) + x[y1][:, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(x.dtype)


def random_scale(rng: np.random.Generator, sample: Sample, *, min_scale: float = 0.8,
                 max_scale: float = 1.3, min_size: tuple[int, int] = (0, 0)) -> Sample:
    """Resize by a random factor (log-uniform), multiplying flow/disparity by it.

    Sparse ground truth (``valid`` not all True) is resized with nearest neighbour so
    invalid pixels never blend into valid ones.
    """
    s = float(np.exp(rng.uniform(np.log(min_scale), np.log(max_scale))))
    h, w = sample["image1"].shape[:2]
    nh, nw = max(int(round(h * s)), min_size[0]), max(int(round(w * s)), min_size[1])
    sy, sx = nh / h, nw / w
    key = _target_key(sample)
    sparse = "valid" in sample and not bool(np.all(sample["valid"]))
    out = dict(sample)
    out["image1"] = _resize(sample["image1"], nh, nw, nearest=False)
    out["image2"] = _resize(sample["image2"], nh, nw, nearest=False)
    target = _resize(sample[key], nh, nw, nearest=sparse)
    out[key] = target * (np.array([sx, sy], np.float32) if key == "flow" else np.float32(sx))
    if "valid" in sample:
        out["valid"] = _resize(sample["valid"].astype(np.uint8), nh, nw, nearest=True).astype(bool)
    return out


def color_jitter(rng: np.random.Generator, sample: Sample, *, brightness: float = 0.3,
                 contrast: float = 0.3, saturation: float = 0.3, gamma: float = 0.2,
                 asymmetric: float = 0.2) -> Sample:
    """Random brightness, contrast, saturation and gamma; with probability ``asymmetric``
    each image gets its own draw."""
    out = dict(sample)
    draws = 2 if rng.random() < asymmetric else 1
    params = [(rng.uniform(1 - brightness, 1 + brightness), rng.uniform(1 - contrast, 1 + contrast),
               rng.uniform(1 - saturation, 1 + saturation), np.exp(rng.uniform(-gamma, gamma)))
              for _ in range(draws)]
    for i, key in enumerate(("image1", "image2")):
        b, c, s, g = params[min(i, draws - 1)]
        img = sample[key] * b
        mean = img.mean()
        img = (img - mean) * c + mean
        grey = img.mean(axis=-1, keepdims=True)
        img = (img - grey) * s + grey
        out[key] = np.clip(np.clip(img, 0, 1) ** g, 0, 1).astype(np.float32)
    return out


def gaussian_noise(rng: np.random.Generator, sample: Sample, *, sigma: float = 0.02) -> Sample:
    """Add N(0, s^2) noise with s ~ U(0, sigma) to both images."""
    s = rng.uniform(0, sigma)
    out = dict(sample)
    for key in ("image1", "image2"):
        out[key] = np.clip(sample[key] + rng.normal(0, s, sample[key].shape), 0, 1).astype(np.float32)
    return out


def augment(rng: np.random.Generator, sample: Sample, crop: tuple[int, int], *,
            scale: tuple[float, float] = (0.8, 1.3), photometric: bool = True) -> Sample:
    """The default training augmentation: scale, crop, flip, colour jitter, noise."""
    h, w = sample["image1"].shape[:2]
    lo = max(scale[0], crop[0] / h, crop[1] / w)
    sample = random_scale(rng, sample, min_scale=lo, max_scale=max(lo, scale[1]), min_size=crop)
    sample = random_crop(rng, sample, crop)
    sample = random_flip(rng, sample)
    if photometric:
        sample = color_jitter(rng, sample)
        sample = gaussian_noise(rng, sample)
    return sample
