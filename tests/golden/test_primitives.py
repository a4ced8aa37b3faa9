"""flowlib.ops against the checked-in golden arrays (tests/golden/primitives.npz).

These run in a fresh clone (no ``../shared``); the parity with the official code's outputs
stays in tests/ops (fixtures behind the ``shared`` marker). Tolerance: float32 ops against
float64 references on O(1) inputs, sums of at most 8 products: 2e-6 absolute covers the
float32 rounding with margin, far below any convention error (>= 1e-2 here).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowlib import ops

GOLDEN = Path(__file__).with_name("primitives.npz")
ATOL = 2e-6


@pytest.fixture(scope="module")
def g():
    with np.load(GOLDEN) as data:
        return {k: data[k] for k in data.files}



CASES = {
    "warp_zeros": lambda g: ops.backward_warp(g["warp_image"], g["warp_flow"], padding="zeros",
                                              align_corners=True),
    "warp_border": lambda g: ops.backward_warp(g["warp_image"], g["warp_flow"], padding="border",
                                               align_corners=True),
    "resize_9x12_ac": lambda g: ops.resize_bilinear(g["resize_input"], (9, 12), align_corners=True),
    "resize_9x12_noac": lambda g: ops.resize_bilinear(g["resize_input"], (9, 12), align_corners=False),
    "resize_3x4_ac": lambda g: ops.resize_bilinear(g["resize_input"], (3, 4), align_corners=True),
    "resize_3x4_noac": lambda g: ops.resize_bilinear(g["resize_input"], (3, 4), align_corners=False),
    "pool_2x2": lambda g: ops.avg_pool(g["pool_input"], 2, count_include_pad=True),
    "corr_d4_s2": lambda g: ops.local_correlation(g["corr_f1"], g["corr_f2"], max_displacement=4,
                                                  stride=2, normalize="channels"),
    "cv_gwc_d5_g4": lambda g: ops.groupwise_cost_volume(g["cv_left"], g["cv_right"], max_disparity=5,
                                                        groups=4),
    "cv_concat_d5": lambda g: ops.concat_cost_volume(g["cv_left"], g["cv_right"], max_disparity=5),
    "cv_gather": lambda g: ops.gather_by_integer_disparity(g["cv_right"], g["cv_disparities"]),
    "regression_out": lambda g: ops.disparity_regression(g["regression_prob"], jnp.arange(6.0)),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "jit"])
def test_ops_match_the_golden_arrays(g, name, compiled):
    fn = CASES[name]
    got = jax.jit(fn)(g) if compiled else fn(g)
    assert got.shape == g[name].shape and got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), g[name], rtol=0, atol=ATOL, err_msg=name)


def test_every_golden_output_is_checked(g):
    inputs = {"warp_image", "warp_flow", "resize_input", "pool_input", "corr_f1", "corr_f2",
              "cv_left", "cv_right", "cv_disparities", "regression_prob"}
    assert set(g) == inputs | set(CASES)


def test_golden_file_is_what_the_generator_writes(g):
    """The arrays are reproducible from the generator and the NumPy references (no drift)."""
    from tests.golden.make_golden import arrays

    fresh = arrays()
    assert fresh.keys() == g.keys()
    for k in g:
        np.testing.assert_array_equal(fresh[k], g[k], err_msg=k)
