"""Frame sequences in and out: folders of images, video files, streaming pairwise flow.

* :func:`open_frames` / :func:`iter_frames`: RGB ``uint8`` frames, decoded one at a time, from
  a folder of images (natural order: ``frame2.png`` before ``frame10.png``) or a video file.
* :class:`VideoWriter`: writes frames incrementally into a video file that appears only when
  it is complete (temporary file in the same folder, renamed at close; removed on error).
* :func:`pairwise_flow`: runs a flow predictor over consecutive frames in small batches and
  yields ``(index, frame, flow)``; it holds at most ``batch_size + 1`` frames, so memory
  stays flat however long the video is.

Video decoding goes through imageio's v3 ``pyav`` plugin and encoding through PyAV itself
(imageio's writer flushes the encoder in ``close()`` and again in ``__del__``, so a writer
that failed half-way cannot be closed without raising twice). PyAV is the optional ``video``
extra (``pip install 'flowlib[video]'``): its wheels bundle FFmpeg's libraries, libx264
included, so no system ffmpeg is needed. Folders of images need nothing beyond flowlib.

Convention:
  Frames are ``(H, W, 3)`` uint8 RGB; flow ``(H, W, 2)`` float32, u right, v down, in pixels,
  from frame ``index`` to the next processed frame.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from flowlib._files import AtomicFile

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "FrameSource",
    "open_frames",
    "iter_frames",
    "natural_key",
    "VideoWriter",
    "pairwise_flow",
    "require_video_backend",
]

#: Frame files picked up from a folder (case-insensitive); other files are ignored.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".ppm", ".bmp")
#: Containers :class:`VideoWriter` can write, with the muxer and encoder used for each.
#: H.264 in yuv420p is what every player and browser decodes.
_WRITE_FORMATS = {
    ".mp4": ("mp4", "libx264"),
    ".mov": ("mov", "libx264"),
    ".mkv": ("matroska", "libx264"),
    ".webm": ("webm", "libvpx-vp9"),
}
VIDEO_EXTENSIONS = tuple(_WRITE_FORMATS)

_MISSING_BACKEND = (
    "reading or writing video files needs PyAV, which is not installed: "
    "pip install 'flowlib[video]' (or pass a folder of image frames instead)"
)


def require_video_backend() -> Any:
    """Import and return PyAV (``av``), or raise ``ImportError`` saying how to install it."""
    try:
        import av
    except ImportError as err:
        raise ImportError(_MISSING_BACKEND) from err
    return av


def natural_key(name: str) -> list[Any]:
    """Sort key that orders digit runs by value: ``f2.png`` < ``f10.png``.

    ``re.split`` with a capturing group alternates text and digits starting with text, so
    keys of different names compare item by item without mixing str and int.
    """
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


class FrameSource:
    """Frames of a folder of images or a video file, decoded lazily one at a time.

    Use :func:`open_frames` to build one: it checks the source before anything is decoded.

    Attributes:
      path: the folder or video file.
      kind: ``"folder"`` or ``"video"``.
      count: number of frames if known without decoding (always for folders; for videos
        what the container declares, else None).
      fps: the video's average frame rate, None for folders.
      files: the frame files in order (folders), else empty.
      size: ``(width, height)`` of the frames as the video's stream declares it; None for
        folders (:meth:`check_sizes` reads theirs).
    """

    def __init__(
        self, path: Path, kind: str, *, count: int | None, fps: float | None, files: list[Path],
        size: tuple[int, int] | None = None,
    ) -> None:
        self.path = path
        self.kind = kind
        self.count = count
        self.fps = fps
        self.files = files
        self.size = size
        # Stem counts, for frame_name (one pass, not one per frame).
        self._stems = collections.Counter(p.stem for p in files)

    def __iter__(self) -> Iterator[np.ndarray]:
        return self._iter_folder() if self.kind == "folder" else self._iter_video()

    def __repr__(self) -> str:
        return f"FrameSource({str(self.path)!r}, kind={self.kind!r}, count={self.count})"

    def frame_name(self, index: int) -> str:
        """A name for outputs derived from frame ``index``: the frame file's name without
        its extension (``frame_0002.png`` -> ``frame_0002``); ``frame_%06d`` for videos.
        Frame files that share a stem (``a.png``, ``a.jpg``) keep their extension too."""
        if self.kind != "folder":
            return f"frame_{index:06d}"
        path = self.files[index]
        return path.stem if self._stems[path.stem] == 1 else path.name.replace(".", "_")

    def check_sizes(self) -> tuple[int, int] | None:
        """Check that a folder's frames all have the first one's size, reading only the
        files' headers where Pillow can (fully decoding otherwise); videos pass.

        Returns:
          The frames' ``(width, height)``: a folder's, or what a video declares (:attr:`size`).

        Raises:
          ValueError: naming the first frame of another size.
        """
        if self.kind != "folder":
            return self.size
        first = None
        for path in self.files:
            size = _frame_size(path)
            if first is None:
                first = size
            elif size != first:
                raise ValueError(
                    f"{path}: frame is {size[0]}x{size[1]} but the earlier frames in "
                    f"{self.path} are {first[0]}x{first[1]} (all frames must have the same "
                    "size); nothing was written"
                )
        return first

    def _iter_folder(self) -> Iterator[np.ndarray]:
        from flowlib import io

        shape = None
        for path in self.files:
            frame = io.read_image(path, dtype="uint8")
            if shape is None:
                shape = frame.shape
            elif frame.shape != shape:
                raise ValueError(
                    f"{path}: frame is {frame.shape[1]}x{frame.shape[0]} but the earlier frames in "
                    f"{self.path} are {shape[1]}x{shape[0]} (all frames must have the same size)"
                )
            yield frame

    def _iter_video(self) -> Iterator[np.ndarray]:
        av = require_video_backend()
        import imageio.v3 as iio

        shape = None
        index = 0
        try:
            with iio.imopen(self.path, "r", plugin="pyav") as video:
                for frame in video.iter(format="rgb24"):
                    if shape is None:
                        shape = frame.shape
                    elif frame.shape != shape:
                        raise ValueError(
                            f"{self.path}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
                            f"the earlier frames {shape[1]}x{shape[0]}"
                        )
                    index += 1
                    yield frame
        except av.FFmpegError as err:
            raise ValueError(f"{self.path}: cannot decode video frame {index}: {err}") from err


def _frame_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header (Pillow opens lazily)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            # EXIF orientations 5-8 turn the picture by 90 degrees, as io.read_image does
            turned = int(image.getexif().get(0x0112, 1)) in (5, 6, 7, 8)
            return (height, width) if turned else (width, height)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        from flowlib import io

        frame = io.read_image(path, dtype="uint8")  # the reader's own, precise error
        return frame.shape[1], frame.shape[0]


def open_frames(source: str | os.PathLike) -> FrameSource:
    """Check a folder of frames or a video file and return its lazily decoded frames.

    Args:
      source: a folder holding image files (``IMAGE_EXTENSIONS``; hidden files, other files
        and sub-folders are ignored; natural order of the names) or a video file in any
        container/codec FFmpeg decodes (needs the ``video`` extra).

    Returns:
      A :class:`FrameSource`; iterating it yields ``(H, W, 3)`` uint8 RGB frames.

    Raises:
      FileNotFoundError: ``source`` does not exist.
      ValueError: a folder without image frames, or a file that is not a readable video.
      ImportError: a video file without PyAV installed.
    """
    path = Path(source)
    if path.is_dir():
        files = sorted(
            (
                p
                for p in path.iterdir()
                if p.is_file()
                and not p.name.startswith(".")
                and p.suffix.lower() in IMAGE_EXTENSIONS
            ),
            key=lambda p: natural_key(p.name),
        )
        if not files:
            raise ValueError(
                f"{path}: folder holds no image frames ({', '.join(IMAGE_EXTENSIONS)})"
            )
        return FrameSource(path, "folder", count=len(files), fps=None, files=files)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    require_video_backend()
    import imageio.v3 as iio

    try:
        with iio.imopen(path, "r", plugin="pyav") as video:
            meta = video.metadata()
            properties = video.properties()
            count = int(properties.n_images or 0) or None
            shape = tuple(properties.shape or ())
    except Exception as err:  # imageio: OSError "can not handle the given uri", av errors
        raise ValueError(
            f"{path}: not a readable video file ({type(err).__name__}: {err})"
        ) from err
    fps = meta.get("fps")
    size = (int(shape[-2]), int(shape[-3])) if len(shape) >= 3 else None
    return FrameSource(path, "video", count=count, fps=float(fps) if fps else None, files=[],
                       size=size)


def iter_frames(source: str | os.PathLike) -> Iterator[np.ndarray]:
    """Yield the frames of a folder of images or a video file, one at a time.

    Args:
      source: see :func:`open_frames`.

    Returns:
      An iterator of ``(H, W, 3)`` uint8 RGB frames; only the current frame is held.
    """
    yield from open_frames(source)


class VideoWriter:
    """Write RGB frames incrementally into a video file, atomically.

    Frames are encoded as they arrive (H.264 ``yuv420p`` for ``.mp4``/``.mov``/``.mkv``, VP9
    for ``.webm``) into a temporary file next to ``path``, which is renamed to ``path`` when
    the writer is closed. Leaving the ``with`` block through an exception, or :meth:`abort`,
    deletes the temporary file and leaves any previous ``path`` untouched.

    yuv420p stores colour at half resolution, so frames with an odd width or height get one
    extra column/row repeating the last one (``flowlib`` outputs keep the input's size
    otherwise); :attr:`size` is the stored size.

    Args:
      path: destination; its extension picks the container (``VIDEO_EXTENSIONS``) and its
        folder must exist.
      fps: frame rate (> 0).

    Example::

        with VideoWriter("flow.mp4", fps=24) as out:
            for rgb in frames:
                out.write(rgb)
    """

    def __init__(self, path: str | os.PathLike, *, fps: float = 24.0) -> None:
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in _WRITE_FORMATS:
            raise ValueError(
                f"{self.path}: unknown video extension {ext!r}; supported: "
                f"{', '.join(VIDEO_EXTENSIONS)}"
            )
        if not (isinstance(fps, (int, float)) and np.isfinite(fps) and fps > 0):
            raise ValueError(f"{self.path}: fps must be a positive number, got {fps!r}")
        self._format, self._codec = _WRITE_FORMATS[ext]
        self.fps = float(fps)
        self.frames_written = 0
        #: ``(height, width)`` of the input frames, set by the first frame.
        self.frame_shape: tuple[int, int] | None = None
        #: ``(height, width)`` as stored (even sides).
        self.size: tuple[int, int] | None = None
        self._av = require_video_backend()
        self._out: AtomicFile | None = None
        self._container: Any = None
        self._stream: Any = None
        self._closed = False

    def __enter__(self) -> "VideoWriter":
        self._open()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _open(self) -> None:
        if self._out is not None or self._closed:
            return
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"folder of {self.path} does not exist")
        # The suffix keeps the extension so the file is recognisable if a crash leaves it.
        self._out = AtomicFile(self.path, "w+b", suffix=f".tmp{self.path.suffix}")
        try:
            self._container = self._av.open(self._out.file, "w", format=self._format)
        except BaseException:
            self.abort()
            raise

    def write(self, frame: Any) -> None:
        """Append one frame.

        Args:
          frame: ``(H, W, 3)`` uint8 RGB, the same size as the first frame.
        """
        if self._closed:
            raise ValueError(f"{self.path}: writer is closed")
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
            raise ValueError(
                f"{self.path}: frames must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}"
            )
        if frame.shape[0] < 2 or frame.shape[1] < 2:
            raise ValueError(f"{self.path}: frames must be at least 2x2, got {frame.shape}")
        self._open()
        if self.frame_shape is None:
            self.frame_shape = frame.shape[:2]
            self.size = (frame.shape[0] + frame.shape[0] % 2, frame.shape[1] + frame.shape[1] % 2)
            rate = Fraction(self.fps).limit_denominator(1001)  # 29.97 -> 30000/1001
            stream = self._container.add_stream(self._codec, rate=rate)
            stream.height, stream.width = self.size
            stream.pix_fmt = "yuv420p"
            self._stream = stream
        elif frame.shape[:2] != self.frame_shape:
            raise ValueError(
                f"{self.path}: frame {self.frames_written} is {frame.shape[1]}x{frame.shape[0]}, "
                f"the first was {self.frame_shape[1]}x{self.frame_shape[0]}"
            )
        pad = (self.size[0] - frame.shape[0], self.size[1] - frame.shape[1])
        if any(pad):
            frame = np.pad(frame, ((0, pad[0]), (0, pad[1]), (0, 0)), mode="edge")
        av_frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        # pts in the codec's time base, 1/rate: one tick per frame. (Setting the frame's own
        # time_base as well makes PyAV 18 hand x264 repeated timestamps after ~40 frames.)
        av_frame.pts = self.frames_written
        for packet in self._stream.encode(av_frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and move the finished file into place.

        Raises:
          ValueError: no frame was written (no file is created).
        """
        if self._closed:
            return
        if self.frames_written == 0:
            self.abort()
            raise ValueError(f"{self.path}: no frames were written; the video was not created")
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            self._container = None
            self._out.commit()
            self._out = None
            self._closed = True
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Stop without producing ``path``: the temporary file is deleted."""
        self._closed = True
        # Closing without flushing: the half-written stream is discarded with the file.
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None
        if self._out is not None:
            self._out.abort()
            self._out = None


def pairwise_flow(
    frames: Iterable[np.ndarray],
    predict: Callable[[np.ndarray, np.ndarray], Any],
    *,
    batch_size: int = 1,
    every: int = 1,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Flow between consecutive frames of a stream, computed in batches.

    Only every ``every``-th frame is used (0, K, 2K, ...) and flow is computed from each used
    frame to the next. Frames are consumed lazily: at most ``batch_size + 1`` frames and
    ``batch_size`` flows are held at any time. The last batch is padded to ``batch_size``
    by repeating its last pair (and the extra outputs dropped), so a jitted predictor is
    compiled for one batch shape only.

    Args:
      frames: iterable of ``(H, W, 3)`` frames (e.g. a :class:`FrameSource`).
      predict: ``predict(image1, image2) -> flow`` on batches ``(B, H, W, 3)`` ->
        ``(B, H, W, 2)``, e.g. ``lambda a, b: flowlib.estimate(a, b, model)``.
      batch_size: pairs per ``predict`` call (>= 1).
      every: frame step K (>= 1).

    Returns:
      An iterator of ``(index, frame, flow)``: the index of the pair's first frame in the
      input stream, that frame, and the float32 ``(H, W, 2)`` flow to frame ``index + K``.
    """
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if int(every) != every or every < 1:
        raise ValueError(f"every must be an integer >= 1, got {every!r}")
    batch_size, every = int(batch_size), int(every)
    pending: list[tuple[int, np.ndarray]] = []  # used frames not yet a pair's second frame
    shape = None
    for index, frame in enumerate(frames):
        if index % every:
            continue
        frame = np.asarray(frame)
        if shape is None:
            shape = frame.shape
        elif frame.shape != shape:
            raise ValueError(f"frame {index} has shape {frame.shape}, the first frame {shape}")
        pending.append((index, frame))
        if len(pending) == batch_size + 1:
            yield from _predict_batch(pending, predict, batch_size)
            pending = pending[-1:]  # the last frame starts the next pair
    if len(pending) > 1:
        yield from _predict_batch(pending, predict, batch_size)


def _predict_batch(
    pending: list[tuple[int, np.ndarray]],
    predict: Callable[[np.ndarray, np.ndarray], Any],
    batch_size: int,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    n = len(pending) - 1
    first = [f for _, f in pending[:-1]]
    second = [f for _, f in pending[1:]]
    if n < batch_size:
        first += [first[-1]] * (batch_size - n)
        second += [second[-1]] * (batch_size - n)
    flow = np.asarray(predict(np.stack(first), np.stack(second)), dtype=np.float32)
    h, w = pending[0][1].shape[:2]
    if flow.shape != (batch_size, h, w, 2):
        raise ValueError(f"predict returned shape {flow.shape}, expected {(batch_size, h, w, 2)}")
    for k in range(n):
        yield pending[k][0], pending[k][1], flow[k]
