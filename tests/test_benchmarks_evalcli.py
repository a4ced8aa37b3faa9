"""benchmarks._evalcli: the tables the benchmark scripts print."""

from __future__ import annotations

from benchmarks import _evalcli
from flowlib.evaluation import EvaluationResult


def _result() -> EvaluationResult:
    return EvaluationResult("sintel-final", {"epe": 1.5}, {"scene": {"epe": 1.5}}, 2)


def test_a_synthetic_run_says_so_in_every_table_title(capsys):
    _evalcli.report([_result(), _result()], None, {"root": "x", "synthetic": True})
    titles = [line for line in capsys.readouterr().out.splitlines() if line.startswith("sintel")]
    assert len(titles) == 2
    assert all("(2 pairs)  SYNTHETIC: " in t for t in titles)


def test_a_real_run_has_a_plain_title(capsys):
    _evalcli.report([_result()], None, {"root": "x", "synthetic": False})
    assert capsys.readouterr().out.splitlines()[0] == "sintel-final  (2 pairs)"
