"""flowlib's persistent compilation cache (``flowlib/_compilation_cache.py``).

Each case runs ``load_model`` + ``estimate`` in fresh Python processes sharing one
``$FLOWLIB_HOME`` and reads JAX's own cache events (``jax.monitoring``): a process that finds
the executable on disk records a cache hit and compiles nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from flowlib import _compilation_cache

REPO = Path(__file__).resolve().parents[1]

_SCRIPT = r"""
import json, os, sys
import numpy as np
from jax import monitoring
events = []
monitoring.register_event_listener(lambda name, **kw: events.append(name))
import flowlib
from flowlib import _compilation_cache
if os.environ.get("TEST_PRETEND_READ_ONLY"):  # root ignores chmod; pretend as a user would see
    _compilation_cache._writable = lambda path: False
rng = np.random.default_rng(0)
a = rng.random((64, 96, 3), np.float32)
flow = flowlib.estimate(a, np.roll(a, 2, axis=1), model=flowlib.load_model("spynet"))
print(json.dumps({
    "hits": events.count("/jax/compilation_cache/cache_hits"),
    "misses": events.count("/jax/compilation_cache/cache_misses"),
    "path": str(_compilation_cache.enable()),
    "flow": float(np.abs(flow).sum()),
}))
"""


def _run(home: Path, *, env: dict | None = None, strict: bool = True,
         background: bool = False):
    full = {k: v for k, v in os.environ.items()
            if k not in (_compilation_cache.ENV, "JAX_COMPILATION_CACHE_DIR")}
    full.update(FLOWLIB_HOME=str(home), PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu", **(env or {}))
    cmd = [sys.executable, *(["-W", "error"] if strict else []), "-c", _SCRIPT]
    proc = subprocess.Popen(cmd, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    if background:
        return proc
    return _result(proc)


def _result(proc: subprocess.Popen) -> tuple[dict, str]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1]), err


def _entries(home: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (home / "xla").rglob("*") if p.is_file()}


def test_second_process_finds_the_cache(tmp_path):
    first, _ = _run(tmp_path)
    assert first["hits"] == 0 and first["misses"] >= 1
    entries = _entries(tmp_path)
    assert entries and all(n.endswith("-cache") for n in entries)  # no temp files left
    umask = os.umask(0)
    os.umask(umask)
    for path in (tmp_path / "xla").rglob("*-cache"):  # as open() makes them, not mkstemp's 0600
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert Path(first["path"]).parent == tmp_path / "xla"
    second, _ = _run(tmp_path)
    assert second["hits"] >= 1 and second["misses"] == 0
    assert second["flow"] == first["flow"]
    assert _entries(tmp_path) == entries


def test_turned_off_by_environment(tmp_path):
    out, _ = _run(tmp_path, env={_compilation_cache.ENV: "0"})
    assert out["path"] == "None" and out["hits"] == out["misses"] == 0
    assert not (tmp_path / "xla").exists()


def test_concurrent_processes(tmp_path):
    """Two processes filling an empty cache at once: both succeed without a warning, the
    entries are complete (a third process hits them)."""
    procs = [_run(tmp_path, background=True) for _ in range(2)]
    results = [_result(p)[0] for p in procs]
    assert results[0]["flow"] == results[1]["flow"]
    third, _ = _run(tmp_path)
    assert third["hits"] >= 1 and third["misses"] == 0


def test_corrupt_entry_recompiles_with_a_warning_and_is_removed(tmp_path):
    first, _ = _run(tmp_path)
    for path in (tmp_path / "xla").rglob("*-cache"):
        path.write_bytes(b"not a compiled executable")
    second, err = _run(tmp_path, strict=False)
    assert "corrupt compilation cache entry" in err
    assert second["flow"] == first["flow"] and second["misses"] >= 1
    third, _ = _run(tmp_path)  # repaired: a clean hit, no warning (-W error)
    assert third["hits"] >= 1


def test_read_only_cache_is_read_not_written(tmp_path):
    first, _ = _run(tmp_path)
    entries = _entries(tmp_path)
    cache = Path(first["path"])
    cache.chmod(0o555)
    try:
        env = {"TEST_PRETEND_READ_ONLY": "1"} if os.geteuid() == 0 else {}
        second, err = _run(tmp_path, env=env, strict=False)
        assert "is not writable" in err
        assert second["hits"] >= 1 and second["flow"] == first["flow"]
        # a new shape compiles, and nothing is written
        empty = tmp_path / "other"
        (empty / "xla").mkdir(parents=True)
        (empty / "xla").chmod(0o555)
        third, err = _run(empty, env=env, strict=False)
        assert "is not writable" in err and third["flow"] == first["flow"]
        assert not any((empty / "xla").rglob("*-cache"))
    finally:
        cache.chmod(0o755)
    assert _entries(tmp_path) == entries


def test_uncreatable_cache_directory_degrades(tmp_path):
    home = tmp_path / "a-file"
    home.write_text("FLOWLIB_HOME points at a file")
    out, err = _run(home, strict=False)
    assert out["path"] == "None" and "cannot create the compilation cache" in err
    assert out["flow"] > 0


def test_bad_environment_value_names_the_choices(monkeypatch):
    monkeypatch.setenv(_compilation_cache.ENV, "maybe")
    with pytest.raises(ValueError, match=r"FLOWLIB_COMPILATION_CACHE must be one of"):
        _compilation_cache.is_disabled()
    for word in ("0", "off", "False"):
        monkeypatch.setenv(_compilation_cache.ENV, word)
        assert _compilation_cache.is_disabled()


def test_atomic_file_cache(tmp_path):
    from jax._src import compilation_cache as cc

    cache = _compilation_cache._AtomicFileCache(tmp_path, read_only=False)
    value = cc.compress_executable(b"executable bytes")
    assert cache.get("k") is None
    cache.put("k", value)
    cache.put("k", value)  # replacing is fine (repairs entries that failed to read)
    assert cache.get("k") == value
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k-cache"]
    (tmp_path / "k-cache").write_bytes(value[: len(value) // 2])  # truncated write
    with pytest.warns(UserWarning, match="corrupt compilation cache entry"):
        assert cache.get("k") is None
    assert not (tmp_path / "k-cache").exists()  # removed, so it warns once
    read_only = _compilation_cache._AtomicFileCache(tmp_path, read_only=True)
    read_only.put("other", value)
    assert not (tmp_path / "other-cache").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.get("missing") is None
