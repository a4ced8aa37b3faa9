"""Shared by the format modules: error messages, array checks, the path type."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

PathLike = str | os.PathLike




def error(path: PathLike, message: str) -> ValueError:
    return ValueError(f"{os.fspath(path)}: {message}")


def describe(e: Exception) -> str:
    text = str(e)  # pypng's messages already start with the class name
    return text if text.startswith(type(e).__name__) else f"{type(e).__name__}: {text}"


def read_bytes(path: PathLike) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def extension(path: PathLike) -> str:
    return Path(path).suffix.lower()


def check_real_array(path: PathLike, name: str, array: Any) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.kind not in "fiu":
        raise error(path, f"{name} must be a real float or integer array, got dtype {array.dtype}")
    return array


def check_image_shape(path: PathLike, name: str, array: np.ndarray, shape: str) -> None:
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise error(path, f"{name} must be non-empty {shape}, got shape {array.shape}")


def check_valid(path: PathLike, valid: Any, hw: tuple[int, int]) -> np.ndarray:
    if valid is None:
        return np.ones(hw, bool)
    valid = np.asarray(valid)
    if valid.dtype != np.bool_:
        raise error(path, f"valid must be a bool (H, W) mask, got dtype {valid.dtype}")
    if valid.shape != hw:
        raise error(path, f"valid must have shape (H, W) = {hw}, got {valid.shape}")
    return valid


def to_float32(path: PathLike, name: str, values: np.ndarray, where: np.ndarray, *,
                scope: str = " on valid pixels",
                hint: str = "; mark such pixels with valid=False") -> np.ndarray:
    """Cast to float32; values at ``where`` must be finite before and after the cast."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = values.astype(np.float32)
    bad = ~np.isfinite(out) & where
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        overflow = np.isfinite(values[index])
        why = f"{values[index]} exceeds the float32 range" if overflow else f"{values[index]}"
        raise error(
            path,
            f"{name} must be finite in float32{scope}: {int(bad.sum())} value(s) are not, first "
            f"at index {index} ({why}){hint}",
        )
    return out
