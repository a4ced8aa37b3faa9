"""flowlib's cache of compiled models: compile a model once per machine, not once per process.

Every :class:`flowlib.Model` runs its forward through :class:`CachedFunction`. On the first
call with new input shapes in a process it lowers (traces) the jitted function, hashes the
lowered StableHLO module together with the JAX and jaxlib versions, the target device,
``$XLA_FLAGS`` and the host's CPU, and looks for a serialised executable of that
hash in ``<flowlib cache>/compiled/jax-<version>-<host>/`` (the flowlib cache is
``$FLOWLIB_HOME``, else ``$XDG_CACHE_HOME/flowlib``, else ``~/.cache/flowlib``; see
:func:`flowlib.hub.cache_dir`). Found: it is loaded instead of compiled. Not found: the
function is compiled and its executable saved there. Later calls with the same shapes in the
same process reuse the executable. JAX's own configuration (``jax.config``) is read, never
changed: a program that loads a flowlib model keeps its own compilation cache settings.

Turning it off: ``FLOWLIB_COMPILATION_CACHE=0`` (also ``false``, ``no``, ``off``).

Choices:

* The key is the lowered module and the XLA options it is compiled with, so any change to a
  model's code, its settings, the input shapes or dtypes, a JAX option that changes the
  program (matmul precision, x64) or a compiler option gives a new entry; a stale
  executable is never run.
* The host fingerprint (CPU model and ISA flags) is part of the path and of the key: XLA:CPU
  executables are compiled for the host's instruction set, so a ``$FLOWLIB_HOME`` shared
  between machines (NFS home) must not hand an AVX-512 executable to a CPU without AVX-512.
* Executables are saved with :mod:`jax.experimental.serialize_executable`, zlib-compressed
  (level 1, fast), and written atomically (:func:`flowlib._files.atomic_write`), so a process
  reading while another writes never sees a truncated entry. Loading one runs code from the file, like JAX's own cache: the
  folder must be trusted as much as the flowlib installation.
* Degrades, never fails: a cache directory that cannot be created disables the cache with a
  warning; a read-only one is read but not written (one warning); a corrupt or unloadable
  entry is reported with a warning, removed and recompiled; an executable that cannot be
  serialised is simply not saved.
* Computations found by their lowered module alone are saved only when they took at least
  :data:`MIN_COMPILE_SECS` to compile (a later process lowers them anyway, and the tiny
  shapes of tests compile in milliseconds: not worth a file each). Those with an index
  (below) are always saved: a later process skips their lowering too, which for a small
  computation (PatchFlow's steps between levels) takes as long as its compile.
* Finding an entry needs the lowered module, and lowering (tracing) a model takes longer
  than loading its executables. A :class:`CachedFunction` given an ``identity`` (flowlib's
  own functions, such as PatchFlow's stages: the function's name and static settings) also
  writes a small index file next to each executable, keyed by what decides the program
  without lowering it: the identity, the input shapes, dtypes and weak types, a hash of
  flowlib's source files, the JAX and jaxlib installations (version, file size and time),
  every JAX option (``jax.config.values``), numpy's version, and what the key above adds. A
  later process finds the executable through the index and loads it without tracing; a
  missing, damaged or stale index is only a miss (the function is lowered as usual).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
import pickle
import platform
import tempfile
import threading
import time
import warnings
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from flowlib._files import atomic_write

__all__ = ["ENV", "MIN_COMPILE_SECS", "CachedFunction", "announcing", "cache_path", "is_disabled",
           "is_entry"]

#: Environment variable: ``0`` / ``false`` / ``no`` / ``off`` turn the cache off.
ENV = "FLOWLIB_COMPILATION_CACHE"
#: Computations without an index that compile faster than this are not written to the cache.
MIN_COMPILE_SECS = 0.2

_OFF = ("0", "false", "no", "off")
_ON = ("", "1", "true", "yes", "on")
_SUFFIX = ".executable"
_INDEX_SUFFIX = ".index"
_warned: set[tuple[str, str]] = set()
_warn_lock = threading.Lock()


def is_disabled() -> bool:
    """Whether ``$FLOWLIB_COMPILATION_CACHE`` turns the cache off.

    Raises:
      ValueError: the variable holds something other than an on / off word.
    """
    value = os.environ.get(ENV, "").strip().lower()
    if value in _OFF:
        return True
    if value in _ON:
        return False
    raise ValueError(
        f"${ENV} must be one of {_ON[1:] + _OFF} (unset: on), got {os.environ[ENV]!r}"
    )


def _host_fingerprint() -> str:
    """CPU model and ISA flags (Linux ``/proc/cpuinfo``; elsewhere ``platform``), hashed."""
    text = f"{platform.system()} {platform.machine()} {platform.processor()}"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = [ln for ln in f if ln.split(":")[0].strip() in ("model name", "flags")]
        text += "".join(sorted(set(lines)))
    except OSError:
        pass
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _root() -> Path:
    from flowlib import hub

    return hub.cache_dir() / "compiled"


def cache_path() -> Path:
    """The folder of this machine's entries (not created here)."""
    import jax

    host = f"{platform.machine()}-{_host_fingerprint()}"
    return _root() / f"jax-{jax.__version__}-{host}"


