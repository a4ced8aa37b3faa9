"""Regenerate flowlib/assets/sample.flo, the synthetic flow the demo colour-codes.

A 192x256 field: a slowly rotating and zooming background, a square translating
to the upper right, and a disc spinning the other way. Deterministic, no data files.
Run: python tools/make_sample_flow.py
"""

from pathlib import Path

import numpy as np

H, W = 192, 256


def sample_flow() -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    cx, cy = W / 2, H / 2
    # Background: rotation by 0.04 rad and 3 % zoom about the centre.
    u = -0.04 * (y - cy) + 0.03 * (x - cx)
    v = 0.04 * (x - cx) + 0.03 * (y - cy)
    square = (np.abs(x - 70) < 28) & (np.abs(y - 130) < 28)
    u[square], v[square] = 7.0, -5.0
    disc = (x - 185) ** 2 + (y - 70) ** 2 < 40**2
    u[disc] = 0.25 * (y[disc] - 70)
    v[disc] = -0.25 * (x[disc] - 185)
    return np.stack([u, v], axis=-1).astype(np.float32)


def write_flo(path: Path, flow: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.array([202021.25], "<f4").tofile(f)
        np.array([flow.shape[1], flow.shape[0]], "<i4").tofile(f)
        flow.astype("<f4").tofile(f)


if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "flowlib" / "assets" / "sample.flo"
    write_flo(out, sample_flow())
    print(f"wrote {out}")
