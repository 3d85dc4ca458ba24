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

# One BLAS/OpenMP thread in every process a test starts (pipeline.core.cluster.WORKER_ENV does the
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


def cli(*args: str, timeout: float = 120, env_extra: dict[str, str] | None = None,
        **kwargs) -> subprocess.CompletedProcess:
    """``python -m pipeline <args>`` from the repository root, output captured."""
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **QUIET_ENV, **(env_extra or {})},
                          cwd=PROJECT_ROOT, **kwargs)


def mlflow_runs(uri: str, experiment: str = "test") -> list:
    """Every run of ``experiment`` in the MLflow store at ``uri`` (oldest first); each
    finished batch or load run's keys are checked against tests/golden/ on the way."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r} in {uri}"
    runs = sorted(client.search_runs([exp.experiment_id], max_results=100), key=lambda r: r.info.start_time)
    for r in runs:
        check_golden_keys(r)
    return runs


# The MLflow keys a batch run (task=run), a load run (task=load) and a training run
# (task=train) log, so that a key never
# changes by accident: work that adds or renames one updates tests/golden/mlflow_keys.json
# in the same commit (``NEUROLIQUID_UPDATE_GOLDEN=1 make test`` rewrites it from the runs
# the suite makes).  Phase names become ``{phase}``; MLflow's own ``mlflow.*`` tags and the
# environment-dependent ``version.*`` tags are left out.
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "mlflow_keys.json"
_seen: dict[str, dict[str, list[set[str]]]] = {}


def run_keys(run) -> dict[str, set[str]]:
    """The run's param, metric and tag keys, normalised as described above."""
    import re

    phases = set(re.findall(r"'name': '([^']+)'", run.data.params.get("load.phases", "")))

    def norm(key: str) -> str:
        return ".".join("{phase}" if part in phases else part for part in key.split("."))

    tags = {norm(k) for k in run.data.tags if not k.startswith(("mlflow.", "version."))}
    return {"params": {norm(k) for k in run.data.params}, "metrics": {norm(k) for k in run.data.metrics},
            "tags": tags}


def check_golden_keys(run) -> None:
    """Assert a finished batch or load run logged exactly the golden keys (optional ones may
    be absent: figures a run leaves out when they do not apply, listed per kind)."""
    import json

    kind = run.data.tags.get("task")
    if run.info.status != "FINISHED" or kind not in ("run", "load", "train"):
        return
    if kind == "train":  # each trainer logs its own figures
        kind = f"train.{run.data.tags.get('trainer')}"
    keys = run_keys(run)
    if os.environ.get("NEUROLIQUID_UPDATE_GOLDEN"):
        seen = _seen.setdefault(kind, {})
        for what, ks in keys.items():
            seen.setdefault(what, []).append(ks)
        golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
        golden[kind] = {what: {"required": sorted(set.intersection(*runs)),
                               "optional": sorted(set.union(*runs) - set.intersection(*runs))}
                        for what, runs in seen.items()}
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
        return
    golden = json.loads(GOLDEN.read_text())[kind]
    problems = []
    for what, ks in keys.items():
        required, optional = set(golden[what]["required"]), set(golden[what]["optional"])
        if missing := sorted(required - ks):
            problems.append(f"{what} missing: {missing}")
        if extra := sorted(ks - required - optional):
            problems.append(f"{what} not in the golden list: {extra}")
    assert not problems, (f"MLflow keys of a {kind} run changed ({GOLDEN.name}; update it in the same "
                          f"commit with NEUROLIQUID_UPDATE_GOLDEN=1): " + "; ".join(problems))


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
