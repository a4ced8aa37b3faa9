"""JAX's persistent compilation cache for flowlib: compile a model once per machine, not once
per process.

:func:`enable` (called by :func:`flowlib.load_model`, hence by every CLI command that runs a
model) points JAX's persistent compilation cache at
``<flowlib cache>/xla/<jax version>-<host fingerprint>`` (the flowlib cache is
``$FLOWLIB_HOME``, else ``$XDG_CACHE_HOME/flowlib``, else ``~/.cache/flowlib``; see
:func:`flowlib.hub.cache_dir`). A second process that runs the same model on the same image
size loads the compiled executable instead of compiling it again.

Turning it off: ``FLOWLIB_COMPILATION_CACHE=0`` (also ``false``, ``no``, ``off``). A cache
directory the user configured for JAX itself (``JAX_COMPILATION_CACHE_DIR`` or
``jax.config.update("jax_compilation_cache_dir", ...)``) is respected and left alone.

Choices:

* The host fingerprint (CPU model and ISA flags) is part of the path: XLA:CPU executables are
  compiled for the host's instruction set, and JAX's cache key names only the platform
  (``"cpu"``), so a ``$FLOWLIB_HOME`` shared between machines (NFS home) must not hand an
  AVX-512 executable to a CPU without AVX-512.
* Entries are written atomically (temp file + ``os.replace``): JAX's own file cache
  (``jax._src.lru_cache``, jax 0.10) writes the final path in place, so a process reading
  while another writes could see a truncated entry. The writer is installed through JAX's
  private ``compilation_cache._cache`` hook; where a JAX version lacks it, JAX's own writer
  is used (still no crash: JAX turns unreadable entries into a warning and recompiles).
* Degrades, never fails: a cache directory that cannot be created disables the cache with a
  warning; a read-only one is read but not written (one warning); a corrupt entry is reported
  with a warning, removed and recompiled.
* Thresholds: entries are written for computations that took at least
  :data:`MIN_COMPILE_SECS` to compile, whatever their size (JAX's default is 1 s, which a
  small model on a fast machine can miss; the tiny eager ops compile in milliseconds and are
  not worth a file each).
"""

from __future__ import annotations

import hashlib
import os
import platform
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

from flowlib._files import atomic_write

__all__ = ["ENV", "MIN_COMPILE_SECS", "announcing", "cache_path", "enable", "is_disabled",
           "is_entry"]

#: Environment variable: ``0`` / ``false`` / ``no`` / ``off`` turn the cache off.
ENV = "FLOWLIB_COMPILATION_CACHE"
#: Computations that compile faster than this are not written to the cache.
MIN_COMPILE_SECS = 0.2

_OFF = ("0", "false", "no", "off")
_ON = ("", "1", "true", "yes", "on")
_lock = threading.Lock()
_state: dict[str, Any] = {"done": False, "path": None}


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

    return hub.cache_dir() / "xla"


def cache_path() -> Path:
    """Where :func:`enable` puts the cache (not created here)."""
    import jax

    host = f"{platform.machine()}-{_host_fingerprint()}"
    return _root() / f"jax-{jax.__version__}-{host}"


def is_entry(path: str | os.PathLike) -> bool:
    """Whether ``path`` is in flowlib's compilation cache (of any JAX version or host)."""
    return _root() in Path(path).absolute().parents


_announce = threading.local()


class announcing:
    """``with announcing(callback): f(x)`` -- call ``callback()`` once, just before XLA starts
    compiling something inside the block in this thread (not when the persistent cache has
    it). Where flowlib's cache is not in use (off, or JAX's own configured), nothing can
    tell a compile from a cache hit and the callback is called on entering the block.

    Used to say "compiling for 436x1024" before a model's first call at a new size.
    """

    def __init__(self, callback: Any) -> None:
        self._callback = callback

    def __enter__(self) -> None:
        from jax._src import compilation_cache as cc

        if not isinstance(getattr(cc, "_cache", None), _AtomicFileCache):
            self._callback()
            return
        _announce.callback = self._callback

    def __exit__(self, *exc: Any) -> None:
        _announce.callback = None


def _compiling() -> None:
    """A miss of the persistent cache: XLA compiles next; announce it (once per block)."""
    callback = getattr(_announce, "callback", None)
    if callback is not None:
        _announce.callback = None
        callback()


