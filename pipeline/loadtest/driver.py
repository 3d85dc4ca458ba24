"""``load=seed_phases``: the seed report's load test, open loop, honestly measured.

Requests (one ``window_steps`` window of one recording, from zero state) arrive on each phase's
schedule whether or not the pool keeps up.  A micro-batcher groups arrived requests like
Triton's dynamic batching: a batch leaves when it is full or its oldest request has waited
``max_wait_ms``, and only while fewer than two batches per worker are in flight (otherwise
requests keep queueing and later batches grow); it fills a batch with requests from the oldest
request's store shard first.  Under Dask's own Adaptive (``scaling=adaptive``) the cap is two
batches per worker of ``scaling.maximum`` workers, whatever the pool now: the scheduler only
scales on work it can see, so the backlog must reach its queue, not wait in this client.

Latency = completion (when this client sees the result) - the request's *scheduled*
arrival, on one monotonic clock, so neither queueing nor a late generator hides (no
coordinated omission).  The generator's own lag (release - schedule) is recorded per
request.  Phases follow the schedule: phase k+1 starts at phase k's scheduled start plus
its scheduled length whether or not phase k has drained (a request belongs to the phase
it arrived in).  Nothing slow runs in the arrival loop: ``client.submit`` runs in a
submitter thread, and energy reads, probes and worker restarts in threads beside it
(:class:`Beside`), so a joining worker, a slow scheduler or a stalled worker never holds
a release back.

Deadlines: a request fails (with the reason, at the time it is declared failed) when it
is not done ``load.request_timeout_s`` after its scheduled arrival, or when its
micro-batch has been in flight ``inflight_timeout_s``; the worker that held the batch is
probed, and retired and replaced (its nanny restarts it) when it does not answer or has
missed ``load.retire_after_misses`` deadlines.  See docs/load.md.
"""

from __future__ import annotations

import queue
import time
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from kernels.params import OpCounts
from pipeline.core import interrupts
from pipeline.loadtest.batcher import inflight_cap, take_batch
from pipeline.loadtest.report import RequestRecord
from pipeline.loadtest.schedule import Requests, concat
from pipeline.loadtest.serve import serve_requests
from pipeline.loadtest.supervise import Submitter, Supervisor


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
        _within(futs, WARM_TIMEOUT_S, "the warm-up requests")


def _noop() -> None:
    return None


WARM_TIMEOUT_S = 120.0  # warm-up, round-trip and service-time probes before the first phase


def _within(futs: list, timeout_s: float, what: str) -> list:
    """The futures' results, or an error naming what hung (a stalled worker during the
    warm-up must not hang the run before its deadlines apply)."""
    from distributed import wait

    try:
        wait(futs, timeout=timeout_s)
    except TimeoutError:
        late = [f for f in futs if not f.done()]
        for f in late:
            f.cancel()
        raise TimeoutError(f"{what}: {len(late)} of {len(futs)} task(s) gave no result within {timeout_s:g} s "
                           "before the first phase (a stalled or overloaded worker?)") from None
    return [f.result() for f in futs]


def roundtrip_floor(client, n: int = 50) -> tuple[float, float]:
    """p50 and p99 (ms) of a no-op task's submit-to-result time, one at a time."""
    times = []
    for i in range(n):
        t = time.perf_counter()
        _within([client.submit(_noop, key=f"noop-{i}-{time.perf_counter_ns()}", pure=False)], WARM_TIMEOUT_S,
                "a no-op task")
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def warm_service_s(client, store: str, cfg, n_steps: np.ndarray, n: int = 5) -> float:
    """Median submit-to-result time (s) of a full ``load.max_batch`` micro-batch on a warm
    worker: the base of the default in-flight deadline."""
    rec = int(np.argmax(n_steps))
    b = cfg.load.max_batch
    times = []
    for i in range(n):
        t = time.perf_counter()
        _within([client.submit(serve_requests, store, np.array([rec] * b), np.zeros(b, np.int64),
                                cfg.load.window_steps, cfg.data.policy, cfg.data.imu_window, cfg.data.max_age,
                                key=("warmup", "service", i), pure=False)], WARM_TIMEOUT_S, "a full micro-batch")
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def default_inflight_timeout(service_s: float, cap: int) -> float:
    """A micro-batch may wait behind every other batch the client keeps in flight (``cap``)
    and still finish: 10x that worst honest case, at least 2 s (a loaded 2-core box)."""
    return max(2.0, 10.0 * service_s * max(cap, 1))


