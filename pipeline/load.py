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
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from kernels.params import OpCounts


@dataclass
class Requests:
    """One phase's requests: recording, start step and scheduled arrival (s, run clock)."""

    recordings: np.ndarray
    starts: np.ndarray
    arrival_s: np.ndarray
    shard: np.ndarray  # shard key: requests with the same key share a store shard


def plan_phase(rng: np.random.Generator, n: int, rate: float | None, t0: float, n_steps: np.ndarray,
               window: int, shard_recordings: int, shard_steps: int) -> Requests:
    """``n`` requests from recordings long enough for a window, arriving from ``t0`` at
    ``rate`` per second (evenly spaced; ``None``: all at ``t0``)."""
    eligible = np.nonzero(n_steps >= window)[0]
    if eligible.size == 0:
        raise ValueError(f"no recording has {window} model steps for a request window")
    recs = rng.choice(eligible, size=n)
    starts = (rng.random(n) * (n_steps[recs] - window + 1)).astype(np.int64)
    arrival = t0 + (np.zeros(n) if rate is None else np.arange(n) / rate)
    shard = (recs // shard_recordings) * 1_000_000 + starts // shard_steps
    return Requests(recs, starts, arrival, shard)


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


class _Completions:
    """Stamps each future's completion on the run clock as soon as the client sees it
    (``Future.add_done_callback`` runs when the client learns the result; no polling)."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self.done: queue.Queue = queue.Queue()

    def add(self, fut) -> None:
        fut.add_done_callback(lambda f: self.done.put((self.clock(), f)))


class _PoolWatcher:
    """The pool size as the scheduler sees it, refreshed every ``every_s`` by a thread, so
    the batching loop never waits on a scheduler round trip."""

    def __init__(self, client, clock, scale_log, record: bool, every_s: float = 0.25) -> None:
        self.client, self.clock, self.scale_log, self.record = client, clock, scale_log, record
        self.n = self._read()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, args=(every_s,), daemon=True)
        self.thread.start()

    def _read(self) -> int:
        n = _n_workers(self.client)
        if self.record:  # fixed pools: adaptive ones record their own samples
            self.scale_log.sample(self.clock(), n)
        return n

    def _loop(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            try:
                self.n = self._read()
            except Exception:  # the client is closing
                return

    def __call__(self) -> int:
        return self.n

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=2)


def _n_workers(client) -> int:
    """Workers the scheduler knows now, from a direct RPC.  ``client.scheduler_info()``
    returns a cache that the client's own periodic refresh overwrites with an empty
    worker list (it asks for ``n_workers=0``), so a reader racing it saw 0 workers."""
    return len(client.nthreads())


def shard_warm_requests(n_steps: np.ndarray, window: int, shard_recordings: int,
                        shard_steps: int) -> tuple[list[int], list[int]]:
    """One request window in every (recording shard, step shard) of the store that holds
    one: (recordings, starts), for the worker setup's warm read."""
    recs, starts = [], []
    for g in range(0, len(n_steps), shard_recordings):
        rec = g + int(np.argmax(n_steps[g:g + shard_recordings]))
        for s0 in range(0, int(n_steps[rec]) - window + 1, shard_steps):
            recs.append(rec)
            starts.append(s0)
    return recs, starts


def _warm_up(client, store: str, cfg, n_steps: np.ndarray) -> None:
    """Small request batches on every worker before the first phase (not counted): the
    store's shard pools and timestamp index are built on first use.  The second round
    runs under the phases' key prefix ("serve"), so the scheduler's duration estimate for
    it (which Dask's Adaptive reads) starts from a warm batch, not from Dask's 0.5 s guess
    for an unknown task, which asked Adaptive for a pool at the first batch."""
    from pipeline.tasks import serve_requests

    rec = int(np.argmax(n_steps))
    workers = list(client.nthreads())
    for r, prefix in enumerate(("warmup", "serve")):
        futs = [client.submit(serve_requests, store, np.array([rec] * 4), np.zeros(4, np.int64),
                              cfg.load.window_steps, cfg.data.policy, cfg.data.imu_window,
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


def run_phase(client, phase, reqs: Requests, cfg, store: str, clock, completions: _Completions,
              adaptive, workers_now) -> tuple[list, dict]:
    """Serve one phase; returns per-request records and the phase's op totals and lag."""
    from pipeline.report import RequestRecord
    from pipeline.tasks import serve_requests

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
                                L.window_steps, cfg.data.policy, cfg.data.imu_window, key=key, pure=False)
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


def run_load(cfg) -> dict:
    """``task=run`` with ``load=seed_phases``: every phase, the report, MLflow."""
    import dataclasses
    import json
    from pathlib import Path

    from pipeline.cluster import default_workers, open_client
    from pipeline.data import open_reader
    from pipeline.energy import neuromorphic_estimate, phase_energy, read_host_energy
    from pipeline.model import Geometry, prepare_weights
    from pipeline.plugins import NetworkSetup, worker_info
    from pipeline.report import ClusterStatus, ModelSize, PhaseMeta, build_report, log_report
    from pipeline.run import WORKER_ENV, ensure_store
    from pipeline.scaling import ScaleLog, attach_scaling
    from pipeline.tracking import flatten, git_commit, package_versions, tracked_run

    store = ensure_store(cfg)
    reader = open_reader(store)
    run_name = cfg.tracking.run_name or time.strftime("load-%Y%m%d-%H%M%S")
    out_dir = Path(cfg.paths.output_dir) / run_name
    geometry = Geometry.of_store(reader, cfg.data.imu_window)
    weights_path, net = prepare_weights(cfg.model, geometry, out_dir / "weights.npz")
    L = cfg.load
    n_workers = cfg.scaling.n_workers or default_workers(cfg.backend.name)
    scaling = dataclasses.replace(cfg.scaling, n_workers=n_workers)
    adaptive_kind = scaling.kind != "fixed"
    shard_recs = int(reader.arrays["vision"].shards[0]) if reader.arrays["vision"].shards else 64
    shard_steps = max(1, int(round(cfg.data.layout.shard_seconds * float(reader.attrs["targets_rate_hz"]))))
    rng = np.random.default_rng(L.seed)
    tags = {"task": "load", "model": cfg.model.kind, "scaling": scaling.kind, "backend.requested": cfg.backend.name,
            "git_commit": git_commit(Path(cfg.paths.root_dir)), **package_versions()}
    records, metas = [], []
    energy_args = (cfg.energy.rapl_root, cfg.energy.use_nvml, cfg.energy.use_rapl)
    total_ops = OpCounts()
    busy_s = 0.0
    with tracked_run(cfg.tracking.uri, cfg.tracking.experiment, run_name, Path(cfg.tracking.artifact_dir),
                     parent_run_id=cfg.tracking.parent_run_id, tags=tags) as tracker:
        tracker.log_params(flatten(dataclasses.asdict(cfg)))
        initial = max(1, scaling.minimum) if adaptive_kind else n_workers
        with open_client(cfg.cluster, n_workers=initial, shared_paths=[store.parent],
                         adaptive=adaptive_kind, env=WORKER_ENV) as (client, cluster):
            warm_recs, warm_starts = shard_warm_requests(reader.meta["n_steps"], L.window_steps, shard_recs,
                                                         shard_steps)
            warm = {"recordings": warm_recs, "starts": warm_starts, "steps": L.window_steps,
                    "policy": cfg.data.policy, "imu_window": cfg.data.imu_window}
            client.register_plugin(NetworkSetup(cfg.backend.name, str(weights_path), cfg.backend.threads,
                                                store=str(store), warm=warm, malloc=cfg.cluster.malloc))
            print(f"dashboard: {client.dashboard_link}")
            client.wait_for_workers(initial, timeout=120)
            info = next(iter(client.run(worker_info).values()))
            tracker.set_tags({"backend": info["backend"], "device": info["device"],
                              "backend.reason": info["reason"], "worker.malloc": info["malloc"]})
            t0 = time.perf_counter()

            def clock() -> float:
                return time.perf_counter() - t0

            scale_log = ScaleLog()
            adaptive = attach_scaling(cluster, scaling, scale_log=scale_log, clock=clock) if cluster else None
            _warm_up(client, str(store), cfg, reader.meta["n_steps"])
            floor = roundtrip_floor(client)
            workers_now = _PoolWatcher(client, clock, scale_log, record=adaptive is None)
            completions = _Completions(clock)
            print(f"backend: {info['backend']} on {info['device']}; scaling={scaling.kind}; "
                  f"phases: {', '.join(f'{p.name} {p.requests}' for p in L.scaled_phases())}")
            for phase in L.scaled_phases():
                before = client.run(read_host_energy, *energy_args)
                reqs = plan_phase(rng, phase.requests, phase.rate_rps, clock() + 0.01, reader.meta["n_steps"],
                                  L.window_steps, shard_recs, shard_steps)
                recs, extra = run_phase(client, phase, reqs, cfg, str(store), clock, completions, adaptive,
                                        workers_now)
                after = client.run(read_host_energy, *energy_args)
                done_t = [r.completion_s for r in recs if r.completion_s is not None]
                duration = max(max(done_t, default=0.0) - reqs.arrival_s[0], 1e-6)
                ops = extra["ops"]
                total_ops = total_ops + ops
                busy_s += extra["busy_s"]
                completed = sum(r.ok for r in recs)
                energy = phase_energy(completed, duration, cfg.energy, ops, before, after)
                metas.append(PhaseMeta(phase.name, phase.rate_rps, energy, extra["lag_s"]))
                records.extend(recs)
                print(f"  {phase.name}: {completed}/{len(recs)} ok in {duration:.2f} s")
            workers_now.stop()
            healthy = _n_workers(client)
            scale_log.sample(clock(), healthy)
            if adaptive is not None:
                adaptive.stop()
        n_requests = max(len(records), 1)
        n_ok = sum(r.ok for r in records)
        # Capacity: healthy workers / measured worker-seconds per request (read + compute).
        capacity = healthy * n_ok / busy_s if busy_s > 0 else None
        report = build_report(
            records, metas, cfg.slo, scale_log,
            ClusterStatus(workers=healthy, healthy=healthy, capacity_rps=capacity),
            ModelSize(net.n_params, net.mflop_per_sequence(L.window_steps)),
            neuromorphic_estimate(OpCounts(*(int(v / n_requests) for v in total_ops)), cfg.energy),
        )
        report.roundtrip_ms = floor
        text = report.markdown()
        print(text)
        log_report(tracker, report, out_dir / "report")
        # The raw per-request records the report is computed from, so anyone can recompute it.
        tracker.log_artifact_text(json.dumps([dataclasses.asdict(r) for r in records]), "report/requests.json")
        tracker.log_artifact_text(json.dumps({"events": [dataclasses.asdict(e) for e in scale_log.events],
                                              "samples": scale_log.samples, "t_start": report.t_start}),
                                  "report/scale_log.json")
        tracker.log_metrics({"requests_total": len(records), "worker_busy_s": busy_s,
                             "service_ms_per_request": busy_s / max(n_ok, 1) * 1e3})
        print(f"MLflow: run {tracker.run_id} in experiment {tracker.experiment_id}; `make ui` to browse")
    return {"report": report, "run_id": tracker.run_id}
