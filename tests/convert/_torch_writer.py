"""Write ``torch.save`` checkpoints without PyTorch: the test-only counterpart of the reader.

The tests build PyTorch checkpoints (zip and legacy formats, shared storages, views) without
torch installed, to exercise :mod:`flowlib.convert._torch` and the converters. Nothing in the
package writes PyTorch files, so this lives with the tests (the ~300-line writer
made ``convert/_torch.py`` a 1024-line module doing two jobs).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any, BinaryIO, Mapping

import numpy as np

from flowlib._files import atomic_write
from flowlib.convert._torch import LEGACY_MAGIC, LEGACY_PROTOCOL

__all__ = ["write_torch_checkpoint"]

_NP_TO_STORAGE = {
    "float32": "FloatStorage",
    "float64": "DoubleStorage",
    "float16": "HalfStorage",
    "bfloat16": "BFloat16Storage",
    "int64": "LongStorage",
    "int32": "IntStorage",
    "int16": "ShortStorage",
    "int8": "CharStorage",
    "uint8": "ByteStorage",
    "bool": "BoolStorage",
    "complex64": "ComplexFloatStorage",
    "complex128": "ComplexDoubleStorage",
}


class _PickleWriter:
    """Emits the protocol-2 opcode subset that ``torch.load(weights_only=True)`` accepts.

    Python's own pickler cannot be used: it would need to import ``torch._utils`` to
    name the rebuild functions.
    """

    def __init__(self, persistent_id, *, legacy: bool = False) -> None:
        self.legacy = legacy  # legacy persistent ids carry a 6th field (storage view: None)
        self.out = io.BytesIO()
        self.memo: dict[str, int] = {}
        self.persistent_id = persistent_id
        self.active: set[int] = set()

    def dump(self, obj: Any) -> bytes:
        self.out.write(b"\x80\x02")
        self.save(obj)
        self.out.write(b".")
        return self.out.getvalue()

    def put_global(self, module: str, name: str) -> None:
        key = f"{module}\n{name}\n"
        if key in self.memo:
            idx = self.memo[key]
            self.out.write(b"h" + bytes([idx]) if idx < 256 else b"j" + struct.pack("<I", idx))
            return
        idx = len(self.memo)
        self.memo[key] = idx
        self.out.write(b"c" + key.encode("ascii"))
        self.out.write(b"q" + bytes([idx]) if idx < 256 else b"r" + struct.pack("<I", idx))

    def save(self, obj: Any) -> None:
        w = self.out.write
        if obj is None:
            w(b"N")
        elif obj is True:
            w(b"\x88")
        elif obj is False:
            w(b"\x89")
        elif isinstance(obj, (np.ndarray, np.generic)) or _is_array_like(obj):
            if isinstance(obj, np.generic) and not isinstance(obj, np.ndarray):
                self.save(obj.item())
            else:
                self.save_tensor(np.asarray(obj))
        elif isinstance(obj, int):
            if 0 <= obj < 256:
                w(b"K" + bytes([obj]))
            elif 0 <= obj < 65536:
                w(b"M" + struct.pack("<H", obj))
            elif -(2**31) <= obj < 2**31:
                w(b"J" + struct.pack("<i", obj))
            else:
                enc = pickle.encode_long(obj)
                if len(enc) > 255:
                    raise ValueError("integer too large for the checkpoint format")
                w(b"\x8a" + bytes([len(enc)]) + enc)
        elif isinstance(obj, float):
            w(b"G" + struct.pack(">d", obj))
        elif isinstance(obj, str):
            enc = obj.encode("utf-8", "surrogatepass")
            w(b"X" + struct.pack("<I", len(enc)) + enc)
        elif isinstance(obj, (bytes, bytearray)):
            self.put_global("_codecs", "encode")
            self.save((bytes(obj).decode("latin1"), "latin1"))
            w(b"R")
        elif isinstance(obj, complex):
            self.put_global("__builtin__", "complex")
            self.save((obj.real, obj.imag))
            w(b"R")
        else:
            self.save_container(obj)

    def save_container(self, obj: Any) -> None:
        w = self.out.write
        if id(obj) in self.active:
            raise ValueError("cannot write a checkpoint whose containers refer to themselves")
        self.active.add(id(obj))
        try:
            if isinstance(obj, tuple):
                if not obj:
                    w(b")")
                elif len(obj) <= 3:
                    for v in obj:
                        self.save(v)
                    w({1: b"\x85", 2: b"\x86", 3: b"\x87"}[len(obj)])
                else:
                    w(b"(")
                    for v in obj:
                        self.save(v)
                    w(b"t")
            elif isinstance(obj, list):
                w(b"]")
                if obj:
                    w(b"(")
                    for v in obj:
                        self.save(v)
                    w(b"e")
            elif isinstance(obj, (set, frozenset)):
                self.put_global("__builtin__", "set")
                self.save((list(obj),))
                w(b"R")
            elif isinstance(obj, Mapping):
                if isinstance(obj, collections.OrderedDict):
                    self.put_global("collections", "OrderedDict")
                    w(b")R")
                else:
                    w(b"}")
                if obj:
                    w(b"(")
                    for k, v in obj.items():
                        self.save(k)
                        self.save(v)
                    w(b"u")
            else:
                raise ValueError(
                    f"cannot write a {type(obj).__name__} into a checkpoint (supported: arrays, dicts, lists, "
                    "tuples, sets, str, bytes, int, float, complex, bool, None)"
                )
        finally:
            self.active.discard(id(obj))

    def save_tensor(self, arr: np.ndarray) -> None:
        storage_name, key, numel, offset, stride = self.persistent_id(arr)
        w = self.out.write
        self.put_global("torch._utils", "_rebuild_tensor_v2")
        w(b"(")
        # Persistent id, then offset, size, stride, requires_grad, backward hooks.
        self.save_pid(storage_name, key, numel)
        self.save(offset)
        self.save(tuple(int(n) for n in arr.shape))
        self.save(tuple(stride))
        w(b"\x89")
        self.put_global("collections", "OrderedDict")
        w(b")R")
        w(b"t")
        w(b"R")

    def save_pid(self, storage_name: str, key: str, numel: int) -> None:
        w = self.out.write
        w(b"(")
        self.save("storage")
        self.put_global("torch", storage_name)
        self.save(key)
        self.save("cpu")
        self.save(numel)
        if self.legacy:
            w(b"N")
        w(b"t")
        w(b"Q")


def _is_array_like(obj: Any) -> bool:
    return hasattr(obj, "__array__") and hasattr(obj, "shape") and hasattr(obj, "dtype") and not isinstance(obj, (str, bytes))


class _StorageTable:
    """Assigns storages to arrays; views of one C-contiguous base share its storage."""

    def __init__(self) -> None:
        self.entries: dict[int, tuple[str, str, np.ndarray]] = {}  # id(root) -> (key, storage class, flat)
        self.keep: list[np.ndarray] = []  # keeps roots alive so ids stay unique

    def __call__(self, arr: np.ndarray) -> tuple[str, str, int, int, tuple[int, ...]]:
        if arr.dtype.name not in _NP_TO_STORAGE:
            raise ValueError(f"cannot write a {arr.dtype} array into a checkpoint (supported: {sorted(_NP_TO_STORAGE)})")
        storage = _NP_TO_STORAGE[arr.dtype.name]
        root = arr
        while isinstance(root.base, np.ndarray):
            root = root.base
        shared = self._view_of(arr, root)
        if shared is None:
            root = np.ascontiguousarray(arr)
            offset, stride = 0, _contiguous_strides(arr.shape)
        else:
            offset, stride = shared
        if id(root) not in self.entries:
            flat = root.reshape(-1)
            if flat.dtype.byteorder == ">":
                flat = flat.astype(flat.dtype.newbyteorder("<"))
            self.entries[id(root)] = (str(len(self.entries)), storage, flat)
            self.keep.append(root)
        key, _, flat = self.entries[id(root)]
        return storage, key, int(flat.size), offset, stride

    @staticmethod
    def _view_of(arr: np.ndarray, root: np.ndarray) -> tuple[int, tuple[int, ...]] | None:
        if root is arr and arr.flags.c_contiguous:
            return 0, _contiguous_strides(arr.shape)
        if root is arr or root.dtype != arr.dtype or not root.flags.c_contiguous or arr.size == 0:
            return None
        item = arr.itemsize
        start = arr.__array_interface__["data"][0] - root.__array_interface__["data"][0]
        if start < 0 or start % item or any(s < 0 or s % item for s in arr.strides):
            return None
        offset = start // item
        stride = tuple(s // item if n > 1 else 1 for s, n in zip(arr.strides, arr.shape))
        last = offset + sum((n - 1) * s for n, s in zip(arr.shape, stride))
        if last >= root.size:
            return None
        return offset, stride


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, acc = [], 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= max(n, 1)
    return tuple(reversed(strides))


def write_torch_checkpoint(path: str | os.PathLike, obj: Any, *, legacy: bool = False) -> None:
    """Write ``obj`` as a ``torch.save`` file that ``torch.load(weights_only=True)`` accepts.

    numpy arrays become tensors; arrays that are views of one C-contiguous base array
    share one storage (with their offset and strides), like tensor views in torch.
    ``collections.OrderedDict`` stays an OrderedDict (what ``state_dict()`` returns).

    Args:
      path: destination; written to a temporary file in the same folder, fsynced, then
        renamed over ``path`` (readers never see a partial file).
      obj: nested dicts / lists / tuples / sets of arrays and plain Python values.
      legacy: write the pre-1.6 legacy format instead of the zip format.

    Raises:
      ValueError: ``obj`` holds something the format cannot carry (an unsupported dtype,
        an arbitrary object, a self-referencing container).
    """
    table = _StorageTable()
    writer = _PickleWriter(table, legacy=legacy)
    main = writer.dump(obj)
    storages = [(key, storage, flat) for key, storage, flat in table.entries.values()]
    if legacy:
        payload = _legacy_bytes(main, storages)
    else:
        buf = io.BytesIO()
        _write_zip(buf, main, storages)
        payload = buf.getvalue()
    atomic_write(os.path.abspath(os.fspath(path)), payload)


def _small_pickle(obj: Any) -> bytes:
    return _PickleWriter(None).dump(obj)


def _legacy_bytes(main: bytes, storages: list[tuple[str, str, np.ndarray]]) -> bytes:
    out = io.BytesIO()
    out.write(_small_pickle(LEGACY_MAGIC))
    out.write(_small_pickle(LEGACY_PROTOCOL))
    out.write(_small_pickle({
        "protocol_version": LEGACY_PROTOCOL,
        "little_endian": True,
        "type_sizes": {"short": 2, "int": 4, "long": 8},
    }))
    out.write(main)
    out.write(_small_pickle([key for key, _, _ in storages]))
    for _key, _storage, flat in storages:
        out.write(struct.pack("<q", flat.size))
        out.write(_storage_bytes(flat))
    return out.getvalue()


def _storage_bytes(flat: np.ndarray) -> bytes:
    if flat.dtype.name == "bfloat16":
        flat = flat.view(np.uint16)
    return np.ascontiguousarray(flat).astype(flat.dtype.newbyteorder("<"), copy=False).tobytes()


def _write_zip(f: BinaryIO, main: bytes, storages: list[tuple[str, str, np.ndarray]]) -> None:
    records = [("archive/data.pkl", main), ("archive/byteorder", b"little")]
    records += [(f"archive/data/{key}", flat) for key, _, flat in storages]
    records += [("archive/version", b"3\n")]
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, content in records:
            data = content if isinstance(content, bytes) else _storage_bytes(content)
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            # torch aligns every record's data to 64 bytes with an "FB" padding extra field
            # (caffe2/serialize/inline_container.cc), so the storages can be mmapped.
            # zipfile adds a 20-byte zip64 extra once size * 1.05 > ZIP64_LIMIT (_open_to_write).
            zip64 = 20 if len(data) * 1.05 > zipfile.ZIP64_LIMIT else 0
            start = f.tell() + 30 + len(name.encode()) + 4 + zip64
            pad = (-start) % 64
            info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
            zf.writestr(info, data)
