"""flowlib's cache of compiled models (``flowlib/_compilation_cache.py``).

Each process case runs ``load_model`` + ``estimate`` in fresh Python processes sharing one
``$FLOWLIB_HOME`` (a copy of one filled by a first process, or an empty one) and counts XLA compilations through JAX's public monitoring events
(``/jax/core/compile/backend_compile_duration``): a process that loads the model's executable
from the cache compiles nothing that takes long.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest

from flowlib import _compilation_cache

REPO = Path(__file__).resolve().parents[1]

_SCRIPT = r"""
import json, os, sys
import numpy as np
import jax
from jax import monitoring
compiles = []
monitoring.register_event_duration_secs_listener(
    lambda name, secs, **kw: compiles.append(secs)
    if name == "/jax/core/compile/backend_compile_duration" else None)
config = dict(jax.config.values)
import flowlib
from flowlib import _compilation_cache
if os.environ.get("TEST_PRETEND_READ_ONLY"):  # root ignores chmod; pretend as a user would see
    _compilation_cache._writable = lambda path: False
rng = np.random.default_rng(0)
a = rng.random((64, 96, 3), np.float32)
flow = flowlib.estimate(a, np.roll(a, 2, axis=1), model=flowlib.load_model("spynet"))
print(json.dumps({
    "compiled": sum(s >= _compilation_cache.MIN_COMPILE_SECS for s in compiles),
    "path": str(_compilation_cache.cache_path()),
    "config_changed": sorted(k for k, v in jax.config.values.items() if config.get(k) != v),
    "flow": float(np.abs(flow).sum()),
}))
"""


def _run(home: Path, *, env: dict | None = None, strict: bool = True,
         background: bool = False):
    full = {k: v for k, v in os.environ.items() if k != _compilation_cache.ENV}
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
    return {p.name: p.read_bytes() for p in (home / "compiled").rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> tuple[Path, dict]:
    """A ``$FLOWLIB_HOME`` filled by one process, and that process's result (the tests that go
    on from a filled cache copy the folder before changing it)."""
    home = tmp_path_factory.mktemp("filled")
    first, _ = _run(home)
    return home, first


def _filled(first_run: tuple[Path, dict], home: Path) -> dict:
    """Copy ``first_run``'s cache into ``home``; its result with the path moved there."""
    filled, first = first_run
    shutil.copytree(filled / "compiled", home / "compiled")
    return {**first, "path": str(home / Path(first["path"]).relative_to(filled))}


def test_second_process_finds_the_cache(first_run, tmp_path):
    first = _filled(first_run, tmp_path)
    assert first["compiled"] >= 1 and first["config_changed"] == []
    entries = _entries(first_run[0])
    assert entries and all(re.fullmatch(r"spynet-[0-9a-f]{32}\.executable", n) for n in entries)
    umask = os.umask(0)
    os.umask(umask)
    for path in (first_run[0] / "compiled").rglob("*.executable"):  # open()'s mode, not 0600
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert Path(first_run[1]["path"]).parent == first_run[0] / "compiled"
    second, _ = _run(tmp_path)
    assert second["compiled"] == 0 and second["config_changed"] == []
    assert second["flow"] == first["flow"]
    assert _entries(tmp_path) == entries


def test_concurrent_processes(tmp_path):
    """Two processes filling an empty cache at once: both succeed without a warning, the
    entries are complete (a third process loads them)."""
    procs = [_run(tmp_path, background=True) for _ in range(2)]
    results = [_result(p)[0] for p in procs]
    assert results[0]["flow"] == results[1]["flow"]
    third, _ = _run(tmp_path)
    assert third["compiled"] == 0


def test_corrupt_entry_recompiles_with_a_warning_and_is_removed(first_run, tmp_path):
    first = _filled(first_run, tmp_path)
    for path in (tmp_path / "compiled").rglob("*.executable"):
        path.write_bytes(b"not a compiled executable")
    second, err = _run(tmp_path, strict=False)
    assert "corrupt compilation cache entry" in err
    assert second["flow"] == first["flow"] and second["compiled"] >= 1
    third, _ = _run(tmp_path)  # repaired: a clean load, no warning (-W error)
    assert third["compiled"] == 0