@dataclass
class Served:
    """What :func:`run_schedule` measured, per request (index into the whole schedule)."""

    reqs: Requests
    phase: np.ndarray  # phase index of each request
    release_s: np.ndarray
    completion_s: np.ndarray
    ok: np.ndarray
    errors: list[str]
    batch_size: np.ndarray
    worker: list[str]
    ops: list = field(default_factory=list)  # OpCounts per phase (requests' phase)
    busy_s: list = field(default_factory=list)  # worker-seconds per phase
    counted: list = field(default_factory=list)  # requests whose op counts are in ``ops``, per phase
    deadline_misses: int = 0
    expired: dict = field(default_factory=dict)  # batch key -> request indices failed at a deadline


def run_schedule(client, plans: list[tuple], cfg, store: str, clock, completions: Completions, adaptive,
                 workers_now, *, inflight_timeout_s: float, on_phase_start=None,
                 supervisor: Supervisor | None = None, fn=serve_requests) -> Served:
    """Serve every phase's requests on their schedule (``plans``: ``[(phase, Requests)]``
    in order, arrivals on the run clock); ``on_phase_start(k)`` is called (it must not
    block: hand slow work to :class:`Beside`) when phase k's scheduled start passes, and
    ``on_phase_start(len(plans))`` once every request is finished."""
    L = cfg.load
    reqs, phase_of = concat([r for _, r in plans])
    starts = [float(r.arrival_s[0]) for _, r in plans]
    n = len(reqs.arrival_s)
    released = 0
    pending: deque[int] = deque()
    inflight: dict = {}  # batch key -> (request indices, time sent)
    completion = np.full(n, np.nan)
    release = np.full(n, np.nan)
    ok = np.zeros(n, bool)
    errors = [""] * n
    bsize = np.zeros(n, np.int64)
    worker = [""] * n
    n_phases = len(plans)
    ops = [OpCounts() for _ in range(n_phases)]
    busy = [0.0] * n_phases
    counted = [0] * n_phases
    finished = batch_id = next_phase = misses = 0
    expired: dict = {}
    submitter = Submitter(client, completions, fn, (store, L.window_steps, cfg.data.policy, cfg.data.imu_window,
                                                       cfg.data.max_age))

    def fail(idx, now: float, why: str) -> None:
        nonlocal finished
        for i in idx:
            errors[i] = why
        completion[idx] = now
        finished += len(idx)

    try:
        while finished < n:
            now = clock()
            while next_phase < n_phases and now >= starts[next_phase]:
                if on_phase_start is not None:
                    on_phase_start(next_phase)
                next_phase += 1
            k = int(np.searchsorted(reqs.arrival_s, now, side="right"))
            if k > released:
                release[released:k] = now
                pending.extend(range(released, k))
                if adaptive is not None and hasattr(adaptive, "policy"):
                    adaptive.policy.observe_arrivals(now, k - released)
                released = k
            # Requests past their deadline fail; they are counted, never dropped.
            while pending and now - reqs.arrival_s[pending[0]] > L.request_timeout_s:
                fail([pending.popleft()], now, f"timed out after {L.request_timeout_s:g} s in the client's queue")
            for key in [key for key, (idx, sent) in inflight.items()
                        if now - sent > inflight_timeout_s or now - reqs.arrival_s[idx[0]] > L.request_timeout_s]:
                idx, sent = inflight.pop(key)
                why = (f"no result {now - sent:.1f} s after its micro-batch was sent (in-flight deadline "
                       f"{inflight_timeout_s:g} s)" if now - sent > inflight_timeout_s else
                       f"timed out after {L.request_timeout_s:g} s in flight")
                fail(idx, now, why)
                expired[key] = idx
                misses += 1
                if supervisor is not None:
                    supervisor.missed(key, submitter.futures.pop(key, None))
            slots = inflight_cap(cfg.scaling, workers_now()) - len(inflight)
            while pending and slots > 0 and (
                len(pending) >= L.max_batch or now - reqs.arrival_s[pending[0]] >= L.max_wait_ms / 1e3
                or released == n
            ):
                idx = take_batch(pending, reqs.shard, L.max_batch, L.prefer_shard)
                # One key prefix ("serve") for every phase: the scheduler's duration estimate
                # (which Adaptive's target reads) carries over instead of restarting at
                # Dask's 0.5 s unknown-task guess each phase.
                key = ("serve", plans[phase_of[idx[0]]][0].name, batch_id)
                batch_id += 1
                submitter.put(key, reqs.recordings[idx], reqs.starts[idx])
                inflight[key] = (idx, now)
                bsize[idx] = len(idx)
                slots -= 1
            # Sleep until the next arrival or phase start, the oldest request's batching
            # deadline, an in-flight deadline, or a completion.
            wake = [reqs.arrival_s[released]] if released < n else []
            if next_phase < n_phases:
                wake.append(starts[next_phase])
            if pending and slots > 0:
                wake.append(reqs.arrival_s[pending[0]] + L.max_wait_ms / 1e3)
            if inflight:
                wake.append(min(sent for _, sent in inflight.values()) + inflight_timeout_s)
            timeout = min(max(min(wake, default=now + 0.05) - clock(), 0.0002), 0.05)
            interrupts.check()  # a Ctrl-C whose KeyboardInterrupt was swallowed (see the module)
            try:
                t_done, fut = completions.done.get(timeout=timeout)
            except queue.Empty:
                continue
            while True:
                entry = inflight.pop(fut.key, None)
                submitter.futures.pop(fut.key, None)
                if entry is not None:  # else: failed at its deadline already
                    idx = entry[0]
                    if fut.status == "finished":
                        r = fut.result()
                        ok[idx] = r["ok"]
                        for j, i in enumerate(idx):
                            errors[i] = r["errors"][j]
                            worker[i] = r.get("worker", "")
                        # A batch may hold requests of two phases (open loop: a backlog
                        # carries over): its ops and worker time are shared by request.
                        batch_ops = OpCounts(**r["ops"])
                        for p, cnt in Counter(phase_of[idx].tolist()).items():
                            share = cnt / len(idx)
                            ops[p] = ops[p] + OpCounts(*(v * share for v in batch_ops))
                            busy[p] += (r["read_s"] + r["compute_s"]) * share
                            counted[p] += cnt if r["ops"] else 0
                        if adaptive is not None and hasattr(adaptive, "policy") and r["compute_s"] > 0:
                            adaptive.policy.observe_service_time((r["read_s"] + r["compute_s"]) / len(idx), len(idx))
                    else:
                        exc = fut.exception() if fut.status == "error" else None
                        why = f"{type(exc).__name__}: {exc}"[:300] if exc is not None else f"task {fut.status}"
                        for i in idx:
                            errors[i] = why
                    completion[idx] = t_done
                    finished += len(idx)
                fut.release()
                try:
                    t_done, fut = completions.done.get_nowait()
                except queue.Empty:
                    break
    finally:
        submitter.stop()
    if on_phase_start is not None:
        while next_phase <= n_phases:
            on_phase_start(next_phase)
            next_phase += 1
    return Served(reqs, phase_of, release, completion, ok, errors, bsize, worker, ops, busy, counted, misses, expired)


def records_of(served: Served, plans: list[tuple], supervisor: Supervisor | None = None) -> list[RequestRecord]:
    """One :class:`RequestRecord` per request, in schedule order."""
    s = served
    worker = list(s.worker)
    if supervisor is not None:
        for key, idx in s.expired.items():
            for i in idx:
                worker[i] = supervisor.worker_of.get(key, "")
    return [RequestRecord(plans[s.phase[i]][0].name, float(s.reqs.arrival_s[i]), float(s.completion_s[i]),
                          bool(s.ok[i]), batch_size=int(s.batch_size[i]), worker=worker[i], error=s.errors[i],
                          recording=int(s.reqs.recordings[i]), start_step=int(s.reqs.starts[i]),
                          release_s=float(s.release_s[i]))
            for i in range(len(s.reqs.arrival_s))]
