"""The model unit: each model module declares its models (``SPECS``), ``flowlib._zoo`` only
maps names to modules, and nothing else in flowlib names a model."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowlib import _zoo, cli

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "flowlib"
#: Where a model name may be written: the model and converter modules, the table, the
#: package's documented defaults.
MAY_NAME_MODELS = ("models/", "convert/", "_zoo.py", "__init__.py")


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _named_models(source: str, names: set[str]) -> list[tuple[int, str]]:
    """``(line, text)`` of the string constants (f-string parts included, docstrings not)
    that are a model name, ``name:variant``, or hold a quoted model name."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str) or id(node) in skip:
            continue
        text = node.value
        if (text.split(":", 1)[0] in names
                or any(f"'{n}'" in text or f'"{n}"' in text or f"{n}:" in text for n in names)):
            found.append((node.lineno, text))
    return found


def test_the_scan_finds_model_names():
    names = {"spynet"}
    assert _named_models('x = "spynet"', names) == [(1, "spynet")]
    assert _named_models('x = f"{a} spynet:sintel-final"', names)
    assert _named_models("x = \"load_model('spynet', path)\"", names)
    assert _named_models('"""Module docstring: "spynet"."""\nx = "spy net"', names) == []


def test_no_model_name_outside_the_model_modules():
    names = set(_zoo.MODELS)
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith(MAY_NAME_MODELS):
            continue
        offenders += [f"flowlib/{rel}:{line}: {text!r}"
                      for line, text in _named_models(path.read_text(), names)]
    assert offenders == []


def test_every_name_is_declared_by_its_module_and_every_spec_is_listed():
    modules = set(_zoo.MODELS.values())
    declared = {}
    for module in modules:
        for spec in importlib.import_module(module).SPECS:
            assert spec.name not in declared, f"{spec.name} declared twice"
            declared[spec.name] = module
    assert declared == _zoo.MODELS
    for name in _zoo.MODELS:
        assert _zoo.spec(name).name == name


def test_unknown_model_lists_the_names():
    with pytest.raises(ValueError, match=r"unknown model 'nope'; available: \['cfnet'"):
        _zoo.spec("nope")


def test_embedded_weights_are_declared_by_their_model():
    from flowlib.weights import load_meta

    shipped = {p.name for p in (PACKAGE / "assets" / "weights").glob("*.npz")}
    declared = {spec.embedded: spec.name for spec in _zoo.specs() if spec.embedded}
    assert set(declared) == shipped
    for filename, name in declared.items():
        assert load_meta(PACKAGE / "assets" / "weights" / filename)["model"] == name


def test_default_weights_and_defaults_are_known():
    for name in (_zoo.DEFAULT_FLOW_MODEL, _zoo.DEFAULT_STEREO_MODEL, _zoo.DEFAULT_TRAIN_MODEL):
        assert name in _zoo.MODELS
    assert _zoo.spec(_zoo.DEFAULT_FLOW_MODEL).task == "flow"
    assert _zoo.spec(_zoo.DEFAULT_STEREO_MODEL).task == "stereo"
    assert _zoo.spec(_zoo.DEFAULT_TRAIN_MODEL).loss is not None
    from flowlib.models._spec import ModelSpec

    with pytest.raises(ValueError, match="default_weights 'b' is not one of its checkpoints"):
        ModelSpec(name="m", task="flow", summary="", build=dict, default_weights="b")


