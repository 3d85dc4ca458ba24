"""Ctrl-C and SIGTERM through the command line, as a terminal or a service manager sends
them: to the whole process group (driver, scheduler, nannies, workers).

The run stops within a few seconds with one message (regions done of total, where the
partial output is, the exact command that finishes it), no traceback, no process left,
its MLflow run KILLED; the printed command finishes it.  On ``cluster=address`` the
deployment's workers stay up and only this run's tasks go away.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _pipeline_helpers import (
    QUIET_ENV,
    base_overrides,
    mlflow_runs,
    session_processes,
    tracking_uri,
)

from pipeline.batch.markers import done_regions
from pipeline.config import PROJECT_ROOT
from pipeline.core.cluster import WORKER_ENV

SLOW = ["model.kind=ltc", "model.hidden=128", "model.ode_unfolds=24", "data.steps_per_block=10"]  # 4 groups x 20 blocks,
# ~0.1 s each on 2 cores: the run must still be going when the signal comes, on an idle machine too
N_REGIONS = 80


def _as_from_a_terminal() -> None:
    """SIGINT handled as in a terminal: a test suite started in the background (``make test &``,
    nohup) runs with SIGINT ignored, children inherit that, and Python then keeps ignoring it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline", *args], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, env={**os.environ, **QUIET_ENV}, cwd=PROJECT_ROOT,
                            start_new_session=True, preexec_fn=_as_from_a_terminal)


def _markers(out: Path) -> int:
    """Completion markers on disk (one chunk file per done region), counted without zarr: a
    poll must be cheaper than a region, whatever state earlier tests left zarr's event loop in."""
    chunks = out / "done" / "c"
    return sum(1 for p in chunks.rglob("*") if p.is_file()) if chunks.is_dir() else 0


def _interrupt_midway(proc: subprocess.Popen, out: Path, sig: int, log: Path) -> float:
    """Wait until a few regions are done, send ``sig`` to the process group; seconds to exit."""
    deadline, polls, seen = time.monotonic() + 90, 0, 0
    while time.monotonic() < deadline and proc.poll() is None:
        polls, seen = polls + 1, _markers(out)
        if seen >= 4:
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"the run ended first ({polls} polls, {seen} markers seen)\n{log.read_text()}"
    t0 = time.monotonic()
    os.killpg(proc.pid, sig)
    proc.wait(timeout=30)
    return time.monotonic() - t0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_stops_quickly_says_how_to_resume_and_leaves_nothing(sig, store, mlflow_uri, tmp_path):
    name = f"int{sig.value}"
    out = tmp_path / "out" / f"{name}.zarr"
    log = tmp_path / "run.log"
    proc = _start(base_overrides(store, tmp_path) + SLOW + [f"tracking.run_name={name}"], log)
    try:
        took = _interrupt_midway(proc, out, sig, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert proc.returncode == 130, text
    assert took < 10, f"{took:.1f} s to stop\n{text}"
    assert session_processes(proc.pid) == [], text  # no worker, nanny or scheduler left
    assert "Traceback" not in text and "ERROR" not in text and "CancelledError" not in text, text
    (line,) = [ln for ln in text.splitlines() if ln.startswith("interrupted:")]
    m = re.fullmatch(rf"interrupted: (\d+) of {N_REGIONS} regions done; partial output in (\S+); "
                     r"finish it with: (neuroliquid resume=.*)", line)
    assert m, line
    assert Path(m[2]) == out and 0 < int(m[1]) < N_REGIONS
    assert int(m[1]) <= int(done_regions(out).sum())  # a region finishing during the stop counts later
    (r,) = mlflow_runs(mlflow_uri)
    assert r.info.status == "KILLED" and r.info.run_name == name
    if sig != signal.SIGTERM:
        return
    # The printed command, exactly (`neuroliquid` is this checkout's `python -m pipeline`).
    cmd = shlex.split(m[3])[1:] + [f"hydra.run.dir={tmp_path / 'hydra2'}"]
    res = subprocess.run([sys.executable, "-m", "pipeline", *cmd], capture_output=True, text=True,
                         env={**os.environ, **QUIET_ENV}, cwd=PROJECT_ROOT, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    assert done_regions(out).all()
    killed, resumed = mlflow_runs(mlflow_uri)
    assert resumed.info.status == "FINISHED" and resumed.data.tags["neuroliquid.resumed_from"] == killed.info.run_id


def test_interrupt_on_address_cluster_leaves_the_users_workers(store, mlflow_uri, tmp_path):
    import logging

    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR, env=WORKER_ENV) as lc, \
            Client(lc) as client:
        pids = client.run(os.getpid)
        out = tmp_path / "out" / "addr.zarr"
        log = tmp_path / "run.log"
        proc = _start(base_overrides(store, tmp_path) + SLOW + [
            "tracking.run_name=addr", "cluster=address", f"cluster.address={lc.scheduler_address}"], log)
        try:
            _interrupt_midway(proc, out, signal.SIGINT, log)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        assert proc.returncode == 130, log.read_text()
        assert "interrupted:" in log.read_text()
        assert client.run(os.getpid) == pids  # the same workers, still up
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # this run's tasks are released by the scheduler
            left = client.run_on_scheduler(
                lambda dask_scheduler: [k for k in dask_scheduler.tasks if "region-addr" in str(k)])
            if not left:
                break
            time.sleep(0.1)
        assert not left
    (r,) = mlflow_runs(tracking_uri(tmp_path))
    assert r.info.status == "KILLED"


def test_a_ctrl_c_swallowed_by_a_finalizer_is_raised_at_the_next_check(monkeypatch):
    """The CI failure behind pipeline.core.interrupts: SIGINT arrived while a Dask Future's
    ``__del__`` ran, Python printed "Exception ignored" and the run finished with exit 0."""
    from pipeline.core import interrupts

    swallowed: list[type] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: swallowed.append(u.exc_type))

    class Finalizer:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(100_000))  # the handler runs here, between two bytecodes of __del__

    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
        Finalizer()  # Python's own handler: the interrupt is lost
        interrupts.check()
        assert swallowed == [KeyboardInterrupt]
        interrupts.install()
        Finalizer()
        assert swallowed == [KeyboardInterrupt] * 2  # swallowed again, but recorded
        with pytest.raises(KeyboardInterrupt, match="SIGINT"):
            interrupts.check()
        interrupts.check()  # raised once
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])
        interrupts.handled()
