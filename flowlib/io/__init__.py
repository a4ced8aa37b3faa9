"""File formats for optical flow, disparity and images (numpy only, no jax).

Formats:

* Middlebury ``.flo``: :func:`read_flo`, :func:`write_flo`.
* PFM (FlyingThings3D, Middlebury 2014): :func:`read_pfm`, :func:`write_pfm`.
* KITTI 16-bit flow PNG: :func:`read_kitti_flow`, :func:`write_kitti_flow`.
* KITTI 16-bit disparity PNG: :func:`read_kitti_disparity`, :func:`write_kitti_disparity`.
* Images (PNG of any bit depth and colour type, binary PPM/PGM, JPEG, BMP, ...):
  :func:`read_image`, :func:`read_image_raw`, :func:`read_grey`, :func:`write_image`.
* NumPy ``.npy``: the float32 array of a flow ``(H, W, 2)`` or a disparity ``(H, W)``, NaN at
  invalid pixels (through the by-extension functions).
* By extension: :func:`read_flow`, :func:`write_flow`, :func:`read_disparity`,
  :func:`write_disparity`; either kind, told apart by the content: :func:`read_map`.

One private module per format, re-exported here: ``_flo``, ``_pfm``, ``_kitti``, ``_png``
(chunk/CRC walk, decoders, encoder), ``_netpbm``, ``_npy``, ``_images`` (Pillow and the
dispatch between decoders), ``_dispatch`` (by extension) and ``_common`` (checks and error
messages).

Convention:
  Flow ``(H, W, 2)`` float32, channel 0 = u (+x right), 1 = v (+y down), in pixels; every flow
  or disparity reader returns ``(values, valid)`` with ``valid`` a bool ``(H, W)`` mask and the
  values set to 0 where ``valid`` is False. Images are RGB ``(H, W, 3)``.

Readers check magic numbers, header fields and the exact file length before they allocate
anything, and raise ``ValueError`` naming the file and the problem for truncated, corrupted or
wrong-format files (a missing file is still ``FileNotFoundError``). PNG chunks are CRC-checked.

Writers validate their arrays first, then write atomically: the bytes go to a temporary file
in the destination folder, which is fsync'ed and renamed over the destination, so a reader
never sees a half-written file and a failed write leaves any previous file untouched.

Pillow and imageio decode 16-bit RGB PNGs (KITTI flow ground truth) as 8-bit without any
error, so 16-bit, low-bit-depth and palette PNGs are decoded with pypng (pure Python,
lossless); plain 8-bit PNGs go through Pillow, which is much faster and exact for them.

"""

from __future__ import annotations

from flowlib.io._dispatch import (
    read_disparity,
    read_flow,
    read_map,
    write_disparity,
    write_flow,
)
from flowlib.io._flo import read_flo, write_flo
from flowlib.io._images import read_grey, read_image, read_image_raw, write_image
from flowlib.io._kitti import (
    read_kitti_disparity,
    read_kitti_flow,
    write_kitti_disparity,
    write_kitti_flow,
)
from flowlib.io._pfm import read_pfm, write_pfm

__all__ = [
    "read_flo",
    "write_flo",
    "read_pfm",
    "write_pfm",
    "read_kitti_flow",
    "write_kitti_flow",
    "read_kitti_disparity",
    "write_kitti_disparity",
    "read_image",
    "read_image_raw",
    "read_grey",
    "write_image",
    "read_flow",
    "write_flow",
    "read_disparity",
    "write_disparity",
    "read_map",
]


def __dir__() -> list[str]:
    return list(__all__)  # the API only, not the format modules or their imports
