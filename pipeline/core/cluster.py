"""Dask clusters from config: ``local`` (LocalCluster), ``local_cuda`` (dask-cuda) and
``address`` (any existing scheduler: dask-jobqueue, dask-kubernetes, ...).

Every server binds to 127.0.0.1 unless the config says otherwise.  The client and the
cluster are closed in ``finally`` so no worker process outlives the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
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


def dashboard_binding(address: str | None) -> tuple[str | None, list[str]]:
    """``cluster.dashboard_address`` with a concrete port (port 0 or none: a free one is
    picked now), and the origins the dashboard's websocket accepts: that host and port under
    its own name, ``localhost`` and ``127.0.0.1``.  Bokeh's default, ``*``, accepts any
    origin and logs a "Host wildcard" warning on every run."""
    import socket

    if not address:
        return address, []
    host, _, port = address.rpartition(":")
    host = host or "127.0.0.1"
    if not port or int(port) == 0:
        with socket.socket() as s:
            s.bind((host if host not in ("0.0.0.0", "") else "127.0.0.1", 0))
            port = str(s.getsockname()[1])
    origins = list(dict.fromkeys(f"{h}:{port}" for h in (host, "localhost", "127.0.0.1") if h != "0.0.0.0"))
    if host == "0.0.0.0":
        origins.append(f"{socket.gethostname()}:{port}")
    return f"{host}:{port}", origins


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


def _worker_memory(dask_worker=None) -> dict:
    """Runs on every worker (``client.run``): resident memory and its memory limit, bytes."""
    import psutil

    w = dask_worker
    return {"rss": psutil.Process(os.getpid()).memory_info().rss,
            "limit": getattr(getattr(w, "memory_manager", None), "memory_limit", None)}


def check_worker_memory(client, pause_fraction: float | None = None) -> dict:
    """After the workers' set-up: every worker's resident memory must sit below the point
    where Dask pauses it (``distributed.worker.memory.pause`` of its limit), else no task
    would ever run there.  Raises :class:`ClusterError` with the measured figures;
    returns ``{worker: rss MiB}``."""
    import dask

    frac = pause_fraction if pause_fraction is not None else dask.config.get("distributed.worker.memory.pause")
    mem = client.run(_worker_memory)
    bad = {w: m for w, m in mem.items() if frac and m["limit"] and m["rss"] >= frac * m["limit"]}
    if bad:
        w, m = next(iter(bad.items()))
        raise ClusterError(
            f"cluster.memory_limit is too small: worker {w} holds {m['rss'] / 2**20:.0f} MiB after its set-up "
            f"(measured now), at or above the {frac:.0%} of its {m['limit'] / 2**20:.0f} MiB limit where Dask "
            f"pauses it, so no task would ever run; set cluster.memory_limit to at least "
            f"{m['rss'] / frac / 2**20 * 1.5:.0f}MiB (1.5x headroom) or auto")
    return {w: m["rss"] / 2**20 for w, m in mem.items()}


class _ClosedDashboardTab(logging.Filter):
    """Drops Bokeh's warning for a dashboard tab closed while its plots update ("Failed
    sending message as connection was closed", once per pending update): the user closed
    a browser tab; nothing in the run is wrong."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "connection was closed" not in record.getMessage()


class _TabClosedBeforeSession(logging.Filter):
    """Drops what Bokeh's own ``assert self._session is not None`` (``bokeh/server/connection.py``)
    logs when a dashboard tab closes or navigates away while its connection has no session:
    Tornado's "Uncaught exception GET /status/ws" (closed before the session was created) and
    Bokeh's "error handling message" for an update the tab sent as it went (seen in CI).
    Only that exception, raised there, is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, AssertionError):
            return True
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = "" if tb is None else tb.tb_frame.f_code.co_filename.replace("\\", "/")
        return not where.endswith("bokeh/server/connection.py")


def quiet_dashboard_logs() -> None:
    """Dask's INFO chatter (scheduler, nanny, worker start/stop) would bury the run's output,
    and a dashboard tab the user closes is not an error: this process's loggers say neither."""
    for name in ("distributed", "bokeh", "tornado"):
        logging.getLogger(name).setLevel(logging.WARNING)
    ws = logging.getLogger("bokeh.server.views.ws")
    if not any(isinstance(f, _ClosedDashboardTab) for f in ws.filters):
        ws.addFilter(_ClosedDashboardTab())
    for app in map(logging.getLogger, ("tornado.application", "bokeh.server.protocol_handler")):
        if not any(isinstance(f, _TabClosedBeforeSession) for f in app.filters):
            app.addFilter(_TabClosedBeforeSession())


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

    quiet_dashboard_logs()
    env = dict(WORKER_ENV if env is None else env)
    # Worker processes that local clusters spawn (now, or later when a pool grows) start
    # with the configured malloc settings: glibc reads them once, at process start.
    spawn_env = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **malloc_env(*cfg.malloc)}
    # distributed reads pre-spawn-environ through os.environ first (nanny._get_env_variables)
    # and every nanny writes its values into this process's os.environ: a cluster started
    # earlier in this process (dask's default MALLOC_TRIM_THRESHOLD_=65536) would win over
    # this config.  This process's own allocator read its settings at start: nothing changes here.
    for key, value in malloc_env(*cfg.malloc).items():
        if key in os.environ and os.environ[key] != value:
            os.environ[key] = value
    cluster = None
    client = None
    settings = {"distributed.nanny.pre-spawn-environ": spawn_env}
    if cfg.kind != "address":
        # Dashboard websocket origins bound to this run's address (no Bokeh wildcard
        # warning); local workers leave Ctrl-C and SIGTERM to the driver (worker_signals).
        address, origins = dashboard_binding(cfg.dashboard_address)
        cfg = dataclasses.replace(cfg, dashboard_address=address)
        preload = list(dask.config.get("distributed.worker.preload", []) or [])
        settings |= {"distributed.scheduler.dashboard.bokeh-application.allow_websocket_origin": origins,
                     "distributed.worker.preload": [*preload, "pipeline.core.worker_signals"]}
    with dask.config.set(settings):
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
            if cluster is not None and client is not None:
                _stop_workers(cluster, client)
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()


def _stop_workers(cluster, client, timeout_s: float = 5.0) -> None:
    """Stop a local cluster's workers before its scheduler: closed the other way round, a
    worker whose heartbeat is in flight when the scheduler goes logged an ERROR traceback
    ("Failed to communicate with scheduler during heartbeat") at the end of a good run."""
    import time

    try:
        cluster.scale(0)
        deadline = time.monotonic() + timeout_s
        while client.nthreads() and time.monotonic() < deadline:
            time.sleep(0.05)
    except Exception as exc:  # the cluster is going anyway; cluster.close() below stops what is left
        log.debug("stopping workers before the scheduler: %s", exc)
