"""Read PyTorch ``torch.save`` checkpoints without PyTorch, and without running code.

(The writer the tests use is ``tests/convert/_torch_writer.py``; the restricted unpickler is
:mod:`flowlib.convert._torch_pickle`.)

``torch.save`` pickles the object tree; every tensor pickles as a call to a rebuild function
(``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``) whose storage is a
*persistent id* pointing at raw bytes stored next to the pickle. Two container formats exist:

* zip (torch >= 1.6): ``<folder>/data.pkl`` (the pickle), ``<folder>/data/<key>`` (one member
  per storage, raw little-endian bytes), ``<folder>/version``, and since torch 2.1
  ``<folder>/byteorder``. The folder name is whatever the writer chose (often the file stem).
* legacy (torch < 1.6, or ``_use_new_zipfile_serialization=False``): five pickles in a row
  (magic number 0x1950a86a20f9469cfc6c, protocol version 1001, a sys-info dict, the object
  with persistent ids, the sorted list of storage keys), then every storage as an int64
  element count followed by its raw little-endian bytes.

Unpickling a checkpoint with :mod:`pickle` runs whatever callables the file names, so the
unpickler here resolves globals from a fixed allow-list (containers, the tensor-rebuild
functions, storage classes, dtypes, ``torch.Size``) mapped to local functions that only build
numpy arrays; any other global is refused with a ``ValueError`` before anything is called.
Every declared size is checked against the bytes actually present before allocating.

Tensors come back as numpy arrays (copies, C-contiguous; ``bfloat16`` widened exactly to
``float32``; ``torch.Size`` -> tuple, ``torch.device`` -> ``"cuda:0"``-style string, dtype
objects -> ``"torch.float32"``-style strings).
"""

from __future__ import annotations

import os
import re
import struct
import zipfile
from typing import Any, BinaryIO, Mapping

import numpy as np

from flowlib.convert._common import strip_prefix
from flowlib.convert._torch_pickle import (
    DType,
    Refused,
    Storage,
    StorageType,
    check_int,
    scan_pickle,
    unpickle,
)

__all__ = ["read_torch_checkpoint", "unwrap_state_dict"]

# torch/serialization.py: MAGIC_NUMBER, PROTOCOL_VERSION of the legacy format.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
_ZIP_MAGIC = b"PK\x03\x04"
# A legacy file starts with pickle PROTO 2, LONG1 of 10 bytes (the magic number).
_LEGACY_PREFIX = b"\x80\x02\x8a\x0a"

# Metadata pickles are small (the tensor bytes live elsewhere).
_MAX_PICKLE_BYTES = 1 << 31


# --------------------------------------------------------------------------------------
# Reading.


