"""Flow and disparity files by extension: ``.flo``, ``.pfm``, ``.png`` (KITTI), ``.npy``;
and either one, told apart by the file's content (:func:`read_map`)."""

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
from flowlib.io._images import read_image_raw
from flowlib.io._kitti import (
    read_kitti_disparity,
    read_kitti_flow,
    write_kitti_disparity,
    write_kitti_flow,
)
from flowlib.io._npy import load_npy, read_npy_disparity, read_npy_flow, write_npy
from flowlib.io._pfm import read_pfm, write_pfm

FLOW_EXTENSIONS = (".flo", ".pfm", ".png", ".npy")
DISPARITY_EXTENSIONS = (".pfm", ".png", ".npy")


def _unknown_extension(path: PathLike, what: str, supported: tuple[str, ...]) -> ValueError:
    return error(path, f"unknown {what} file extension {extension(path)!r}; supported: "
                        f"{', '.join(supported)}")


def read_flow(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read optical flow by extension: ``.flo`` (Middlebury), ``.pfm``, ``.png`` (KITTI),
    ``.npy``.

    A ``.pfm`` must be 3-channel (FlyingThings3D stores (u, v, 0)); its first two channels are
    the flow, valid wherever both are finite. A ``.npy`` holds an ``(H, W, 2)`` real array,
    valid wherever both channels are finite.

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
    if ext == ".npy":
        return read_npy_flow(path)
    raise _unknown_extension(path, "flow", FLOW_EXTENSIONS)


def write_flow(path: PathLike, flow: Any, *, valid: Any = None) -> None:
    """Write optical flow by extension: ``.flo``, ``.png`` (KITTI), ``.pfm``, ``.npy``.

    ``.pfm`` stores (u, v, 0) as 3-channel float32 with invalid pixels as +inf, ``.npy`` the
    float32 ``(H, W, 2)`` array with invalid pixels as NaN (both read back invalid through
    :func:`read_flow`).

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
    elif ext == ".npy":
        write_npy(path, "flow", flow, valid, "(H, W, 2)")
    else:
        raise _unknown_extension(path, "flow", FLOW_EXTENSIONS)


def read_disparity(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a disparity map by extension: ``.png`` (KITTI 16-bit), ``.pfm`` or ``.npy``.

    A ``.pfm`` must be 1-channel and a ``.npy`` ``(H, W)``; non-finite values (Middlebury's
    +inf) are invalid. Other
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
    if ext == ".npy":
        return read_npy_disparity(path)
    raise _unknown_extension(path, "disparity", DISPARITY_EXTENSIONS)


def write_disparity(path: PathLike, disparity: Any, *, valid: Any = None) -> None:
    """Write a disparity map by extension: ``.png`` (KITTI, see :func:`write_kitti_disparity`),
    ``.pfm`` (1-channel float32, invalid pixels stored as +inf like Middlebury's GT) or ``.npy``
    (the float32 ``(H, W)`` array, invalid pixels stored as NaN).

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
    elif ext == ".npy":
        write_npy(path, "disparity", disparity, valid, "(H, W)")
    else:
        raise _unknown_extension(path, "disparity", DISPARITY_EXTENSIONS)


def read_map(path: PathLike, *, kind: str | None = None) -> tuple[str, np.ndarray, np.ndarray]:
    """Read a flow or a disparity file, telling which it holds from its content.

    A 1-channel ``.pfm``, a grey (KITTI 16-bit disparity) ``.png`` and an ``(H, W)`` ``.npy``
    hold disparity; a ``.flo``, a 3-channel ``.pfm``, an RGB (KITTI flow) ``.png`` and an
    ``(H, W, 2)`` ``.npy`` hold flow.

    Args:
      path: a file :func:`read_flow` or :func:`read_disparity` reads.
      kind: ``"flow"`` or ``"disparity"`` to require that kind (a file of the other kind is
        refused, naming what it holds); ``None`` (default) = whichever the file holds.

    Returns:
      ``(kind, values, valid)``: ``"flow"`` with float32 ``(H, W, 2)`` values or
      ``"disparity"`` with float32 ``(H, W)`` values (0 at invalid pixels), and the bool
      ``(H, W)`` mask of valid pixels.

    Raises:
      ValueError: ``kind`` not one of the above, a file of the other kind, an unknown
        extension or an unreadable file.
    """
    if kind not in (None, "flow", "disparity"):
        raise ValueError(f"kind must be 'flow', 'disparity' or None, got {kind!r}")
    ext = extension(path)
    array = load_npy(path) if ext == ".npy" else None
    found = _map_kind(path, array)
    if kind is not None and found != kind:
        holds = ("is a .flo file, which holds flow only" if ext == ".flo"
                 else f"holds {found}" + (f" (shape {array.shape})" if array is not None else ""))
        want = ("disparity maps are 1-channel .pfm, 16-bit grey .png or (H, W) .npy"
                if kind == "disparity" else
                "flow files are .flo, 3-channel .pfm, 16-bit RGB .png or (H, W, 2) .npy")
        raise error(path, f"expected {kind}, but the file {holds} ({want})")
    if array is not None:
        read = read_npy_flow if found == "flow" else read_npy_disparity
        return (found, *read(path, array))
    return (found, *(read_flow if found == "flow" else read_disparity)(path))


def _map_kind(path: PathLike, array: np.ndarray | None) -> str:
    """``"flow"`` or ``"disparity"``: what the file at ``path`` holds (from its header, or
    from ``array``, a ``.npy`` file's array)."""
    ext = extension(path)
    if array is not None:
        return "flow" if array.ndim == 3 else "disparity"
    if ext == ".pfm":
        with open(path, "rb") as f:
            return "disparity" if f.read(2) == b"Pf" else "flow"
    if ext == ".png":
        return "disparity" if read_image_raw(path).ndim == 2 else "flow"
    if ext in FLOW_EXTENSIONS:
        return "flow"
    raise _unknown_extension(path, "flow or disparity", FLOW_EXTENSIONS)
