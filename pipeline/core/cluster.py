"""Dask clusters from config: ``local`` (LocalCluster), ``local_cuda`` (dask-cuda) and
``address`` (any existing scheduler: dask-jobqueue, dask-kubernetes, ...).

Every server binds to 127.0.0.1 unless the config says otherwise.  The client and the
cluster are closed in ``finally`` so no worker process outlives the run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from pipeline.core.malloc import malloc_env

log = logging.getLogger(__name__)


# Worker processes get one BLAS/OpenMP thread each: the pool, not BLAS, uses the cores.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "OMP_WAIT_POLICY": "PASSIVE", "MLFLOW_ENABLE_TELEMETRY": "false"}


class ClusterError(RuntimeError):
    """The configured cluster cannot be started or reached, or cannot see the run's paths."""


def default_workers(backend: str) -> int:
    """The pool when ``scaling.n_workers`` is 0: one worker per GPU when the CuPy backend
    will run (never one CUDA context per core), else one single-threaded worker per core."""
    if backend in ("auto", "cupy"):
        from kernels.backend import cuda_probe

        if cuda_probe()[0]:
            import cupy

            return cupy.cuda.runtime.getDeviceCount()
    return os.cpu_count() or 1


def _local(cfg, n_workers: int, env: dict[str, str]):
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=cfg.threads_per_worker,
        processes=True,
        host=cfg.host,
        dashboard_address=cfg.dashboard_address,
        memory_limit=cfg.memory_limit,
        silence_logs=logging.WARNING,
        env=env,
    )


def _local_cuda(cfg, n_workers: int, env: dict[str, str]):
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError as exc:
        raise ClusterError(
            "cluster=local_cuda needs dask-cuda: pip install 'neuroliquid[gpu-cuda12]' "
            f"(or gpu-cuda13) ({exc})"
        ) from exc
    from kernels.backend import cuda_probe

    ok, why = cuda_probe()
    if not ok:
        raise ClusterError(f"cluster=local_cuda needs a CUDA GPU but {why}")
    return LocalCUDACluster(
        host=cfg.host,
        dashboard_address=cfg.dashboard_address,
        threads_per_worker=cfg.threads_per_worker,
        memory_limit=cfg.memory_limit,
        silence_logs=logging.WARNING,
        env=env,
    )


_KINDS = {"local": _local, "local_cuda": _local_cuda}


def _probe_write(paths: list[str], token: str) -> dict[str, str]:
    """Runs on every worker: write and remove a file in each shared path."""
    import socket

    out = {}
    for p in paths:
        f = Path(p) / f".neuroliquid-probe-{token}-{socket.gethostname()}-{os.getpid()}"
        try:
            f.write_text(token)
            f.unlink()
            out[p] = "ok"
        except OSError as exc:
            out[p] = f"{type(exc).__name__}: {exc}"
    return out


def check_shared_paths(client, paths: list[Path]) -> None:
    """Every worker must see (and be able to write) the run's data and output folders."""
    token = uuid.uuid4().hex[:8]
    results = client.run(_probe_write, [str(p) for p in paths], token)
    bad = {
        w: {p: r for p, r in res.items() if r != "ok"}
        for w, res in results.items()
        if any(r != "ok" for r in res.values())
    }
    if bad:
        lines = "; ".join(f"{w}: {d}" for w, d in bad.items())
        raise ClusterError(
            "these workers cannot write the run's shared paths (data, weights and outputs "
            f"must be on storage every worker sees): {lines}"
        )


@contextlib.contextmanager
def open_client(cfg, *, n_workers: int, shared_paths: list[Path] = (), adaptive: bool = False,
                env: dict[str, str] | None = None) -> Iterator:
    """Start (or connect to) the configured cluster and yield ``(client, cluster)``.

    ``cluster`` is None for ``cluster=address``.  ``n_workers`` is the initial pool
    (ignored for ``address`` and ``local_cuda``, which has one worker per GPU).  Workers get
    ``env`` (default :data:`WORKER_ENV`: one BLAS thread each).  Raises :class:`ClusterError` with the reason.
    """
    import dask
    from distributed import Client

    # Dask's INFO chatter (scheduler, nanny, worker start/stop) would bury the run's output.
    for name in ("distributed", "bokeh", "tornado"):
        logging.getLogger(name).setLevel(logging.WARNING)
    env = dict(WORKER_ENV if env is None else env)
    # Worker processes that local clusters spawn (now, or later when a pool grows) start
    # with the configured malloc settings: glibc reads them once, at process start.
    spawn_env = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **malloc_env(*cfg.malloc)}
    cluster = None
    client = None
    with dask.config.set({"distributed.nanny.pre-spawn-environ": spawn_env}):
        try:
            if cfg.kind == "address":
                if not cfg.address:
                    raise ClusterError("cluster=address needs cluster.address=tcp://host:port")
                if adaptive:
                    raise ClusterError(
                        "scaling=adaptive/predictive needs a cluster the client can resize; with "
                        "cluster=address the deployment (dask-jobqueue, dask-kubernetes, ...) owns "
                        "the pool: use scaling=fixed, or scale through that deployment"
                    )
                client = Client(cfg.address, timeout=cfg.connect_timeout_s)
                check_shared_paths(client, list(shared_paths))
            else:
                cluster = _KINDS[cfg.kind](cfg, n_workers, env)
                client = Client(cluster)
            yield client, cluster
        finally:
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()
