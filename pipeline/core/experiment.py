"""The one experiment harness every application runs in (batch run, load test, training).

An application asks for three things, in order, and adds only what is its own:

1. :func:`prepare` -- the input store (the synthetic demo store is generated when
   missing), its reader, the network, the weights file every worker loads (written only
   by ``exp.weights.commit()``, once the application's own checks have passed), the
   backend the workers will resolve, and the pool size;
2. :func:`tracked` -- the MLflow run (one per Hydra job; only this driver process writes
   to MLflow) with the tags every run carries and the whole config as params;
3. :func:`cluster_session` -- the Dask cluster with the worker set-up plugin registered,
   the workers set up (their backend and set-up time tagged), the run clock started and
   the scaling policy attached; closed, with its scaling stopped, on the way out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import Config, ScalingConfig
from pipeline.core.cluster import ClusterError, default_workers, open_client
from pipeline.core.network import Geometry, Weights, prepare_weights
from pipeline.core.pool import ScaleLog
from pipeline.core.registry import is_model_uri, resolve
from pipeline.core.scaling import attach_scaling
from pipeline.core.tracking import Tracker, flatten, git_commit, package_versions, tracked_run
from pipeline.core.worker_setup import NetworkSetup, worker_info
from pipeline.data import StoreReader, open_reader


def ensure_store(cfg: Config) -> Path:
    """The input store; the synthetic demo store is generated when it is missing."""
    path = Path(cfg.data.path)
    if not (path / "zarr.json").exists():
        if cfg.data.source != "synthetic":
            raise FileNotFoundError(f"data.path={path}: no zarr store there")
        from pipeline.data.cli import generate

        print(f"data.path={path}: no store there, so a new synthetic one is generated (data=synthetic; "
              "for an existing store check the path, or use data=zarr, which never generates)")
        generate(cfg)
    return path


# The default ``tracking.run_name`` template (placeholders: pipeline.config.tracking.RUN_NAME_FIELDS).
# Its time and six random hex digits tell runs apart: two started in the same second (a
# sweep, two terminals) share a name 1 time in 16.7 million, and the second is then refused
# (its output store exists), never written over the first.
DEFAULT_RUN_NAME = "{model}-h{hidden}-{backend}-{data}-{time}-{hex}"


def run_name(cfg: Config, prefix: str) -> str:
    """``resume`` when given; else ``tracking.run_name``, a fixed name or a template with
    ``{model} {hidden} {backend} {data} {task} {experiment} {time} {hex}`` (default
    :data:`DEFAULT_RUN_NAME`, e.g. ``fusion-h128-numpy-demo-20261202-013000-a3f90c``; tasks
    other than the batch run put ``<prefix>-`` in front: ``load-``, ``train-``)."""
    if cfg.resume:
        return cfg.resume
    template = cfg.tracking.run_name or (DEFAULT_RUN_NAME if prefix == "run" else f"{{task}}-{DEFAULT_RUN_NAME}")
    if "{" not in template:
        return template
    fields = {"task": prefix, "model": cfg.model.kind, "hidden": cfg.model.hidden,
              "backend": resolved_backend(cfg.backend.name), "data": Path(cfg.data.path).name.removesuffix(".zarr"),
              "experiment": cfg.tracking.experiment, "time": time.strftime("%Y%m%d-%H%M%S"),
              "hex": secrets.token_hex(3)}
    return template.format(**fields)


def preflight(cfg: Config) -> None:
    """Checks that need no store, cluster or MLflow run, before anything is created: the
    MLflow store can be written, and on ``cluster=address`` the scheduler answers."""
    import socket
    from urllib.parse import urlparse

    from pipeline.core.tracking import check_tracking_uri

    check_tracking_uri(cfg.tracking.uri)
    if cfg.cluster.kind == "address" and cfg.cluster.address and "://" in cfg.cluster.address:
        u = urlparse(cfg.cluster.address)
        if u.scheme in ("tcp", "tls") and u.hostname and u.port:
            try:
                socket.create_connection((u.hostname, u.port), timeout=min(cfg.cluster.connect_timeout_s, 10)).close()
            except OSError as exc:
                raise ClusterError(f"cluster.address={cfg.cluster.address}: no Dask scheduler answers "
                                   f"({exc.strerror or exc}); nothing was created") from None


@dataclass
class Experiment:
    """What a run is about, fixed before anything starts."""

    cfg: Config
    task: str  # the MLflow ``task`` tag: run | load | train
    name: str
    store: Path
    reader: StoreReader
    weights: Weights  # written by ``weights.commit()`` once the application's checks passed
    scaling: ScalingConfig  # with ``n_workers`` resolved
    backend: str  # what ``backend.name`` resolves to here: numpy | cupy

    @property
    def weights_path(self) -> Path:
        return self.weights.path

    @property
    def net(self):
        """The network on NumPy (the driver's copy; workers load ``weights_path``)."""
        return self.weights.net

    @property
    def adaptive(self) -> bool:
        return self.scaling.kind != "fixed"

    @property
    def initial_workers(self) -> int:
        return max(1, self.scaling.minimum) if self.adaptive else self.scaling.n_workers

    @property
    def max_workers(self) -> int:
        return max(self.scaling.n_workers, self.scaling.maximum if self.adaptive else 0)


def prepare(cfg: Config, task: str, name: str) -> Experiment:
    """Store, reader, network and pool size.  Writes nothing but the demo store when it is
    missing: seeded weights go to ``<output_dir>/weights/`` on ``exp.weights.commit()``."""
    preflight(cfg)
    print(f"run: {name}")
    store = ensure_store(cfg)
    reader = open_reader(store)
    model = cfg.model
    if is_model_uri(model.weights):  # a registered model: its file, downloaded where workers see it
        path = resolve(model.weights, cfg.tracking.uri, Path(cfg.paths.output_dir) / "registry")
        print(f"model.weights={model.weights} -> {path}")
        model = dataclasses.replace(model, weights=str(path))
    weights = prepare_weights(model, Geometry.of_store(reader, cfg.data.imu_window),
                              Path(cfg.paths.output_dir) / "weights")
    n_workers = cfg.scaling.n_workers or default_workers(cfg.backend.name)
    return Experiment(cfg, task, name, store, reader, weights, dataclasses.replace(cfg.scaling, n_workers=n_workers),
                      resolved_backend(cfg.backend.name))


def resolved_backend(name: str) -> str:
    """The backend ``name`` resolves to on this machine (``auto``: CuPy with a GPU)."""
    from kernels.backend import cuda_probe

    return name if name != "auto" else ("cupy" if cuda_probe()[0] else "numpy")


@contextlib.contextmanager
def tracked(exp: Experiment, tags: dict[str, Any] | None = None) -> Iterator[Tracker]:
    """The run's MLflow run: common tags plus ``tags``, the whole config as params."""
    cfg = exp.cfg
    all_tags = {"task": exp.task, "model": cfg.model.kind, "backend.requested": cfg.backend.name,
                "git_commit": git_commit(Path(cfg.paths.root_dir)), **package_versions(), **(tags or {})}
    with tracked_run(cfg.tracking.uri, cfg.tracking.experiment, exp.name, Path(cfg.tracking.artifact_dir),
                     parent_run_id=cfg.tracking.parent_run_id, tags=all_tags) as tracker:
        tracker.log_params(flatten(dataclasses.asdict(cfg)))
        yield tracker


@dataclass
class Session:
    """A running cluster: the client, the run clock, the pool's scale log."""

    client: Any
    cluster: Any  # None on cluster=address
    adaptive: Any  # the running Adaptive, or None for a fixed pool
    scale_log: ScaleLog
    t0: float  # perf_counter at the start of the run clock
    backend: dict  # what the first worker resolved (pipeline.core.worker_setup.NetworkSetup.info)
    workers: int  # workers set up at the start
    setup_s: float  # the slowest worker's set-up time

    def clock(self) -> float:
        """Seconds since the session started (the run clock)."""
        return time.perf_counter() - self.t0


@contextlib.contextmanager
def cluster_session(exp: Experiment, tracker: Tracker, *, shared_paths: list[Path], wait_for: int = 1,
                    **plugin: Any) -> Iterator[Session]:
    """Start (or connect to) the cluster, set the workers up with :class:`NetworkSetup`
    (``plugin``: its extra arguments), wait for ``wait_for`` workers, start the clock and
    attach the scaling policy.  Tags what the workers resolved."""
    cfg = exp.cfg
    if exp.weights.pending:
        raise RuntimeError("cluster_session before exp.weights.commit(): the workers would find no weights file")
    with open_client(cfg.cluster, n_workers=exp.initial_workers, shared_paths=shared_paths,
                     adaptive=exp.adaptive) as (client, cluster):
        client.register_plugin(NetworkSetup(cfg.backend.name, str(exp.weights_path), cfg.backend.threads,
                                            store=str(exp.store), malloc=cfg.cluster.malloc, **plugin))
        print(f"dashboard: {client.dashboard_link}")
        client.wait_for_workers(wait_for, timeout=120)
        infos = client.run(worker_info)
        first = next(iter(infos.values()))
        resolved = {w: i["backend"] for w, i in infos.items()}
        if set(resolved.values()) != {exp.backend}:
            # Outputs (and resume fingerprints) depend on the backend: never mix them silently.
            raise ClusterError(f"backend={cfg.backend.name} resolves to {exp.backend} here but the workers "
                               f"resolved {sorted(set(resolved.values()))} ({resolved}); set backend= explicitly")
        setup_s = max(i["setup_s"] for i in infos.values())
        tracker.set_tags({"backend": first["backend"], "device": first["device"],
                          "backend.reason": first["reason"], "workers.initial": len(infos),
                          "worker.malloc": first["malloc"], "worker.setup_s": f"{setup_s:.2f}"})
        print(f"backend: {first['backend']} on {first['device']} ({first['reason']}); {len(infos)} worker(s) "
              f"set up in {setup_s:.2f} s (not in the figures); scaling={exp.scaling.kind}")
        session = Session(client, cluster, None, ScaleLog(), time.perf_counter(), first, len(infos), setup_s)
        if cluster is not None:
            session.adaptive = attach_scaling(cluster, exp.scaling, scale_log=session.scale_log,
                                              clock=session.clock)
        try:
            yield session
        finally:
            if session.adaptive is not None:
                session.adaptive.stop()
