"""Read Lua Torch7 binary serialisation (``torch.save(file, obj)``), without Lua.

(The writer the tests use is ``tests/convert/_t7_writer.py``.)

Format (torch7 ``File.lua`` ``writeObject``, binary mode): every value starts with a 4-byte
little-endian type code:

* ``0`` nil; ``1`` number (float64); ``2`` string (int32 length + bytes); ``5`` boolean
  (int32 0/1);
* ``3`` table and ``4`` torch object: an int32 *reference index*; an index seen before
  refers back to that object (shared or recursive references). A new table then holds an
  int32 entry count and that many (key, value) pairs. A new torch object holds a version
  string (``"V 1"``; absent in version 0 files) and its class name, then what the class's
  ``read`` method reads: for ``torch.*Tensor`` the int32 dimension count, the sizes and
  strides (longs), the 1-based storage offset (long) and the storage object (or nil); for
  ``torch.*Storage`` the element count (long) and the raw elements; for anything else (nn
  modules, ``cudnn.SpatialConvolution``, ...) a table of its fields.
* ``6``/``7``/``8`` functions (Lua bytecode): refused.

"long" is the C ``long`` of the machine that wrote the file: 8 bytes on 64-bit Linux/macOS
(what published models use), 4 on Windows. :func:`read_t7` tries 8 and falls back to 4.
CUDA tensors are stored like their CPU counterparts (``torch.CudaTensor`` = float32).
"""

from __future__ import annotations

import dataclasses
import math
import os
import struct
from typing import Any

import numpy as np

__all__ = ["T7Object", "read_t7"]

TYPE_NIL, TYPE_NUMBER, TYPE_STRING, TYPE_TABLE, TYPE_TORCH, TYPE_BOOLEAN = 0, 1, 2, 3, 4, 5
TYPE_FUNCTION, TYPE_RECUR_FUNCTION, LEGACY_TYPE_RECUR_FUNCTION = 6, 8, 7

_MAX_DEPTH = 200
_MAX_NDIM = 64

# Storage/tensor class-name prefix -> element type (CUDA types are serialised as the CPU ones).
_ELEMENT = {
    "Double": "<f8", "Float": "<f4", "Half": "<f2", "Long": "long", "Int": "<i4", "Short": "<i2",
    "Char": "i1", "Byte": "u1", "Bool": "u1",
    "Cuda": "<f4", "CudaDouble": "<f8", "CudaHalf": "<f2", "CudaLong": "long", "CudaInt": "<i4",
    "CudaShort": "<i2", "CudaChar": "i1", "CudaByte": "u1",
}


@dataclasses.dataclass
class T7Object:
    """A Torch7 class instance other than a tensor or storage (e.g. an ``nn`` module).

    Attributes:
      class_name: the Torch7 class, e.g. ``"nn.Sequential"``, ``"cudnn.SpatialConvolution"``.
      fields: its fields as read (``weight``/``bias`` arrays, ``modules`` list, numbers, ...).
    """

    class_name: str
    fields: dict = dataclasses.field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


def _class_dtype(class_name: str, suffix: str, long_size: int) -> np.dtype | None:
    if not class_name.startswith("torch.") or not class_name.endswith(suffix):
        return None
    code = _ELEMENT.get(class_name[len("torch.") : -len(suffix)])
    if code is None:
        return None
    if code == "long":
        code = "<i8" if long_size == 8 else "<i4"
    return np.dtype(code)


