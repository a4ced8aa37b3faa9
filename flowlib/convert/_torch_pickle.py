"""The restricted unpickler behind :func:`flowlib.convert._torch.read_torch_checkpoint`.

A ``torch.save`` pickle names its tensors' rebuild functions, storage classes and dtypes as
globals. Here every global resolves from a fixed allow-list to a local numpy-only stand-in
(containers, ``_rebuild_tensor*``, ``_rebuild_parameter*``, storage classes, dtypes,
``torch.Size``, ``torch.device``); anything else raises :class:`Refused` before it could be
called. :func:`scan_pickle` walks the opcodes first, checking every declared length and memo
index against the data, and :func:`build_tensor` checks sizes, strides and offsets against the
storage before it allocates.
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import math
import pickle
import pickletools
import re
from typing import Any

import numpy as np

# A tensor whose element count exceeds its storage's (zero strides: an expanded tensor) is
# materialised in full; cap that so a crafted stride-0 tensor cannot ask for terabytes.
_MAX_EXPANDED_ELEMENTS = 1 << 28
_MAX_NDIM = 64


class DType(str):
    """A torch dtype. It *is* the string ``"torch.float32"`` (what a dtype stored as a value
    comes back as), and carries the numpy dtype of its storage elements."""

    def __new__(cls, name: str, np_dtype: str) -> "DType":
        obj = super().__new__(cls, f"torch.{name}")
        obj.name = name  # "float32"
        obj.np_dtype = np.dtype(np_dtype)  # storage element type, little-endian
        return obj

    @property
    def itemsize(self) -> int:
        return self.np_dtype.itemsize

    def __setstate__(self, state: Any) -> None:
        raise ValueError("BUILD applied to a dtype")


# torch dtype name -> numpy storage dtype. bfloat16 is stored as its raw uint16 bits and
# widened to float32 when a tensor is built (exact); bool is stored as one byte.
_DTYPES: dict[str, DType] = {
    name: DType(name, code)
    for name, code in [
        ("float32", "<f4"),
        ("float64", "<f8"),
        ("float16", "<f2"),
        ("bfloat16", "<u2"),
        ("int64", "<i8"),
        ("int32", "<i4"),
        ("int16", "<i2"),
        ("int8", "i1"),
        ("uint8", "u1"),
        ("bool", "u1"),
        ("complex64", "<c8"),
        ("complex128", "<c16"),
    ]
}
# Legacy aliases that old pickles (or str(torch.float)) may name.
_DTYPE_ALIASES = {
    "float": "float32", "double": "float64", "half": "float16", "long": "int64",
    "int": "int32", "short": "int16", "cfloat": "complex64", "cdouble": "complex128",
}

_STORAGE_CLASSES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
}


class StorageType:
    """What ``torch.FloatStorage`` etc. resolve to: only a dtype tag, not callable."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: DType) -> None:
        self.name = name
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        raise ValueError("BUILD applied to a storage class")


_UNTYPED = StorageType("UntypedStorage", _DTYPES["uint8"])


class Storage:
    """A loaded storage: a 1-D numpy array of its element type (bf16 as uint16 bits)."""

    __slots__ = ("key", "dtype", "array")

    def __init__(self, key: str, dtype: DType, array: np.ndarray | None) -> None:
        self.key = key
        self.dtype = dtype
        self.array = array  # None during the legacy format's first (survey) pass

    def __setstate__(self, state: Any) -> None:
        raise ValueError("BUILD applied to a storage")


class _Marker:
    """Stand-in for a torch class that may only appear as an argument (never called)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __setstate__(self, state: Any) -> None:
        raise ValueError(f"BUILD applied to {self.name}")


_TENSOR_TYPE = _Marker("torch.Tensor")
_PARAMETER_TYPE = _Marker("torch.nn.parameter.Parameter")


class _Pending:
    """Placeholder tensor of the legacy format's first pass (storages not read yet)."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise ValueError("BUILD applied to a tensor")


# --------------------------------------------------------------------------------------
# Safe stand-ins for the allow-listed globals.