def test_read_only_cache_is_read_not_written(first_run, tmp_path):
    first = _filled(first_run, tmp_path)
    entries = _entries(tmp_path)
    cache = Path(first["path"])
    cache.chmod(0o555)
    try:
        env = {"TEST_PRETEND_READ_ONLY": "1"} if os.geteuid() == 0 else {}
        second, err = _run(tmp_path, env=env, strict=False)
        assert "is not writable" in err
        assert second["compiled"] == 0 and second["flow"] == first["flow"]
        # a new machine's folder: compiles, and nothing is written
        empty = tmp_path / "other"
        folder = empty / Path(first["path"]).relative_to(tmp_path)
        folder.mkdir(parents=True)
        folder.chmod(0o555)
        third, err = _run(empty, env=env, strict=False)
        assert "is not writable" in err and third["flow"] == first["flow"]
        assert third["compiled"] >= 1 and not any(folder.iterdir())
    finally:
        cache.chmod(0o755)
    assert _entries(tmp_path) == entries


def _toy() -> tuple[Any, dict, np.ndarray]:
    """A jitted function, its weights and an input (a stand-in for a model's forward)."""
    def f(w, x):
        return jax.numpy.tanh(x @ w["a"]).sum(axis=0)

    w = {"a": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)}
    return jax.jit(f), w, np.arange(9, dtype=np.float32).reshape(3, 3) / 7


def test_turned_off_by_environment(tmp_path, monkeypatch):
    """Off: the function still runs and nothing is written (on, the same call writes an entry)."""
    monkeypatch.setenv("FLOWLIB_HOME", str(tmp_path))
    monkeypatch.setattr(_compilation_cache, "MIN_COMPILE_SECS", 0.0)  # save even a tiny one
    f, w, x = _toy()
    monkeypatch.setenv(_compilation_cache.ENV, "0")
    np.testing.assert_array_equal(_compilation_cache.CachedFunction(f, "toy")(w, x), f(w, x))
    assert not (tmp_path / "compiled").exists()
    monkeypatch.setenv(_compilation_cache.ENV, "1")
    np.testing.assert_array_equal(_compilation_cache.CachedFunction(f, "toy")(w, x), f(w, x))
    assert len(list((tmp_path / "compiled").rglob("toy-*.executable"))) == 1


def test_uncreatable_cache_directory_degrades(tmp_path, monkeypatch):
    home = tmp_path / "a-file"
    home.write_text("FLOWLIB_HOME points at a file")
    monkeypatch.setenv("FLOWLIB_HOME", str(home))
    f, w, x = _toy()
    with pytest.warns(UserWarning, match="cannot create the compilation cache"):
        got = _compilation_cache.CachedFunction(f, "toy")(w, x)
    np.testing.assert_array_equal(got, f(w, x))


def test_bad_environment_value_names_the_choices(monkeypatch):
    import flowlib

    monkeypatch.setenv(_compilation_cache.ENV, "maybe")
    with pytest.raises(ValueError, match=r"FLOWLIB_COMPILATION_CACHE must be one of"):
        flowlib.load_model("patchflow")
    for word in ("0", "off", "False"):
        monkeypatch.setenv(_compilation_cache.ENV, word)
        assert _compilation_cache.is_disabled()


def test_cached_function_in_process(tmp_path, monkeypatch):
    """Same results as the jitted function; one executable per input signature; a fresh
    :class:`CachedFunction` (another model instance) loads what the first one saved; the
    jax configuration is left as it was."""
    monkeypatch.setenv("FLOWLIB_HOME", str(tmp_path))
    monkeypatch.setattr(_compilation_cache, "MIN_COMPILE_SECS", 0.0)
    config = dict(jax.config.values)

    def f(w, x):
        return jax.numpy.tanh(x @ w["a"]).sum(axis=0)

    w = {"a": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)}
    x3, x5 = (np.arange(n * 3, dtype=np.float32).reshape(n, 3) / 7 for n in (3, 5))
    cached = _compilation_cache.CachedFunction(jax.jit(f), "toy")
    for x in (x3, x5, x3):
        np.testing.assert_array_equal(cached(w, x), jax.jit(f)(w, x))
    files = sorted((tmp_path / "compiled").rglob("toy-*.executable"))
    assert len(files) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = _compilation_cache.CachedFunction(jax.jit(f), "toy")
        np.testing.assert_array_equal(again(w, x5), jax.jit(f)(w, x5))
    assert sorted((tmp_path / "compiled").rglob("toy-*.executable")) == files
    assert dict(jax.config.values) == config


def test_announcing_reaches_functions_without_their_own_callback(tmp_path, monkeypatch):
    """Within ``announcing(cb)`` a CachedFunction about to compile calls cb with its arguments
    (its own on_compile wins); a signature already compiled calls nothing; outside the block
    nothing is called."""
    monkeypatch.setenv("FLOWLIB_HOME", str(tmp_path))
    heard, own = [], []
    plain = _compilation_cache.CachedFunction(jax.jit(lambda x: x + 1), "plus")
    mine = _compilation_cache.CachedFunction(jax.jit(lambda x: x * 2), "times")
    mine.on_compile = lambda args: own.append(np.shape(args[0]))
    x2, x3 = np.zeros(2, np.float32), np.zeros(3, np.float32)
    with _compilation_cache.announcing(lambda args: heard.append(np.shape(args[0]))):
        plain(x2), plain(x2), mine(x2)
    plain(x3)
    assert heard == [(2,)] and own == [(2,)]


