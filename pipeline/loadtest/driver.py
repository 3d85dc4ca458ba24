"""``load=seed_phases``: the seed report's load test, open loop, honestly measured.

Requests (one ``window_steps`` window of one recording, from zero state) arrive on each
phase's schedule whether or not the pool keeps up.  A micro-batcher groups arrived
requests like Triton's dynamic batching: a batch leaves when it is full or its oldest
request has waited ``max_wait_ms``, and only while fewer than two batches per worker
are in flight (otherwise requests keep queueing and later batches grow); it fills a
batch with requests from the oldest request's store shard first.  Under Dask's own
Adaptive (``scaling=adaptive``) the cap is two batches per worker of ``scaling.maximum``
workers, whatever the pool now: the scheduler only scales on work it can see, so the
backlog must reach its queue, not wait in this client (``inflight_cap``).

Latency = completion (when this client sees the result) - the request's *scheduled*
arrival, on one monotonic clock, so neither queueing nor a late generator hides (no
coordinated omission).  The generator's own lag (release - schedule) is reported.
Phases run in order; each starts when the previous one has drained, so phases do not
share their queues.  See docs/load.md.
"""

from __future__ import annotations

import queue
import time
from collections import deque

import numpy as np

from kernels.params import OpCounts
from pipeline.loadtest.batcher import inflight_cap, take_batch
from pipeline.loadtest.report import RequestRecord
from pipeline.loadtest.schedule import Requests
from pipeline.loadtest.serve import serve_requests


class Completions:
    """Stamps each future's completion on the run clock as soon as the client sees it
    (``Future.add_done_callback`` runs when the client learns the result; no polling)."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self.done: queue.Queue = queue.Queue()

    def add(self, fut) -> None:
        fut.add_done_callback(lambda f: self.done.put((self.clock(), f)))


def warm_up(client, store: str, cfg, n_steps: np.ndarray) -> None:
    """Small request batches on every worker before the first phase (not counted): the
    store's shard pools and timestamp index are built on first use.  The second round
    runs under the phases' key prefix ("serve"), so the scheduler's duration estimate for
    it (which Dask's Adaptive reads) starts from a warm batch, not from Dask's 0.5 s guess
    for an unknown task, which asked Adaptive for a pool at the first batch."""
    rec = int(np.argmax(n_steps))
    workers = list(client.nthreads())
    for r, prefix in enumerate(("warmup", "serve")):
        futs = [client.submit(serve_requests, store, np.array([rec] * 4), np.zeros(4, np.int64),
                              cfg.load.window_steps, cfg.data.policy, cfg.data.imu_window, cfg.data.max_age,
                              key=(prefix, "warmup", r * len(workers) + i), pure=False, workers=[w],
                              allow_other_workers=False)
                for i, w in enumerate(workers)]
        client.gather(futs)


def _noop() -> None:
    return None


def roundtrip_floor(client, n: int = 50) -> tuple[float, float]:
    """p50 and p99 (ms) of a no-op task's submit-to-result time, one at a time."""
    times = []
    for i in range(n):
        t = time.perf_counter()
        client.submit(_noop, key=f"noop-{i}-{time.perf_counter_ns()}", pure=False).result()
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def run_phase(client, phase, reqs: Requests, cfg, store: str, clock, completions: Completions,
              adaptive, workers_now) -> tuple[list, dict]:
    """Serve one phase; returns per-request records and the phase's op totals and lag."""
    L = cfg.load
    n = len(reqs.arrival_s)
    released = 0
    pending: deque[int] = deque()
    inflight: dict = {}  # future key -> request indices
    completion = np.full(n, np.nan)
    ok = np.zeros(n, bool)
    errors = [""] * n
    lag = np.zeros(n)
    ops = OpCounts()
    finished = 0
    batch_id = 0
    busy = 0.0  # worker-seconds spent reading and computing
    while finished < n:
        now = clock()
        k = int(np.searchsorted(reqs.arrival_s, now, side="right"))
        if k > released:
            lag[released:k] = now - reqs.arrival_s[released:k]
            pending.extend(range(released, k))
            if adaptive is not None and hasattr(adaptive, "policy"):
                adaptive.policy.observe_arrivals(now, k - released)
            released = k
        # Requests that waited past the timeout fail; they are counted, never dropped.
        while pending and now - reqs.arrival_s[pending[0]] > L.request_timeout_s:
            i = pending.popleft()
            errors[i] = f"timed out after {L.request_timeout_s} s in the queue"
            completion[i] = now
            finished += 1
        slots = inflight_cap(cfg.scaling, workers_now()) - len(inflight)
        while pending and slots > 0 and (
            len(pending) >= L.max_batch or now - reqs.arrival_s[pending[0]] >= L.max_wait_ms / 1e3
            or released == n
        ):
            idx = take_batch(pending, reqs.shard, L.max_batch, L.prefer_shard)
            # One key prefix ("serve") for every phase: the scheduler's duration estimate
            # (which Adaptive's target reads) carries over instead of restarting at
            # Dask's 0.5 s unknown-task guess each phase.
            key = ("serve", phase.name, batch_id)
            batch_id += 1
            fut = client.submit(serve_requests, store, reqs.recordings[idx], reqs.starts[idx],
                                L.window_steps, cfg.data.policy, cfg.data.imu_window, cfg.data.max_age,
                                key=key, pure=False)
            inflight[fut.key] = idx
            completions.add(fut)
            slots -= 1
        # Sleep until the next arrival, the oldest request's batching deadline, or a completion.
        wake = [reqs.arrival_s[released]] if released < n else []
        if pending and slots > 0:
            wake.append(reqs.arrival_s[pending[0]] + L.max_wait_ms / 1e3)
        timeout = min(max(min(wake, default=now + 0.05) - clock(), 0.0002), 0.05)
        try:
            t_done, fut = completions.done.get(timeout=timeout)
        except queue.Empty:
            continue
        while True:
            idx = inflight.pop(fut.key, None)
            if idx is not None:
                if fut.status == "finished":
                    r = fut.result()
                    ok[idx] = r["ok"]
                    for j, i in enumerate(idx):
                        errors[i] = r["errors"][j]
                    ops = ops + OpCounts(**r["ops"])
                    busy += r["read_s"] + r["compute_s"]
                    if adaptive is not None and hasattr(adaptive, "policy") and r["compute_s"] > 0:
                        adaptive.policy.observe_service_time((r["read_s"] + r["compute_s"]) / len(idx), len(idx))
                else:
                    exc = fut.exception()
                    for i in idx:
                        errors[i] = f"{type(exc).__name__}: {exc}"[:300]
                completion[idx] = t_done
                finished += len(idx)
                fut.release()
            try:
                t_done, fut = completions.done.get_nowait()
            except queue.Empty:
                break
    records = [RequestRecord(phase.name, float(reqs.arrival_s[i]), float(completion[i]), bool(ok[i]),
                             error=errors[i], recording=int(reqs.recordings[i]), start_step=int(reqs.starts[i]))
               for i in range(n)]
    return records, {"ops": ops, "lag_s": float(lag.max(initial=0.0)), "busy_s": busy}
