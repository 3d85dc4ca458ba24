"""Helpers for the pipeline tests (imported as ``_pipeline_helpers``: tests/pipeline is on
sys.path, as for tests/kernels/_compare.py).  The fixtures are in conftest.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pipeline.__main__ import TASKS
from pipeline.config import PROJECT_ROOT, Config

# One BLAS/OpenMP thread in every process a test starts (pipeline.run.WORKER_ENV does the
# same for the workers the pipeline starts), and MLflow offline.
QUIET_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
             "OMP_WAIT_POLICY": "PASSIVE", "MLFLOW_ENABLE_TELEMETRY": "false", "DO_NOT_TRACK": "true",
             "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1"}

STORE = {"recordings": 32, "duration_s": 20.0, "seed": 3, "chunk_recordings": 8}


def tracking_uri(root: Path) -> str:
    return f"sqlite:///{Path(root).resolve()}/mlflow.db"


def base_overrides(store: str, root: Path) -> list[str]:
    """Hydra overrides for a small, fast NumPy run on ``store`` writing under ``root``."""
    root = Path(root)
    return [
        "backend=numpy", f"data.path={store}", f"data.recordings={STORE['recordings']}",
        f"data.duration_s={STORE['duration_s']}", f"data.seed={STORE['seed']}",
        f"data.layout.chunk_recordings={STORE['chunk_recordings']}",
        f"data.layout.shard_recordings={STORE['chunk_recordings']}",
        "data.recordings_per_batch=8", "data.steps_per_block=50", "model.hidden=16", "model.lif_units=16",
        "model.backbone_units=16", "scaling.n_workers=2", "cluster.dashboard_address=127.0.0.1:0",
        f"paths.output_dir={root / 'out'}", f"tracking.uri={tracking_uri(root)}",
        f"tracking.artifact_dir={root / 'artifacts'}", "tracking.experiment=test",
        f"hydra.run.dir={root / 'hydra'}", f"hydra.sweep.dir={root / 'sweep'}",
    ]


def compose_config(overrides: list[str], *, validate: bool = True) -> Config:
    """A typed config from ``conf/`` with ``overrides``, as ``python -m pipeline`` builds it."""
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = OmegaConf.to_object(compose("config", overrides=[o for o in overrides if not o.startswith("hydra.")]))
    assert isinstance(cfg, Config)
    return cfg.validate(TASKS) if validate else cfg


def cli(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """``python -m pipeline <args>`` from the repository root, output captured."""
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **QUIET_ENV}, cwd=PROJECT_ROOT, **kwargs)


def mlflow_runs(uri: str, experiment: str = "test") -> list:
    """Every run of ``experiment`` in the MLflow store at ``uri`` (oldest first)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r} in {uri}"
    return sorted(client.search_runs([exp.experiment_id], max_results=100), key=lambda r: r.info.start_time)


def artifact_json(uri: str, run_id: str, name: str = "summary.json") -> dict:
    import json

    from mlflow.tracking import MlflowClient

    path = MlflowClient(uri).download_artifacts(run_id, name)
    return json.loads(Path(path).read_text())


def live_children() -> list[psutil.Process]:
    """This process's descendants that are still running (zombies are already gone)."""
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            continue
    return out



def session_processes(sid: int, wait_s: float = 10.0) -> list[str]:
    """Processes still running in session ``sid`` (a child started with
    ``start_new_session=True``) after waiting up to ``wait_s`` for them to exit; as
    ``"pid status cmdline"`` strings."""
    import time

    deadline = time.monotonic() + wait_s
    while True:
        alive = []
        for p in psutil.process_iter(["pid", "cmdline", "status"]):
            try:
                if os.getsid(p.pid) == sid and p.info["status"] != psutil.STATUS_ZOMBIE:
                    alive.append(f"{p.pid} {p.info['status']} {' '.join(p.info['cmdline'] or [])}")
            except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
                continue
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)