def test_no_private_jax_imports():
    """flowlib uses JAX's public API only (``jax._src`` changes with any release)."""
    offenders = [
        f"{path.relative_to(REPO)}:{n}"
        for path in sorted((REPO / "flowlib").rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"\bjax\._src\b|from jax import _src\b|\bjaxlib\._[a-z]", line)
    ]
    assert offenders == []


def test_prepare_returns_output_shapes_and_the_call_reuses_its_executable(tmp_path, monkeypatch):
    """``prepare`` takes shapes alone (``ShapeDtypeStruct``), returns the outputs' shapes
    and dtypes without waiting, and announces the compile once; the later call with arrays
    of those shapes runs that executable (no second announcement) and gives the jitted
    result."""
    monkeypatch.setenv("FLOWLIB_HOME", str(tmp_path))
    heard = []

    def f(x, y):
        return {"sum": (x[:, None] * y[None]).sum(0)}

    x = np.linspace(0, 1, 6, dtype=np.float32)
    y = np.arange(4, dtype=np.float32)
    cached = _compilation_cache.CachedFunction(jax.jit(f), "outer")
    cached.on_compile = lambda args: heard.append(tuple(np.shape(a) for a in args))
    shapes = (jax.ShapeDtypeStruct(x.shape, x.dtype), jax.ShapeDtypeStruct(y.shape, y.dtype))
    out = cached.prepare(*shapes)
    assert out["sum"].shape == (4,) and out["sum"].dtype == np.float32
    assert cached.prepare(*shapes) is out
    got = cached(x, y)
    np.testing.assert_array_equal(got["sum"], jax.jit(f)(x, y)["sum"])
    assert heard == [((6,), (4,))]


def test_a_failed_compile_is_tried_again(tmp_path, monkeypatch):
    """An executable that failed to build is not kept: the next call compiles again."""
    monkeypatch.setenv("FLOWLIB_HOME", str(tmp_path))
    f, w, x = _toy()
    cached = _compilation_cache.CachedFunction(f, "toy")
    real = _compilation_cache.CachedFunction._load_or_compile
    failures = []

    def failing_once(self, *args):
        if not failures:
            failures.append(True)
            raise RuntimeError("compiler ran out of memory")
        return real(self, *args)

    monkeypatch.setattr(_compilation_cache.CachedFunction, "_load_or_compile", failing_once)
    with pytest.raises(RuntimeError, match="out of memory"):
        cached(w, x)
    np.testing.assert_array_equal(cached(w, x), f(w, x))


def _indexed(identity: str = "toy.f ()"):
    f, w, x = _toy()
    return _compilation_cache.CachedFunction(f, "toy", identity), f, w, x


def test_an_indexed_function_is_loaded_in_a_new_instance_without_lowering(tmp_path, monkeypatch):
    """With an ``identity``, the executable is also indexed by what decides the program; a
    fresh instance (a new process's) finds it through the index and never lowers; another
    identity or input shape is a miss and lowers as usual."""
    monkeypatch.setenv("FLOWLIB_HOME", str(tmp_path))
    monkeypatch.setattr(_compilation_cache, "MIN_COMPILE_SECS", 0.0)
    first, f, w, x = _indexed()
    np.testing.assert_array_equal(first(w, x), f(w, x))
    assert len(list((tmp_path / "compiled").rglob("toy-*.executable"))) == 1
    assert len(list((tmp_path / "compiled").rglob("toy-*.index"))) == 1

    lowered = []
    real = _compilation_cache.CachedFunction._file
    monkeypatch.setattr(
        _compilation_cache.CachedFunction, "_file",
        lambda self, low, folder: lowered.append(self._identity) or real(self, low, folder))
    again, *_ = _indexed()
    assert again.prepare(w, x).shape == (4,)  # the output shapes, from the index
    np.testing.assert_array_equal(again(w, x), f(w, x))
    assert lowered == []
    other, *_ = _indexed("toy.f (('scale', 2),)")
    np.testing.assert_array_equal(other(w, x), f(w, x))
    bigger = np.concatenate([x, x])
    np.testing.assert_array_equal(again(w, bigger), f(w, bigger))
    assert lowered == ["toy.f (('scale', 2),)", "toy.f ()"]


