"""NumPy ``.npy`` flow and disparity: the float32 array as :func:`flowlib.estimate` and
:func:`flowlib.estimate_disparity` return it, NaN at invalid pixels."""

from __future__ import annotations

import io as _bytes
from typing import Any

import numpy as np

from flowlib._files import atomic_write
from flowlib.io._common import (
    PathLike,
    check_image_shape,
    check_real_array,
    check_valid,
    error,
    to_float32,
)


def load_npy(path: PathLike) -> np.ndarray:
    """The array of a ``.npy`` file (no pickled objects), real-valued, ``(H, W)`` or
    ``(H, W, C)``."""
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError) as err:
        raise error(path, f"not a readable .npy array ({err})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        found = f"dtype {array.dtype}" if isinstance(array, np.ndarray) else type(array).__name__
        raise error(path, f"expected a real float or integer array, found {found}")
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 2)) or \
            min(array.shape[:2], default=0) < 1:
        raise error(path, f"expected an (H, W) disparity or (H, W, 2) flow array, got shape "
                          f"{array.shape}")
    return array


def read_npy_flow(path: PathLike, array: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(flow, valid)`` of an ``(H, W, 2)`` ``.npy`` (``array``: its array, if already
    loaded by :func:`load_npy`): valid where both channels are finite."""
    array = load_npy(path) if array is None else array
    if array.ndim != 3 or array.shape[-1] != 2:
        raise error(path, f"a flow .npy holds an (H, W, 2) array, got shape {array.shape}")
    flow = array.astype(np.float32)
    valid = np.isfinite(flow).all(axis=-1)
    flow[~valid] = 0.0
    return flow, valid


def read_npy_disparity(path: PathLike, array: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """``(disparity, valid)`` of an ``(H, W)`` ``.npy`` (``array`` as for
    :func:`read_npy_flow`): valid where finite."""
    array = load_npy(path) if array is None else array
    if array.ndim != 2:
        raise error(path, f"a disparity .npy holds an (H, W) array, got shape {array.shape}")
    disparity = array.astype(np.float32)
    valid = np.isfinite(disparity)
    disparity[~valid] = 0.0
    return disparity, valid


def write_npy(path: PathLike, name: str, array: Any, valid: Any, shape: str) -> None:
    """Write ``array`` (flow ``(H, W, 2)`` or disparity ``(H, W)``, as ``shape`` says) as
    float32 ``.npy``, NaN where ``valid`` is False, atomically."""
    array = check_real_array(path, name, array)
    flow = shape == "(H, W, 2)"
    if array.ndim != (3 if flow else 2) or (flow and array.shape[-1] != 2):
        raise error(path, f"{name} must have shape {shape}, got {array.shape}")
    check_image_shape(path, name, array, shape)
    valid = check_valid(path, valid, array.shape[:2])
    mask = valid[..., None] if flow else valid
    out = np.where(mask, to_float32(path, name, array, mask), np.float32(np.nan))
    buffer = _bytes.BytesIO()
    np.save(buffer, out.astype(np.float32), allow_pickle=False)
    atomic_write(path, buffer.getvalue())
