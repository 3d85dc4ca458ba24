"""The load test's arrival loop against a fake Dask client (no cluster): releases stay on
the schedule while ``client.submit`` and the per-phase energy read block for seconds;
phases start on the schedule, not when the previous one drained; a micro-batch that never
finishes fails its requests at the in-flight deadline, with the reason, and its worker is
probed and retired."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np

from pipeline.config import LoadConfig, LoadPhase, ScalingConfig
from pipeline.loadtest.driver import Completions, records_of, run_schedule
from pipeline.loadtest.report import PhaseMeta, build_report
from pipeline.loadtest.schedule import plan_schedule
from pipeline.loadtest.supervise import Beside, Supervisor


class FakeFuture:
    def __init__(self, key, result, delay: float | None) -> None:
        self.key, self._result, self.status = key, result, "pending"
        self._callbacks: list = []
        self._lock = threading.Lock()
        if delay is not None:
            threading.Timer(delay, self._finish, args=("finished",)).start()

    def _finish(self, status: str) -> None:
        with self._lock:
            if self.status != "pending":
                return
            self.status = status
            callbacks = list(self._callbacks)
        for cb in callbacks:
            cb(self)

    def add_done_callback(self, cb) -> None:
        with self._lock:
            if self.status == "pending":
                self._callbacks.append(cb)
                return
        cb(self)

    def result(self):
        return self._result

    def exception(self):
        return None

    def cancel(self) -> None:
        self._finish("cancelled")

    def release(self) -> None:
        pass


class FakeClient:
    """``submit`` blocks ``submit_block_s`` on every ``block_every``-th call; a batch takes
    ``service_s``, or never finishes when it holds a request of ``stuck_recording``."""

    def __init__(self, submit_block_s=0.0, block_every=1, service_s=0.002, stuck_recording=None) -> None:
        self.submit_block_s, self.block_every, self.service_s = submit_block_s, block_every, service_s
        self.stuck_recording = stuck_recording
        self.calls = 0
        self.restarted: list = []

    def submit(self, fn, store, recordings, starts, *args, key=None, pure=False):
        self.calls += 1
        if self.submit_block_s and self.calls % self.block_every == 0:
            time.sleep(self.submit_block_s)
        n = len(recordings)
        res = {"ok": [True] * n, "errors": [""] * n, "read_s": 0.0005, "compute_s": 0.0005, "ops": {},
               "worker": "tcp://w1"}
        stuck = self.stuck_recording is not None and self.stuck_recording in set(np.asarray(recordings).tolist())
        return FakeFuture(key, res, None if stuck else self.service_s)

    def run_on_scheduler(self, fn, keys):
        return {k: "tcp://w-stuck" for k in keys}

    def run(self, fn, *args, workers=None, on_error="raise"):
        if workers == ["tcp://w-stuck"]:
            time.sleep(60)  # a SIGSTOPped worker never answers
        return {w: None for w in workers or ["tcp://w1"]}

    def restart_workers(self, workers, timeout=None, raise_for_error=True):
        self.restarted += workers
        return {w: "OK" for w in workers}


def _cfg(**load) -> SimpleNamespace:
    L = LoadConfig(kind="seed_phases", max_batch=8, max_wait_ms=2.0, phases=[LoadPhase()], **load)
    return SimpleNamespace(load=L, scaling=ScalingConfig(kind="fixed", n_workers=2),
                           data=SimpleNamespace(policy="quarantine", imu_window=4, max_age=None))


def _plans(phases, t0):
    rng = np.random.default_rng(0)
    return plan_schedule(rng, phases, t0, np.full(8, 100), 10, 8, 1000)


def test_releases_stay_on_schedule_while_submit_and_energy_reads_block():
    phases = [LoadPhase("a", 40, 40.0), LoadPhase("b", 60, 60.0)]  # 1 s each
    cfg = _cfg()
    client = FakeClient(submit_block_s=1.5, block_every=3)
    t_start = time.perf_counter()
    clock = lambda: time.perf_counter() - t_start  # noqa: E731
    plans = _plans(phases, 0.05)
    beside = Beside()
    hook_calls = []

    def slow_energy_read() -> None:
        time.sleep(2.0)  # waits for a joining worker, say

    def on_phase_start(k: int) -> None:
        hook_calls.append((k, clock()))
        beside.call(slow_energy_read)

    served = run_schedule(client, plans, cfg, "store", clock, Completions(clock), None, lambda: 2,
                          inflight_timeout_s=30.0, on_phase_start=on_phase_start)
    lag = served.release_s - served.reqs.arrival_s
    assert lag.min() >= 0
    assert lag.max() < 0.25, f"a release waited {lag.max():.3f} s behind its schedule (submits block 1.5 s)"
    # Phase b started on the schedule (1 s after a), not after a drained.
    (k0, t0), (k1, t1) = hook_calls[:2]
    assert (k0, k1) == (0, 1) and abs(t1 - plans[1][1].arrival_s[0]) < 0.25
    assert [k for k, _ in hook_calls] == [0, 1, 2]  # and once more when every request finished
    assert served.ok.all() and not np.isnan(served.completion_s).any()
    recs = records_of(served, plans)
    assert {r.batch_size for r in recs} - {0} and all(r.worker == "tcp://w1" for r in recs)
    assert all(r.release_s is not None and r.release_s >= r.arrival_s for r in recs)
    metas = [PhaseMeta(p.name, p.rate_rps, scheduled_start_s=float(r.arrival_s[0]),
                       scheduled_end_s=float(r.arrival_s[0]) + p.scheduled_s()) for p, r in plans]
    from pipeline.config import SloConfig

    rep = build_report(recs, metas, SloConfig())
    assert all(p.release_lag_p99_ms is not None and p.release_lag_p99_ms < 250 for p in rep.phases)
    # Submits that block 1.5 s leave a backlog: phase a carries some into b, and says so.
    assert rep.phases[0].backlog_carried is not None and "Backlog carried" in rep.markdown()


def test_a_batch_that_never_finishes_fails_at_its_deadline_and_its_worker_is_retired():
    phases = [LoadPhase("a", 30, 30.0)]
    cfg = _cfg(retire_after_misses=5)
    plans = _plans(phases, 0.05)
    stuck = int(plans[0][1].recordings[3])
    client = FakeClient(stuck_recording=stuck)
    t_start = time.perf_counter()
    clock = lambda: time.perf_counter() - t_start  # noqa: E731
    beside = Beside()
    sup = Supervisor(client, clock, cfg.load.retire_after_misses, beside, probe_timeout_s=0.3)
    served = run_schedule(client, plans, cfg, "store", clock, Completions(clock), None, lambda: 2,
                          inflight_timeout_s=0.5, supervisor=sup)
    assert clock() < 5, "the run waited for the stuck batch"
    failed = np.flatnonzero(~served.ok)
    assert len(failed) and all(served.reqs.recordings[i] == stuck or served.batch_size[i] > 1 for i in failed)
    assert all("in-flight deadline 0.5 s" in served.errors[i] for i in failed)
    # Counted at the deadline: the failure time is ~0.5 s after the batch left, never later.
    lat = served.completion_s[failed] - served.reqs.arrival_s[failed]
    assert lat.max() < 0.5 + 0.3
    assert served.deadline_misses >= 1
    deadline = time.perf_counter() + 5
    while not sup.retired and time.perf_counter() < deadline:
        time.sleep(0.05)
    assert client.restarted == ["tcp://w-stuck"]
    assert sup.retired[0].worker == "tcp://w-stuck" and "did not answer a probe" in sup.retired[0].reason
    recs = records_of(served, plans, sup)
    assert all(recs[i].worker == "tcp://w-stuck" for i in failed)


def test_load_errors_go_to_the_request_whose_window_they_fall_in():
    from pipeline.data import SensorDataError
    from pipeline.loadtest.serve import request_errors

    recs, starts = np.array([5, 5, 6, 5]), np.array([0, 50, 0, 95])
    bad = SensorDataError("nan-or-inf", "lidar", "2 step(s)", recordings=[5], steps=(52, 54))
    whole = SensorDataError("unreadable-chunk", "t_imu", "crc", recordings=[6])
    errs = request_errors([bad, whole], recs, starts, 10)
    assert [bool(e) for e in errs] == [False, True, True, False]
    assert "lidar" in errs[1] and "t_imu" in errs[2]


def test_the_pool_sampler_survives_a_failing_read_and_keeps_sampling(caplog):
    from pipeline.core.pool import PoolSampler, ScaleLog

    class Flaky:
        calls = 0

        def nthreads(self):
            Flaky.calls += 1
            if Flaky.calls in (2, 3):
                raise OSError("scheduler busy")
            return {"a": 1, "b": 1}

    log = ScaleLog()
    s = PoolSampler(Flaky(), time.perf_counter, log, every_s=0.02).start()
    time.sleep(0.3)
    s.stop()
    assert s.errors == 2 and "scheduler busy" in s.last_error
    assert len(log.samples) >= 4 and s() == 2  # it kept going after the failures
    assert "pool sampler: reading the pool size failed" in caplog.text
