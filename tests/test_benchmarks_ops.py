"""``benchmarks.ops``: its NumPy peer computes the op it is timed against, and the benchmarks
stand on their own (they import nothing from ``tests/``)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from benchmarks.ops import numpy_correlation
from tests.ops import _reference

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("max_displacement, stride", [(2, 1), (4, 2), (3, 2)])
def test_numpy_correlation_is_the_reference(max_displacement, stride):
    rng = np.random.default_rng(0)
    f1, f2 = rng.standard_normal((2, 2, 7, 9, 5))
    np.testing.assert_allclose(
        numpy_correlation(f1, f2, max_displacement=max_displacement, stride=stride),
        _reference.local_correlation(f1, f2, max_displacement=max_displacement, stride=stride,
                                     normalize="channels"),
        rtol=1e-12, atol=1e-12)


def test_benchmarks_import_nothing_from_tests():
    offenders = [
        f"{path.relative_to(REPO)}:{n}"
        for path in sorted((REPO / "benchmarks").rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.match(r"\s*(from|import)\s+tests\b", line)
    ]
    assert offenders == []
