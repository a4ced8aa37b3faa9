"""Tests for flowlib.ops.pad: pad_to_multiple, unpad, Padding."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowlib import ops

MODES = ["center", "bottom_right", "top_right", "kitti"]


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    multiple=st.one_of(st.integers(1, 16), st.tuples(st.integers(1, 16), st.integers(1, 16))),
    mode=st.sampled_from(MODES),
    value_mode=st.sampled_from(["constant", "edge"]),
    channels=st.sampled_from([None, 1, 3]),
)
def test_unpad_is_exact_inverse(height, width, multiple, mode, value_mode, channels):
    shape = (2, height, width) + (() if channels is None else (channels,))
    x = np.random.default_rng(height * 41 + width).standard_normal(shape).astype(np.float32)
    padded, padding = ops.pad_to_multiple(jnp.asarray(x), multiple, mode=mode,
                                          value_mode=value_mode)
    m_h, m_w = (multiple, multiple) if isinstance(multiple, int) else multiple
    assert padded.shape[1] % m_h == 0 and padded.shape[2] % m_w == 0
    assert padded.shape[1] - height < m_h and padded.shape[2] - width < m_w
    assert padded.shape[3:] == shape[3:]
    assert all(isinstance(p, int) and p >= 0 for p in padding)
    top, bottom, left, right = padding
    assert padded.shape[1] == top + height + bottom and padded.shape[2] == left + width + right
    np.testing.assert_array_equal(np.asarray(padded[:, top : top + height, left : left + width]), x)
    np.testing.assert_array_equal(np.asarray(ops.unpad(padded, padding)), x)


@pytest.mark.parametrize(
    "height,width,multiple,mode,expected",
    [
        # pad_h = 3, pad_w = 1
        (5, 7, 4, "center", (1, 2, 0, 1)),
        (5, 7, 4, "bottom_right", (0, 3, 0, 1)),
        (5, 7, 4, "top_right", (3, 0, 0, 1)),
        (5, 7, 4, "kitti", (0, 3, 0, 1)),
        # pad_h = 2, pad_w = 2
        (6, 6, 8, "center", (1, 1, 1, 1)),
        (6, 6, 8, "kitti", (0, 2, 1, 1)),
        (6, 6, 8, "top_right", (2, 0, 0, 2)),
        # Sintel 436 x 1024 with RAFT's multiple of 8: two rows top and bottom.
        (436, 1024, 8, "center", (2, 2, 0, 0)),
        # KITTI 375 x 1242 with multiple 8 (RAFT kitti mode): 1 row below, 3 + 3 columns.
        (375, 1242, 8, "kitti", (0, 1, 3, 3)),
        # CFNet KITTI test: 375 x 1242 -> 384 x 1248, rows on top, columns right.
        (375, 1242, 32, "top_right", (9, 0, 0, 6)),
        # Already divisible: nothing.
        (64, 96, 32, "center", (0, 0, 0, 0)),
    ],
)
def test_padding_placement(height, width, multiple, mode, expected):
    padded, padding = ops.pad_to_multiple(jnp.zeros((1, height, width, 1)), multiple, mode=mode)
    assert padding == ops.Padding(*expected)
    assert padding._fields == ("top", "bottom", "left", "right")
    assert padded.shape == (1, height + expected[0] + expected[1],
                            width + expected[2] + expected[3], 1)


def test_value_modes():
    x = jnp.asarray([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2)
    zeros, padding = ops.pad_to_multiple(x, 4, mode="center")
    assert padding == ops.Padding(1, 1, 1, 1)
    expected = np.zeros((4, 4))
    expected[1:3, 1:3] = [[1, 2], [3, 4]]
    np.testing.assert_array_equal(np.asarray(zeros[0]), expected)
    edge, _ = ops.pad_to_multiple(x, 4, mode="center", value_mode="edge")
    np.testing.assert_array_equal(
        np.asarray(edge[0]),
        [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]],
    )


def test_per_axis_multiple():
    padded, padding = ops.pad_to_multiple(jnp.zeros((1, 5, 5, 2)), (2, 8), mode="bottom_right")
    assert padding == ops.Padding(0, 1, 0, 3)
    assert padded.shape == (1, 6, 8, 2)


def test_spynet_replicate_pad_fixture(fixtures):
    # SpyNet: an upsampled flow one row / column short is replicate-padded at the
    # bottom / right, F.pad(x, [0, 1, 0, 1], mode="replicate").
    data = np.load(fixtures / "primitives" / "resize_and_convT.npz")
    tol = json.loads((fixtures / "tolerances.json").read_text())["files"][
        "primitives/resize_and_convT.npz"]["spynet_replicate_pad"]
    x = jnp.asarray(np.moveaxis(data["x_1x2x3x8"], 1, -1))
    padded, padding = ops.pad_to_multiple(x, (4, 9), mode="bottom_right", value_mode="edge")
    assert padding == ops.Padding(0, 1, 0, 1)
    expected = np.moveaxis(data["spynet_replicate_pad"], 1, -1)
    assert np.abs(np.asarray(padded, np.float64) - expected).max() <= tol
    # The same with plain jnp.pad, as the model does it.
    direct = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)), mode="edge")
    assert np.abs(np.asarray(direct, np.float64) - expected).max() <= tol


def test_unpad_of_a_model_output_and_under_jit(jit):
    # Pad an image, produce a per-pixel output on the padded grid, crop it back.
    image = jnp.asarray(np.random.default_rng(40).standard_normal((2, 13, 21, 3)), jnp.float32)

    def roundtrip(x):
        padded, padding = ops.pad_to_multiple(x, 8, mode="kitti", value_mode="edge")
        disparity = padded.sum(axis=-1)  # (B, H, W) output on the padded grid
        return ops.unpad(padded, padding), ops.unpad(disparity, padding)

    restored, disparity = jit(roundtrip)(image)
    np.testing.assert_array_equal(np.asarray(restored), np.asarray(image))
    np.testing.assert_allclose(np.asarray(disparity), np.asarray(image.sum(axis=-1)), rtol=1e-6)


def test_dtype_preserved():
    for dtype in (jnp.float32, jnp.bfloat16, jnp.int32, jnp.uint8):
        padded, padding = ops.pad_to_multiple(jnp.ones((1, 3, 5), dtype), 4, mode="center")
        assert padded.dtype == dtype
        assert ops.unpad(padded, padding).dtype == dtype


def test_bad_inputs():
    x = jnp.zeros((1, 5, 7, 3))
    with pytest.raises(ValueError, match="multiple must be > 0"):
        ops.pad_to_multiple(x, 0, mode="center")
    with pytest.raises(ValueError, match="multiple must be > 0"):
        ops.pad_to_multiple(x, (8, -1), mode="center")
    with pytest.raises(ValueError, match=r"multiple must be an int or 2 ints \(height, width\)"):
        ops.pad_to_multiple(x, (8, 8, 8), mode="center")
    with pytest.raises(ValueError, match="multiple must be an int"):
        ops.pad_to_multiple(x, 8.0, mode="center")
    with pytest.raises(ValueError, match="mode must be one of"):
        ops.pad_to_multiple(x, 8, mode="symmetric")
    with pytest.raises(ValueError, match="value_mode must be one of"):
        ops.pad_to_multiple(x, 8, mode="center", value_mode="reflect")
    with pytest.raises(TypeError):
        ops.pad_to_multiple(x, 8)  # mode is required
    with pytest.raises(ValueError, match=r"\(B, H, W, C\) or \(B, H, W\)"):
        ops.pad_to_multiple(jnp.zeros((5, 7)), 8, mode="center")
    with pytest.raises(ValueError, match=r"\(B, H, W, C\) or \(B, H, W\)"):
        ops.unpad(jnp.zeros((1, 1, 5, 7, 3)), ops.Padding(0, 0, 0, 0))
    with pytest.raises(ValueError, match="removes more than"):
        ops.unpad(x, ops.Padding(3, 3, 0, 0))
    with pytest.raises(ValueError, match="non-negative"):
        ops.unpad(x, ops.Padding(-1, 0, 0, 0))


def test_padding_is_static_python_ints():
    # Padding must be usable for slicing inside jit, so it never holds tracers.
    captured = []

    def pad(x):
        padded, padding = ops.pad_to_multiple(x, 8, mode="center")
        captured.append(padding)
        return padded

    out = jax.eval_shape(pad, jax.ShapeDtypeStruct((1, 10, 10, 1), jnp.float32))
    assert out.shape == (1, 16, 16, 1)
    assert captured == [ops.Padding(3, 3, 3, 3)]
    assert all(type(p) is int for p in captured[0])
