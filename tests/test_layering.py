"""Who may import whom: the command line is a leaf, and the benchmarks use the library only."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; ``from a import b`` gives a and a.b)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _importers(folder: str, prefix: str, *, allowed: tuple[str, ...] = ()) -> list[str]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(allowed):
            continue
        hits = sorted(n for n in _imports(path) if n == prefix or n.startswith(prefix + "."))
        found += [f"{rel}: {n}" for n in hits]
    return found


def test_the_scan_sees_both_import_forms(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import flowlib.cli\nfrom flowlib import cli\nfrom tests.ops import x\n")
    assert {"flowlib.cli", "flowlib.cli", "tests.ops.x"} <= _imports(f)


def test_nothing_in_flowlib_imports_the_command_line():
    assert _importers("flowlib", "flowlib.cli", allowed=("flowlib/cli/", "flowlib/__main__.py")) == []


#: The benchmark scripts that are entry points to ``flowlib evaluate``, and only that.
EVALUATE_ENTRY_POINTS = ("benchmarks/sintel.py", "benchmarks/kitti.py", "benchmarks/middlebury.py")


def test_benchmarks_import_neither_tests_nor_the_command_line():
    assert _importers("benchmarks", "tests") == []
    assert _importers("benchmarks", "flowlib.cli", allowed=EVALUATE_ENTRY_POINTS) == []


def test_the_evaluate_entry_points_import_the_command_line_only():
    for rel in EVALUATE_ENTRY_POINTS:
        imported = {n for n in _imports(ROOT / rel) if n.startswith(("flowlib", "benchmarks"))}
        assert imported == {"flowlib", "flowlib.cli"}, rel


def test_the_command_line_exports_its_entry_points_only():
    from flowlib import cli

    assert sorted(cli.__all__) == ["build_parser", "main", "run"]
