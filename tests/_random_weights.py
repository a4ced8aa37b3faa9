"""Random weights for a Flax module without running its ``init``.

``module.init`` runs the whole forward pass: eagerly it dispatches every operation on its
own, jitted it compiles the forward together with the parameter initialisers, both seconds
per model. Tests that need *some* weights take the variable shapes from ``jax.eval_shape``
(tracing only) and fill them with numpy: He-normal kernels, zero biases and running means,
unit scales and running variances.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict


def random_variables(module: Any, *example_inputs: Any, seed: int = 0,
                     head_gain: float = 1.0, **init_kwargs: Any) -> dict:
    """Variables of ``module`` for ``module.init(key, *example_inputs, **init_kwargs)``.

    ``head_gain`` scales kernels with a single output channel (cost heads), so that a
    random network's logits stay O(1) as a trained network's do.
    """
    shapes = jax.eval_shape(
        lambda: module.init(jax.random.PRNGKey(0), *example_inputs, **init_kwargs))
    return fill_random(shapes, seed=seed, head_gain=head_gain)


def fill_random(shapes: Any, *, seed: int = 0, head_gain: float = 1.0) -> dict:
    """Numpy values for a tree of ``ShapeDtypeStruct`` (see :func:`random_variables`)."""
    rng = np.random.default_rng(seed)
    flat = {}
    for path, s in flatten_dict(shapes).items():
        leaf = path[-1]
        if leaf == "kernel":
            fan_in = int(np.prod(s.shape[:-1]))
            gain = head_gain if s.shape[-1] == 1 else 1.0
            flat[path] = (gain * np.sqrt(2.0 / fan_in) * rng.standard_normal(s.shape)).astype(s.dtype)
        elif leaf in ("scale", "var"):
            flat[path] = np.ones(s.shape, s.dtype)
        else:  # biases, running means, learned offsets
            flat[path] = np.zeros(s.shape, s.dtype)
    return unflatten_dict(flat)
