"""``python -m pipeline`` (the Hydra app) end to end: a run with overrides, and a ``-m``
sweep that nests one MLflow child run per job under one parent run."""

from __future__ import annotations

import os
import subprocess
import sys

from _pipeline_helpers import (
    QUIET_ENV,
    artifact_json,
    base_overrides,
    mlflow_runs,
    session_processes,
)

from pipeline.config import PROJECT_ROOT


def test_cli_run_with_overrides_logs_to_mlflow_and_leaves_no_process(store, mlflow_uri, tmp_path):
    args = base_overrides(store, tmp_path) + ["tracking.run_name=cli", "model.hidden=24", "data.steps_per_block=100"]
    # Its own session, so every process it starts (scheduler, nannies, workers) can be found after.
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **QUIET_ENV},
                            cwd=PROJECT_ROOT, start_new_session=True)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stdout + stderr
    assert session_processes(proc.pid) == []  # no worker, nanny or scheduler outlives the run
    assert "dashboard: http://127.0.0.1:" in stdout and "8 of 8 regions to run" in stdout
    assert "| regions executed " in stdout and f"outputs: {tmp_path / 'out' / 'cli.zarr'}" in stdout

    (r,) = mlflow_runs(mlflow_uri)
    assert r.info.run_name == "cli" and r.info.status == "FINISHED"
    assert r.data.params["model.hidden"] == "24" and r.data.params["data.steps_per_block"] == "100"
    assert r.data.metrics["regions_executed"] == 8 and r.data.metrics["recording_seconds"] > 0
    assert r.data.tags["backend"] == "numpy" and "mlflow.parentRunId" not in r.data.tags
    assert artifact_json(mlflow_uri, r.info.run_id)["output_store"] == str(tmp_path / "out" / "cli.zarr")
    assert (tmp_path / "hydra").is_dir()  # Hydra's logs went where the override said


def test_cli_multirun_nests_jobs_under_one_parent_run(store, mlflow_uri, tmp_path):
    args = base_overrides(store, tmp_path) + ["data.steps_per_block=100", "model.hidden=16,24"]
    res = subprocess.run([sys.executable, "-m", "pipeline", "-m", *args], capture_output=True, text=True,
                         timeout=180, env={**os.environ, **QUIET_ENV}, cwd=PROJECT_ROOT)
    assert res.returncode == 0, res.stdout + res.stderr

    runs = mlflow_runs(mlflow_uri)
    parents = [r for r in runs if r.data.tags.get("neuroliquid.sweep") == "parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2 and len(runs) == 3
    (parent,) = parents
    assert parent.info.status == "FINISHED" and "model.hidden=16,24" in parent.data.params["sweep.overrides"]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(c.data.params["model.hidden"] for c in children) == ["16", "24"]
    assert all(c.info.status == "FINISHED" and c.data.metrics["regions_executed"] == 8 for c in children)
    assert len({c.data.tags["output_store"] for c in children}) == 2
    assert (tmp_path / "sweep" / "mlflow_parent_run_id").read_text().strip() == parent.info.run_id