def check_int(value: Any, what: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {type(value).__name__} {value!r:.40}")
    return value


def _check_shape(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or len(value) > _MAX_NDIM:
        raise ValueError(f"{what} must be a tuple of at most {_MAX_NDIM} integers, got {type(value).__name__}")
    return tuple(check_int(v, what) for v in value)


def _build_tensor(storage: Any, offset: Any, size: Any, stride: Any, dtype: DType | None = None) -> Any:
    """numpy equivalent of ``tensor.set_(storage, offset, size, stride)``, copied out."""
    if not isinstance(storage, Storage):
        raise ValueError(f"tensor rebuild expects a storage, got {type(storage).__name__}")
    offset = check_int(offset, "storage offset")
    size = _check_shape(size, "tensor size")
    stride = _check_shape(stride, "tensor stride")
    if len(size) != len(stride):
        raise ValueError(f"tensor size {size} and stride {stride} differ in length")
    tdtype = storage.dtype if dtype is None else dtype
    if storage.array is None:
        return _Pending()
    base = storage.array
    if dtype is not None and dtype is not storage.dtype:
        # _rebuild_tensor_v3 reinterprets an untyped (byte) storage as `dtype`.
        if storage.dtype.itemsize != 1 or base.size % tdtype.itemsize:
            raise ValueError(f"cannot view a {storage.dtype.name} storage as {tdtype.name}")
        base = base.view(tdtype.np_dtype)
    numel = math.prod(size)
    if numel == 0:
        out = np.zeros(size, dtype=base.dtype)
    else:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= base.size:
            raise ValueError(
                f"tensor (offset {offset}, size {size}, stride {stride}) reaches element {last} "
                f"of a storage with {base.size} elements"
            )
        if numel > base.size and numel > _MAX_EXPANDED_ELEMENTS:
            raise ValueError(f"tensor of size {size} expands a {base.size}-element storage beyond {_MAX_EXPANDED_ELEMENTS} elements")
        view = np.lib.stride_tricks.as_strided(
            base[offset:], shape=size, strides=tuple(s * base.itemsize for s in stride), writeable=False
        )
        out = np.array(view, copy=True, order="C")
    if tdtype.name == "bfloat16":
        # bfloat16 is the upper half of a float32: widening is exact.
        out = (out.astype(np.uint32) << 16).view(np.float32)
    elif tdtype.name == "bool":
        out = out != 0
    return out


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _build_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    # requires_grad, backward hooks and metadata describe autograd state: nothing to keep.
    return _build_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
    if not isinstance(dtype, DType):
        raise ValueError(f"_rebuild_tensor_v3 expects a dtype, got {type(dtype).__name__}")
    return _build_tensor(storage, storage_offset, size, stride, dtype)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    if not isinstance(data, (np.ndarray, _Pending)):
        raise ValueError(f"_rebuild_parameter expects a tensor, got {type(data).__name__}")
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return _rebuild_parameter(data, requires_grad, backward_hooks)


_REBUILDERS = (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter, _rebuild_parameter_with_state)


def _rebuild_from_type_v2(func, new_type, args, state):
    # torch._tensor._rebuild_from_type_v2: a tensor (subclass) with Python attributes. Only
    # plain tensors / Parameters, rebuilt by one of our own functions, are accepted.
    if func not in _REBUILDERS:
        raise ValueError("_rebuild_from_type_v2 names a function that is not a tensor-rebuild function")
    if new_type not in (_TENSOR_TYPE, _PARAMETER_TYPE):
        raise ValueError("_rebuild_from_type_v2 names a tensor subclass other than Tensor/Parameter")
    if not isinstance(args, tuple):
        raise ValueError("_rebuild_from_type_v2 expects an argument tuple")
    return func(*args)


def _torch_size(*args):
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = tuple(args[0])
    return _check_shape(tuple(args), "torch.Size")


def _torch_device(kind, index=None):
    if not isinstance(kind, str) or (index is not None and not isinstance(index, int)):
        raise ValueError("torch.device expects (str, int | None)")
    return kind if index is None or ":" in kind else f"{kind}:{index}"


def _codecs_encode(text, encoding="utf-8"):
    # Protocol-2 pickles store bytes as _codecs.encode(latin-1 text, "latin1").
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "iso-8859-1", "utf-8", "utf8", "ascii"):
        raise ValueError("_codecs.encode may only turn a str into bytes")
    return text.encode(encoding)


class _NumpyDType:
    """``numpy.dtype`` as it appears in pickled numpy scalars; only plain numeric kinds."""

    __slots__ = ("dtype",)

    def __init__(self, code, align=False, copy=False):
        if not isinstance(code, str) or not re.fullmatch(r"[biufc]\d{1,2}|\?", code):
            raise ValueError(f"numpy dtype {code!r:.20} is not a plain numeric type")
        self.dtype = np.dtype(code)

    def __setstate__(self, state):
        # (version, byteorder, subdescr, names, fields, elsize, alignment, flags)
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "|", "="):
            raise ValueError("bad numpy dtype state")
        if state[1] in "<>":
            self.dtype = self.dtype.newbyteorder(state[1])


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, _NumpyDType) or not isinstance(data, bytes) or len(data) != dtype.dtype.itemsize:
        raise ValueError("numpy scalar expects a numeric dtype and its bytes")
    return np.frombuffer(data, dtype=dtype.dtype)[0].astype(dtype.dtype.newbyteorder("="))


