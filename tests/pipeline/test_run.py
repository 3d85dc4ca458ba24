"""``task=run`` in-process on a real LocalCluster: the output store, its numbers (checked
against a one-process loop over the same blocks), and what MLflow holds afterwards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from _pipeline_helpers import artifact_json, live_children, mlflow_runs
from threadpoolctl import threadpool_limits

from pipeline.batch.run import run
from pipeline.data import MicroBatch, open_reader, read_batch


def _reference(cfg, weights: Path) -> tuple[np.ndarray, np.ndarray]:
    """y (R, S, O) and spikes (R, S) from a plain loop: groups x blocks in order, the state
    carried in memory -- what the Dask pipeline must reproduce bit for bit."""
    from kernels import get_backend
    from kernels.network import FusionNetwork

    net = FusionNetwork.load(weights, get_backend("numpy"))
    reader = open_reader(cfg.data.path)
    R, S = reader.n_recordings, int(reader.meta["n_steps"].max())
    rpb, spb = cfg.data.recordings_per_batch, cfg.data.steps_per_block
    y = np.full((R, S, net.config.n_outputs), np.nan, np.float32)
    spikes = np.zeros((R, S), np.float32)
    for r0 in range(0, R, rpb):
        r1 = min(r0 + rpb, R)
        state = net.zero_state(r1 - r0)
        for k in range(-(-S // spb)):
            s0, s1 = k * spb, min((k + 1) * spb, S)
            b = read_batch(MicroBatch(cfg.data.path, (r0, r1), (k * spb, (k + 1) * spb), k), cfg.data.policy,
                           imu_window=cfg.data.imu_window)
            out, state = net.forward(b.camera, b.lidar, b.imu, state, camera_valid=b.camera_valid,
                                     lidar_valid=b.lidar_valid, imu_valid=b.imu_valid)
            yk, sk = np.asarray(out.y, np.float32), np.asarray(out.spike_counts, np.float32)
            yk[~b.valid], sk[~b.valid] = np.nan, 0.0
            y[r0:r1, s0:s1], spikes[r0:r1, s0:s1] = yk[:, : s1 - s0], sk[:, : s1 - s0]
    return y, spikes


def test_run_writes_every_region_and_logs_params_metrics_artifacts(make_config, tmp_path):
    cfg = make_config("tracking.run_name=e2e")
    summary = run(cfg)
    out = tmp_path / "out" / "e2e.zarr"
    assert summary["output_store"] == str(out)

    # The output store: every marker set, `valid` exactly the recordings' real steps.
    reader = open_reader(cfg.data.path)
    n_steps = reader.meta["n_steps"]
    ds = xr.open_zarr(out)
    assert {d: ds.sizes[d] for d in ("recording", "step", "output", "block", "group")} == {
        "recording": 32, "step": int(n_steps.max()), "output": 3, "block": 4, "group": 4}
    assert bool(ds.done.all())
    valid = ds.valid.values
    assert np.array_equal(valid, np.arange(ds.sizes["step"])[None, :] < n_steps[:, None])
    y = ds.y.values
    assert np.isfinite(y[valid]).all() and np.isnan(y[~valid]).all()
    assert not ds.quarantined.values.any() and not ds.restarted.values.any()

    # Bit for bit what one process computes over the same blocks (state through the store
    # between blocks, through memory here).
    with threadpool_limits(1):
        y_ref, spikes_ref = _reference(cfg, Path(summary["weights"]))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(ds.spikes.values, spikes_ref)

    # MLflow, read back from the sqlite store.
    from mlflow.tracking import MlflowClient

    (r,) = mlflow_runs(cfg.tracking.uri)
    assert r.info.status == "FINISHED" and r.info.run_name == "e2e"
    p = r.data.params
    assert (p["model.hidden"], p["data.steps_per_block"], p["backend.name"], p["scaling.n_workers"]) == (
        "16", "50", "numpy", "2")
    assert p["data.path"] == cfg.data.path and p["task"] == "run"
    m = r.data.metrics
    assert (m["regions_executed"], m["regions_total"], m["regions_already_done"]) == (16, 16, 0)
    assert m["recording_seconds"] == pytest.approx(n_steps.sum() / 10)
    assert m["throughput_seq_per_s"] > 0 and m["wall_s"] > 0 and m["workers_max"] == 2
    assert m["quarantined_blocks"] == 0 and m["ops_mac"] > 0
    t = r.data.tags
    assert t["backend"] == "numpy" and t["output_store"] == str(out) and t["task"] == "run"
    # Workers start with malloc settings that keep micro-batch temporaries on warm pages.
    assert t["worker.malloc"] == ("MALLOC_MMAP_THRESHOLD_=33554432, MALLOC_TRIM_THRESHOLD_=134217728, "
                                  "MALLOC_ARENA_MAX=1 (environment at start)")
    client = MlflowClient(cfg.tracking.uri)
    assert {a.path for a in client.list_artifacts(r.info.run_id)} >= {"config.yaml", "summary.json", "summary.md"}
    detail = artifact_json(cfg.tracking.uri, r.info.run_id)
    assert detail["regions_executed"] == 16 and detail["output_store"] == str(out)
    logged_cfg = yaml.safe_load(Path(client.download_artifacts(r.info.run_id, "config.yaml")).read_text())
    assert logged_cfg["model"]["hidden"] == 16 and logged_cfg["data"]["path"] == cfg.data.path
    workers = client.get_metric_history(r.info.run_id, "workers")
    assert workers and {w.value for w in workers} == {2.0}
    # Steps are sample indices; workers_t_s gives each sample's time (s since the run clock started).
    times = sorted(client.get_metric_history(r.info.run_id, "workers_t_s"), key=lambda x: x.step)
    assert sorted(w.step for w in workers) == list(range(len(workers))) == [x.step for x in times]
    assert all(a.value <= b.value for a, b in zip(times, times[1:], strict=False))
    # Modelled energy per sequence, with its source, as a load run logs it.
    assert m["energy.modelled_j_per_sequence"] > 0 and t["energy.source"] == "model"
    assert "progress.png" in {a.path for a in client.list_artifacts(r.info.run_id)}

    # The cluster is gone (the multiprocessing resource tracker exits with this process).
    assert [c.cmdline() for c in live_children() if "resource_tracker" not in " ".join(c.cmdline())] == []

    # Never over an existing output store: name another run, or resume this one.
    with pytest.raises(FileExistsError, match="resume=e2e"):
        run(make_config("tracking.run_name=e2e"))
