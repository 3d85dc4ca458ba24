"""The task a worker runs for one load-test micro-batch: independent requests, each one
window of one recording from zero state, as a serving system answers them."""

from __future__ import annotations

import time

import numpy as np


def serve_requests(store: str, recordings: np.ndarray, starts: np.ndarray, steps: int, policy: str,
                   imu_window: int, max_age=None) -> dict:
    """Load test: run a micro-batch of independent requests (one window of one recording
    each, from zero state) and return per-request outcomes and small metrics."""
    from pipeline.core.worker_setup import worker_network
    from pipeline.data import SensorDataError, read_windows

    t0 = time.perf_counter()
    worker = _worker_address()
    net = worker_network()
    try:
        batch = read_windows(store, recordings, starts, steps, policy, imu_window=imu_window, max_age=max_age)
    except SensorDataError as exc:  # policy "fail": the whole micro-batch fails, each request counted
        return {"ok": [False] * len(recordings), "errors": [str(exc)] * len(recordings), "read_s": 0.0,
                "compute_s": 0.0, "ops": {}, "worker": worker}
    t1 = time.perf_counter()
    ok = ~batch.quarantined[:, None]
    out, _ = net.forward(batch.camera, batch.lidar, batch.imu, None,
                         camera_valid=batch.camera_valid & ok, lidar_valid=batch.lidar_valid & ok,
                         imu_valid=batch.imu_valid & ok[..., None])
    net.backend.synchronize()
    t2 = time.perf_counter()
    # A request whose window runs past its recording's end has no answer for those steps.
    served = ~batch.quarantined & batch.valid.all(axis=1)
    errors = request_errors(batch.problems, recordings, starts, steps)
    ops = net.last_ops
    return {"ok": served.tolist(), "errors": errors, "read_s": t1 - t0, "compute_s": t2 - t1,
            "ops": {k: int(v) for k, v in ops._asdict().items()}, "worker": worker}


def _worker_address() -> str:
    """The Dask worker running this task ("" outside one)."""
    try:
        from distributed import get_worker

        return get_worker().address
    except ValueError:
        return ""


def request_errors(problems, recordings: np.ndarray, starts: np.ndarray, steps: int) -> list[str]:
    """Each problem goes to the requests whose *window* it falls in: same recording and an
    overlapping model-step range (two requests on one recording, different windows, no
    longer share each other's errors); a problem without a step range (a whole
    recording's chunk) goes to every request on its recording."""
    recordings, starts = np.asarray(recordings), np.asarray(starts)
    errors = [""] * len(recordings)
    for p in problems:
        hit = np.isin(recordings, list(p.recordings)) if p.recordings else np.ones(len(recordings), bool)
        if p.steps is not None:
            s0, s1 = p.steps
            hit &= (starts < s1) & (starts + steps > s0)
        for i in np.flatnonzero(hit):
            errors[int(i)] = errors[int(i)] or str(p)[:300]
    return errors