def is_entry(path: str | os.PathLike) -> bool:
    """Whether ``path`` is in flowlib's compilation cache (of any JAX version or host)."""
    return _root() in Path(path).absolute().parents


def _warn_once(path: Path, what: str, message: str) -> None:
    with _warn_lock:
        if (str(path), what) in _warned:
            return
        _warned.add((str(path), what))
    warnings.warn(message, stacklevel=4)


def _writable(path: Path) -> bool:
    try:
        fd, tmp = tempfile.mkstemp(dir=path, prefix=".probe.")
    except OSError:
        return False
    os.close(fd)
    os.unlink(tmp)
    return True


def _folder() -> tuple[Path | None, bool]:
    """The cache folder (None: off or uncreatable) and whether it can be written."""
    if is_disabled():
        return None, False
    path = cache_path()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _warn_once(path, "create", f"flowlib: cannot create the compilation cache {path} ({e});"
                   f" models compile in every process (set {ENV}=0 to silence this)")
        return None, False
    if not _writable(path):
        _warn_once(path, "write", f"flowlib: the compilation cache {path} is not writable;"
                   " existing entries are used, new ones are not saved (set"
                   f" {ENV}=0 to silence this)")
        return path, False
    return path, True


def _target_device() -> Any:
    """The device an uncommitted computation runs on (``jax_default_device``, else the first
    device of the default backend)."""
    import jax

    device = jax.config.jax_default_device
    if device is None:
        return jax.devices()[0]
    if isinstance(device, str):
        return jax.devices(device)[0]
    return device


