"""Flow and disparity files by extension: ``.flo``, ``.pfm``, ``.png`` (KITTI)."""

from __future__ import annotations

from typing import Any

import numpy as np

from flowlib.io._common import (
    PathLike,
    check_image_shape,
    check_real_array,
    check_valid,
    error,
    extension,
    to_float32,
)
from flowlib.io._flo import read_flo, write_flo
from flowlib.io._kitti import (
    read_kitti_disparity,
    read_kitti_flow,
    write_kitti_disparity,
    write_kitti_flow,
)
from flowlib.io._pfm import read_pfm, write_pfm


def _unknown_extension(path: PathLike, what: str, supported: tuple[str, ...]) -> ValueError:
    return error(path, f"unknown {what} file extension {extension(path)!r}; supported: "
                        f"{', '.join(supported)}")


def read_flow(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read optical flow by extension: ``.flo`` (Middlebury), ``.pfm``, ``.png`` (KITTI).

    A ``.pfm`` must be 3-channel (FlyingThings3D stores (u, v, 0)); its first two channels are
    the flow, valid wherever both are finite.

    Args:
      path: flow file.

    Returns:
      ``(flow, valid)``: float32 ``(H, W, 2)`` (0 at invalid pixels) and bool ``(H, W)``.

    Raises:
      ValueError: unknown extension or unreadable file.
    """
    ext = extension(path)
    if ext == ".flo":
        return read_flo(path)
    if ext == ".png":
        return read_kitti_flow(path)
    if ext == ".pfm":
        array = read_pfm(path)
        if array.ndim != 3:
            raise error(path, "a flow PFM must be 3-channel ('PF': u, v, 0), found 1-channel 'Pf'")
        flow = np.ascontiguousarray(array[..., :2])
        valid = np.isfinite(flow).all(axis=-1)
        flow[~valid] = 0.0
        return flow, valid
    raise _unknown_extension(path, "flow", (".flo", ".pfm", ".png"))


def write_flow(path: PathLike, flow: Any, *, valid: Any = None) -> None:
    """Write optical flow by extension: ``.flo``, ``.png`` (KITTI), ``.pfm``.

    ``.pfm`` stores (u, v, 0) as 3-channel float32 with invalid pixels as +inf (they read back
    invalid through :func:`read_flow`).

    Args:
      path: destination file (its folder must exist).
      flow: ``(H, W, 2)`` real array, finite on valid pixels.
      valid: optional bool ``(H, W)``; ``None`` = all valid.

    Returns:
      None.

    Raises:
      ValueError: unknown extension, or invalid array (see the per-format writers).
    """
    ext = extension(path)
    if ext == ".flo":
        write_flo(path, flow, valid=valid)
    elif ext == ".png":
        write_kitti_flow(path, flow, valid=valid)
    elif ext == ".pfm":
        flow = check_real_array(path, "flow", flow)
        if flow.ndim != 3 or flow.shape[-1] != 2:
            raise error(path, f"flow must have shape (H, W, 2), got {flow.shape}")
        check_image_shape(path, "flow", flow, "(H, W, 2)")
        valid = check_valid(path, valid, flow.shape[:2])
        flow32 = to_float32(path, "flow", flow, valid[..., None])
        out = np.zeros((*flow.shape[:2], 3), np.float32)
        out[..., :2] = np.where(valid[..., None], flow32, np.float32(np.inf))
        write_pfm(path, out)
    else:
        raise _unknown_extension(path, "flow", (".flo", ".pfm", ".png"))


def read_disparity(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a disparity map by extension: ``.png`` (KITTI 16-bit) or ``.pfm``.

    A ``.pfm`` must be 1-channel; non-finite values (Middlebury's +inf) are invalid. Other
    values, negative ones included, are returned as stored (FlyingThings3D's are positive).
    Middlebury 2001 8-bit PNGs are not KITTI PNGs: read them with :func:`read_grey` and
    divide by their scale.

    Args:
      path: disparity file.

    Returns:
      ``(disparity, valid)``: float32 ``(H, W)`` (0 at invalid pixels) and bool ``(H, W)``.

    Raises:
      ValueError: unknown extension or unreadable file.
    """
    ext = extension(path)
    if ext == ".png":
        return read_kitti_disparity(path)
    if ext == ".pfm":
        disparity = read_pfm(path)
        if disparity.ndim != 2:
            raise error(path, "a disparity PFM must be 1-channel ('Pf'), found 3-channel 'PF'")
        valid = np.isfinite(disparity)
        disparity[~valid] = 0.0
        return disparity, valid
    raise _unknown_extension(path, "disparity", (".pfm", ".png"))


def write_disparity(path: PathLike, disparity: Any, *, valid: Any = None) -> None:
    """Write a disparity map by extension: ``.png`` (KITTI, see :func:`write_kitti_disparity`)
    or ``.pfm`` (1-channel float32, invalid pixels stored as +inf like Middlebury's GT).

    Args:
      path: destination file (its folder must exist).
      disparity: ``(H, W)`` real array, finite on valid pixels.
      valid: optional bool ``(H, W)``; ``None`` = all valid.

    Returns:
      None.

    Raises:
      ValueError: unknown extension, or invalid array.
    """
    ext = extension(path)
    if ext == ".png":
        write_kitti_disparity(path, disparity, valid=valid)
    elif ext == ".pfm":
        disparity = check_real_array(path, "disparity", disparity)
        if disparity.ndim != 2:
            raise error(path, f"disparity must have shape (H, W), got {disparity.shape}")
        check_image_shape(path, "disparity", disparity, "(H, W)")
        valid = check_valid(path, valid, disparity.shape)
        disp32 = to_float32(path, "disparity", disparity, valid)
        write_pfm(path, np.where(valid, disp32, np.float32(np.inf)))
    else:
        raise _unknown_extension(path, "disparity", (".pfm", ".png"))
