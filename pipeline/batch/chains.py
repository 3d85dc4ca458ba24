"""Runs micro-batch chains through Dask, every region submitted up front.

A *chain* is the list of time blocks of one recording group: block k+1 starts from the
state block k wrote to the output store, so block k+1's task depends on block k's (it is
handed block k's small result and ignores it), while different chains run in parallel.
Every region is submitted at the start, so the scheduler knows the run's total and the
Dask dashboard's Progress panel counts ``done / all regions``.  Priorities run each chain
depth first (block k+1 before another chain's first block: it runs where block k's result
is, and that worker's reader holds the shards block k read), and Dask's scheduler-side
queuing sends the workers only about one task per thread, whatever the store's size.
State never travels through the client: only small metric dicts come back.

Counted until the run ends: the client holds each chain's last task, so the chain's
finished regions stay in the scheduler (as released tasks, their results dropped) and in
the panel's count.  When a worker is lost, Dask runs again the results it held that are
still wanted (a held last block, and the released blocks before it that block needs):
``fn(*args, force=False)`` makes that cheap by returning ``{"skipped": True}`` for a
region whose output is already complete (:func:`pipeline.batch.region.run_region` checks
its completion marker).  A skipped result for a region the driver has not counted yet
(its worker was lost before the result came back) is run again with ``force=True``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.core import interrupts
from pipeline.core.pool import PoolSampler, processing_on

POLL_S = 1.0  # how often, while waiting, the deadline asks the scheduler what runs where


@dataclass
class Completed:
    key: str
    chain: int
    index: int
    ready: float  # perf_counter seconds: when it could start (submitted, or its predecessor done)
    finished: float  # perf_counter seconds: its result at the driver
    received_at: float = 0.0  # the same moment, time.time() (a worker's clock stamps compare to it)
    result: Any = None
    error: BaseException | None = None


class RegionDeadline:
    """When a region running on a worker counts as stuck: ``fixed_s`` when configured, else
    10x the slowest region finished so far (at least ``floor_s``), ``initial_s`` before any
    has finished.  The clock starts when the region is first seen processing on a worker
    (the scheduler is asked every ``POLL_S`` while the driver waits), not while it is
    queued.  A region past it is retried elsewhere (its worker is restarted by its nanny,
    so Dask reschedules the region); after ``max_misses`` misses the run fails with the
    region named."""

    def __init__(self, fixed_s: float | None = None, initial_s: float = 300.0, floor_s: float = 30.0,
                 max_misses: int = 2) -> None:
        self.fixed_s, self.initial_s, self.floor_s, self.max_misses = fixed_s, initial_s, floor_s, max_misses
        self.slowest_s: float | None = None
        self.retries: list[tuple[str, str, float]] = []  # (key, worker, seconds on that worker)

    def seconds(self) -> float:
        if self.fixed_s is not None:
            return self.fixed_s
        return self.initial_s if self.slowest_s is None else max(self.floor_s, 10.0 * self.slowest_s)

    def finished(self, seconds: float) -> None:
        self.slowest_s = seconds if self.slowest_s is None else max(self.slowest_s, seconds)


class RegionStuck(RuntimeError):
    """A region missed its deadline ``max_misses`` times (each time on a worker that was restarted)."""


def _chained(fn: Callable, after: Any, *args, force: bool = False):
    """A chain's task: ``after`` (the previous block's result, None for the first) only orders it."""
    return fn(*args, force=force)


def stream_chains(client, chains: Sequence[Sequence[tuple[str, tuple]]], fn: Callable,
                  sampler: PoolSampler | None = None, stop_on_error: bool = True,
                  deadline: RegionDeadline | None = None) -> Iterator[Completed]:
    """Run every chain's tasks in order, chains in parallel, all submitted up front.

    ``chains[c][i] = (key, args)``; ``fn(*args, force=...)`` runs on a worker (see the
    module docstring for ``force`` and ``{"skipped": True}``).  Yields one
    :class:`Completed` per task key, in completion order.  With ``stop_on_error`` the
    first failure cancels the rest and is re-raised; otherwise a failed chain's later
    blocks are not run (nor yielded) and the other chains go on.

    ``deadline``: a region running longer than ``deadline.seconds()`` on one worker (a
    stalled worker: SIGSTOP, a hung read) has that worker restarted by its nanny, and Dask
    runs the region elsewhere (:class:`RegionDeadline`); it is reported in ``deadline.retries``.
    """
    from distributed import as_completed

    length = max(map(len, chains), default=0)
    info: dict[Any, tuple[int, int]] = {}  # unfinished future -> (chain, index)
    ready_at: dict[Any, float] = {}  # unfinished future that could start -> since when
    running: dict[Any, tuple[str, float]] = {}  # -> (worker, first seen processing there)
    follower: dict[Any, Any] = {}  # future -> the chain's next future
    held: list = []  # each chain's last future, held to the end (module docstring)
    misses: dict[Any, int] = {}
    ac = as_completed()
    t_submit = time.perf_counter()
    for c, chain in enumerate(chains):
        prev = None
        for i, (key, args) in enumerate(chain):
            fut = client.submit(_chained, fn, prev, *args, key=key, pure=False, retries=0,
                                priority=-(c * length + i))  # higher runs first: chains depth first
            info[fut] = (c, i)
            if prev is None:
                ready_at[fut] = t_submit
            else:
                follower[prev] = fut
            ac.add(fut)
            prev = fut
        if prev is not None:
            held.append(prev)
    last_poll = time.perf_counter()

    def check_deadlines() -> None:
        nonlocal last_poll
        now = time.perf_counter()
        if now - last_poll < POLL_S or not ready_at:
            return
        last_poll = now
        limit = deadline.seconds()
        where = client.run_on_scheduler(processing_on, [f.key for f in ready_at])
        for f in list(ready_at):
            w = where.get(f.key)
            seen = running.get(f)
            if w is None or seen is None or seen[0] != w:  # queued, or (again) started on w
                if w is None:
                    running.pop(f, None)
                else:
                    running[f] = (w, now)
                continue
            if now - seen[1] <= limit:
                continue
            misses[f] = misses.get(f, 0) + 1
            deadline.retries.append((str(f.key), w, now - seen[1]))
            if misses[f] > deadline.max_misses:
                raise RegionStuck(f"region {f.key} missed its {limit:.0f} s deadline {misses[f]} times "
                                  f"(last on {w}); giving up")
            print(f"\nregion {f.key}: no result after {limit:.0f} s on {w}; restarting that worker and "
                  "running the region elsewhere", flush=True)
            running.pop(f, None)
            try:
                client.restart_workers([w], timeout=10, raise_for_error=False)
            except Exception:  # noqa: BLE001 -- no nanny (cluster=address): drop it from the scheduler
                client.run_on_scheduler(_remove_worker, w)

    def completed() -> Iterator:
        """Futures as they complete; deadlines checked while none does."""
        while True:
            interrupts.check()  # a Ctrl-C whose KeyboardInterrupt a Future.__del__ swallowed
            if ac.has_ready():
                yield from ac.next_batch(block=False)
            elif ac.is_empty():
                return
            else:
                with ac.thread_condition:  # notified when a future completes
                    ac.thread_condition.wait(timeout=0.1)
                if deadline is not None:
                    check_deadlines()

    failed: set[int] = set()
    try:
        for fut in completed():
            c, i = info.pop(fut)
            t_ready = ready_at.pop(fut, t_submit)
            running.pop(fut, None)
            if (nxt := follower.pop(fut, None)) is not None:
                ready_at[nxt] = time.perf_counter()
            if c in failed:  # a later block of a failed chain: never ran
                continue
            done = Completed(fut.key, c, i, t_ready, time.perf_counter(), time.time())
            if fut.status == "error":
                done.error = fut.exception()
            else:
                result = fut.result()
                if isinstance(result, dict) and result.get("skipped"):  # run again by Dask before we had it
                    again = client.submit(fn, *chains[c][i][1], force=True, key=f"{fut.key}-again", pure=False)
                    result = again.result()
                    done.finished, done.received_at = time.perf_counter(), time.time()
                done.result = result
                if deadline is not None:  # the region's own time where it says when it started
                    started = result.get("started_at") if isinstance(result, dict) else None
                    deadline.finished(done.received_at - started if started else done.finished - t_ready)
            if sampler is not None:
                sampler.sample()
            if done.error is not None:
                if stop_on_error:
                    raise done.error
                failed.add(c)
            yield done
    finally:
        client.cancel(list(info) + held)  # unfinished tasks stop; the held results are dropped


async def _remove_worker(address, dask_scheduler=None):
    await dask_scheduler.remove_worker(address, stimulus_id=f"neuroliquid-region-deadline-{time.time()}", close=True)