def test_listing_models_builds_none(monkeypatch, capsys):
    built = []
    for module in set(_zoo.MODELS.values()):
        mod = importlib.import_module(module)
        specs = tuple(dataclasses.replace(s, build=lambda **kw: built.append(kw)) for s in mod.SPECS)
        monkeypatch.setattr(mod, "SPECS", specs)
    import flowlib

    assert flowlib.available_models() == sorted(_zoo.MODELS)
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    for spec in _zoo.specs():
        assert spec.summary in out
    assert built == []


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    """``code`` run by a fresh Python in the repository (what a new process imports)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **env})


def test_listing_names_imports_no_model():
    code = ("import sys, flowlib; names = flowlib.available_models(); "
            "print(names, [m for m in sys.modules if m.startswith('flowlib.models')])")
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{sorted(_zoo.MODELS)} []"


def test_parsing_a_command_without_a_model_imports_no_model():
    code = ("import sys; from flowlib import cli; "
            "cli.build_parser().parse_args(['viz', 'f.flo', '-o', 'f.png']); "
            "print(sorted(m for m in sys.modules if m.startswith('flowlib.models') or m == 'jax'))")
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_command_line_without_model_settings_imports_no_model():
    """The settings' flags come from every model module of the task; a command line that
    gives none is parsed without them (the command then imports only the model it runs),
    one that gives one is parsed with all of them, and an abbreviation is left to the full
    parse (which finds it ambiguous)."""
    code = ("import sys; from flowlib import cli; p = cli.build_parser(); "
            "a = p.parse_args(['estimate', 'a.png', 'b.png', '-o', 'f.flo', '--model', 'raft']); "
            "print(a.model, a.dtype, a.model_settings, "
            "sorted(m for m in sys.modules if m.startswith('flowlib.models') or m == 'flax')); "
            "b = p.parse_args(['stereo', 'l.png', 'r.png', '--preset', 'fast']); "
            "print(b.preset, b.dtype, b.model_settings, 'flowlib.models.cfnet' in sys.modules); "
            "p.parse_args(['estimate', 'a.png', 'b.png', '--m', 'raft'])")
    proc = _python(code)
    assert proc.stdout.splitlines() == ["raft float32 False []", "fast float32 True True"]
    assert proc.returncode == 2 and "ambiguous option: --m could match --model" in proc.stderr


def test_an_evaluation_without_model_settings_imports_only_its_model():
    """flowlib evaluate given no model setting resolves its models' arguments without the
    other model modules, and its result record names Flax's version without importing it."""
    code = ("import sys; from flowlib import cli; from flowlib.cli import _evaluate; "
            "from flowlib.evaluation import _runner; p = cli.build_parser(); "
            "a = p.parse_args(['evaluate', 'middlebury-flow', '--root', 'nowhere']); "
            "chosen = _evaluate._model_args(a, 'flow', ('flow',)); "
            "summary = _runner.device_summary(); "
            "print(chosen.default_model, bool(summary['flax']), "
            "sorted(m for m in sys.modules if m.startswith('flowlib.models') or m == 'flax'))")
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "patchflow True []"


def test_loading_the_embedded_defaults_imports_no_flax_and_compiles_nothing(tmp_path):
    """PatchFlow and PatchStereo have no layers: ``load_model`` builds them without Flax and
    checks their (empty) parameters without compiling anything, so a fresh process that
    loads one pays neither."""
    code = ("import sys, jax, flowlib; from jax import monitoring; compiles = []; "
            "monitoring.register_event_duration_secs_listener(lambda name, secs, **kw: "
            "compiles.append(name) if name == '/jax/core/compile/backend_compile_duration' "
            "else None); flowlib.load_model('patchflow'); flowlib.load_model('patchstereo'); "
            "print('flax' in sys.modules, compiles)")
    proc = _python(code, FLOWLIB_HOME=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False []"


def test_each_option_is_one_flag_checked_by_its_model(capsys):
    """Every model option is a flag of the commands of its task, validated by its spec."""
    for spec in _zoo.specs():
        command = {"flow": "estimate", "stereo": "stereo"}[spec.task]
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        out = capsys.readouterr().out
        for option in spec.options:
            assert option.cli_flag in out and f"{spec.name}: {option.help}"[:40] in " ".join(
                out.split()), (spec.name, option.name)


def test_options_are_validated_once_by_the_spec():
    import flowlib

    cfnet = _zoo.spec("cfnet")
    assert cfnet.check_options({"maxdisp": 64}) == {"maxdisp": 64}
    with pytest.raises(ValueError, match=r"maxdisp must be an integer in \[32, 1024\]"):
        cfnet.check_options({"maxdisp": 48})
    with pytest.raises(TypeError, match="unknown option"):
        cfnet.check_options({"div_flow": 2.0})
    # The module and load_model refuse what the spec refuses, with the spec's message.
    from flowlib.models.patchflow import PatchStereo

    with pytest.raises(ValueError, match=r"maxdisp must be an integer in \[1, 1024\], got 0"):
        PatchStereo(maxdisp=0)
    with pytest.raises(ValueError, match=r"maxdisp must be an integer in \[1, 1024\], got 0"):
        flowlib.load_model("patchstereo", maxdisp=0)
