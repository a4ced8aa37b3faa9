"""Batched, sharded prediction over a list of samples.

Samples of equal image size are batched; each batch is padded to a multiple of the
number of devices and split over a 1-D device mesh (``jax.sharding``), so the same code
uses one CPU, 8 GPUs or a TPU slice. Under ``jax.distributed`` (multi-host) each process
takes every ``process_count``-th batch; evaluators pool their (sum, count) statistics with
:func:`allreduce_sums`. Decoding runs ahead in threads (:func:`flowlib.data.prefetch`).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from flowlib.data import Sample, load_sample, prefetch

__all__ = ["predict", "measure_all", "sample_key", "allreduce_sums", "device_summary"]


def _mesh():
    import jax
    from jax.sharding import Mesh

    return Mesh(np.array(jax.local_devices()), ("data",))


def _shard(batch: np.ndarray, mesh: Any) -> Any:
    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    return jax.device_put(batch, NamedSharding(mesh, PartitionSpec("data")))


def _batches(items: Iterable[tuple[Sample, dict]], batch_size: int) -> Iterator[list[tuple[Sample, dict]]]:
    """Group consecutive decoded samples of equal image shape, at most batch_size each."""
    batch: list[tuple[Sample, dict]] = []
    for item in items:
        if batch and (len(batch) == batch_size or item[1]["image1"].shape != batch[0][1]["image1"].shape):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def predict(
    model: Any,
    samples: Sequence[Sample],
    *,
    batch_size: int = 1,
    workers: int = 2,
    progress: bool = True,
    skip: Callable[[Sample], bool] | None = None,
) -> Iterator[tuple[Sample, dict, np.ndarray]]:
    """Yield ``(sample, decoded, prediction)`` for every sample this process handles.

    Args:
      model: a :class:`flowlib.Model` (flow or stereo).
      samples: from an indexer.
      batch_size: pairs per forward pass (rounded up to a multiple of the local devices).
      workers: decoding threads.
      progress: show a progress bar with throughput and ETA.
      skip: samples for which this returns True are not evaluated (resume).

    Returns:
      An iterator; predictions are float32 numpy (H, W, 2) flow or (H, W) disparity.
    """
    import jax

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    mesh = _mesh()
    n_dev = mesh.devices.size
    todo = [s for s in samples if not (skip and skip(s))]
    rank, world = jax.process_index(), jax.process_count()
    todo = todo[rank::world]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), unit="pair", desc=f"{model.name}", dynamic_ncols=True)
    decoded = prefetch(todo, lambda s: (s, load_sample(s)), workers=workers, buffer=max(4, 2 * batch_size))
    try:
        for batch in _batches(decoded, batch_size):
            a = np.stack([d["image1"] for _, d in batch])
            b = np.stack([d["image2"] for _, d in batch])
            pad = (-len(batch)) % n_dev
            if pad:  # repeat the last pair so every device gets an equal share
                a = np.concatenate([a, np.repeat(a[-1:], pad, 0)])
                b = np.concatenate([b, np.repeat(b[-1:], pad, 0)])
            out = np.asarray(jax.device_get(model(_shard(a, mesh), _shard(b, mesh))), dtype=np.float32)
            for (sample, data), pred in zip(batch, out):
                yield sample, data, pred
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()


def sample_key(sample: Sample) -> str:
    """A pair's identity in a journal: its first image's path."""
    return str(sample.image1)


def measure_all(
    model: Any,
    samples: Sequence[Sample],
    measure: Callable[[Sample, dict, np.ndarray], Any],
    *,
    journal: Any = None,
    batch_size: int = 1,
    progress: bool = True,
) -> Iterator[tuple[Sample, Any]]:
    """Yield ``(sample, measure(sample, decoded, prediction))`` for every sample.

    With a :class:`~flowlib.evaluation._journal.Journal`, pairs it already holds are not
    predicted again (their stored values are yielded first) and each new value is
    recorded durably before the next pair, so a killed run resumes where it stopped.
    """
    import jax

    done = journal.done if journal is not None else {}
    if done and jax.process_count() > 1:
        raise ValueError("resuming an evaluation is supported in single-process runs only")
    for sample in samples:
        key = sample_key(sample)
        if key in done:
            yield sample, done[key]
    for sample, data, pred in predict(model, samples, batch_size=batch_size, progress=progress,
                                      skip=lambda s: sample_key(s) in done):
        value = measure(sample, data, pred)
        if journal is not None:
            journal.add(sample_key(sample), value)
        yield sample, value


def allreduce_sums(values: dict[str, float]) -> dict[str, float]:
    """Sum a dict of floats over all processes (identity on a single host)."""
    import jax

    if jax.process_count() == 1:
        return dict(values)
    from jax.experimental import multihost_utils

    keys = sorted(values)
    local = np.array([values[k] for k in keys], dtype=np.float64)
    total = np.asarray(multihost_utils.process_allgather(local)).reshape(-1, len(keys)).sum(0)
    return dict(zip(keys, total.tolist()))


def device_summary() -> dict[str, Any]:
    """Devices, platform and versions, for result records."""
    import platform
    from importlib import metadata

    import jax
    import jaxlib

    from flowlib import __version__

    devices = jax.devices()
    return {
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "process_count": jax.process_count(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": metadata.version("flax"),  # installed; not imported for its version alone
        "flowlib": __version__,
        "python": platform.python_version(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


