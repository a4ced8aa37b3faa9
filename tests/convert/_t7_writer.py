"""Write Lua Torch7 binary files without Lua: the test-only counterpart of ``read_t7``.

The tests build SpyNet's ``.t7`` level files and hand-made edge cases with it; nothing in the
package writes Torch7, so it lives with the tests.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import numpy as np

from flowlib._files import atomic_write
from flowlib.convert._t7 import (
    TYPE_BOOLEAN,
    TYPE_NIL,
    TYPE_NUMBER,
    TYPE_STRING,
    TYPE_TABLE,
    TYPE_TORCH,
    T7Object,
)

__all__ = ["write_t7"]

_WRITE_CLASS = {
    "float64": "Double", "float32": "Float", "float16": "Half", "int64": "Long", "int32": "Int",
    "int16": "Short", "int8": "Char", "uint8": "Byte",
}


class _Writer:
    def __init__(self, long_size: int) -> None:
        self.parts: list[bytes] = []
        self.index: dict[int, int] = {}
        self.keep: list[Any] = []
        self.long_fmt = "<q" if long_size == 8 else "<i"

    def int(self, v: int) -> None:
        self.parts.append(struct.pack("<i", v))

    def string(self, s: str) -> None:
        raw = s.encode("latin-1")
        self.int(len(raw))
        self.parts.append(raw)

    def ref(self, kind: int, obj: Any) -> bool:
        """Write the type code and reference index; True when the object was written before."""
        self.int(kind)
        if id(obj) in self.index:
            self.int(self.index[id(obj)])
            return True
        self.index[id(obj)] = len(self.index) + 1
        self.keep.append(obj)
        self.int(self.index[id(obj)])
        return False

    def write(self, obj: Any) -> None:
        if obj is None:
            self.int(TYPE_NIL)
        elif isinstance(obj, bool):
            self.int(TYPE_BOOLEAN)
            self.int(int(obj))
        elif isinstance(obj, (int, float)):
            self.int(TYPE_NUMBER)
            self.parts.append(struct.pack("<d", float(obj)))
        elif isinstance(obj, str):
            self.int(TYPE_STRING)
            self.string(obj)
        elif isinstance(obj, np.ndarray):
            self.tensor(obj)
        elif isinstance(obj, T7Object):
            if not self.ref(TYPE_TORCH, obj):
                self.string("V 1")
                self.string(obj.class_name)
                self.write(dict(obj.fields))
        elif isinstance(obj, (dict, list, tuple)):
            if not self.ref(TYPE_TABLE, obj):
                items = obj.items() if isinstance(obj, dict) else ((i + 1, v) for i, v in enumerate(obj))
                items = list(items)
                self.int(len(items))
                for k, v in items:
                    self.write(k)
                    self.write(v)
        else:
            raise ValueError(f"cannot write a {type(obj).__name__} into a Torch7 file")

    def tensor(self, arr: np.ndarray) -> None:
        name = _WRITE_CLASS.get(arr.dtype.name)
        if name is None:
            raise ValueError(f"cannot write a {arr.dtype} array into a Torch7 file")
        if self.ref(TYPE_TORCH, arr):
            return
        flat = np.ascontiguousarray(arr).reshape(-1).astype(arr.dtype.newbyteorder("<"))
        if name == "Long" and self.long_fmt == "<i":
            flat = flat.astype("<i4")
        self.string("V 1")
        self.string(f"torch.{name}Tensor")
        self.int(arr.ndim)
        strides = []
        acc = 1
        for n in reversed(arr.shape):
            strides.append(acc)
            acc *= max(n, 1)
        for v in list(arr.shape) + strides[::-1] + [1]:  # sizes, strides, 1-based offset
            self.parts.append(struct.pack(self.long_fmt, v))
        if arr.size == 0:
            self.int(TYPE_NIL)
            return
        self.int(TYPE_TORCH)
        self.int(len(self.index) + 1)
        self.index[id(flat)] = len(self.index) + 1
        self.keep.append(flat)
        self.string("V 1")
        self.string(f"torch.{name}Storage")
        self.parts.append(struct.pack(self.long_fmt, flat.size))
        self.parts.append(flat.tobytes())


def write_t7(path: str | os.PathLike, obj: Any, *, long_size: int = 8) -> None:
    """Write ``obj`` in Torch7 binary format (atomically: temp file + rename).

    Args:
      path: destination file.
      obj: ``T7Object``, numpy arrays (written as ``torch.<Type>Tensor`` with their own
        storage), dicts / lists / tuples (Lua tables; lists get keys 1..n), numbers, strings,
        booleans, ``None``.
      long_size: bytes per C ``long`` (8: 64-bit Linux; 4: Windows).

    Raises:
      ValueError: an unsupported value or dtype.
    """
    if long_size not in (4, 8):
        raise ValueError(f"long_size must be 4 or 8, got {long_size}")
    writer = _Writer(long_size)
    writer.write(obj)
    payload = b"".join(writer.parts)
    atomic_write(os.path.abspath(os.fspath(path)), payload)
