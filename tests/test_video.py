"""flowlib.video: frame sources, the atomic VideoWriter, streaming pairwise flow."""

from __future__ import annotations

import importlib.util
import os
import sys
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowlib import io, video


def _frame(i: int, h: int = 64, w: int = 96) -> np.ndarray:
    """A smooth frame whose brightness encodes i (H.264 keeps smooth images nearly exact)."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = 40 + 8 * i
    return np.stack([base + xx * 60 // w, base + yy * 60 // h, np.full((h, w), base)], -1).astype(
        np.uint8
    )


def _leftovers(folder) -> list[str]:
    return sorted(p for p in os.listdir(folder) if p.endswith(".tmp") or ".tmp." in p)


# --------------------------------------------------------------------------- natural order


def test_natural_key_orders_numbers_by_value():
    names = ["f10.png", "f2.png", "F1.png", "f2b.png", "f02a.png", "g.png", "f100.png"]
    assert sorted(names, key=video.natural_key) == [
        "F1.png",
        "f2.png",
        "f02a.png",
        "f2b.png",
        "f10.png",
        "f100.png",
        "g.png",
    ]


@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=20, unique=True))
@settings(max_examples=50, deadline=None)
def test_natural_key_sorts_unpadded_frame_numbers_numerically(numbers):
    names = [f"frame_{n}.png" for n in numbers]
    assert sorted(names, key=video.natural_key) == [f"frame_{n}.png" for n in sorted(numbers)]


# --------------------------------------------------------------------------- folders of frames


def test_folder_frames_in_natural_order_exact_pixels(tmp_path):
    order = ["a_1.png", "a_2.ppm", "a_10.bmp", "a_11.PNG"]  # lossless formats, any case
    frames = {name: _frame(i) for i, name in enumerate(order)}
    for name, frame in frames.items():
        io.write_image(tmp_path / name.lower(), frame)
        os.rename(tmp_path / name.lower(), tmp_path / name)
    # Ignored: hidden files, other extensions, sub-folders.
    io.write_image(tmp_path / ".hidden.png", _frame(9))
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / "sub").mkdir()
    io.write_image(tmp_path / "sub" / "a_0.png", _frame(9))

    source = video.open_frames(tmp_path)
    assert source.kind == "folder" and source.count == 4 and source.fps is None
    assert [p.name for p in source.files] == order
    got = list(source)
    assert len(got) == 4
    for frame, name in zip(got, order):
        assert frame.dtype == np.uint8 and frame.shape == (64, 96, 3)
        np.testing.assert_array_equal(frame, frames[name])
    # iter_frames is the same stream.
    np.testing.assert_array_equal(np.stack(list(video.iter_frames(tmp_path))), np.stack(got))


def test_folder_grey_and_jpeg_frames_become_rgb(tmp_path):
    grey = _frame(0)[..., 0]
    io.write_image(tmp_path / "0.png", grey)
    io.write_image(tmp_path / "1.jpg", _frame(1))
    a, b = list(video.iter_frames(tmp_path))
    np.testing.assert_array_equal(a, np.repeat(grey[..., None], 3, -1))
    assert b.shape == (64, 96, 3) and np.abs(b.astype(int) - _frame(1)).mean() < 2  # JPEG q95


def test_folder_frame_of_another_size_is_named(tmp_path):
    io.write_image(tmp_path / "f1.png", _frame(0))
    io.write_image(tmp_path / "f2.png", _frame(1))
    io.write_image(tmp_path / "f3.png", _frame(2, 64, 90))
    frames = iter(video.open_frames(tmp_path))
    next(frames), next(frames)  # the good frames stream before the bad one is reached
    with pytest.raises(ValueError, match=r"f3\.png.*90x64.*96x64"):
        next(frames)


def test_folder_without_frames_and_missing_source(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=f"{tmp_path}.*no image frames"):
        video.open_frames(tmp_path)
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        video.open_frames(tmp_path / "nothing-here")


# --------------------------------------------------------------------------- video files

# CI installs PyAV through the test extra; without it only these tests skip.
needs_av = pytest.mark.skipif(
    importlib.util.find_spec("av") is None, reason="needs PyAV (flowlib[video])"
)


@needs_av
def test_video_round_trip_frame_count_size_order_and_fps(tmp_path):
    path = tmp_path / "clip.mp4"
    frames = [_frame(i) for i in range(9)]
    with video.VideoWriter(path, fps=12.5) as out:
        for f in frames:
            out.write(f)
    assert out.frames_written == 9 and out.size == (64, 96)
    source = video.open_frames(path)
    assert source.kind == "video" and source.count == 9 and source.fps == pytest.approx(12.5)
    got = list(source)
    assert len(got) == 9
    for a, b in zip(got, frames):
        assert a.shape == (64, 96, 3) and a.dtype == np.uint8
        # Lossy yuv420p H.264: close, and the per-frame brightness keeps the order.
        assert np.abs(a.astype(int) - b).mean() < 3
    means = [g.mean() for g in got]
    assert means == sorted(means)
    assert _leftovers(tmp_path) == []
    # Readable by the generic imageio path too.
    import imageio.v3 as iio

    assert iio.improps(path, plugin="pyav").shape == (9, 64, 96, 3)


@needs_av
@pytest.mark.parametrize("fps", [25, 29.97, 12.5])
def test_long_video_keeps_every_frame(tmp_path, fps):
    # Regression: timestamps given in the wrong time base made x264 emit repeated pts and the
    # mp4 muxer fail after ~40 frames.
    path = tmp_path / "long.mp4"
    with video.VideoWriter(path, fps=fps) as out:
        for i in range(150):
            out.write(np.full((16, 24, 3), (7 * i) % 256, np.uint8))
    source = video.open_frames(path)
    assert source.count == 150 and source.fps == pytest.approx(fps, rel=1e-4)
    levels = [int(np.median(f)) for f in source]
    assert len(levels) == 150
    assert max(abs(a - (7 * i) % 256) for i, a in enumerate(levels)) <= 3


@needs_av
@pytest.mark.parametrize("ext", [".mkv", ".webm"])
def test_other_containers(tmp_path, ext):
    path = tmp_path / f"clip{ext}"
    with video.VideoWriter(path, fps=10) as out:
        for i in range(4):
            out.write(_frame(i))
    got = list(video.iter_frames(path))
    assert len(got) == 4 and got[0].shape == (64, 96, 3)


@needs_av
def test_odd_sizes_are_padded_by_edge_replication(tmp_path):
    path = tmp_path / "odd.mp4"
    frame = _frame(3, 63, 95)
    with video.VideoWriter(path, fps=10) as out:
        out.write(frame)
        out.write(frame)
    assert out.frame_shape == (63, 95) and out.size == (64, 96)
    got = list(video.iter_frames(path))
    assert len(got) == 2 and got[0].shape == (64, 96, 3)
    assert np.abs(got[0][:63, :95].astype(int) - frame).mean() < 3
    # The added row/column repeat the last ones.
    assert np.abs(got[0][63].astype(int) - got[0][62]).mean() < 3


@needs_av
def test_writer_error_inside_with_leaves_no_file_and_keeps_old_one(tmp_path):
    path = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with video.VideoWriter(path, fps=10) as out:
            for i in range(30):
                out.write(_frame(i % 5))
            raise RuntimeError("boom")
    assert not path.exists() and _leftovers(tmp_path) == []
    path.write_bytes(b"previous video")
    with pytest.raises(ValueError, match="frame 1 is 90x64"):
        with video.VideoWriter(path, fps=10) as out:
            out.write(_frame(0))
            out.write(_frame(1, 64, 90))
    assert path.read_bytes() == b"previous video" and _leftovers(tmp_path) == []


@needs_av
def test_writer_with_no_frames_creates_nothing(tmp_path):
    path = tmp_path / "empty.mp4"
    with pytest.raises(ValueError, match="empty.mp4.*no frames"):
        with video.VideoWriter(path, fps=10):
            pass
    assert os.listdir(tmp_path) == []


@needs_av
def test_writer_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"clip\.avi.*unknown video extension"):
        video.VideoWriter(tmp_path / "clip.avi")
    with pytest.raises(ValueError, match="fps"):
        video.VideoWriter(tmp_path / "clip.mp4", fps=0)
    with pytest.raises(FileNotFoundError, match="missing"):
        with video.VideoWriter(tmp_path / "missing" / "clip.mp4"):
            pass
    with video.VideoWriter(tmp_path / "clip.mp4") as out:
        with pytest.raises(ValueError, match="uint8"):
            out.write(np.zeros((8, 8, 3), np.float32))
        with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
            out.write(np.zeros((8, 8), np.uint8))
        out.write(_frame(0))
    assert (tmp_path / "clip.mp4").is_file()
    with pytest.raises(ValueError, match="closed"):
        out.write(_frame(0))


@needs_av
def test_unreadable_video_is_named(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 10)
    with pytest.raises(ValueError, match="broken.mp4.*not a readable video"):
        video.open_frames(bad)


def test_missing_backend_says_how_to_install(tmp_path, monkeypatch):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "av", None)  # import av -> ImportError
    with pytest.raises(ImportError, match=r"flowlib\[video\]"):
        video.open_frames(clip)
    with pytest.raises(ImportError, match=r"flowlib\[video\]"):
        video.VideoWriter(tmp_path / "out.mp4")


# --------------------------------------------------------------------------- pairwise flow


def _difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A stand-in predictor: 'flow' = (mean of b - a, index of a) per pixel."""
    d = b.astype(np.float32) - a.astype(np.float32)
    return np.stack([d[..., 0], a[..., 2].astype(np.float32)], -1)


