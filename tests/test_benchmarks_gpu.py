"""``python -m benchmarks.gpu`` (the accelerator benchmark) runs end to end: its ``--quick``
CPU path, so the one-call GPU command cannot rot while no GPU is at hand."""

from __future__ import annotations

import json

import pytest

from benchmarks import gpu


@pytest.mark.slow
def test_quick_run_writes_every_target(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert gpu.main(["--quick", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["model"] for r in result["results"]] == [t[0] for t in gpu.TARGETS]
    for row in result["results"]:
        assert row["median_ms"] > 0 and row["compile_s"] > 0 and row["time_vs_target"] > 0
        assert not row["at_target_size"]
    text = capsys.readouterr().out
    assert "avx512_bf16" in text and "amx_bf16" in text
    assert text.count("x target") == len(gpu.TARGETS)
