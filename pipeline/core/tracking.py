"""MLflow tracking: one run per Hydra job, only the driver writes.

The store is SQLite (MLflow 3.x refuses a plain file store) at an absolute path,
because Hydra may change the working directory; artifacts live under ``mlruns/``.
Metrics go in batches (``log_batch``): one ``log_metric`` call per value is slow.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

# The tool runs offline and private by default (pitfalls.md: MLflow UI telemetry).
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
os.environ.setdefault("DO_NOT_TRACK", "true")
# MLflow's INFO lines ("Creating initial MLflow database tables...") are not the run's
# (read when mlflow is first imported; MLFLOW_LOGGING_LEVEL=INFO brings them back).
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

# MLflow 3's UI opens an experiment by this tag: without it, an experiment with no runs
# yet (or one it cannot classify) opens in the GenAI view (traces, prompts).  The value
# comes from mlflow's UI (ExperimentKind.CUSTOM_MODEL_DEVELOPMENT, mlflow 3.17).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"

_BATCH = 900  # MLflow accepts at most 1000 metrics / 100 params per log_batch call
_PARAM_BATCH = 100
_PACKAGES = ("numpy", "cupy", "dask", "distributed", "xarray", "zarr", "hydra-core", "mlflow")


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}} -> {"a.b": "1"}``; lists become their repr (MLflow params are strings)."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = str(v)[:6000]
    return out


def package_versions() -> dict[str, str]:
    out = {}
    for name in _PACKAGES:
        try:
            out[f"version.{name}"] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def git_commit(root: Path) -> str:
    try:
        res = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return res.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class TrackingError(RuntimeError):
    """The MLflow store (``tracking.uri``) cannot be used; the message names it."""


def check_tracking_uri(uri: str) -> None:
    """Fail fast, before anything is created, when ``tracking.uri`` cannot work: a SQLite
    file whose folder cannot be created or written, or that is not writable; a server
    that does not accept a TCP connection within 5 s.  (MLflow itself retries for
    minutes before it gives up, without naming the URI.)"""
    import socket
    from urllib.parse import urlparse

    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        if path.exists():
            if not path.is_file() or not os.access(path, os.R_OK | os.W_OK):
                raise TrackingError(f"tracking.uri={uri}: {path} is not a readable and writable file")
            return
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise TrackingError(f"tracking.uri={uri}: cannot create {path} ({parent} is not a writable folder)")
        return
    if uri.startswith(("http://", "https://")):
        u = urlparse(uri)
        port = u.port or (443 if u.scheme == "https" else 80)
        try:
            socket.create_connection((u.hostname, port), timeout=5).close()
        except OSError as exc:
            raise TrackingError(f"tracking.uri={uri}: no MLflow server answers at {u.hostname}:{port} "
                                f"({exc.strerror or exc})") from None


def is_tracking_failure(exc: BaseException) -> bool:
    """An error raised by MLflow or its database (lost, locked, unwritable store)."""
    mods = {type(e).__module__.split(".")[0] for e in (exc, exc.__cause__, exc.__context__) if e is not None}
    return bool(mods & {"mlflow", "sqlalchemy", "sqlite3", "requests", "urllib3"}) or isinstance(exc, TrackingError)


class Tracker:
    """Thin wrapper over ``MlflowClient`` for one run (created in ``__init__``, which fails
    when the store cannot be used).  Once the run exists, a store that fails (database
    deleted or locked mid-run) does not end the run: the first failure is printed once and
    kept in :attr:`lost`, later calls do nothing, and the caller keeps its figures locally
    (``pipeline.batch.summary.log_run``)."""

    lost: str | None = None  # the first tracking failure after the run was created

    def __init__(self, tracking_uri: str, experiment: str, run_name: str,
                 artifact_root: Path, parent_run_id: str | None = None,
                 tags: Mapping[str, str] | None = None) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri)
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            artifact_root.mkdir(parents=True, exist_ok=True)
            exp_id = self.client.create_experiment(experiment, artifact_location=artifact_root.as_uri(),
                                                   tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        else:
            exp_id = exp.experiment_id
            if exp.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:  # an older or GenAI-kind experiment
                self.client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        all_tags = dict(tags or {})
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        all_tags["mlflow.runName"] = run_name
        self.run = self.client.create_run(exp_id, run_name=run_name, tags=all_tags)
        self.run_id = self.run.info.run_id
        self.experiment_id = exp_id
        self._mlflow = mlflow

    def _call(self, fn, *args, **kwargs) -> None:
        if self.lost:
            return
        try:
            fn(*args, **kwargs)
        except Exception as exc:
            if not is_tracking_failure(exc):
                raise
            self.lost = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"
            print(f"MLflow: the store {self.client.tracking_uri} failed ({self.lost}); the run goes on "
                  "without it", flush=True)

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), _PARAM_BATCH):
            self._call(self.client.log_batch, self.run_id, params=items[i:i + _PARAM_BATCH])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for i in range(0, len(items), _PARAM_BATCH):
            self._call(self.client.log_batch, self.run_id, tags=items[i:i + _PARAM_BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0,
                    timestamp_ms: int | None = None) -> None:
        self.log_series([(k, float(v), step) for k, v in metrics.items()], timestamp_ms)

    def log_series(self, rows: list[tuple[str, float, int]], timestamp_ms: int | None = None) -> None:
        """Log ``(key, value, step)`` rows in as few calls as MLflow allows."""
        from mlflow.entities import Metric

        ts = timestamp_ms or int(time.time() * 1000)
        items = [Metric(k, float(v), ts, int(s)) for k, v, s in rows]
        for i in range(0, len(items), _BATCH):
            self._call(self.client.log_batch, self.run_id, metrics=items[i:i + _BATCH])

    def log_artifact_text(self, text: str, name: str) -> None:
        self._call(self.client.log_text, self.run_id, text, name)

    def log_artifact(self, path: Path, subdir: str | None = None) -> None:
        self._call(self.client.log_artifact, self.run_id, str(path), subdir)

    def mark_interrupted(self, run_ids: list[str]) -> None:
        """Link this (resumed) run to the runs that wrote the same output store before: each
        gets ``neuroliquid.resumed_by`` and, if still RUNNING (killed with SIGKILL, or its
        store was lost), status KILLED."""
        for rid in run_ids:
            try:
                self.client.set_tag(rid, "neuroliquid.resumed_by", self.run_id)
                if self.client.get_run(rid).info.status == "RUNNING":
                    self.client.set_terminated(rid, "KILLED")
            except Exception as exc:  # a run deleted since, or another store: the link is a courtesy
                if not is_tracking_failure(exc):
                    raise

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)


@contextlib.contextmanager
def tracked_run(tracking_uri: str, experiment: str, run_name: str, artifact_root: Path,
                parent_run_id: str | None = None, tags: Mapping[str, str] | None = None
                ) -> Iterator[Tracker]:
    """A run that ends FINISHED, or FAILED if the body raises (and KILLED on Ctrl-C)."""
    tracker = Tracker(tracking_uri, experiment, run_name, artifact_root, parent_run_id, tags)
    status = "FAILED"
    try:
        yield tracker
        status = "FINISHED"
    except KeyboardInterrupt:  # Ctrl-C, and SIGTERM (pipeline.__main__ turns it into one)
        status = "KILLED"
        raise
    finally:
        try:
            if not tracker.lost:  # else said once already, with where the figures went
                tracker.end(status)
        except Exception as exc:  # the store went away: say so, keep the run's own outcome
            if not is_tracking_failure(exc):
                raise
            print(f"MLflow: could not mark run {tracker.run_id} {status} in {tracking_uri} "
                  f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")


def log_benchmark(name: str, params: Mapping[str, Any], metrics: Mapping[str, Any],
                  artifact: Path | None = None, root: Path | None = None) -> str | None:
    """Log one benchmark (``benchmarks/*.py``) like any run: experiment ``neuroliquid-bench``
    in the project's store.  Returns the run id, or None where mlflow is not installed (a
    bare GPU box): the benchmark still prints and saves its JSON."""
    import math

    try:
        import mlflow  # noqa: F401
    except ImportError:
        return None
    root = root or Path(__file__).resolve().parents[2]
    tracker = Tracker(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}", "neuroliquid-bench", name,
                      root / "mlruns" / "artifacts",
                      tags={"benchmark": name, "git_commit": git_commit(root), **package_versions()})
    tracker.log_params(params)
    tracker.log_metrics({k: float(v) for k, v in metrics.items()
                         if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)})
    if artifact is not None:
        tracker.log_artifact(Path(artifact))
    tracker.end()
    return tracker.run_id
