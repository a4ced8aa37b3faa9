"""Resumable evaluation: the journal, and a benchmark run killed mid-way then resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flowlib.data import synthetic
from flowlib.evaluation import Journal

REPO = Path(__file__).resolve().parents[2]


def test_journal_restores_drops_a_torn_line_and_appends(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal(path, {"benchmark": "b", "n": (1, 2)}, resume=False) as j:
        j.add("a", {"parts": {"epe": [1.0, 2.0]}})
        j.add("b", {"parts": {"epe": [3.0, 4.0]}})
    with open(path, "ab") as f:  # a kill in the middle of writing the third line
        f.write(b'{"key": "c", "val')
    with Journal(path, {"benchmark": "b", "n": [1, 2]}, resume=True) as j:
        assert j.done == {"a": {"parts": {"epe": [1.0, 2.0]}}, "b": {"parts": {"epe": [3.0, 4.0]}}}
        j.add("c", 5)
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[-1]) == {"key": "c", "value": 5}
    with Journal(path, {"benchmark": "b", "n": [1, 2]}, resume=False) as j:  # no --resume: afresh
        assert j.done == {}
    assert len(path.read_text().splitlines()) == 1


def test_journal_of_another_run_is_refused(tmp_path):
    path = tmp_path / "j.jsonl"
    Journal(path, {"model": "spynet"}, resume=False).close()
    with pytest.raises(ValueError, match="journal of a different run"):
        Journal(path, {"model": "flownetc"}, resume=True)
    path.write_text("not json\n")
    with pytest.raises(ValueError, match="not an evaluation journal"):
        Journal(path, {"model": "spynet"}, resume=True)


def _weights(path: Path) -> Path:
    """Random SpyNet weights (3 levels, one shared network): fast but not trivial."""
    import jax
    import jax.numpy as jnp

    from flowlib.models.spynet import SpyNet
    from flowlib.weights import save_weights

    kwargs = {"num_networks": 1, "max_levels": 3}
    x = jnp.zeros((1, 32, 32, 3))
    variables = SpyNet(**kwargs).init(jax.random.PRNGKey(0), x, x)
    save_weights(path, jax.device_get(variables), {"model": "spynet", "model_kwargs": kwargs, "weights": "random"})
    return path


def _sintel(tmp_path: Path, weights: Path, journals: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "flowlib", "evaluate", "sintel", "--root", str(tmp_path / "sintel"), "--pass", "clean",
            "--weights", str(weights), "--journal-dir", str(journals), "-q", *extra]


def _lines(folder: Path) -> int:
    files = list(folder.glob("sintel-training-clean-*.jsonl")) if folder.is_dir() else []
    assert len(files) <= 1, files
    return len(files[0].read_bytes().splitlines()) if files else 0


@pytest.mark.slow  # 43 s on 2 cores: benchmark subprocesses, killed and resumed
def test_killed_benchmark_run_resumes_and_skips_finished_pairs(tmp_path):
    synthetic.write_sintel_layout(tmp_path / "sintel", scenes=1, frames=13, seed=3, height=256, width=512)
    weights = _weights(tmp_path / "w.npz")
    env = {**os.environ, "FLOWLIB_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    ref = subprocess.run(_sintel(tmp_path, weights, tmp_path / "ref", "--json", str(tmp_path / "ref.json")),
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr

    journal = tmp_path / "killed"
    proc = subprocess.Popen(_sintel(tmp_path, weights, journal), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    try:
        while _lines(journal) < 4:  # identity + 3 pairs
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    finished = _lines(journal) - 1
    assert 3 <= finished < 12, "the run must be killed mid-way"

    resumed = subprocess.run(_sintel(tmp_path, weights, journal, "--resume", "--json", str(tmp_path / "res.json")),
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming, {finished} pairs already evaluated" in resumed.stdout
    assert _lines(journal) == 1 + 12  # each pair evaluated once in all
    want = json.loads((tmp_path / "ref.json").read_text())[0]
    got = json.loads((tmp_path / "res.json").read_text())[0]
    assert got["num_pairs"] == want["num_pairs"] == 12
    for key, value in want["metrics"].items():
        if value is None:  # NaN (a bin without pixels) is written as null
            assert got["metrics"][key] is None, key
        else:
            np.testing.assert_allclose(got["metrics"][key], value, rtol=1e-9, err_msg=key)
    # The resumed run prints the same columns in the same order (it used to reorder them).
    def header(out: str) -> list[str]:
        lines = out.splitlines()
        return lines[next(i for i, line in enumerate(lines) if "pairs)" in line) + 1].split()

    assert header(resumed.stdout) == header(ref.stdout)