def _allowed_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        ("torch.tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,  # torch < 1.9 module name
        ("torch", "Tensor"): _TENSOR_TYPE,
        ("torch.nn.parameter", "Parameter"): _PARAMETER_TYPE,
        ("torch", "Size"): _torch_size,
        ("torch", "device"): _torch_device,
        ("torch", "UntypedStorage"): _UNTYPED,
        ("torch.storage", "UntypedStorage"): _UNTYPED,
        ("_codecs", "encode"): _codecs_encode,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "complex"): complex,
        ("numpy", "dtype"): _NumpyDType,
        ("numpy.core.multiarray", "scalar"): _numpy_scalar,
        ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    }
    for cls, dname in _STORAGE_CLASSES.items():
        allowed[("torch", cls)] = StorageType(cls, _DTYPES[dname])
    for name, dt in _DTYPES.items():
        allowed[("torch", name)] = dt
    for alias, name in _DTYPE_ALIASES.items():
        allowed[("torch", alias)] = _DTYPES[name]
    return allowed


_ALLOWED = _allowed_globals()


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose globals come only from :data:`_ALLOWED` (never imported)."""

    def __init__(self, data: bytes, persistent_load) -> None:
        super().__init__(io.BytesIO(data), encoding="utf-8")
        self._persistent = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 pickles (old legacy checkpoints) name __builtin__ etc.; map like pickle does.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        try:
            return _ALLOWED[(module, name)]
        except (KeyError, TypeError):
            pass
        raise Refused(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        return self._persistent(pid)


class Refused(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def scan_pickle(data: bytes, start: int = 0) -> int:
    """Walk the opcodes of the pickle at ``data[start:]`` without executing it.

    Checks that every declared length and memo index fits in the data (so the C unpickler
    never allocates for a corrupted or hostile number) and returns the offset just past STOP.
    """
    # BytesIO shares a bytes object's buffer (no copy of a large legacy file).
    stream = io.BytesIO(data)
    stream.seek(start)
    end = None
    count = 0
    try:
        for opcode, arg, pos in pickletools.genops(stream):
            count += 1
            if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and arg > count:
                # CPython's unpickler grows its memo array to twice the index (and zeroes
                # it): a 6-byte LONG_BINPUT 2**32-1 would ask for 64 GiB. Real pickles
                # number memo entries consecutively, so an index never exceeds the op count.
                raise ValueError(f"memo index {arg} at byte {pos} is out of range")
            if opcode.name == "FRAME" and arg > len(data) - pos:
                raise ValueError(f"frame of {arg} bytes at byte {pos} exceeds the data")
            if opcode.name == "STOP":
                end = pos + 1
    except Exception as err:  # ValueError, struct.error, UnicodeDecodeError, ...
        raise ValueError(f"damaged pickle at byte {start}+: {err}") from err
    if end is None:
        raise ValueError("damaged pickle: no STOP opcode")
    return end


def unpickle(data: bytes, persistent_load) -> Any:
    scan_pickle(data)
    return _RestrictedUnpickler(data, persistent_load).load()
