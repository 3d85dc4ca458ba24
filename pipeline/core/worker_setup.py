"""Per-worker setup, once: backend, network weights, compiled and warmed kernels.

Weights are loaded on the worker from a path (``.npz`` without pickle, or
``.safetensors``), never shipped with each task.  The backend is resolved here, once,
and recorded; a worker asked for ``cupy`` without a GPU fails its setup loudly rather
than running NumPy behind the user's back.
"""

from __future__ import annotations

import logging
import time

from distributed.diagnostics.plugin import WorkerPlugin

from pipeline.core.malloc import tune_malloc

log = logging.getLogger(__name__)

PLUGIN_NAME = "neuroliquid-setup"


class NetworkSetup(WorkerPlugin):
    """Builds the worker's :class:`kernels.network.FusionNetwork` from a weights file."""

    name = PLUGIN_NAME

    def __init__(self, backend: str, weights_path: str, threads: int = 1, store: str | None = None,
                 warm: dict | None = None, malloc: tuple[int, int, int] = (0, 0, 0),
                 reader_cache_bytes: int | None = None) -> None:
        self.backend_name = backend
        self.weights_path = weights_path
        self.store = store
        self.reader_cache_bytes = reader_cache_bytes  # the tasks' reader (None: the default)
        # Requests read and run once at setup (keys recordings, starts, steps, policy,
        # imu_window): one per store shard, so that a worker a scaling policy adds later
        # joins with its shard pools filled instead of paying ~50-150 ms per cold shard
        # on its first live micro-batches (which showed as p99 spikes at every scale-up).
        self.warm = warm
        self.threads = threads
        self.malloc = malloc  # (mmap threshold MiB, trim threshold MiB, arena max); 0 leaves it alone
        self.malloc_state = "untouched"
        self.net = None
        self.backend = None
        self.setup_s = float("nan")

    def setup(self, worker) -> None:
        from kernels import get_backend
        from kernels.network import FusionNetwork

        t0 = time.perf_counter()
        if any(self.malloc):
            self.malloc_state = tune_malloc(*self.malloc)
        # ``auto`` passes ``threads`` on: honoured when it picks NumPy, and named in the
        # backend's reason when it picks CuPy (kernels.backend.get_backend); never dropped.
        opts = {"threads": self.threads} if self.backend_name in ("numpy", "auto") else {}
        self.backend = get_backend(self.backend_name, **opts)
        self.net = FusionNetwork.load(self.weights_path, self.backend)
        _warm_up(self.net)  # compiles and runs every kernel before the first micro-batch
        if self.store:
            from pipeline.data import open_reader

            rd = open_reader(self.store, self.reader_cache_bytes)  # schema check and timestamp metadata, once per worker
            if self.reader_cache_bytes is not None:  # a batch run: its first regions skip ~0.2 s
                from pipeline.data import prefault

                prefault(rd)
            if self.warm:
                try:
                    _warm_reads(self.net, self.store, self.warm)
                except Exception as exc:  # best effort: bad data fails the live request, counted
                    log.warning("worker %s: warm read failed (%s: %s)", worker.address, type(exc).__name__, exc)
        self.setup_s = time.perf_counter() - t0
        log.info("worker %s: backend %s on %s (%s), setup %.2fs", worker.address,
                 self.backend.name, self.backend.device, self.backend.reason, self.setup_s)

    def info(self) -> dict:
        return {"backend": self.backend.name, "device": self.backend.device,
                "reason": self.backend.reason, "setup_s": self.setup_s, "malloc": self.malloc_state}


def _warm_up(net) -> None:
    """One tiny forward (2 recordings x 2 steps) through every layer of the network."""
    import numpy as np

    c = net.config
    net.forward(np.zeros((2, 2, *c.camera), np.uint8), np.full((2, 2, c.beams), 5.0, np.float32),
                np.zeros((2, 2, c.imu_per_step, 6), np.float32))
    net.backend.synchronize()


def _warm_reads(net, store: str, warm: dict) -> None:
    """Read, align and run ``warm``'s requests once (results dropped)."""
    import numpy as np

    from pipeline.data import read_windows

    batch = read_windows(store, np.asarray(warm["recordings"], np.int64), np.asarray(warm["starts"], np.int64),
                         int(warm["steps"]), warm["policy"], imu_window=int(warm["imu_window"]),
                         max_age=warm.get("max_age"))
    net.forward(batch.camera, batch.lidar, batch.imu, None, camera_valid=batch.camera_valid,
                lidar_valid=batch.lidar_valid, imu_valid=batch.imu_valid)
    net.backend.synchronize()


def worker_network():
    """The calling worker's network (inside a task)."""
    from distributed import get_worker

    return get_worker().plugins[PLUGIN_NAME].net


def worker_info(dask_worker) -> dict:
    """For ``client.run``: what each worker resolved."""
    return dask_worker.plugins[PLUGIN_NAME].info()