def _key(text: str, device: Any) -> str:
    import jax
    import jaxlib

    parts = [
        f"jax {jax.__version__} jaxlib {jaxlib.__version__}",
        f"{device.platform} {device.device_kind} {device.id}",
        f"xla_flags {os.environ.get('XLA_FLAGS', '')}",
        f"host {platform.machine()} {_host_fingerprint()}",
        text,
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


_ANNOUNCE: contextvars.ContextVar[Callable[[tuple], None] | None] = contextvars.ContextVar(
    "flowlib_compile_announcement", default=None)


@contextlib.contextmanager
def announcing(callback: Callable[[tuple], None] | None) -> Any:
    """Within the block, a :class:`CachedFunction` without its own ``on_compile`` calls
    ``callback(args)`` just before it compiles (a model made of several compiled functions
    says once that a wait is coming)."""
    token = _ANNOUNCE.set(callback)
    try:
        yield
    finally:
        _ANNOUNCE.reset(token)


_CODE: str | None = None


def _code_fingerprint() -> str:
    """flowlib's source, and the JAX and jaxlib installations (path, size, time), hashed
    ("": unreadable, no index is used)."""
    global _CODE
    if _CODE is None:
        import jax
        import jaxlib

        digest = hashlib.sha256()
        package = Path(__file__).resolve().parent
        try:
            for path in sorted(package.rglob("*.py")):
                digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
            for module in (jax, jaxlib):
                stat = os.stat(str(module.__file__))
                digest.update(f"{module.__file__} {stat.st_size} {stat.st_mtime_ns}".encode())
        except (OSError, TypeError):
            _CODE = ""
        else:
            _CODE = digest.hexdigest()
    return _CODE


def _signature_key(identity: str, signature: tuple, device: Any) -> str:
    """What decides a named function's lowered program without lowering it: the function
    and its static settings (``identity``), the input signature, flowlib's source, the JAX
    installation and every JAX option, plus what :func:`_key` adds."""
    import jax

    parts = [identity, repr(signature), _code_fingerprint(), f"numpy {np.__version__}",
             repr(sorted(jax.config.values.items()))]
    return _key("\n".join(parts), device)


def _signature(args: tuple) -> tuple:
    import jax

    leaves, tree = jax.tree.flatten(args)
    return tree, tuple((np.shape(x), str(getattr(x, "dtype", type(x)))) for x in leaves)


class _Entry:
    """One signature's executable: being compiled (a future) or ready."""

    def __init__(self, work: Future, out_info: Any):
        self._work = work
        self.out_info = out_info

    def executable(self) -> Any:
        return self._work.result()


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _compile_pool() -> ThreadPoolExecutor:
    """The threads that compile and load executables (created on first use). One more than
    the cores (at most 4): a compile waits on its own helper threads part of the time."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            workers = min(4, (os.cpu_count() or 1) + 1)
            _POOL = ThreadPoolExecutor(workers, thread_name_prefix="flowlib-compile")
        return _POOL


class CachedFunction:
    """A ``jax.jit`` function whose executables are cached in memory and on disk.

    Args:
      fun: the jitted function (``jax.jit(f)``), called with positional array arguments.
      name: a readable prefix for its cache files (the model's name).
      identity: a string that, with the input signature, flowlib's source and JAX's
        installation and options, decides the lowered program (the function's qualified
        name and its static settings): its executables are also indexed under it, so a
        later process loads them without lowering. None: found by the lowered module only.
      compiler_options: XLA options to compile with (``Lowered.compile``'s); part of the key.

    Attributes:
      on_compile: if set, called as ``on_compile(args)`` just before XLA compiles for a new
        signature (not when the executable is loaded from the cache): a caller can say
        that a wait is coming.

    Calling it with a new signature lowers the function (in the calling thread; not when an
    index names the executable) and compiles or loads the executable on flowlib's compile
    threads, then waits for it.
    :meth:`prepare` starts that work without waiting, so a model made of several compiled
    functions can start every compile at once and run each function as its executable
    arrives: XLA's compiler is largely single-threaded, so compiles side by side use the
    cores it leaves idle.
    """

    def __init__(self, fun: Any, name: str, identity: str | None = None,
                 compiler_options: dict[str, Any] | None = None):
        self._fun = fun
        self._name = name
        self._identity = identity
        self._options = dict(compiler_options or {})
        self._entries: dict[tuple, _Entry] = {}
        self._lock = threading.Lock()
        self.on_compile: Callable[[tuple], None] | None = None

    def __call__(self, *args: Any) -> Any:
        signature = _signature(args)
        entry = self._entries.get(signature) or self._start(signature, args)
        try:
            executable = entry.executable()
        except BaseException:
            with self._lock:  # a failed compile is tried again by the next call
                if self._entries.get(signature) is entry:
                    del self._entries[signature]
            raise
        return executable(*args)

    def prepare(self, *args: Any) -> Any:
        """Start compiling (or loading) the executable for ``args`` (arrays or
        :class:`jax.ShapeDtypeStruct`), without waiting; returns the outputs' shapes and
        dtypes (a pytree of :class:`jax.ShapeDtypeStruct`)."""
        signature = _signature(args)
        entry = self._entries.get(signature) or self._start(signature, args)
        return entry.out_info

    def _start(self, signature: tuple, args: tuple) -> _Entry:
        with self._lock:
            entry = self._entries.get(signature)
            if entry is None:
                folder, writable = _folder()
                index = self._index(signature, args, folder)
                entry = self._from_index(index, args, writable) if index is not None else None
                if entry is None:
                    lowered = self._fun.lower(*args)
                    file = self._file(lowered, folder)
                    if file is None or not file.is_file():
                        self._announce(args)
                    work = _compile_pool().submit(self._load_or_compile, lowered, file, writable,
                                                  index)
                    entry = _Entry(work, lowered.out_info)
                self._entries[signature] = entry
        return entry

    def _index(self, signature: tuple, args: tuple, folder: Path | None) -> Path | None:
        """The index file in ``folder`` that names this signature's executable without
        lowering (None: no ``identity``, or no cache)."""
        if self._identity is None or folder is None or not _code_fingerprint():
            return None
        import jax

        weak = tuple(bool(getattr(x, "weak_type", False)) for x in jax.tree.leaves(args))
        key = _signature_key(self._identity, (signature, weak, self._options_text()),
                             _target_device())
        return folder / f"{self._name}-{key[:32]}{_INDEX_SUFFIX}"

    def _from_index(self, index: Path, args: tuple, writable: bool) -> _Entry | None:
        """The entry of an indexed executable, loading on the compile threads (None: no
        usable index; a load that fails there lowers and compiles instead, saving the result
        if the cache folder is ``writable``)."""
        try:
            record = pickle.loads(index.read_bytes())
            file = index.parent / record["executable"]
            in_tree, out_tree, out_info = record["in_tree"], record["out_tree"], record["out_info"]
        except Exception:  # noqa: BLE001  a missing or damaged index is only a miss
            return None
        if not file.is_file():
            return None
        import jax

        shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), args)
        return _Entry(_compile_pool().submit(self._load_indexed, file, in_tree, out_tree, shapes,
                                             writable), out_info)

    def _load_indexed(self, file: Path, in_tree: Any, out_tree: Any, shapes: tuple,
                      writable: bool) -> Any:
        executable = self._load(file, in_tree, out_tree, _target_device(), writable)
        if executable is not None:
            return executable
        lowered = self._fun.lower(*shapes)
        return self._load_or_compile(lowered, self._file(lowered, file.parent), writable, None)

    def _file(self, lowered: Any, folder: Path | None) -> Path | None:
        """This lowering's cache file in ``folder`` (None: no cache)."""
        if folder is None:
            return None
        key = _key(self._options_text() + lowered.as_text(), _target_device())
        return folder / f"{self._name}-{key[:32]}{_SUFFIX}"

    def _load_or_compile(self, lowered: Any, file: Path | None, writable: bool,
                         index: Path | None = None) -> Any:
        executable = None
        if file is not None:
            executable = self._load(file, lowered.in_tree, lowered.out_tree, _target_device(),
                                    writable)
        if executable is None:
            start = time.perf_counter()
            executable = lowered.compile(self._options or None)
            quick = time.perf_counter() - start < MIN_COMPILE_SECS
            if file is not None and writable and (index is not None or not quick):
                self._save(file, executable)
        if index is not None and file is not None and writable and file.is_file():
            self._save_index(index, file, lowered)
        return executable

    def _options_text(self) -> str:
        """The compiler options, as they enter the keys ("" when none)."""
        return f"compiler options {sorted(self._options.items())!r}\n" if self._options else ""

    def _announce(self, args: tuple) -> None:
        callback = self.on_compile if self.on_compile is not None else _ANNOUNCE.get()
        if callback is not None:
            callback(args)

    @staticmethod
    def _load(file: Path, in_tree: Any, out_tree: Any, device: Any, writable: bool) -> Any:
        from jax.experimental import serialize_executable

        try:
            payload = file.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            warnings.warn(f"flowlib: cannot read compilation cache entry {file}: {e}; compiling",
                          stacklevel=4)
            return None
        try:
            return serialize_executable.deserialize_and_load(
                zlib.decompress(payload), in_tree, out_tree, backend=device.client,
                execution_devices=[device])
        except Exception as e:  # noqa: BLE001  pickle, XLA and zlib errors: any bad entry
            warnings.warn(
                f"flowlib: corrupt compilation cache entry {file} ({type(e).__name__}: {e});"
                " compiling again" + (" and removing it" if writable else ""),
                stacklevel=4,
            )
            if writable:
                file.unlink(missing_ok=True)
            return None

    @staticmethod
    def _save_index(index: Path, file: Path, lowered: Any) -> None:
        record = {"executable": file.name, "in_tree": lowered.in_tree,
                  "out_tree": lowered.out_tree, "out_info": lowered.out_info}
        try:
            atomic_write(index, pickle.dumps(record))
        except Exception:  # noqa: BLE001  unwritable, or trees it cannot pickle: no index
            pass

    @staticmethod
    def _save(file: Path, executable: Any) -> None:
        from jax.experimental import serialize_executable

        try:
            payload, _, _ = serialize_executable.serialize(executable)
        except (ValueError, NotImplementedError):  # a backend or program it cannot serialise
            return
        try:
            # Temp file + rename with open()'s permissions (a cache shared by a group).
            atomic_write(file, zlib.compress(payload, 1))
        except OSError as e:
            _warn_once(file.parent, "save", f"flowlib: cannot save to the compilation cache"
                       f" {file.parent} ({e}); models compile in every process")
