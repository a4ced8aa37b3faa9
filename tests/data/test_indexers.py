"""Dataset indexers on tiny official-layout trees built in tmp_path and on the real trees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flowlib import data


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_sintel_pairs_consecutive_frames_and_names(tmp_path):
    for scene, frames in (("alley_1", (1, 2, 3)), ("bamboo_2", (1, 2, 4))):
        for f in frames:
            _touch(tmp_path / f"training/final/{scene}/frame_{f:04d}.png")
            _touch(tmp_path / f"test/final/{scene}/frame_{f:04d}.png")
        for f in frames[:-1]:
            _touch(tmp_path / f"training/flow/{scene}/frame_{f:04d}.flo")
            _touch(tmp_path / f"training/occlusions/{scene}/frame_{f:04d}.png")
    samples = data.index_sintel(tmp_path, split="training", pass_="final")
    assert [(s.meta["scene"], s.meta["frame"]) for s in samples] == [("alley_1", 1), ("alley_1", 2), ("bamboo_2", 1)]
    assert samples[0].name == "final/alley_1/frame0001"
    assert samples[0].image2.name == "frame_0002.png" and "occlusions" in samples[0].masks
    test = data.index_sintel(tmp_path, split="test", pass_="final")
    assert len(test) == 3 and all(s.target is None for s in test)


def test_sintel_missing_layout_names_the_folder(tmp_path):
    with pytest.raises(ValueError, match="training/clean"):
        data.index_sintel(tmp_path, pass_="clean")
    with pytest.raises(ValueError, match="does not exist"):
        data.index_sintel(tmp_path / "nope")
    _touch(tmp_path / "training/final/a/frame_0001.png")
    _touch(tmp_path / "training/final/a/frame_0002.png")
    (tmp_path / "training/flow").mkdir()
    with pytest.raises(ValueError, match="missing ground truth"):
        data.index_sintel(tmp_path)
    with pytest.raises(ValueError, match="pass"):
        data.index_sintel(tmp_path, pass_="albedo")


@pytest.mark.parametrize("year, left, right, disp", [(2015, "image_2", "image_3", "disp_occ_0"), (2012, "colored_0", "colored_1", "disp_occ")])
def test_kitti_layouts(tmp_path, year, left, right, disp):
    for i in range(3):
        _touch(tmp_path / f"training/{left}/{i:06d}_10.png")
        _touch(tmp_path / f"training/{left}/{i:06d}_11.png")
        _touch(tmp_path / f"training/{right}/{i:06d}_10.png")
        _touch(tmp_path / f"training/{disp}/{i:06d}_10.png")
        _touch(tmp_path / f"training/flow_occ/{i:06d}_10.png")
    flow = data.index_kitti_flow(tmp_path, year=year)
    stereo = data.index_kitti_stereo(tmp_path, year=year)
    assert len(flow) == len(stereo) == 3
    assert flow[1].image2.name == "000001_11.png" and flow[1].name == "flow/000001_10"
    assert stereo[2].image2.parent.name == right and stereo[2].name == "disp_0/000002_10"
    with pytest.raises(ValueError, match="flow_noc"):
        data.index_kitti_flow(tmp_path, year=year, gt="noc")
    with pytest.raises(ValueError, match="2012 or 2015"):
        data.index_kitti_flow(tmp_path, year=2013)


def test_flyingchairs_split_file(tmp_path):
    for i in (1, 2, 3):
        for suffix in ("img1.ppm", "img2.ppm", "flow.flo"):
            _touch(tmp_path / "data" / f"{i:05d}_{suffix}")
    (tmp_path / "FlyingChairs_train_val.txt").write_text("1\n2\n1\n")
    assert [s.meta["id"] for s in data.index_flyingchairs(tmp_path)] == ["00001", "00002", "00003"]
    assert [s.meta["id"] for s in data.index_flyingchairs(tmp_path, split="val")] == ["00002"]
    (tmp_path / "data" / "00003_flow.flo").unlink()
    with pytest.raises(ValueError, match="incomplete"):
        data.index_flyingchairs(tmp_path)


def test_real_trees(shared: Path):
    from flowlib import data as d

    data = shared / "data"

    s = d.index_sintel(data / "sintel", pass_="clean")
    assert len(s) == 1 and set(s[0].masks) == {"occlusions", "invalid"}
    loaded = d.load_sample(s[0])
    assert loaded["image1"].shape == (436, 1024, 3) and loaded["flow"].shape == (436, 1024, 2)
    assert loaded["occlusions"].dtype == bool and 0 < loaded["occlusions"].mean() < 0.5

    k = d.index_kitti_stereo(data / "kitti2015")
    assert len(k) == 1
    kl = d.load_sample(k[0])
    assert kl["disparity"].shape == (375, 1242) and 0.05 < kl["valid"].mean() < 0.6
    kf = d.load_sample(d.index_kitti_flow(data / "kitti2015", gt="noc")[0])
    assert kf["flow"].shape == (375, 1242, 2) and kf["valid"].any()

    mf = d.index_middlebury_flow(data / "middlebury-flow")
    assert [m.meta["scene"] for m in mf] == ["RubberWhale", "Venus"]
    ms = d.index_middlebury_stereo(data / "middlebury-stereo")
    tsukuba = d.load_sample(ms[0])
    assert ms[0].meta["scale"] == 16 and tsukuba["disparity"].max() <= 15 + 1e-6
    assert tsukuba["nonocc"].mean() > 0.5

    chairs = d.index_flyingchairs(data / "flyingchairs")
    assert len(chairs) == 3 and d.load_sample(chairs[0])["image1"].shape == (384, 512, 3)
    things = d.load_sample(d.index_flyingthings3d(data / "flyingthings3d")[0])
    assert things["disparity"].shape == (540, 960) and np.all(things["disparity"][things["valid"]] > 0)


def test_prefetch_keeps_order_and_raises_in_place():
    out = list(data.prefetch(range(20), lambda x: x * 2, workers=3, buffer=2))
    assert out == [2 * x for x in range(20)]

    def boom(x):
        if x == 3:
            raise RuntimeError("bad sample 3")
        return x

    it = data.prefetch(range(6), boom)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(RuntimeError, match="bad sample 3"):
        next(it)