class _Reader:
    def __init__(self, data: bytes, long_size: int) -> None:
        self.data = data
        self.pos = 0
        self.long_size = long_size
        self.long_fmt = "<q" if long_size == 8 else "<i"
        self.objects: dict[int, Any] = {}

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError(f"{what} needs {n} bytes at offset {self.pos}, only {len(self.data) - self.pos} remain")

    def int(self, what: str = "int") -> int:
        self.need(4, what)
        (v,) = struct.unpack_from("<i", self.data, self.pos)
        self.pos += 4
        return v

    def long(self, what: str = "long") -> int:
        self.need(self.long_size, what)
        (v,) = struct.unpack_from(self.long_fmt, self.data, self.pos)
        self.pos += self.long_size
        return v

    def longs(self, n: int, what: str) -> tuple[int, ...]:
        return tuple(self.long(what) for _ in range(n))

    def string(self, what: str = "string") -> str:
        n = self.int(f"{what} length")
        self.need(n, what)
        raw = self.data[self.pos : self.pos + n]
        self.pos += n
        return raw.decode("latin-1")

    def read(self, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise ValueError(f"objects nested deeper than {_MAX_DEPTH} levels")
        at = self.pos
        kind = self.int("type code")
        if kind == TYPE_NIL:
            return None
        if kind == TYPE_NUMBER:
            self.need(8, "number")
            (v,) = struct.unpack_from("<d", self.data, self.pos)
            self.pos += 8
            return int(v) if v.is_integer() and abs(v) < 2**53 else v
        if kind == TYPE_STRING:
            return self.string()
        if kind == TYPE_BOOLEAN:
            v = self.int("boolean")
            if v not in (0, 1):
                raise ValueError(f"boolean at offset {at} is {v}, expected 0 or 1")
            return bool(v)
        if kind in (TYPE_FUNCTION, TYPE_RECUR_FUNCTION, LEGACY_TYPE_RECUR_FUNCTION):
            raise ValueError(f"object at offset {at} is a serialised Lua function; refusing to load code")
        if kind not in (TYPE_TABLE, TYPE_TORCH):
            raise ValueError(f"unknown type code {kind} at offset {at} (expected 0-8)")
        index = self.int("reference index")
        if index in self.objects:
            return self.objects[index]
        if kind == TYPE_TABLE:
            return self.table(index, depth)
        return self.torch_object(index, depth)

    def table(self, index: int, depth: int) -> Any:
        n = self.int("table size")
        # every entry takes at least two 4-byte type codes
        if n < 0 or n > (len(self.data) - self.pos) // 8:
            raise ValueError(f"table at offset {self.pos} declares {n} entries, more than the file can hold")
        table: dict[Any, Any] = {}
        self.objects[index] = table
        for _ in range(n):
            key = self.read(depth + 1)
            value = self.read(depth + 1)
            try:
                table[key] = value
            except TypeError:
                raise ValueError(f"table key of type {type(key).__name__} is not supported") from None
        keys = list(table)
        if keys and all(type(k) is int for k in keys) and sorted(keys) == list(range(1, len(keys) + 1)):
            # A Lua array: 1..n keys -> Python list (0-based).
            as_list = [table[i] for i in range(1, len(keys) + 1)]
            self.objects[index] = as_list
            return as_list
        return table

    def torch_object(self, index: int, depth: int) -> Any:
        version = self.string("version string")
        if version.startswith("V "):
            try:
                int(version[2:])
            except ValueError:
                raise ValueError(f"bad version string {version[:20]!r}") from None
            class_name = self.string("class name")
        else:
            class_name = version  # version-0 files omit the version string
        if not class_name or len(class_name) > 200 or not class_name.isprintable():
            raise ValueError(f"bad class name {class_name[:40]!r}")
        dtype = _class_dtype(class_name, "Storage", self.long_size)
        if dtype is not None:
            n = self.long("storage size")
            if n < 0 or n > (len(self.data) - self.pos) // dtype.itemsize:
                raise ValueError(f"{class_name} declares {n} elements, the file has {len(self.data) - self.pos} bytes left")
            arr = np.frombuffer(self.data, dtype=dtype, count=n, offset=self.pos).astype(dtype.newbyteorder("="))
            self.pos += n * dtype.itemsize
            if class_name.endswith("BoolStorage"):
                arr = arr != 0
            self.objects[index] = arr
            return arr
        dtype = _class_dtype(class_name, "Tensor", self.long_size)
        if dtype is not None:
            tensor = self.tensor(class_name, dtype, depth)
            self.objects[index] = tensor
            return tensor
        obj = T7Object(class_name)
        self.objects[index] = obj
        fields = self.read(depth + 1)
        if isinstance(fields, list):
            fields = {i + 1: v for i, v in enumerate(fields)}
        if not isinstance(fields, dict):
            raise ValueError(f"{class_name} object is followed by a {type(fields).__name__}, expected its field table")
        obj.fields = fields
        return obj

    def tensor(self, class_name: str, dtype: np.dtype, depth: int) -> np.ndarray:
        ndim = self.int("tensor dimension count")
        if not 0 <= ndim <= _MAX_NDIM:
            raise ValueError(f"{class_name} has {ndim} dimensions")
        size = self.longs(ndim, "tensor size")
        stride = self.longs(ndim, "tensor stride")
        offset = self.long("storage offset") - 1  # Lua is 1-based
        storage = self.read(depth + 1)
        if any(n < 0 for n in size) or any(s < 0 for s in stride) or offset < 0:
            raise ValueError(f"{class_name} has size {size}, stride {stride}, offset {offset + 1}")
        numel = math.prod(size) if ndim else 0
        if numel == 0:
            return np.zeros(size if ndim else (0,), dtype=dtype.newbyteorder("="))
        if not isinstance(storage, np.ndarray) or storage.ndim != 1:
            raise ValueError(f"{class_name} of size {size} has no storage")
        if storage.dtype.itemsize != dtype.itemsize or storage.dtype.kind not in (dtype.kind, "b"):
            raise ValueError(f"{class_name} points at a {storage.dtype} storage")
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= storage.size:
            raise ValueError(f"{class_name} (size {size}, stride {stride}, offset {offset + 1}) overruns its {storage.size}-element storage")
        if numel > storage.size and numel > 1 << 28:
            raise ValueError(f"{class_name} of size {size} expands its storage beyond {1 << 28} elements")
        view = np.lib.stride_tricks.as_strided(
            storage[offset:], shape=size, strides=tuple(s * storage.itemsize for s in stride), writeable=False
        )
        return np.array(view, copy=True, order="C")


def read_t7(path: str | os.PathLike, *, long_size: int | None = None) -> Any:
    """Read a Torch7 binary file.

    Args:
      path: a ``.t7`` file written by Lua Torch's ``torch.save`` in binary mode.
      long_size: bytes per C ``long`` in the file (8 on 64-bit Linux/macOS, 4 on Windows);
        ``None`` tries 8 and then 4.

    Returns:
      The stored object: ``T7Object(class_name, fields)`` for torch classes (nn modules),
      numpy arrays for tensors (copied, C-contiguous) and storages (1-D), ``dict`` for Lua
      tables (``list`` when the keys are exactly 1..n), and ``int``/``float``/``str``/
      ``bool``/``None`` for plain values. Shared references stay shared.

    Raises:
      OSError: the file cannot be opened.
      ValueError: the file is damaged, truncated, holds Lua functions, or declares sizes it
        does not hold (checked before allocating). The message names the file.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    if data[:1].isdigit() or data[:1] == b"\n":
        raise ValueError(f"{path}: looks like an ASCII-mode Torch7 file; only binary mode is supported")
    sizes = (8, 4) if long_size is None else (long_size,)
    if any(s not in (4, 8) for s in sizes):
        raise ValueError(f"long_size must be 4 or 8, got {long_size}")
    first_error: Exception | None = None
    for size in sizes:
        reader = _Reader(data, size)
        try:
            obj = reader.read()
            if reader.pos != len(data):
                raise ValueError(f"{len(data) - reader.pos} unread bytes after the object")
            return obj
        except (ValueError, struct.error, UnicodeDecodeError, RecursionError, MemoryError, OverflowError) as err:
            first_error = first_error or err
    raise ValueError(f"{path}: not a readable Torch7 binary file: {first_error}") from first_error
