"""The micro-batcher's rules: which pending requests leave together, and how many
micro-batches the client keeps in flight (see :mod:`pipeline.loadtest.driver`)."""

from __future__ import annotations

from collections import deque

import numpy as np


def take_batch(pending: deque, shard: np.ndarray, max_batch: int, prefer_shard: bool) -> list[int]:
    """The oldest request plus up to ``max_batch - 1`` others, same shard first (FIFO).

    Vectorised: under a backlog ``pending`` holds thousands of requests, and a Python scan
    with ``deque.remove`` per pick cost the driver milliseconds per batch on the cores
    the workers need."""
    first = pending.popleft()
    batch = [first]
    if prefer_shard and pending:
        ids = np.fromiter(pending, np.int64, len(pending))
        same = np.flatnonzero(shard[ids] == shard[first])[: max_batch - 1]
        if same.size:
            batch += ids[same].tolist()
            keep = np.ones(len(ids), bool)
            keep[same] = False
            pending.clear()
            pending.extend(ids[keep].tolist())
    while pending and len(batch) < max_batch:
        batch.append(pending.popleft())
    return batch


def inflight_cap(scaling, workers: int) -> int:
    """Micro-batches the client keeps in flight: two per worker (one running, one queued
    behind it), so that a busy pool makes later batches grow instead of queueing.
    ``scaling=adaptive`` counts ``scaling.maximum`` workers instead: Dask's Adaptive sizes
    the pool from the work queued *on the scheduler* (``adaptive_target``: occupancy /
    target_duration), and with two batches per running worker the scheduler never saw
    more than ~0.1 s of work however long the client's own queue grew, so it never
    scaled.  The predictive policy reads the arrivals themselves and keeps the tight cap."""
    n = max(workers, 1)
    if scaling.kind == "adaptive":
        n = max(n, scaling.maximum)
    return 2 * n
