"""FlyingChairs (Dosovitskiy et al., ICCV 2015): ``data/NNNNN_img1.ppm, _img2.ppm, _flow.flo``.

The official split file ``FlyingChairs_train_val.txt`` (one line per pair, 1 = train,
2 = validation) is used when present next to ``data/``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from flowlib.data._layout import require_nonempty
from flowlib.data._sample import Sample

__all__ = ["index_flyingchairs"]

_IMG1 = re.compile(r"^(\d+)_img1\.ppm$")


def index_flyingchairs(root: str | os.PathLike, *, split: str | None = None) -> list[Sample]:
    """List FlyingChairs pairs.

    Args:
      root: the FlyingChairs_release folder (holding ``data/``) or ``data/`` itself.
      split: None (all), "train" or "val" (needs ``FlyingChairs_train_val.txt``).

    Returns:
      Samples in numeric order, ``meta`` with the pair id.
    """
    root = Path(root)
    data = root / "data" if (root / "data").is_dir() else root
    if not data.is_dir():
        raise ValueError(f"FlyingChairs: expected folder {root / 'data'} (or a folder of NNNNN_img1.ppm)")
    ids = sorted((m.group(1) for p in data.iterdir() if (m := _IMG1.match(p.name))), key=int)
    if split is not None:
        if split not in ("train", "val"):
            raise ValueError(f"FlyingChairs split must be 'train' or 'val', got {split!r}")
        split_file = next((p for p in (root / "FlyingChairs_train_val.txt", data.parent / "FlyingChairs_train_val.txt") if p.is_file()), None)
        if split_file is None:
            raise ValueError(f"FlyingChairs: split {split!r} needs FlyingChairs_train_val.txt next to {data}")
        flags = split_file.read_text().split()
        want = "1" if split == "train" else "2"
        ids = [i for i in ids if int(i) - 1 < len(flags) and flags[int(i) - 1] == want]
    samples = []
    for pair in ids:
        image2, flow = data / f"{pair}_img2.ppm", data / f"{pair}_flow.flo"
        if not image2.is_file() or not flow.is_file():
            raise ValueError(f"FlyingChairs: pair {pair} is incomplete (expected {image2.name} and {flow.name})")
        samples.append(
            Sample(dataset="flyingchairs", task="flow", image1=data / f"{pair}_img1.ppm", image2=image2,
                   target=flow, meta={"id": pair, "name": pair})
        )
    return require_nonempty(samples, data, "FlyingChairs", "NNNNN_img1.ppm")
