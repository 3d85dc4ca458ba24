"""Streams micro-batch chains through Dask with a bounded window of futures.

A *chain* is the list of time blocks of one recording group: block k+1 starts from the
state block k wrote to the output store, so a chain's blocks run in order, while
different chains run in parallel.  At most ``window`` futures are in flight, whatever
the size of the store (worker and client memory stay bounded); nothing is persisted.
State never travels through the client: only small metric dicts come back.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.core.pool import PoolSampler


@dataclass
class Completed:
    key: str
    chain: int
    index: int
    submitted: float  # perf_counter seconds
    finished: float
    result: Any = None
    error: BaseException | None = None


def stream_chains(client, chains: Sequence[Sequence[tuple[str, tuple]]], fn: Callable,
                  window: int, sampler: PoolSampler | None = None,
                  stop_on_error: bool = True) -> Iterator[Completed]:
    """Run every chain's tasks in order, chains in parallel, at most ``window`` in flight.

    ``chains[c][i] = (key, args)``; ``fn(*args)`` runs on a worker.  Yields one
    :class:`Completed` per task key (a task retried after a worker death still yields
    once).  With ``stop_on_error`` the first failure cancels what is in flight and is
    re-raised; otherwise failed chains stop and the others go on.

    Affinity: where a task's result is a dict with a ``"worker"`` address, the chain's next
    task asks for that worker (``allow_other_workers=True``, so a busy or lost worker does
    not hold it up): block k+1 reads the shards block k's reader already holds (the frame
    and IMU samples just before a block live in the previous time shard).
    """
    from distributed import as_completed

    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    waiting = deque(range(len(chains)))
    info: dict[Any, tuple[int, int, float]] = {}
    ac = as_completed()

    def submit(c: int, i: int, worker: str | None = None) -> None:
        key, args = chains[c][i]
        where = {} if worker is None else {"workers": [worker], "allow_other_workers": True}
        fut = client.submit(fn, *args, key=key, pure=False, retries=0, **where)
        info[fut] = (c, i, time.perf_counter())
        ac.add(fut)

    while waiting and len(info) < window:
        c = waiting.popleft()
        if chains[c]:
            submit(c, 0)
    try:
        for fut in ac:
            c, i, t_sub = info.pop(fut)
            done = Completed(fut.key, c, i, t_sub, time.perf_counter())
            if fut.status == "error":
                done.error = fut.exception()
            else:
                done.result = fut.result()
            fut.release()
            if sampler is not None:
                sampler.sample()
            if done.error is not None and stop_on_error:
                for f in list(info):
                    f.cancel()
                raise done.error
            yield done
            if done.error is None and i + 1 < len(chains[c]):
                worker = done.result.get("worker") if isinstance(done.result, dict) else None
                submit(c, i + 1, worker)
            while waiting and len(info) < window:
                nxt = waiting.popleft()
                if chains[nxt]:
                    submit(nxt, 0)
    finally:
        for f in list(info):
            f.cancel()