def read_torch_checkpoint(path: str | os.PathLike) -> Any:
    """Load a ``torch.save`` file (zip or legacy format) without torch.

    Args:
      path: the checkpoint file (``.pth``, ``.pth.tar``, ``.pt``, ``.ckpt``, ``.pytorch``).

    Returns:
      The saved object with every tensor as a numpy array: usually a dict (an
      ``OrderedDict`` for a state dict) of ``str -> np.ndarray``, or a dict holding one
      (``{"state_dict": ..., "epoch": ...}``; see :func:`unwrap_state_dict`).

    Raises:
      OSError: the file cannot be opened.
      ValueError: the file is not a PyTorch checkpoint, is damaged, declares sizes that
        the file does not hold, or names a global outside the allow-list (e.g. a pickled
        ``os.system`` call; nothing from the file is ever executed). The message names
        the file.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        try:
            head = f.read(4)
            f.seek(0)
            if head == _ZIP_MAGIC:
                return _read_zip(f)
            if head == _LEGACY_PREFIX:
                return _read_legacy(f)
            if len(head) < 4:
                raise ValueError(f"file is empty or truncated ({len(head)} bytes)")
            f.seek(257)
            if f.read(5) == b"ustar":
                raise ValueError("tar-based checkpoint of PyTorch < 0.4 is not supported; re-save it with a newer torch")
            raise ValueError(
                f"not a PyTorch checkpoint: starts with {head!r}, expected a zip archive ({_ZIP_MAGIC!r}) "
                f"or the legacy pickle magic ({_LEGACY_PREFIX!r})"
            )
        except Refused as err:
            raise ValueError(
                f"refusing to load {err.name} from checkpoint {path}: not a tensor-rebuild function or "
                "plain container (flowlib never runs code named in a checkpoint)"
            ) from None
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err
        except (MemoryError, RecursionError) as err:
            raise ValueError(f"{path}: damaged PyTorch checkpoint ({type(err).__name__})") from err
        except Exception as err:  # zipfile.BadZipFile, pickle.UnpicklingError, EOFError, struct.error, ...
            raise ValueError(f"{path}: damaged PyTorch checkpoint: {type(err).__name__}: {err}") from err


_MEMBER_CHARS = re.compile(r"[^\x00-\x1f\x7f\\]+")


def _check_member_names(infos: list[zipfile.ZipInfo]) -> str:
    """Validate member names; return the single top-level folder."""
    seen: set[str] = set()
    tops: set[str] = set()
    for info in infos:
        name = info.filename
        parts = name.split("/")
        if (
            info.orig_filename != name  # zipfile silently cuts names at a NUL byte
            or not _MEMBER_CHARS.fullmatch(name)
            or name.startswith("/")
            or re.match(r"[A-Za-z]:", name)
            or any(p in ("", ".", "..") for p in parts[:-1])
            or parts[-1] in (".", "..")
            or len(parts) < 2
        ):
            raise ValueError(f"zip member name {info.orig_filename!r} is not a plain relative path inside one folder")
        if name in seen:
            raise ValueError(f"zip member {name!r} appears twice")
        seen.add(name)
        tops.add(parts[0])
    if len(tops) != 1:
        raise ValueError(f"zip checkpoint must hold exactly one top-level folder, found {sorted(tops)[:5]}")
    return tops.pop()


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, archive_size: int, expected: int | None = None) -> bytes:
    if info.flag_bits & 0x1:
        raise ValueError(f"zip member {info.filename!r} is encrypted")
    if expected is not None and info.file_size != expected:
        raise ValueError(f"zip member {info.filename!r} holds {info.file_size} bytes, the pickle declares {expected}")
    if info.header_offset + info.compress_size > archive_size:
        raise ValueError(f"zip member {info.filename!r} extends past the end of the archive")
    if info.compress_type == zipfile.ZIP_STORED:
        if info.compress_size != info.file_size:
            raise ValueError(f"stored zip member {info.filename!r}: size {info.file_size} != stored size {info.compress_size}")
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        # deflate cannot exceed ~1032:1; a larger declared ratio is a lie (or a bomb).
        if info.file_size > 1032 * info.compress_size + 1024:
            raise ValueError(f"zip member {info.filename!r} declares {info.file_size} bytes from {info.compress_size} compressed")
    else:
        raise ValueError(f"zip member {info.filename!r} uses unsupported compression {info.compress_type}")
    with zf.open(info) as member:
        data = member.read(info.file_size + 1)
    if len(data) != info.file_size:
        raise ValueError(f"zip member {info.filename!r} holds {len(data)} bytes, its header says {info.file_size}")
    return data


def _read_zip(f: BinaryIO) -> Any:
    archive_size = os.fstat(f.fileno()).st_size
    with zipfile.ZipFile(f) as zf:
        infos = zf.infolist()
        top = _check_member_names(infos)
        by_name = {i.filename: i for i in infos}
        pkl = by_name.get(f"{top}/data.pkl")
        if pkl is None:
            hint = " (a TorchScript archive? save model.state_dict() instead)" if f"{top}/constants.pkl" in by_name else ""
            raise ValueError(f"zip archive has no {top}/data.pkl: not a torch.save checkpoint{hint}")
        byteorder = "little"
        if f"{top}/byteorder" in by_name:
            raw = _read_member(zf, by_name[f"{top}/byteorder"], archive_size)
            if raw not in (b"little", b"big"):
                raise ValueError(f"byteorder record is {raw[:20]!r}, expected b'little' or b'big'")
            byteorder = raw.decode()
        if pkl.file_size > _MAX_PICKLE_BYTES:
            raise ValueError(f"data.pkl declares {pkl.file_size} bytes")
        data = _read_member(zf, pkl, archive_size)
        storages: dict[str, Storage] = {}

        def persistent_load(pid: Any) -> Storage:
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] in ("storage", b"storage")):
                raise ValueError(f"unexpected persistent id (expected ('storage', type, key, location, numel)): {type(pid).__name__}")
            _, stype, key, _location, numel = pid
            if not isinstance(stype, StorageType):
                raise ValueError("persistent id does not name a storage class")
            if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", key) or key.strip(".") == "":
                raise ValueError(f"storage key {key!r:.70} is not a plain name")
            numel = check_int(numel, "storage element count")
            dtype = stype.dtype
            if key in storages:
                if storages[key].dtype is not dtype:
                    raise ValueError(f"storage {key} is used as both {storages[key].dtype.name} and {dtype.name}")
                return storages[key]
            info = by_name.get(f"{top}/data/{key}")
            if info is None:
                raise ValueError(f"storage member {top}/data/{key} is missing")
            nbytes = numel * dtype.itemsize
            raw = _read_member(zf, info, archive_size, expected=nbytes)
            order = ">" if byteorder == "big" else "<"
            arr = np.frombuffer(raw, dtype=dtype.np_dtype.newbyteorder(order) if dtype.itemsize > 1 else dtype.np_dtype)
            if order == ">" and dtype.itemsize > 1:
                arr = arr.astype(dtype.np_dtype)
            storages[key] = Storage(key, dtype, arr)
            return storages[key]

        return _finish(unpickle(data, persistent_load))


def _finish(obj: Any) -> Any:
    """A bare storage saved as a value comes back as its 1-D array."""
    if isinstance(obj, Storage):
        return np.array(obj.array)
    return obj


def _read_legacy(f: BinaryIO) -> Any:
    data = f.read()

    def small_pickle(start: int) -> tuple[Any, int]:
        end = scan_pickle(data, start)
        return unpickle(data[start:end], _no_persistent), end

    magic, pos = small_pickle(0)
    if magic != LEGACY_MAGIC:
        raise ValueError(f"legacy magic number is {magic!r:.40}, expected {LEGACY_MAGIC:#x}")
    protocol, pos = small_pickle(pos)
    if protocol != LEGACY_PROTOCOL:
        raise ValueError(f"legacy protocol version is {protocol!r:.40}, expected {LEGACY_PROTOCOL}")
    sys_info, pos = small_pickle(pos)
    if not isinstance(sys_info, dict):
        raise ValueError("legacy sys_info is not a dict")
    main_end = scan_pickle(data, pos)
    main = data[pos:main_end]
    keys, pos = small_pickle(main_end)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) or len(set(keys)) != len(keys):
        raise ValueError("legacy storage key list is not a list of distinct strings")

    # Pass 1: learn each storage's element type and count from the persistent ids.
    declared: dict[str, tuple[DType, int]] = {}

    def survey(pid: Any) -> Storage:
        key, dtype, numel, _view = _legacy_pid(pid)
        if key in declared and declared[key][0] is not dtype:
            raise ValueError(f"storage {key} is used as both {declared[key][0].name} and {dtype.name}")
        declared.setdefault(key, (dtype, numel))
        return Storage(key, dtype, None)

    unpickle(main, survey)
    if set(keys) != set(declared):
        raise ValueError(
            f"legacy storage list {sorted(keys)[:5]} does not match the storages the pickle uses {sorted(declared)[:5]}"
        )

    # The storages follow in key-list order: int64 element count, then the raw bytes.
    roots: dict[str, np.ndarray] = {}
    for key in keys:
        dtype, numel = declared[key]
        if pos + 8 > len(data):
            raise ValueError(f"file ends before storage {key}")
        (count,) = struct.unpack_from("<q", data, pos)
        if count != numel:
            raise ValueError(f"storage {key} holds {count} elements, the pickle declares {numel}")
        pos += 8
        nbytes = numel * dtype.itemsize
        if pos + nbytes > len(data):
            raise ValueError(f"storage {key} needs {nbytes} bytes, the file has {len(data) - pos} left")
        roots[key] = np.frombuffer(data, dtype=dtype.np_dtype, count=numel, offset=pos)
        pos += nbytes

    # Pass 2: the real object, its tensors now backed by data.
    views: dict[str, Storage] = {}

    def load(pid: Any) -> Storage:
        key, dtype, numel, view_meta = _legacy_pid(pid)
        root = Storage(key, dtype, roots[key])
        if view_meta is None:
            return root
        view_key, offset, size = view_meta
        if offset + size > numel:
            raise ValueError(f"storage view {view_key} [{offset}, {offset + size}) exceeds its {numel}-element root")
        if view_key not in views:
            views[view_key] = Storage(view_key, dtype, roots[key][offset : offset + size])
        return views[view_key]

    return _finish(unpickle(main, load))


def _no_persistent(pid: Any) -> Any:
    raise ValueError("unexpected persistent id in a legacy header pickle")


def _legacy_pid(pid: Any) -> tuple[str, DType, int, tuple[str, int, int] | None]:
    if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] in ("storage", b"storage")):
        if isinstance(pid, tuple) and pid and pid[0] in ("module", b"module"):
            raise ValueError("checkpoint pickles a whole nn.Module (code); save model.state_dict() instead")
        raise ValueError(f"unexpected persistent id (expected ('storage', type, key, location, numel, view)): {type(pid).__name__}")
    _, stype, key, _location, numel, view_meta = pid
    if not isinstance(stype, StorageType):
        raise ValueError("persistent id does not name a storage class")
    if not isinstance(key, str):
        raise ValueError("storage key is not a string")
    numel = check_int(numel, "storage element count")
    if view_meta is not None:
        if not (isinstance(view_meta, tuple) and len(view_meta) == 3 and isinstance(view_meta[0], str)):
            raise ValueError("storage view metadata is not (key, offset, size)")
        view_meta = (view_meta[0], check_int(view_meta[1], "view offset"), check_int(view_meta[2], "view size"))
    return key, stype.dtype, numel, view_meta


# --------------------------------------------------------------------------------------
# State-dict unwrapping.


def unwrap_state_dict(obj: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Split a loaded checkpoint into its tensors and its metadata.

    Accepts a plain state dict, or a training checkpoint that holds one under
    ``"state_dict"`` (FlowNetPytorch / NVIDIA ``.pth.tar``) or ``"model"`` (CFNet ``.ckpt``).
    A ``module.`` prefix (``nn.DataParallel``) is removed when every key has it.

    Args:
      obj: what :func:`read_torch_checkpoint` returned.

    Returns:
      ``(state, extras)``: ``state`` maps parameter names to numpy arrays; ``extras`` holds
      the checkpoint's other top-level entries (``div_flow``, ``arch``, ``epoch``,
      ``optimizer``, ...) and, under ``"non_tensor_entries"``, any non-array values found
      inside the state dict.

    Raises:
      ValueError: ``obj`` is not a mapping, or holds no tensors, or has non-string keys.
    """
    if not isinstance(obj, Mapping):
        raise ValueError(f"expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")
    extras: dict[str, Any] = {}
    state: Mapping[str, Any] = obj
    for wrapper in ("state_dict", "model"):
        inner = obj.get(wrapper)
        if isinstance(inner, Mapping) and any(isinstance(v, np.ndarray) for v in inner.values()):
            state = inner
            extras = {k: v for k, v in obj.items() if k != wrapper}
            break
    bad_keys = [k for k in state if not isinstance(k, str)]
    if bad_keys:
        raise ValueError(f"state dict keys must be strings, found {bad_keys[:5]!r}")
    tensors = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    others = {k: v for k, v in state.items() if not isinstance(v, np.ndarray)}
    if not tensors:
        raise ValueError(
            f"no tensors found: expected a state dict or a dict with a 'state_dict' or 'model' entry; "
            f"top-level keys are {list(obj)[:10]}"
        )
    if others:
        extras["non_tensor_entries"] = others
    return strip_prefix(tensors, "module."), extras
