"""Errors a user fixes on the command line arrive as one line (exit status 2) and leave
nothing behind: no output store, no weights, no MLflow run.  ``HYDRA_FULL_ERROR=1`` brings
the traceback back."""

from __future__ import annotations

import socket
import time

from _pipeline_helpers import base_overrides, cli


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_config_error_is_one_line_naming_key_value_and_allowed_values(tmp_path):
    res = cli("model.kind=x", f"hydra.run.dir={tmp_path / 'hydra'}", f"paths.output_dir={tmp_path / 'out'}",
              timeout=60)
    assert res.returncode == 2
    assert _lines(res.stderr) == ["neuroliquid: config model.kind='x': must be fusion, cfc, ltc or lif "
                                  "(HYDRA_FULL_ERROR=1 for the traceback)"], res.stderr
    full = cli("model.kind=x", f"hydra.run.dir={tmp_path / 'hydra'}", f"paths.output_dir={tmp_path / 'out'}",
               timeout=60, env_extra={"HYDRA_FULL_ERROR": "1"})
    assert full.returncode != 0 and "Traceback" in full.stderr


def test_unreachable_scheduler_is_one_line_and_leaves_nothing(store, tmp_path):
    addr = f"tcp://127.0.0.1:{_closed_port()}"
    res = cli(*base_overrides(store, tmp_path), "cluster=address", f"cluster.address={addr}", timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    (line,) = _lines(res.stderr)
    assert line.startswith(f"neuroliquid: cluster.address={addr}: no Dask scheduler answers"), line
    assert not (tmp_path / "out").exists()  # no output store, no weights
    assert not (tmp_path / "mlflow.db").exists()  # no MLflow run (not even a database)


def test_unwritable_tracking_store_fails_fast_naming_it(store, tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    uri = f"sqlite:///{tmp_path / 'a_file' / 'mlflow.db'}"
    t0 = time.monotonic()
    res = cli(*base_overrides(store, tmp_path), f"tracking.uri={uri}", timeout=60)
    assert time.monotonic() - t0 < 30  # MLflow alone retries for ~105 s before it gives up
    assert res.returncode == 2, res.stdout + res.stderr
    (line,) = _lines(res.stderr)
    assert line.startswith(f"neuroliquid: tracking.uri={uri}: cannot create"), line
    assert not (tmp_path / "out").exists()


def test_tracking_store_lost_after_compute_keeps_the_figures_locally(make_config, tmp_path, monkeypatch, capsys):
    """The database deleted or locked once the compute finished: the figures stay in a file
    beside the outputs, the run says where, and it does not fail."""
    import json
    import sqlite3
    from pathlib import Path

    from mlflow.tracking import MlflowClient

    from pipeline.batch.run import run

    real = MlflowClient.log_batch

    def locked(self, run_id, metrics=(), **kw):
        if any(m.key == "recording_seconds" for m in metrics):  # the run's figures, after the compute
            raise sqlite3.OperationalError("database is locked")
        return real(self, run_id, metrics=metrics, **kw)

    monkeypatch.setattr(MlflowClient, "log_batch", locked)
    summary = run(make_config("tracking.run_name=lost"))
    local = tmp_path / "out" / "lost.zarr.summary.json"
    assert summary["local_summary"] == str(local) and "database is locked" in summary["tracking_error"]
    kept = json.loads(Path(local).read_text())
    assert kept["regions_executed"] == 16 and kept["recording_seconds"] > 0
    out = capsys.readouterr().out
    assert f"the run's figures are in {local}" in out
