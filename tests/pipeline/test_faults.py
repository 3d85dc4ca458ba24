"""Faults: a worker killed mid-task, a run killed midway and resumed, a NaN quarantined.

Every disturbed run must end identical (``xr.testing.assert_identical``) to one
undisturbed run of the same config (NumPy backend, one BLAS thread per worker), computed
once for the module on a LocalCluster the module starts and reaches with ``cluster=address``.
Tasks are an LTC network over 8 recordings x 25 steps (~0.1-0.2 s each, 32 regions), long
enough for a kill to land inside one.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import xarray as xr
import zarr
from _pipeline_helpers import (
    QUIET_ENV,
    artifact_json,
    base_overrides,
    compose_config,
    mlflow_runs,
    session_processes,
    tracking_uri,
)

from pipeline.batch.markers import done_regions
from pipeline.batch.outputs import ResumeError
from pipeline.batch.run import run
from pipeline.config import PROJECT_ROOT
from pipeline.core.cluster import WORKER_ENV
from pipeline.core.network import WeightsError

FAULT = ["model.kind=ltc", "model.hidden=128", "data.steps_per_block=25", "data.policy=quarantine"]
N_REGIONS = 4 * 8  # 4 groups of 8 recordings x 8 blocks of 25 steps


@pytest.fixture(scope="module")
def cluster():
    """A 2-worker LocalCluster (nannies restart killed workers), one BLAS thread each."""
    import logging

    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR, env=WORKER_ENV) as lc, \
            Client(lc) as client:
        yield lc, client


def _config(store: str, root: Path, *extra: str):
    return compose_config(base_overrides(store, root) + FAULT + list(extra))


def _fresh_root(tmp_path_factory, name: str, empty_db: Path) -> Path:
    root = tmp_path_factory.mktemp(name)
    shutil.copyfile(empty_db, root / "mlflow.db")
    return root


@pytest.fixture(scope="module")
def reference(store, cluster, tmp_path_factory, _empty_mlflow_db) -> xr.Dataset:
    """The undisturbed run's output store, loaded."""
    root = _fresh_root(tmp_path_factory, "reference", _empty_mlflow_db)
    lc, _ = cluster
    summary = run(_config(store, root, "cluster=address", f"cluster.address={lc.scheduler_address}",
                          "tracking.run_name=ref"))
    assert summary["regions_executed"] == N_REGIONS
    return xr.open_zarr(summary["output_store"]).load()


def test_worker_killed_mid_task_run_completes_identical(store, cluster, reference, make_config, tmp_path):
    lc, client = cluster
    cfg = make_config(*FAULT, "cluster=address", f"cluster.address={lc.scheduler_address}",
                      "tracking.run_name=killed")
    pids = client.run(os.getpid)
    result: dict = {}

    def target() -> None:
        try:
            result["summary"] = run(cfg)
        except BaseException as exc:  # re-raised in the test thread below
            result["error"] = exc

    driver = threading.Thread(target=target, daemon=True)
    driver.start()
    out = Path(cfg.paths.output_dir) / "killed.zarr"
    victim, keys, deadline = None, (), time.monotonic() + 60
    while victim is None and driver.is_alive() and time.monotonic() < deadline:
        # Once a few regions are done (their results held by the dead worker are wanted again).
        finished = done_regions(out) if (out / "done" / "zarr.json").exists() else np.zeros((1, 1), bool)
        busy = {w: ks for w, ks in client.processing().items() if any("region-killed" in str(k) for k in ks)}
        if busy and finished.sum() >= 4:
            before = _chunk_files(out, np.argwhere(finished))
            victim, keys = next(iter(busy.items()))
            os.kill(pids[victim], signal.SIGKILL)
        else:
            time.sleep(0.005)
    driver.join(timeout=120)
    assert not driver.is_alive(), "the run did not finish after the worker was killed"
    if "error" in result:
        raise result["error"]
    assert victim is not None, "no task seen running: the run finished before the kill"
    assert not psutil.pid_exists(pids[victim]) or psutil.Process(pids[victim]).status() == psutil.STATUS_ZOMBIE

    # The scheduler re-ran what the dead worker was processing, and the nanny replaced it.
    def processings(dask_scheduler, keys) -> dict:
        return {k: sum(1 for t in dask_scheduler.story(k) if len(t) > 2 and t[2] == "processing") for k in keys}

    counts = client.run_on_scheduler(processings, keys=[str(k) for k in keys])
    assert max(counts.values()) >= 2, counts
    client.wait_for_workers(2, timeout=30)
    assert pids[victim] not in client.run(os.getpid).values()

    summary = result["summary"]
    assert summary["regions_executed"] == N_REGIONS  # a retried region is counted once
    # Regions finished before the kill were not computed again (their tasks found the marker).
    assert _chunk_files(out, np.argwhere(finished)) == before
    killed = xr.open_zarr(summary["output_store"]).load()
    xr.testing.assert_identical(killed, reference)


