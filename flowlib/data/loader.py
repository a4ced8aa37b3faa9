"""Prefetching: decode the next samples in threads while the accelerator computes.

PNG/PFM decoding releases the GIL in zlib and numpy, so a few threads keep a GPU fed
without multiprocessing. Order is preserved; at most ``buffer`` decoded samples are held.
"""

from __future__ import annotations

import collections
import concurrent.futures
from typing import Any, Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["prefetch"]


def prefetch(
    items: Iterable[T],
    fn: Callable[[T], R],
    *,
    workers: int = 2,
    buffer: int = 4,
) -> Iterator[R]:
    """Yield ``fn(item)`` for each item, in order, computing up to ``buffer`` ahead.

    Args:
      items: the work list (e.g. samples from an indexer).
      fn: the decoder (e.g. :func:`flowlib.data.load_sample`).
      workers: decoding threads.
      buffer: how many results may be pending at once (bounds memory).

    Returns:
      An iterator over the results; an exception in ``fn`` is raised at its position.
    """
    if workers < 1 or buffer < 1:
        raise ValueError(f"workers and buffer must be >= 1, got {workers} and {buffer}")
    it = iter(items)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        pending: collections.deque[concurrent.futures.Future[Any]] = collections.deque()
        for item in it:
            pending.append(pool.submit(fn, item))
            if len(pending) >= buffer:
                break
        while pending:
            result = pending.popleft().result()
            for item in it:
                pending.append(pool.submit(fn, item))
                break
            yield result
