"""Ctrl-C (SIGINT) and SIGTERM sent to a real ``python -m flowlib`` process while it loads,
compiles, computes or writes: exit status 130 / 143, one line naming the complete files
written, no traceback, no crash, no temporary or partial file.

Each test waits for an observable point before signalling (the handlers in place, the
"compiling" line, a first flow file), so the phase does not depend on the machine's speed.
The compile tests start from an empty cache, so XLA really compiles when the signal lands.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from flowlib import io

REPO = Path(__file__).resolve().parents[1]
H, W = 64, 96
EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu", FLOWLIB_OFFLINE="1",
               FLOWLIB_HOME=str(home))
    env.pop("FLOWLIB_COMPILATION_CACHE", None)
    return env


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = (rng.random((H, W + 2 * n, 3)) * 255).astype(np.uint8)
    return [np.ascontiguousarray(base[:, 2 * k: 2 * k + W]) for k in range(n)]


@pytest.fixture
def pair(tmp_path) -> tuple[str, str]:
    a, b = _frames(2)
    io.write_image(tmp_path / "a.png", a)
    io.write_image(tmp_path / "b.png", b)
    return "a.png", "b.png"


class _Process:
    """``python -m flowlib ARGS`` in ``cwd``, its stderr read line by line as it comes."""

    def __init__(self, args: list[str], cwd: Path, home: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "flowlib", *args], cwd=cwd,
                                     env=_env(home), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with self.proc.stderr:
            for line in self.proc.stderr:
                self.lines.put(line)
        self.lines.put("")  # end of stream

    def wait_for_line(self, pattern: str, timeout: float = 120.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.stderr.append(line)
            if re.search(pattern, line):
                return line
            if line == "":
                break
        self._kill()
        pytest.fail(f"no line matching {pattern!r} on stderr: {''.join(self.stderr)!r}")

    def wait_until(self, condition, timeout: float = 120.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if condition():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self._kill()
        pytest.fail(f"condition not reached (exit {self.proc.poll()})")

    def _kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()

    def handlers_installed(self) -> bool:
        """Whether the process catches SIGTERM (Python alone does not): flowlib's handlers."""
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return False
        caught = int(re.search(r"^SigCgt:\s*([0-9a-f]+)", status, re.M).group(1), 16)
        return bool(caught >> (signal.SIGTERM - 1) & 1)

    def finish(self, signum: int) -> tuple[int, str, str]:
        self.proc.send_signal(signum)
        self.proc.wait(timeout=60)
        with self.proc.stdout:
            stdout = self.proc.stdout.read()
        while (line := self.lines.get(timeout=10)) != "":
            self.stderr.append(line)
        return self.proc.returncode, stdout, "".join(self.stderr)


