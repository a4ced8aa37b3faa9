"""Naive NumPy (float64) references for the correlation and cost-volume tests.

Written straight from the correlation formulas of FlowNet / CFNet with explicit bounds checks
instead of padding, so they share no code or trick with ``flowlib.ops``. Also used by
``benchmarks/ops.py`` as the "naive" baseline.
"""

from __future__ import annotations

import numpy as np


def local_correlation(f1, f2, *, max_displacement, stride=1, kernel_size=1, normalize):
    """FlowNet correlation, NHWC, dy-major channels, zero outside the image."""
    f1 = np.asarray(f1, np.float64)
    f2 = np.asarray(f2, np.float64)
    batch, height, width, channels = f1.shape
    radius = max_displacement // stride
    r = kernel_size // 2
    ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    out = np.zeros((batch, height, width, (2 * radius + 1) ** 2))
    k = 0
    for tj in range(-radius, radius + 1):
        for ti in range(-radius, radius + 1):
            dy, dx = tj * stride, ti * stride
            for j in range(-r, r + 1):
                for i in range(-r, r + 1):
                    y1, x1 = ys + j, xs + i
                    y2, x2 = y1 + dy, x1 + dx
                    valid = (
                        (y1 >= 0)
                        & (y1 < height)
                        & (x1 >= 0)
                        & (x1 < width)
                        & (y2 >= 0)
                        & (y2 < height)
                        & (x2 >= 0)
                        & (x2 < width)
                    )
                    a = f1[:, np.clip(y1, 0, height - 1), np.clip(x1, 0, width - 1)]
                    b = f2[:, np.clip(y2, 0, height - 1), np.clip(x2, 0, width - 1)]
                    out[..., k] += np.where(valid, np.sum(a * b, axis=-1), 0.0)
            k += 1
    count = kernel_size * kernel_size * channels
    scale = {"channels": 1.0 / count, "sqrt_channels": 1.0 / np.sqrt(count), "none": 1.0}[normalize]
    return out * scale


def groupwise_cost_volume(left, right, *, max_disparity, groups):
    left = np.asarray(left, np.float64)
    right = np.asarray(right, np.float64)
    batch, height, width, channels = left.shape
    per_group = channels // groups
    out = np.zeros((batch, max_disparity, height, width, groups))
    for d in range(max_disparity):
        for x in range(d, width):
            prod = left[:, :, x] * right[:, :, x - d]  # (B, H, C)
            out[:, d, :, x] = prod.reshape(batch, height, groups, per_group).mean(-1)
    return out


def concat_cost_volume(left, right, *, max_disparity):
    left = np.asarray(left, np.float64)
    right = np.asarray(right, np.float64)
    batch, height, width, channels = left.shape
    out = np.zeros((batch, max_disparity, height, width, 2 * channels))
    for d in range(max_disparity):
        for x in range(d, width):
            out[:, d, :, x, :channels] = left[:, :, x]
            out[:, d, :, x, channels:] = right[:, :, x - d]
    return out


def gather_by_integer_disparity(right, disparities):
    right = np.asarray(right, np.float64)
    disparities = np.trunc(np.asarray(disparities, np.float64)).astype(np.int64)
    batch, height, width, channels = right.shape
    count = disparities.shape[1]
    out = np.zeros((batch, count, height, width, channels))
    for b in range(batch):
        for k in range(count):
            for y in range(height):
                for x in range(width):
                    column = x - disparities[b, k, y, x]
                    if 0 <= column <= width - 1:
                        out[b, k, y, x] = right[b, y, column]
    return out
