"""Regenerate tests/golden/primitives.npz: small inputs and float64 NumPy reference outputs.

    PYTHONPATH=$PWD python tests/golden/make_golden.py

Inputs come from ``numpy.random.default_rng(SEED)``; every output is computed in float64 by
the loop references in ``tests/ops/`` (``_reference.py``, ``naive_bilinear_sample``,
``naive_resize``), which share no code with ``flowlib.ops``, then stored as float32. See
README.md in this folder for why these are not copies of ``../shared/fixtures/primitives``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from tests.ops import _reference as ref
from tests.ops.test_resize import naive_resize
from tests.ops.test_sample import naive_bilinear_sample

SEED = 14_2026
OUT = Path(__file__).with_name("primitives.npz")


def _avg_pool(x: np.ndarray, window: int, stride: int) -> np.ndarray:
    b, h, w, c = x.shape
    oh, ow = (h - window) // stride + 1, (w - window) // stride + 1
    out = np.zeros((b, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            out[:, i, j] = x[:, i * stride:i * stride + window, j * stride:j * stride + window].mean((1, 2))
    return out


def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    a: dict[str, np.ndarray] = {}

    # backward_warp(align_corners=True): bilinear sample of image at (x + u, y + v).
    a["warp_image"], a["warp_flow"] = f(1, 6, 8, 3), (2.0 * f(1, 6, 8, 2)).astype(np.float32)
    a["warp_flow"][0, 0, 0] = (0.0, 0.0)  # an exact integer position
    a["warp_flow"][0, 2, 3] = (-4.0, 1.5)  # lands on the left edge
    ys, xs = np.meshgrid(np.arange(6), np.arange(8), indexing="ij")
    coords = np.stack([xs + a["warp_flow"][..., 0].astype(np.float64),
                       ys + a["warp_flow"][..., 1].astype(np.float64)], -1)
    for padding in ("zeros", "border"):
        a[f"warp_{padding}"] = naive_bilinear_sample(a["warp_image"].astype(np.float64), coords, padding)

    # resize_bilinear to a larger and a smaller size, both corner conventions.
    a["resize_input"] = f(1, 5, 7, 2)
    for size in ((9, 12), (3, 4)):
        for corners in (True, False):
            key = f"resize_{size[0]}x{size[1]}_{'ac' if corners else 'noac'}"
            a[key] = naive_resize(a["resize_input"].astype(np.float64), size, corners)

    # avg_pool 2x2 stride 2 (SpyNet's pyramid) on an odd size (floor mode).
    a["pool_input"] = f(1, 7, 9, 2)
    a["pool_2x2"] = _avg_pool(a["pool_input"].astype(np.float64), 2, 2)

    # FlowNetC-style local correlation (stride 2, mean over channels).
    a["corr_f1"], a["corr_f2"] = f(1, 6, 7, 4), f(1, 6, 7, 4)
    a["corr_d4_s2"] = ref.local_correlation(a["corr_f1"], a["corr_f2"], max_displacement=4,
                                            stride=2, normalize="channels")

    # CFNet volumes: group-wise and concatenation over 5 disparities, integer gather.
    a["cv_left"], a["cv_right"] = f(1, 3, 8, 8), f(1, 3, 8, 8)
    a["cv_gwc_d5_g4"] = ref.groupwise_cost_volume(a["cv_left"], a["cv_right"], max_disparity=5,
                                                  groups=4)
    a["cv_concat_d5"] = ref.concat_cost_volume(a["cv_left"], a["cv_right"], max_disparity=5)
    a["cv_disparities"] = rng.integers(-2, 10, (1, 3, 3, 8)).astype(np.float32)
    a["cv_gather"] = ref.gather_by_integer_disparity(a["cv_right"], a["cv_disparities"])

    # Soft-argmin over 6 hypotheses.
    logits = f(1, 6, 3, 4).astype(np.float64)
    prob = np.exp(logits - logits.max(1, keepdims=True))
    a["regression_prob"] = (prob / prob.sum(1, keepdims=True)).astype(np.float32)
    a["regression_out"] = np.einsum("bdhw,d->bhw", a["regression_prob"].astype(np.float64),
                                    np.arange(6, dtype=np.float64))
    assert all(np.isfinite(v).all() for v in a.values())
    return {k: np.asarray(v, np.float32) for k, v in a.items()}


def main() -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays())
    OUT.write_bytes(buf.getvalue())
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
