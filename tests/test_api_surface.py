"""The public surface, pinned: names and signatures of flowlib, io, metrics, viz and ops.

``tests/api_surface.txt`` is the checked-in listing. Any change -- a name added, removed or
renamed, a parameter added, reordered, made keyword-only or given another default -- fails
:func:`test_surface_matches_the_listing` with a diff. If the change is intended, regenerate
the listing and commit it with the change, so the review sees the API diff::

    PYTHONPATH=$PWD python tests/test_api_surface.py > tests/api_surface.txt

The intended shape (as in dm-pix): data arguments are positional, options are
keyword-only. The few optional parameters that may be passed positionally are listed in
``POSITIONAL_OPTIONAL`` with the reason; a new one fails :func:`test_options_are_keyword_only`.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from pathlib import Path

MODULES = ("flowlib", "flowlib.io", "flowlib.metrics", "flowlib.viz", "flowlib.ops")
LISTING = Path(__file__).with_name("api_surface.txt")

# Optional parameters that may be given positionally: each is a data input (a model, weights, a
# mask, ground truth) or the only argument, never a switch that changes numerics or output.
POSITIONAL_OPTIONAL = {
    # README: flowlib.estimate(batch1, batch2, model); load_model("cfnet", <checkpoint path>).
    "flowlib.estimate": {"model", "weights"},
    "flowlib.estimate_disparity": {"model", "weights"},
    "flowlib.load_model": {"name", "weights"},
    # The mask is the second data array of a masked reduction.
    "flowlib.metrics.masked_mean": {"mask"},
    "flowlib.metrics.masked_sum_count": {"mask"},
    "flowlib.metrics.image_mean": {"masks_list"},
    "flowlib.metrics.pixel_mean": {"masks_list"},
    "flowlib.viz.disparity_range": {"valid"},
    # Ground truth is the third data panel of the figure.
    "flowlib.viz.comparison_figure": {"gt"},
    "flowlib.viz.stereo_figure": {"gt"},
    # The only argument.
    "flowlib.viz.colorwheel_legend": {"size"},
}


def _signature(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def _public(module_name: str):
    module = importlib.import_module(module_name)
    for name in sorted(module.__all__):
        yield name, getattr(module, name)


def surface() -> list[str]:
    """The listing: one line per public name (members of classes indented)."""
    lines = []
    for module_name in MODULES:
        lines.append(f"[{module_name}]")
        for name, obj in _public(module_name):
            if inspect.ismodule(obj):
                lines.append(f"{name}: module")
            elif inspect.isclass(obj):
                lines.append(f"class {name}{_signature(obj)}")
                for attr, value in sorted(vars(obj).items()):
                    if attr.startswith("_"):
                        continue
                    if isinstance(value, property):
                        lines.append(f"  {name}.{attr}: property")
                    elif callable(value) or isinstance(value, (staticmethod, classmethod)):
                        lines.append(f"  {name}.{attr}{_signature(getattr(obj, attr))}")
            elif callable(obj):
                lines.append(f"{name}{_signature(obj)}")
            else:
                lines.append(f"{name}: {type(obj).__name__}")
    return lines


def test_surface_matches_the_listing():
    want = LISTING.read_text(encoding="utf-8").splitlines()
    got = surface()
    diff = "\n".join(
        difflib.unified_diff(want, got, "tests/api_surface.txt", "flowlib", lineterm=""))
    assert got == want, (
        "the public API changed; if intended, regenerate tests/api_surface.txt "
        "(see this module's docstring):\n" + diff
    )


def test_dir_shows_exactly_the_api():
    import flowlib
    import flowlib.io

    assert dir(flowlib) == sorted(flowlib.__all__)
    assert dir(flowlib.io) == sorted(flowlib.io.__all__)
    for leaked in ("Any", "annotations", "importlib"):
        assert leaked not in dir(flowlib)
    for leaked in ("np", "os", "struct", "zlib", "PathLike"):
        assert leaked not in dir(flowlib.io)
    # Listed names resolve; the unlisted subpackages are still importable as attributes.
    for name in flowlib.__all__:
        getattr(flowlib, name)
    assert flowlib.ops.backward_warp is importlib.import_module("flowlib.ops").backward_warp


def test_every_listed_name_exists_and_is_documented():
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        assert len(set(module.__all__)) == len(module.__all__), module_name
        for name, obj in _public(module_name):
            if callable(obj) and not inspect.isclass(obj):
                assert obj.__doc__ and obj.__doc__.strip(), f"{module_name}.{name} has no docstring"


def test_options_are_keyword_only():
    offenders = []
    for module_name in MODULES:
        for name, obj in _public(module_name):
            if inspect.ismodule(obj) or inspect.isclass(obj) or not callable(obj):
                continue
            allowed = POSITIONAL_OPTIONAL.get(f"{module_name}.{name}", set())
            for p in inspect.signature(obj).parameters.values():
                positional = p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                if positional and p.default is not p.empty and p.name not in allowed:
                    offenders.append(f"{module_name}.{name}({p.name}=...)")
    assert not offenders, f"optional parameters must be keyword-only (as in dm-pix): {offenders}"


def test_readme_positional_model_still_works():
    """The README passes the model positionally: ``flowlib.estimate(batch1, batch2, model)``."""
    import flowlib

    for fn, second in ((flowlib.estimate, "model"), (flowlib.estimate_disparity, "model")):
        names = list(inspect.signature(fn).parameters)
        assert names[2] == second


if __name__ == "__main__":
    print("\n".join(surface()))
