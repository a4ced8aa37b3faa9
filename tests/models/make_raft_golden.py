"""Write ``tests/models/raft_golden.npz`` from torchvision's RAFT (needs torch, torchvision
and ``../shared/data``): ``PYTHONPATH=$PWD python tests/models/make_raft_golden.py``.

See :mod:`tests.models.raft_parity` for what is stored. ``test_raft.py``'s torch-marked
test regenerates the same arrays live and compares them with the file.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks._torchvision import random_state_dict, state_shapes  # noqa: E402
from tests.models import raft_parity  # noqa: E402


def golden_arrays(data: Path) -> dict[str, np.ndarray]:
    image1, image2 = raft_parity.load_pairs(data)
    out: dict[str, np.ndarray] = {}
    for model, seed in raft_parity.MODELS.items():
        shapes = state_shapes(model)
        flows = raft_parity.torchvision_flows(model, random_state_dict(shapes, seed), image1, image2)
        out[f"{model}/shapes"] = np.asarray(raft_parity.shapes_json(shapes))
        for iters, flow in flows.items():
            step = raft_parity.STEP
            out[f"{model}/flow{iters}"] = np.ascontiguousarray(flow[:, ::step, ::step], np.float32)
    return out


def main() -> None:
    data = Path(os.environ.get("FLOWLIB_SHARED", REPO.parent / "shared")) / "data"
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **golden_arrays(data))
    raft_parity.GOLDEN.write_bytes(buffer.getvalue())
    print(f"wrote {raft_parity.GOLDEN} ({len(buffer.getvalue())} bytes)")


if __name__ == "__main__":
    main()