def _leftovers(folder: Path) -> list[str]:
    """Temporary files anywhere under ``folder`` (AtomicFile names them ``.NAME.XXXX.tmp*``)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*") if ".tmp" in p.name)


def _check_clean_exit(code: int, stderr: str, signum: int, command: str | None) -> str:
    """The exit status and the last line; ``command`` None: the signal may have come before
    the arguments were parsed (the line then says just "flowlib")."""
    assert code == EXIT[signum], stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    program = r"flowlib( estimate)?" if command is None else f"flowlib {command}"
    assert re.match(rf"{program}: interrupted \({signal.Signals(signum).name}\); ", last), stderr
    return last


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_while_loading(tmp_path, pair, signum):
    run = _Process(["estimate", *pair, "-o", "flow.flo"], tmp_path, tmp_path / "home")
    run.wait_until(run.handlers_installed, timeout=60)
    code, _, stderr = run.finish(signum)
    last = _check_clean_exit(code, stderr, signum, None)
    assert last.endswith("nothing was written")
    assert not (tmp_path / "flow.flo").exists()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("command, signum", [("estimate", signal.SIGINT),
                                             ("stereo", signal.SIGTERM)],
                         ids=["estimate-SIGINT", "stereo-SIGTERM"])
def test_signal_during_the_first_compile(tmp_path, pair, command, signum):
    # An empty cache: XLA compiles the model (20-30 s on 2 cores); the signal lands 1 s in.
    run = _Process([command, *pair, "-o", "out.npy", "--viz", "out.png"], tmp_path,
                   tmp_path / "home")
    run.wait_for_line(r"^compiling \w+ for 64x96 \(once per size; cached in ")
    time.sleep(1.0)
    code, stdout, stderr = run.finish(signum)
    last = _check_clean_exit(code, stderr, signum, command)
    assert last.endswith("nothing was written")
    assert stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "home"]
    assert _leftovers(tmp_path / "home") == []


@pytest.fixture(scope="module")
def warm_home(tmp_path_factory) -> Path:
    """A flowlib cache holding the default flow model compiled for 64x96 (one real run)."""
    folder = tmp_path_factory.mktemp("warm")
    a, b = _frames(2)
    io.write_image(folder / "a.png", a)
    io.write_image(folder / "b.png", b)
    home = folder / "home"
    subprocess.run([sys.executable, "-m", "flowlib", "estimate", "a.png", "b.png", "-o",
                    "f.flo"], cwd=folder, env=_env(home), check=True, capture_output=True)
    return home


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_while_writing_a_folder_and_a_video(tmp_path, warm_home, signum):
    pytest.importorskip("av")
    frames = tmp_path / "frames"
    frames.mkdir()
    for k, frame in enumerate(_frames(80)):
        io.write_image(frames / f"f{k:03d}.png", frame)
    run = _Process(["estimate", "frames", "-o", "flows", "--video", "flow.mp4", "--arrows",
                    "arrows.mp4"], tmp_path, warm_home)
    flows = tmp_path / "flows"
    run.wait_until(lambda: flows.is_dir() and any(flows.glob("*.flo")))
    code, stdout, stderr = run.finish(signum)
    last = _check_clean_exit(code, stderr, signum, "estimate")
    written = sorted(flows.glob("*.flo"))
    assert 1 <= len(written) < 79
    names = [p.name for p in written]
    if len(written) > 2:
        assert last.endswith(f"wrote {len(written)} files to flows ({names[0]} ... {names[-1]})")
    else:
        assert last.endswith(" and ".join(f"flows/{n}" for n in names))
    for path in written:  # each one complete
        assert io.read_flow(path)[0].shape == (H, W, 2)
    assert not (tmp_path / "flow.mp4").exists() and not (tmp_path / "arrows.mp4").exists()
    assert _leftovers(tmp_path) == []
    assert sorted(p.name for p in flows.iterdir()) == names


_GC_SIGNAL = """
import gc, os, runpy, signal, sys

fired = []

def callback(phase, info):
    # A signal delivered while the garbage collector's callbacks run (JAX has one): spin
    # so that the handler runs here if this is the thread that handles signals.
    if phase == "stop" and os.path.exists("flow.flo") and not fired:
        fired.append(1)
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100000):
            pass

gc.callbacks.append(callback)


class Stdout:
    # Collect garbage as the 'wrote' line goes out: the moment the pair run finishes.
    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        n = self.stream.write(text)
        if text.startswith("wrote"):
            gc.collect()
        return n

    def __getattr__(self, name):
        return getattr(self.stream, name)


sys.stdout = Stdout(sys.stdout)
sys.argv = ["flowlib", "estimate", "a.png", "b.png", "-o", "flow.flo"]
runpy.run_module("flowlib", run_name="__main__")
"""


@pytest.mark.slow
def test_signal_as_a_pair_run_finishes(tmp_path, pair, warm_home):
    proc = subprocess.run([sys.executable, "-c", _GC_SIGNAL], cwd=tmp_path, env=_env(warm_home),
                          capture_output=True, text=True, timeout=300)
    assert proc.stdout.startswith("wrote flow.flo")
    last = _check_clean_exit(proc.returncode, proc.stderr, signal.SIGINT, "estimate")
    assert last.endswith("; wrote flow.flo")
    assert io.read_flow(tmp_path / "flow.flo")[0].shape == (H, W, 2)
    assert _leftovers(tmp_path) == []


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc")
def test_interrupted_training_says_how_to_resume(tmp_path):
    run = _Process(["train", "spynet", "--data", "synthetic", "--steps", "100000",
                    "--batch-size", "2", "--crop", "32", "32", "--out", "run", "--quiet"],
                   tmp_path, tmp_path / "home")
    run.wait_until(lambda: (tmp_path / "run").is_dir())  # the arguments are parsed
    code, _, stderr = run.finish(signal.SIGINT)
    last = _check_clean_exit(code, stderr, signal.SIGINT, "train")
    assert last.endswith("re-run the same command to resume from the last checkpoint"), last


def test_a_reader_that_goes_away_ends_the_listing_quietly(tmp_path):
    # flowlib models | head: the pipe's reader is gone before the listing is written.
    proc = subprocess.Popen([sys.executable, "-m", "flowlib", "models"], cwd=tmp_path,
                            env=_env(tmp_path / "home"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGPIPE, stderr
    assert stderr == ""