def test_quick_compiles_are_saved_only_when_indexed(tmp_path, monkeypatch):
    """A computation that compiles faster than MIN_COMPILE_SECS is saved (and indexed) when
    it has an identity, so that a new process neither lowers nor compiles it, and announces
    nothing; without one it is not saved (a new process lowers it anyway)."""
    monkeypatch.setenv("FLOWLIB_HOME", str(tmp_path))
    monkeypatch.setattr(_compilation_cache, "MIN_COMPILE_SECS", 1e9)  # every compile is quick
    first, f, w, x = _indexed()
    plain = _compilation_cache.CachedFunction(jax.jit(lambda x: x * 3), "plain")
    first(w, x), plain(x)
    folder = tmp_path / "compiled"
    assert len(list(folder.rglob("toy-*.executable"))) == len(list(folder.rglob("toy-*.index"))) == 1
    assert list(folder.rglob("plain-*")) == []
    heard = []
    again, *_ = _indexed()
    again.on_compile = lambda args: heard.append(args)
    np.testing.assert_array_equal(again(w, x), f(w, x))
    assert heard == []


def test_compiler_options_are_part_of_the_key(tmp_path, monkeypatch):
    """An executable compiled with other XLA options is another entry, through the lowered
    module as through the index: each instance compiles, runs and saves its own, and a fresh
    instance finds the one of its options."""
    monkeypatch.setenv("FLOWLIB_HOME", str(tmp_path))
    monkeypatch.setattr(_compilation_cache, "MIN_COMPILE_SECS", 0.0)
    f, w, x = _toy()
    options = {"xla_backend_optimization_level": 1}
    compiled = []
    real = _compilation_cache.CachedFunction._load_or_compile

    def counting(self, lowered, file, writable, index=None):
        compiled.append(self._options)
        return real(self, lowered, file, writable, index)

    monkeypatch.setattr(_compilation_cache.CachedFunction, "_load_or_compile", counting)
    plain = _compilation_cache.CachedFunction(f, "toy")  # the lowered-module key only
    np.testing.assert_allclose(plain(w, x), f(w, x), rtol=1e-6)
    lower = _compilation_cache.CachedFunction(f, "toy", compiler_options=options)
    np.testing.assert_allclose(lower(w, x), f(w, x), rtol=1e-6)
    assert len(list((tmp_path / "compiled").rglob("toy-*.executable"))) == 2
    indexed = _compilation_cache.CachedFunction(f, "toy", "toy.f ()", compiler_options=options)
    indexed(w, x)  # loads its lowered-module entry and writes the index
    assert len(list((tmp_path / "compiled").rglob("toy-*.executable"))) == 2
    assert compiled == [{}, options, options]
    compiled.clear()
    other = _compilation_cache.CachedFunction(f, "toy", "toy.f ()")  # same identity, no options
    other(w, x)
    assert compiled == [{}]  # not the indexed executable of the other options
    assert len(list((tmp_path / "compiled").rglob("toy-*.index"))) == 2


def test_a_damaged_index_or_a_bad_indexed_executable_falls_back(tmp_path, monkeypatch):
    """A damaged index is a miss (lowered, compiled or loaded as usual, index rewritten); an
    index whose executable is corrupt warns, lowers on the compile thread and recompiles."""
    monkeypatch.setenv("FLOWLIB_HOME", str(tmp_path))
    monkeypatch.setattr(_compilation_cache, "MIN_COMPILE_SECS", 0.0)
    first, f, w, x = _indexed()
    first(w, x)
    (index,) = (tmp_path / "compiled").rglob("toy-*.index")
    (executable,) = (tmp_path / "compiled").rglob("toy-*.executable")
    good = index.read_bytes()
    index.write_bytes(b"not a pickle")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(_indexed()[0](w, x), f(w, x))
    assert index.read_bytes() == good
    executable.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="corrupt compilation cache entry"):
        np.testing.assert_array_equal(_indexed()[0](w, x), f(w, x))


def test_signature_key_follows_identity_shapes_and_jax_options():
    device = jax.devices()[0]
    sig = _compilation_cache._signature((np.zeros((2, 3), np.float32),))
    key = _compilation_cache._signature_key("f ()", sig, device)
    assert key == _compilation_cache._signature_key("f ()", sig, device)
    assert key != _compilation_cache._signature_key("f (1,)", sig, device)
    other = _compilation_cache._signature((np.zeros((2, 4), np.float32),))
    assert key != _compilation_cache._signature_key("f ()", other, device)
    with jax.numpy_rank_promotion("raise"):
        assert key != _compilation_cache._signature_key("f ()", sig, device)
