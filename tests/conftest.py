"""Shared test fixtures.

* ``shared``: path to ``../shared`` (data, fixtures); tests that need it skip cleanly
  when it is absent (a user's fresh clone has no ``../shared``).
* ``x64``: a context in which JAX computes in float64 (gradient checks).
* ``jit``: parametrises a test over eager and ``jax.jit`` execution.
* ``$FLOWLIB_HOME`` points at a temporary folder for the whole run (below).
* ``fuzz_examples(n)``: the example count of the fuzzing tests: ``n`` (derandomised, the
  CI default) or ``$FLOWLIB_FUZZ_EXAMPLES`` for a campaign, e.g.
  ``FLOWLIB_FUZZ_EXAMPLES=20000 python -m pytest -k fuzz -p no:randomly``, then with
  random seeds (``FUZZ_CAMPAIGN`` is True).

Parity tiers run at ``jax.default_matmul_precision("highest")`` (set below), since
on GPUs/TPUs JAX's default float32 convolutions use TF32/bf16 passes.

Before each test the objects that survive a garbage collection are frozen (``gc.freeze``,
below): a worker accumulates hundreds of thousands of long-lived objects (JAX's caches,
compiled functions, modules), and every full collection (PyAV's video close calls
``gc.collect()``, JAX's tracing triggers automatic ones) would otherwise walk them all.
"""

from __future__ import annotations

import atexit
import gc
import os
import shutil
import tempfile
from pathlib import Path

import jax
import pytest

jax.config.update("jax_default_matmul_precision", "highest")

# The suite never writes into the user's flowlib cache (~/.cache/flowlib, $XDG_CACHE_HOME or
# $FLOWLIB_HOME): downloads, converted weights and compiled models of this run go to a
# temporary folder, shared with the xdist workers (they inherit the environment) and removed
# when the run ends.
if "FLOWLIB_TESTS_HOME" not in os.environ:
    os.environ["FLOWLIB_TESTS_HOME"] = tempfile.mkdtemp(prefix="flowlib-tests-")
    atexit.register(shutil.rmtree, os.environ["FLOWLIB_TESTS_HOME"], ignore_errors=True)
os.environ["FLOWLIB_HOME"] = os.environ["FLOWLIB_TESTS_HOME"]

REPO = Path(__file__).resolve().parents[1]
FUZZ_CAMPAIGN = bool(int(os.environ.get("FLOWLIB_FUZZ_EXAMPLES", "0") or 0))


def fuzz_examples(default: int) -> int:
    """Examples per fuzzing test: ``default`` in normal runs, more in a campaign."""
    return int(os.environ["FLOWLIB_FUZZ_EXAMPLES"]) if FUZZ_CAMPAIGN else default
SHARED = Path(os.environ.get("FLOWLIB_SHARED", REPO.parent / "shared"))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # Only the objects made since the last freeze are walked: this collection is cheap, and
    # the later full ones skip what earlier tests left alive (a worker's full collection
    # otherwise takes ~0.4 s by mid-run).
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "data").is_dir() or not (SHARED / "fixtures").is_dir():
        pytest.skip(f"needs the shared data/fixtures folder at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def fixtures(shared: Path) -> Path:
    return shared / "fixtures"


@pytest.fixture(scope="session")
def data(shared: Path) -> Path:
    return shared / "data"


@pytest.fixture
def x64():
    """Enable float64 inside the test (restored afterwards)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(params=[False, True], ids=["eager", "jit"])
def jit(request):
    """Wrap a function with jax.jit or leave it eager."""
    return (lambda f: jax.jit(f, static_argnames=None)) if request.param else (lambda f: f)
