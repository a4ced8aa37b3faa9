"""Regenerate the README gallery from the real frames in ``../shared/data``.

    python docs/gallery.py [--data ../shared/data] [--out docs/gallery]
                           [--spynet-official ../shared/data/weights/spynet-pytorch-sintel-final/...]

One figure per dataset (image, estimate, ground truth, KITTI-style error map with EPE and
Fl / D1 in the title), made by flowlib's own readers, models and ``viz``: flow with the
default (embedded PatchFlow), and with the official SpyNet Sintel weights when a local copy is
given; disparity with the default (embedded PatchStereo). Nothing here is pasted: rerun it after changing a
model or the weights and commit the PNGs it writes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flowlib  # noqa: E402
from benchmarks.defaults import flow_cases, stereo_cases  # noqa: E402
from flowlib import _zoo, data, viz  # noqa: E402

_DPI = 56  # 4-inch panels -> 224 px each: small PNGs, still readable


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(here.parents[1] / "shared" / "data"))
    p.add_argument("--out", default=str(here / "gallery"))
    p.add_argument("--spynet-official", default=None,
                   help="local official SpyNet checkpoint (e.g. network-sintel-final.pytorch)")
    a = p.parse_args(argv)
    root, out = Path(a.data), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    models = {"default": flowlib.load_model(_zoo.DEFAULT_FLOW_MODEL)}
    if a.spynet_official:
        models["official-sintel"] = flowlib.load_model("spynet", a.spynet_official)
    seen: set[str] = set()
    for group, sample in flow_cases(root):
        if group in seen:  # first pair of each group
            continue
        seen.add(group)
        d = data.load_sample(sample)
        for tag, model in models.items():
            flow = flowlib.estimate(d["image1"], d["image2"], model)
            path = out / f"flow-{_slug(group)}-{tag}.png"
            viz.comparison_figure(d["image1"], flow, d["flow"], valid=d["valid"], path=path, dpi=_DPI)
            print("wrote", path)
    stereo = flowlib.load_model(_zoo.DEFAULT_STEREO_MODEL)
    seen.clear()
    for group, sample in stereo_cases(root):
        if group in seen:
            continue
        seen.add(group)
        d = data.load_sample(sample)
        disp = flowlib.estimate_disparity(d["image1"], d["image2"], stereo)
        valid = d["valid"] & d.get("nonocc", np.ones_like(d["valid"]))
        path = out / f"stereo-{_slug(group)}-default.png"
        viz.stereo_figure(d["image1"], disp, d["disparity"], valid=valid, path=path, dpi=_DPI)
        print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
