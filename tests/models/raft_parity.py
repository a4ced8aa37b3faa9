"""RAFT parity against torchvision: the pairs, weights and golden-file layout, shared by
``make_raft_golden.py`` (writes ``raft_golden.npz`` with torchvision) and
``test_raft.py`` (reads it without torch, or regenerates and compares with torch).

Inputs: two real pairs from ``../shared/data`` cropped to 128x192 (sides divisible by 8,
the smallest torchvision accepts is 128), run as one batch of two: MPI-Sintel
``alley_1`` frames 2 -> 3 (clean pass) and FlyingChairs ``00001``. Weights: random in
torchvision's layout (``benchmarks._torchvision.random_state_dict``, seed per model).
Stored: torchvision's flow after 12 and 32 updates on every third pixel in each direction
(3 is coprime to 8, so all 64 sub-pixel positions of the x8 upsampling are covered),
float32, and the state dict's names and shapes (so no torch is needed to rebuild the
weights).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).with_name("raft_golden.npz")
MODELS = {"raft": 210421, "raft_small": 210422}  # model -> weight seed
ITERS = (12, 32)
STEP = 3
PAIRS = (
    ("sintel/training/clean/alley_1/frame_0002.png",
     "sintel/training/clean/alley_1/frame_0003.png", (150, 400)),
    ("flyingchairs/data/00001_img1.ppm", "flyingchairs/data/00001_img2.ppm", (120, 160)),
)
SIZE = (128, 192)


def load_pairs(data: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(image1, image2)``, each ``(2, 128, 192, 3)`` float32 RGB in [0, 1]."""
    from flowlib.io import read_image

    firsts, seconds = [], []
    for a, b, (top, left) in PAIRS:
        for path, out in ((a, firsts), (b, seconds)):
            image = np.asarray(read_image(data / path), np.float32)
            out.append(image[top:top + SIZE[0], left:left + SIZE[1]])
    return np.stack(firsts), np.stack(seconds)


def shapes_json(shapes) -> str:
    return json.dumps([[name, list(shape)] for name, shape in shapes])


def shapes_from_json(text: str) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(shape)) for name, shape in json.loads(text)]


def torchvision_flows(model: str, state, image1: np.ndarray, image2: np.ndarray) -> dict:
    """torchvision's flows ``{iters: (B, H, W, 2)}`` for :data:`ITERS` (one 32-update run:
    torchvision returns every update's prediction, and update k does not depend on later ones)."""
    import torch

    from benchmarks._torchvision import torchvision_raft

    net = torchvision_raft(model, state)

    def tensor(x: np.ndarray):
        return torch.from_numpy(2.0 * x - 1.0).permute(0, 3, 1, 2).contiguous()

    with torch.no_grad():
        predictions = net(tensor(image1), tensor(image2), num_flow_updates=max(ITERS))
    return {k: predictions[k - 1].permute(0, 2, 3, 1).numpy() for k in ITERS}