class _AtomicFileCache:
    """JAX ``CacheInterface``: one file per key, written by temp file + ``os.replace``.

    ``get`` checks that the entry decompresses and removes it where it does not (JAX would
    otherwise warn with a traceback-like message in every process and keep the bad file,
    since its writer skips existing keys); ``put`` always replaces.
    """

    _SUFFIX = "-cache"

    def __init__(self, path: Path, *, read_only: bool):
        self._path = path
        self.read_only = read_only

    def get(self, key: str) -> bytes | None:
        value = self._read(key)
        if value is None:  # JAX compiles next
            _compiling()
        return value

    def _read(self, key: str) -> bytes | None:
        from jax._src import compilation_cache as cc

        file = self._path / f"{key}{self._SUFFIX}"
        try:
            value = file.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            warnings.warn(f"flowlib: cannot read compilation cache entry {file}: {e}; compiling",
                          stacklevel=2)
            return None
        try:
            cc.decompress_executable(value)
        except Exception as e:  # noqa: BLE001  zlib.error, zstd errors: any undecodable entry
            warnings.warn(
                f"flowlib: corrupt compilation cache entry {file} ({type(e).__name__}: {e});"
                " compiling again" + ("" if self.read_only else " and removing it"),
                stacklevel=2,
            )
            if not self.read_only:
                # JAX writes back only what took MIN_COMPILE_SECS to compile: without this a
                # bad entry of a quick computation would warn in every process.
                file.unlink(missing_ok=True)
            return None
        return value

    def put(self, key: str, value: bytes) -> None:
        if self.read_only:
            return
        # Temp file + rename with open()'s permissions (a cache shared by a group): the
        # project's one atomic writer.
        atomic_write(self._path / f"{key}{self._SUFFIX}", value)

    def clear(self) -> None:  # CacheInterface; flowlib never clears a shared cache
        raise NotImplementedError("remove the cache directory by hand")


def _writable(path: Path) -> bool:
    try:
        fd, tmp = tempfile.mkstemp(dir=path, prefix=".probe.")
    except OSError:
        return False
    os.close(fd)
    os.unlink(tmp)
    return True


def enable() -> Path | None:
    """Turn on JAX's persistent compilation cache under the flowlib cache (once per process).

    Returns:
      The cache directory, or ``None`` when it is off (``$FLOWLIB_COMPILATION_CACHE=0``), when
      the user configured JAX's own cache directory (left as it is), or when the directory
      cannot be created (a warning says why). Never raises for file-system problems.
    """
    with _lock:
        if _state["done"]:
            return _state["path"]
        disabled = is_disabled()  # a bad value raises before anything is recorded
        _state["done"] = True
        if disabled:
            return None
        import jax

        if jax.config.jax_compilation_cache_dir:
            return None
        path = cache_path()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            warnings.warn(f"flowlib: cannot create the compilation cache {path} ({e}); models"
                          f" compile in every process (set {ENV}=0 to silence this)",
                          stacklevel=2)
            return None
        read_only = not _writable(path)
        if read_only:
            warnings.warn(f"flowlib: the compilation cache {path} is not writable; existing"
                          f" entries are used, new ones are not saved (set {ENV}=0 to silence"
                          " this)", stacklevel=2)
        jax.config.update("jax_compilation_cache_dir", str(path))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECS)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
        _install(path, read_only=read_only)
        _state["path"] = path
        return path


def _install(path: Path, *, read_only: bool) -> None:
    """Put :class:`_AtomicFileCache` in place of JAX's file cache (private hook; skipped
    where this JAX version lacks it, or JAX has already opened its own cache)."""
    try:
        from jax._src import compilation_cache as cc
    except ImportError:
        return
    if getattr(cc, "_cache", False) is None and hasattr(cc, "decompress_executable"):
        cc._cache = _AtomicFileCache(path, read_only=read_only)
        cc._cache_initialized = True  # as JAX's own _initialize_cache leaves it


def _reset_for_tests() -> None:
    """Forget :func:`enable`'s decision and JAX's cache (tests only)."""
    import jax
    from jax._src import compilation_cache as cc

    with _lock:
        _state.update(done=False, path=None)
        jax.config.update("jax_compilation_cache_dir", None)
        cc.reset_cache()