def _chunk_files(out: Path, regions) -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) of every chunk file of the (group, block) ``regions``: every output
    array's chunk grid starts (group, block) -- (recording/rg, step/sb) or (recording/rg, block)."""
    regions = {tuple(map(int, r)) for r in regions}
    files = {}
    for f in out.rglob("*"):
        parts = f.relative_to(out).parts
        if f.is_file() and "c" in parts:
            idx = parts[parts.index("c") + 1:]
            if not all(p.isdigit() for p in idx):  # zarr's temporary "<n>.<uuid>.partial" of a killed write
                continue
            if len(idx) >= 2 and (int(idx[0]), int(idx[1])) in regions:  # 1-d: coordinates
                st = f.stat()
                files[str(f.relative_to(out))] = (st.st_ino, st.st_mtime_ns)
    return files


def test_resume_reruns_only_unfinished_regions_and_refuses_foreign_stores(store, reference, make_config,
                                                                           tmp_path):
    args = base_overrides(store, tmp_path) + FAULT + ["tracking.run_name=res"]
    out = tmp_path / "out" / "res.zarr"
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", *args], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **QUIET_ENV}, cwd=PROJECT_ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "done" / "zarr.json").exists() and done_regions(out).sum() >= 6:
                break
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, the scheduler, the nannies and the workers
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()
    assert session_processes(proc.pid) == []
    done = done_regions(out)
    n_done = int(done.sum())
    assert 0 < n_done < N_REGIONS, f"{n_done} regions done when killed: the kill was not midway"
    before = _chunk_files(out, np.argwhere(done))

    # `resume=<run>` alone (and where the outputs are): the run's own settings come from its store.
    second = subprocess.run([sys.executable, "-m", "pipeline", "resume=res", f"paths.output_dir={tmp_path / 'out'}",
                             f"hydra.run.dir={tmp_path / 'hydra'}"], capture_output=True,
                            text=True, env={**os.environ, **QUIET_ENV}, cwd=PROJECT_ROOT, timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "resume: res with its own settings from" in second.stdout
    assert f"{N_REGIONS - n_done} of {N_REGIONS} regions to run" in second.stdout
    assert done_regions(out).all()
    assert _chunk_files(out, np.argwhere(done)) == before  # completed regions untouched
    xr.testing.assert_identical(xr.open_zarr(out).load(), reference)

    uri = tracking_uri(tmp_path)
    killed, resumed = (r for r in mlflow_runs(uri) if r.info.run_name == "res")
    # The SIGKILLed run is marked KILLED by the run that resumed it, and the two are linked.
    assert killed.info.status == "KILLED" and resumed.info.status == "FINISHED"
    assert resumed.data.tags["neuroliquid.resumed_from"] == killed.info.run_id
    assert killed.data.tags["neuroliquid.resumed_by"] == resumed.info.run_id
    summary = artifact_json(uri, resumed.info.run_id)
    assert (summary["regions_executed"], summary["regions_already_done"], summary["regions_total"]) == (
        N_REGIONS - n_done, n_done, N_REGIONS)
    assert resumed.data.metrics["regions_executed"] == N_REGIONS - n_done

    # Refusals: a store written under another config, other weights or another input store.
    before_all = _chunk_files(out, np.argwhere(done_regions(out)))
    # Refused naming the differing setting and both values (not fingerprint hashes).
    with pytest.raises(ResumeError, match="different run: config differ: data.policy: stored 'quarantine', now 'fail'"):
        run(make_config(*FAULT, "tracking.run_name=res", "resume=res", "data.policy=fail"))
    weights = Path(summary["weights"])
    saved = weights.read_bytes()
    _other_weights(weights)  # the content-addressed file changed behind the run's back
    with pytest.raises(WeightsError, match="does not hold the weights this run expects"):
        run(make_config(*FAULT, "tracking.run_name=res", "resume=res"))
    weights.write_bytes(saved)
    other = shutil.copytree(store, tmp_path / "other.zarr")
    zarr.open_group(str(other), mode="r+").attrs["note"] = "another store"
    with pytest.raises(ResumeError, match="different run: input differ"):
        run(make_config(*FAULT, "tracking.run_name=res", "resume=res", f"data.path={other}"))
    with pytest.raises(ResumeError, match="no output store"):
        run(make_config(*FAULT, "resume=nope"))
    assert _chunk_files(out, np.argwhere(done_regions(out))) == before_all
    assert len(mlflow_runs(uri)) == 2  # a refused resume opens no MLflow run


def _other_weights(path: Path) -> None:
    """Overwrite the run's weights file with a differently seeded network of the same shape."""
    import dataclasses

    from kernels import get_backend
    from kernels.network import FusionNetwork

    be = get_backend("numpy")
    net = FusionNetwork.load(path, be)
    FusionNetwork.init(dataclasses.replace(net.config, seed=net.config.seed + 1), be).save(path)


def test_quarantine_masks_one_block_restarts_next_and_keeps_the_rest(store, cluster, reference, make_config,
                                                                      tmp_path):
    bad = shutil.copytree(store, tmp_path / "bad.zarr")
    rec, block = 9, 1  # group 1; block 1 = steps 25-49 = 2.5-5.0 s after the recording's start
    t_lidar = zarr.open_array(f"{bad}/t_lidar", mode="r")[rec]
    t_start = zarr.open_array(f"{bad}/t_start", mode="r")[rec]
    scan = int(np.searchsorted(t_lidar, t_start + 3_500_000_000))  # first scan at or after 3.5 s
    zarr.open_array(f"{bad}/lidar", mode="r+")[rec, scan, 100] = np.nan
    lc, _ = cluster
    summary = run(make_config(*FAULT, f"data.path={bad}", "cluster=address",
                              f"cluster.address={lc.scheduler_address}", "tracking.run_name=q"))
    ds = xr.open_zarr(summary["output_store"]).load()

    expect = np.zeros_like(ds.quarantined.values)
    expect[rec, block] = True
    np.testing.assert_array_equal(ds.quarantined.values, expect)
    np.testing.assert_array_equal(ds.restarted.values, np.roll(expect, 1, axis=1))
    steps = slice(block * 25, (block + 1) * 25)
    assert not ds.valid.values[rec, steps].any() and np.isnan(ds.y.values[rec, steps]).all()
    assert reference.valid.values[rec, steps].all()
    # The bad recording before its bad block, and every other recording: as in the clean run.
    xr.testing.assert_identical(ds.isel(recording=rec, step=slice(0, 25), block=0).drop_attrs(),
                                reference.isel(recording=rec, step=slice(0, 25), block=0).drop_attrs())
    others = [r for r in range(ds.sizes["recording"]) if r != rec]
    xr.testing.assert_identical(ds.isel(recording=others).drop_attrs(), reference.isel(recording=others).drop_attrs())
    # The same attrs but for the input: another store, so another input fingerprint.
    other = ("input_store", "fingerprints")
    assert {k: v for k, v in ds.attrs.items() if k not in other} == {
        k: v for k, v in reference.attrs.items() if k not in other}
    # After the restart the recording computes again, from zero state.
    later = slice((block + 1) * 25, None)
    np.testing.assert_array_equal(ds.valid.values[rec, later], reference.valid.values[rec, later])

    assert summary["quarantined_blocks"] == 1 and summary["quarantined_recordings"] == 1
    assert summary["restarted_rows"] == 1 and summary["quarantined_by_recording"] == {str(rec): 1}
    assert any("lidar" in p and f"[{rec}]" in p for p in summary["problems"]), summary["problems"]
    (r,) = mlflow_runs(tracking_uri(tmp_path))
    m = r.data.metrics
    assert (m["quarantined_blocks"], m["quarantined_recordings"], m["restarted_rows"]) == (1, 1, 1)
    assert artifact_json(tracking_uri(tmp_path), r.info.run_id)["quarantined_by_recording"] == {str(rec): 1}
