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

from pipeline.core.pool import PoolSampler, processing_on


@dataclass
class Completed:
    key: str
    chain: int
    index: int
    submitted: float  # perf_counter seconds
    finished: float
    result: Any = None
    error: BaseException | None = None


class RegionDeadline:
    """When a region in flight counts as stuck: ``fixed_s`` when configured, else 10x the
    slowest region finished so far (at least ``floor_s``), ``initial_s`` before any has
    finished.  A region past it on a worker is retried elsewhere (its worker is restarted
    by its nanny, so Dask reschedules the region); after ``max_misses`` misses the run
    fails with the region named."""

    def __init__(self, fixed_s: float | None = None, initial_s: float = 300.0, floor_s: float = 30.0,
                 max_misses: int = 2) -> None:
        self.fixed_s, self.initial_s, self.floor_s, self.max_misses = fixed_s, initial_s, floor_s, max_misses
        self.slowest_s: float | None = None
        self.retries: list[tuple[str, str, float]] = []  # (key, worker, seconds in flight)

    def seconds(self) -> float:
        if self.fixed_s is not None:
            return self.fixed_s
        return self.initial_s if self.slowest_s is None else max(self.floor_s, 10.0 * self.slowest_s)

    def finished(self, seconds: float) -> None:
        self.slowest_s = seconds if self.slowest_s is None else max(self.slowest_s, seconds)


class RegionStuck(RuntimeError):
    """A region missed its deadline ``max_misses`` times (each time on a worker that was restarted)."""


def stream_chains(client, chains: Sequence[Sequence[tuple[str, tuple]]], fn: Callable,
                  window: int, sampler: PoolSampler | None = None,
                  stop_on_error: bool = True, deadline: RegionDeadline | None = None) -> Iterator[Completed]:
    """Run every chain's tasks in order, chains in parallel, at most ``window`` in flight.

    ``chains[c][i] = (key, args)``; ``fn(*args)`` runs on a worker.  Yields one
    :class:`Completed` per task key (a task retried after a worker death still yields
    once).  With ``stop_on_error`` the first failure cancels what is in flight and is
    re-raised; otherwise failed chains stop and the others go on.

    Affinity: where a task's result is a dict with a ``"worker"`` address, the chain's next
    task asks for that worker (``allow_other_workers=True``, so a busy or lost worker does
    not hold it up): block k+1 reads the shards block k's reader already holds (the frame
    and IMU samples just before a block live in the previous time shard).

    ``deadline``: a region running longer than ``deadline.seconds()`` on one worker (a
    stalled worker: SIGSTOP, a hung read) has that worker restarted by its nanny, and Dask
    runs the region elsewhere (:class:`RegionDeadline`); it is reported in ``deadline.retries``.
    """
    from distributed import as_completed

    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    waiting = deque(range(len(chains)))
    info: dict[Any, tuple[int, int, float]] = {}
    since: dict[Any, float] = {}  # when each future's current attempt started to count
    misses: dict[Any, int] = {}
    ac = as_completed()

    def submit(c: int, i: int, worker: str | None = None) -> None:
        key, args = chains[c][i]
        where = {} if worker is None else {"workers": [worker], "allow_other_workers": True}
        fut = client.submit(fn, *args, key=key, pure=False, retries=0, **where)
        info[fut] = (c, i, time.perf_counter())
        since[fut] = time.perf_counter()
        ac.add(fut)

    def check_deadlines() -> None:
        limit = deadline.seconds()
        now = time.perf_counter()
        late = [f for f in info if now - since[f] > limit]
        if not late:
            return
        where = client.run_on_scheduler(processing_on, [f.key for f in late])
        for f in late:
            w = where.get(f.key)
            since[f] = time.perf_counter()
            if w is None:  # still queued on the scheduler: not stuck on a worker
                continue
            misses[f] = misses.get(f, 0) + 1
            deadline.retries.append((str(f.key), w, now - info[f][2]))
            if misses[f] > deadline.max_misses:
                raise RegionStuck(f"region {f.key} missed its {limit:.0f} s deadline {misses[f]} times "
                                  f"(last on {w}); giving up")
            print(f"\nregion {f.key}: no result after {limit:.0f} s on {w}; restarting that worker and "
                  "running the region elsewhere", flush=True)
            try:
                client.restart_workers([w], timeout=10, raise_for_error=False)
            except Exception:  # noqa: BLE001 -- no nanny (cluster=address): drop it from the scheduler
                client.run_on_scheduler(_remove_worker, w)

    def completed() -> Iterator:
        """Futures as they complete; deadlines checked while none does."""
        while True:
            if ac.has_ready():
                yield from ac.next_batch(block=False)
            elif ac.is_empty():
                return
            else:
                with ac.thread_condition:  # notified when a future completes
                    ac.thread_condition.wait(timeout=0.1)
                if deadline is not None:
                    check_deadlines()

    while waiting and len(info) < window:
        c = waiting.popleft()
        if chains[c]:
            submit(c, 0)
    try:
        for fut in completed():
            c, i, t_sub = info.pop(fut)
            since.pop(fut, None)
            done = Completed(fut.key, c, i, t_sub, time.perf_counter())
            if fut.status == "error":
                done.error = fut.exception()
            else:
                done.result = fut.result()
                if deadline is not None:
                    deadline.finished(done.finished - done.submitted)
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


async def _remove_worker(address, dask_scheduler=None):
    await dask_scheduler.remove_worker(address, stimulus_id=f"neuroliquid-region-deadline-{time.time()}", close=True)