@given(n=st.integers(0, 12), batch=st.integers(1, 4), every=st.integers(1, 3))
@settings(max_examples=60, deadline=None)
def test_pairwise_flow_pairs_indices_and_padding(n, batch, every):
    frames = [np.full((8, 10, 3), 10 * i, np.uint8) for i in range(n)]
    calls = []

    def predict(a, b):
        calls.append(a.shape[0])
        return _difference(a, b)

    out = list(video.pairwise_flow(iter(frames), predict, batch_size=batch, every=every))
    used = list(range(0, n, every))
    assert [i for i, _, _ in out] == used[:-1]
    for index, frame, flow in out:
        assert frame is frames[index]
        assert flow.shape == (8, 10, 2) and flow.dtype == np.float32
        np.testing.assert_array_equal(flow[..., 0], 10.0 * every)  # next used frame minus this one
        np.testing.assert_array_equal(flow[..., 1], 10.0 * index)
    # Every call sees a full batch (the last one padded), one call per started batch.
    pairs = max(len(used) - 1, 0)
    assert calls == [batch] * (-(-pairs // batch))


def test_pairwise_flow_checks_arguments_and_predictor():
    frames = [np.zeros((8, 8, 3), np.uint8)] * 3
    with pytest.raises(ValueError, match="batch_size"):
        list(video.pairwise_flow(frames, _difference, batch_size=0))
    with pytest.raises(ValueError, match="every"):
        list(video.pairwise_flow(frames, _difference, every=0))
    with pytest.raises(ValueError, match=r"predict returned shape \(1, 4, 4, 2\)"):
        list(video.pairwise_flow(frames, lambda a, b: np.zeros((1, 4, 4, 2))))
    mixed = [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8)]
    with pytest.raises(ValueError, match="frame 1"):
        list(video.pairwise_flow(mixed, _difference))


def _stream_peak(n: int, h: int, w: int, batch: int) -> int:
    """Peak traced memory while streaming n generated frames through pairwise_flow."""

    def frames():
        for i in range(n):
            yield np.full((h, w, 3), i % 251, np.uint8)

    tracemalloc.start()
    try:
        count = 0
        for _, _, flow in video.pairwise_flow(frames(), _difference, batch_size=batch):
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n - 1
    return peak


def test_pairwise_flow_memory_is_flat_in_the_number_of_frames():
    h, w, batch = 120, 160, 4
    frame_bytes, flow_bytes = h * w * 3, h * w * 2 * 4
    short, long = _stream_peak(12, h, w, batch), _stream_peak(60, h, w, batch)
    # Holding all 60 frames (or their flows) would add > 48 frames' worth; allow 2.
    assert long - short < 2 * frame_bytes
    # In absolute terms: a batch of frames, stacked copies, flows and float temporaries.
    assert long < (batch + 1) * frame_bytes * 3 + batch * flow_bytes * 6
