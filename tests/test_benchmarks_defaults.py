"""benchmarks.defaults: the peers run as their users would configure them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import defaults
from flowlib.data import synthetic
from flowlib.data._sample import Sample


def _sample(**meta) -> Sample:
    return Sample("middlebury", "stereo", Path("imL.png"), Path("imR.png"), meta=meta)


def test_each_dataset_gets_its_known_disparity_range():
    # Middlebury 2001 info.txt: tsukuba 15, venus 19 -> 16 and 20 disparities, SGBM's
    # multiple of 16; KITTI and FlyingThings3D: the customary 192
    assert defaults.disparity_range("Middlebury", _sample(max_disparity=15.0)) == 16
    assert defaults.disparity_range("Middlebury", _sample(max_disparity=19.0)) == 32
    assert defaults.disparity_range("KITTI 2015", _sample()) == 192
    assert defaults.disparity_range("FlyingThings3D", _sample()) == 192


def test_sgbm_with_the_range_keeps_the_left_of_a_narrow_image():
    pytest.importorskip("cv2")
    pair = synthetic.stereo_pair(3, 96, 192, max_disparity=14.0, detail=0.2)
    gt = pair["disparity"]
    disp = defaults.stereo_methods("patchstereo")["OpenCV SGBM"](pair["left"], pair["right"], 16)
    ok = ~pair["occlusions"]
    ok[:, :16] = False  # no right-image pixel for the first D columns
    # mean error on the left half: 0.44 px with the scene's range; a 96 px range (half this
    # 192 px image) leaves the left half unmatched and filled: 1.85 px
    left = ok.copy()
    left[:, 96:] = False
    assert np.abs(disp - gt)[left].mean() < 0.6


def test_the_printed_settings_name_the_ranges_and_the_documented_values(capsys):
    ranges = {"Middlebury tsukuba": 16, "Middlebury venus": 32, "KITTI 2015": 192}
    settings = defaults.stereo_settings("patchstereo", ranges)
    defaults.print_table("stereo", {}, settings)
    out = capsys.readouterr().out
    assert "Middlebury tsukuba 16, Middlebury venus 32, KITTI 2015 192" in out
    assert "numDisparities=D" in out and "maxdisp=D" in out
    assert f"P1={8 * 3 * 5**2}" in out and f"P2={32 * 3 * 5**2}" in out
