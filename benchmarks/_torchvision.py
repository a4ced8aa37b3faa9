"""torchvision's RAFT on CPU torch, and random weights in its layout (tests and benchmarks only).

torchvision's wheel here is a CUDA build; importing it on a CPU-only torch runs
``torchvision/_meta_registrations.py``, which registers meta kernels for CUDA-only ops and
fails. :func:`raft_module` puts an empty module in its place in ``sys.modules`` before the
first torchvision import (the meta kernels are not needed to run RAFT eagerly on CPU).

:func:`random_state_dict` fills a list of ``(name, shape)`` with deterministic numpy
values of sensible scale, so flowlib and torchvision can be run on the same random weights
without torch on the flowlib side. flowlib never imports this module.
"""

from __future__ import annotations

import sys
import types
from typing import Any, Iterable

import numpy as np

__all__ = ["raft_module", "torchvision_raft", "random_state_dict", "state_shapes"]


def raft_module() -> Any:
    """``torchvision.models.optical_flow.raft``, importable on CPU torch."""
    name = "torchvision._meta_registrations"
    if "torchvision" not in sys.modules and name not in sys.modules:
        sys.modules[name] = types.ModuleType(name)
    import torchvision.models.optical_flow.raft as raft

    return raft


def torchvision_raft(model: str, state: dict[str, np.ndarray] | None = None) -> Any:
    """torchvision ``raft_large`` (``model="raft"``) or ``raft_small``, eval mode, with
    ``state`` (numpy arrays by name) loaded when given."""
    import torch

    raft = raft_module()
    net = {"raft": raft.raft_large, "raft_small": raft.raft_small}[model](weights=None)
    if state is not None:
        net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    return net.eval()


def state_shapes(model: str) -> list[tuple[str, tuple[int, ...]]]:
    """``(name, shape)`` of every tensor of torchvision's state dict for ``model``."""
    return [(k, tuple(v.shape)) for k, v in torchvision_raft(model).state_dict().items()]


def random_state_dict(shapes: Iterable[tuple[str, tuple[int, ...]]], seed: int) -> dict[str, np.ndarray]:
    """Deterministic random weights (numpy ``default_rng(seed)``) for the given tensors,
    drawn as torchvision initialises RAFT, with non-trivial norm parameters.

    Encoder convolutions: normal, std ``sqrt(2 / fan_out)`` (``kaiming_normal_(mode=
    "fan_out")``); other convolutions: uniform in ``+-1 / sqrt(fan_in)`` (PyTorch's
    default); biases uniform in ``+-1 / sqrt(fan_in)``; BatchNorm scale in [0.8, 1.2],
    shift in [-0.1, 0.1], running mean normal * 0.1, running variance in [0.5, 1.5];
    ``num_batches_tracked`` 0 (int64). (Weights of larger scale make the 32-update
    recurrence chaotic: torchvision's own float32 and float64 flows then differ by
    0.03 px, so no float32 port could be compared within 0.01 px.)
    """
    rng = np.random.default_rng(seed)
    shapes = [(name, tuple(int(s) for s in shape)) for name, shape in shapes]
    fan_in = {name.rsplit(".", 1)[0]: int(np.prod(shape[1:]))
              for name, shape in shapes if len(shape) == 4}
    out: dict[str, np.ndarray] = {}
    for name, shape in shapes:
        module = name.rsplit(".", 1)[0]
        if name.endswith("num_batches_tracked"):
            out[name] = np.zeros(shape, np.int64)
        elif name.endswith("running_mean"):
            out[name] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
        elif name.endswith("running_var"):
            out[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif len(shape) == 4 and name.endswith("weight"):
            if name.startswith(("feature_encoder.", "context_encoder.")):
                fan_out = shape[0] * int(np.prod(shape[2:]))
                value = rng.standard_normal(shape) * np.sqrt(2.0 / fan_out)
            else:
                bound = 1.0 / np.sqrt(fan_in[module])
                value = rng.uniform(-bound, bound, shape)
            out[name] = value.astype(np.float32)
        elif module in fan_in:  # conv bias
            bound = 1.0 / np.sqrt(fan_in[module])
            out[name] = rng.uniform(-bound, bound, shape).astype(np.float32)
        elif name.endswith("weight"):  # norm scale
            out[name] = rng.uniform(0.8, 1.2, shape).astype(np.float32)
        else:  # norm shift
            out[name] = rng.uniform(-0.1, 0.1, shape).astype(np.float32)
    return out
