"""flowlib.weights: ``load_meta`` reads what ``load_weights`` reads of the metadata, without
the arrays, and fails the same way on missing, foreign and damaged files."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from flowlib.weights import load_meta, load_weights, save_weights


def test_load_meta_equals_load_weights_meta(tmp_path):
    path = tmp_path / "w.npz"
    meta = {"model": "spynet", "license": "test", "nested": {"a": [1, 2]}}
    save_weights(path, {"params": {"conv": {"kernel": np.ones((3, 3, 2, 4), np.float32)}}}, meta)
    variables, want = load_weights(path)
    assert load_meta(path) == want == meta
    assert variables["params"]["conv"]["kernel"].shape == (3, 3, 2, 4)


def test_load_meta_skips_the_arrays(tmp_path):
    # An array member that cannot be decoded: load_weights fails on it, load_meta never
    # reads it.
    path = tmp_path / "w.npz"
    save_weights(path, {"params": {"k": np.zeros(4, np.float32)}}, {"model": "cfnet"})
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data if name == "__meta__.npy" else data[:20])  # truncated
    assert load_meta(bad) == {"model": "cfnet"}
    with pytest.raises(ValueError, match="not a readable flowlib weight file"):
        load_weights(bad)


def test_load_meta_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_meta(tmp_path / "missing.npz")
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"text.npz: not a readable flowlib weight file"):
        load_meta(text)
    bare = tmp_path / "bare.npz"
    np.savez(bare, x=np.zeros(2))
    with pytest.raises(ValueError, match=r"no '__meta__' entry; was it written by flowlib\?"):
        load_meta(bare)
