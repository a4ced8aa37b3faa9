"""The flowlib command line: demo, viz, help, errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from flowlib import cli


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "viz", "estimate", "stereo", "convert", "download", "models"):
        assert command in out


def test_demo_writes_a_colour_png(tmp_path):
    from flowlib import io

    out = tmp_path / "demo.png"
    assert cli.main(["demo", "-o", str(out)]) == 0
    rgb = io.read_image(out, dtype="uint8")
    assert rgb.shape[0] == 192 and rgb.shape[1] > 256  # flow + legend
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 100


def test_viz_roundtrip_and_max_norm(tmp_path):
    from flowlib import io

    flow = np.zeros((10, 12, 2), np.float32)
    flow[:, :, 0] = 1.0
    io.write_flow(tmp_path / "f.flo", flow)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert cli.main(["viz", str(tmp_path / "f.flo"), "-o", str(a)]) == 0
    assert cli.main(["viz", str(tmp_path / "f.flo"), "-o", str(b), "--max-norm", "4"]) == 0
    ia, ib = io.read_image(a, dtype="uint8"), io.read_image(b, dtype="uint8")
    assert tuple(ia[0, 0]) == (255, 0, 0)  # unit motion to the right = saturated red
    assert ib[0, 0, 1] > 100  # a quarter of max_norm: pale


def test_errors_are_one_line_with_nonzero_exit(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "flowlib", "viz", str(tmp_path / "missing.flo"), "-o", "x.png"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "missing.flo" in proc.stderr
