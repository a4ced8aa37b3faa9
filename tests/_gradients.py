"""Gradient checks on the compiled function.

``jax.test_util.check_grads`` compares JVPs and VJPs with finite differences. Run eagerly,
every primitive of the function, its JVP and its transpose is dispatched (and compiled) on
its own at each step; wrapped in ``jax.jit`` each of them compiles once as a whole, which
is what training runs and several times faster on these small inputs.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
from jax.test_util import check_grads as _check_grads


def check_grads(f: Callable[..., Any], args: tuple, **kwargs: Any) -> None:
    """``jax.test_util.check_grads(jax.jit(f), args, **kwargs)``."""
    _check_grads(jax.jit(f), args, **kwargs)
