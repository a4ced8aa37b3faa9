"""Benchmark submission folders, written atomically, optionally zipped.

* MPI-Sintel: ``<out>/<pass>/<scene>/frame%04d.flo`` for every test pair, both passes
  (the layout the official ``bundler`` packs).
* KITTI 2015: ``<out>/flow/%06d_10.png`` (16-bit flow PNG) and ``<out>/disp_0/%06d_10.png``
  (16-bit disparity PNG); the zip holds those folders at its root, as the server expects.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Sequence

from flowlib import io
from flowlib._files import AtomicFile
from flowlib.data import Sample
from flowlib.evaluation._runner import predict

__all__ = ["write_submission", "zip_folder", "submission_path"]


def submission_path(out_dir: str | os.PathLike, sample: Sample) -> Path:
    """Where a sample's prediction goes inside a submission folder."""
    ext = ".flo" if sample.dataset == "sintel" else ".png"
    if sample.dataset.startswith("kitti") or sample.dataset == "sintel":
        return Path(out_dir) / f"{sample.name}{ext}"
    raise ValueError(f"no submission format for dataset {sample.dataset!r} (sintel and kitti are supported)")


def write_submission(
    model: Any,
    samples: Sequence[Sample],
    out_dir: str | os.PathLike,
    *,
    zip: bool = False,
    resume: bool = False,
    progress: bool = True,
) -> Path:
    """Predict every sample and write the benchmark's submission layout.

    Args:
      model: a flow or stereo :class:`flowlib.Model` matching the samples' task.
      samples: test-split samples (Sintel or KITTI).
      out_dir: submission folder (created).
      zip: also write ``<out_dir>.zip`` with the folder's contents at its root.
      resume: skip samples whose output file already exists (each file is written
        atomically, so an existing one is complete).
      progress: progress bar.

    Returns:
      The folder, or the zip file when ``zip`` is set.
    """
    out_dir = Path(out_dir)
    paths = {id(s): submission_path(out_dir, s) for s in samples}
    skip = (lambda s: paths[id(s)].is_file()) if resume else None
    for sample, _, pred in predict(model, samples, progress=progress, skip=skip):
        path = paths[id(sample)]
        path.parent.mkdir(parents=True, exist_ok=True)
        if sample.task == "flow":
            io.write_flow(path, pred)
        else:
            io.write_disparity(path, pred)
    return zip_folder(out_dir) if zip else out_dir


def zip_folder(folder: str | os.PathLike) -> Path:
    """Zip ``folder``'s contents (paths relative to it) to ``<folder>.zip`` atomically."""
    folder = Path(folder)
    target = folder.with_suffix(".zip")
    out = AtomicFile(target, suffix=".zip")
    out.file.close()  # make_archive writes the temporary file by name
    try:
        shutil.make_archive(os.fspath(out.tmp)[: -len(".zip")], "zip", root_dir=folder)
    except BaseException:
        out.abort()
        raise
    return out.commit()
