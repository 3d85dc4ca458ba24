"""``conf/cluster`` and ``conf/scaling``: the Dask cluster and how its worker pool follows the load."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from pipeline.config.validation import require

# A worker's resident memory before it reads any data: 66 MiB bare, 160 MiB once our
# imports, the default network and the store's reader are set up (`python
# scripts/worker_memory.py`, 2026-12-02, LocalCluster, NumPy, distributed 2026.8.0).  Dask
# pauses a worker at 80 % of its limit, so a limit below 160 / 0.8 = 200 MiB never runs a
# region: it waited for ever with only Dask's "unmanaged memory" warning (issue 13).
# Reading adds the store's shard pools (565 MiB after the warm reads of the demo store),
# which pipeline.core.cluster.check_worker_memory checks on the running workers.
WORKER_BASELINE_MIB = 160
MEMORY_LIMIT_FLOOR_MIB = 200


_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmgtp]?i?)b?\s*$", re.IGNORECASE)
_UNIT = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15,
         "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40, "pi": 2**50}


def memory_limit_bytes(value) -> int | None:
    """``cluster.memory_limit`` as bytes per worker; None for ``auto`` (Dask: system memory
    / workers) and for 0 / ``none`` (no limit).  Accepts bytes, ``"4GB"``, ``"500MiB"``
    and a fraction of system memory (``0.25``), as Dask does.  Raises ValueError."""
    if value is None:
        return None
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("auto", "0", "none", ""):
            return None
        m = _SIZE.match(v)
        if m is None:
            raise ValueError(f"not a size: {value!r}")
        num, unit = float(m.group(1)), m.group(2).lower()
        if unit:
            return int(num * _UNIT[unit])
        value = num
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"not a size: {value!r}")
    if value < 0:
        raise ValueError("must not be negative")
    if value == 0:
        return None
    if value <= 1:  # a fraction of the system's memory
        return int(value * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return int(value)


@dataclass
class ClusterConfig:
    """``local`` LocalCluster, ``local_cuda`` dask-cuda, ``address`` an existing scheduler."""

    kind: str = "local"  # local | local_cuda | address
    threads_per_worker: int = 1
    host: str = "127.0.0.1"
    dashboard_address: str = "127.0.0.1:8787"
    memory_limit: str = "auto"
    address: str | None = None
    connect_timeout_s: float = 30.0
    # glibc malloc in every worker (docs/pipeline.md, "Worker memory allocator"): blocks
    # from mmap_threshold up get their own mmap, freed heap above trim_threshold goes back
    # to the OS, and arena_max=1 keeps the task thread on the main heap (a thread arena's
    # heaps are unmapped when they empty, so each micro-batch's temporaries faulted in
    # afresh: ~4,300 page faults and 1.3-1.6x the forward time per region).  Local
    # clusters get them as the workers' environment at spawn; other workers through
    # mallopt at setup.  0 leaves a setting alone.
    malloc_mmap_threshold_mib: int = 32
    malloc_trim_threshold_mib: int = 128
    malloc_arena_max: int = 1

    @property
    def malloc(self) -> tuple[int, int, int]:
        """(mmap threshold MiB, trim threshold MiB, arena max) for :mod:`pipeline.core.malloc`."""
        return self.malloc_mmap_threshold_mib, self.malloc_trim_threshold_mib, self.malloc_arena_max

    def validate(self) -> None:
        require(0 <= self.malloc_mmap_threshold_mib <= 32, "cluster.malloc_mmap_threshold_mib",
                 "must be 0 (leave alone) to 32 (glibc's maximum)", self.malloc_mmap_threshold_mib)
        require(self.malloc_trim_threshold_mib >= 0, "cluster.malloc_trim_threshold_mib", "must be >= 0",
                 self.malloc_trim_threshold_mib)
        require(self.malloc_arena_max >= 0, "cluster.malloc_arena_max", "must be >= 0 (0: leave alone)",
                 self.malloc_arena_max)
        require(self.kind in ("local", "local_cuda", "address"), "cluster.kind",
                 "must be local, local_cuda or address", self.kind)
        require(self.threads_per_worker >= 1, "cluster.threads_per_worker", "must be >= 1", self.threads_per_worker)
        require(self.kind != "address" or bool(self.address), "cluster.address",
                 "cluster=address needs cluster.address=tcp://host:port", self.address)
        require(self.connect_timeout_s > 0, "cluster.connect_timeout_s", "must be > 0", self.connect_timeout_s)
        try:
            limit = memory_limit_bytes(self.memory_limit)
            why = ""
        except ValueError as exc:
            limit, why = None, str(exc)
        require(not why, "cluster.memory_limit",
                 f"must be auto, 0/none (no limit), bytes, a size such as 4GB or 500MiB, or a fraction of system "
                 f"memory such as 0.25 ({why})", self.memory_limit)
        require(limit is None or limit >= MEMORY_LIMIT_FLOOR_MIB * 2**20, "cluster.memory_limit",
                 f"is below the floor of {MEMORY_LIMIT_FLOOR_MIB} MiB per worker: a worker holds about "
                 f"{WORKER_BASELINE_MIB} MiB after set-up, before reading any data (measured, NumPy backend), "
                 "and Dask pauses it at 80 % of its limit, so no region would ever run", self.memory_limit)


SCALING_KINDS = ("fixed", "adaptive", "predictive")


@dataclass
class ScalingConfig:
    """The worker pool.  ``fixed``: ``n_workers``.  ``adaptive``: Dask's ``Adaptive``
    (``minimum``, ``maximum``, ``interval_s``, ``wait_count``, ``target_duration_s``).
    ``predictive``: :class:`pipeline.core.scaling.adaptive.PredictiveAdaptive`, target
    ``ceil(forecast_rate(t + forecast_horizon_s) * service_s / target_utilisation)``,
    forecast by Holt's linear method over ``bin_s`` bins of observed arrivals.
    """

    kind: str = "fixed"
    n_workers: int = 0  # fixed: 0 = one worker per core (NumPy) or per GPU (CuPy)
    minimum: int = 1
    maximum: int = 2
    interval_s: float = 1.0
    wait_count: int = 3
    target_duration_s: float = 5.0  # adaptive only: Dask's wanted time to drain the queue
    target_utilisation: float = 0.7  # predictive: wanted busy fraction of each worker
    forecast_horizon_s: float = 5.0  # about the worker start-up time plus one interval
    bin_s: float = 1.0  # arrival-rate bins for the forecast
    holt_alpha: float = 0.3  # level smoothing, (0, 1]
    holt_beta: float = 0.1  # trend smoothing, [0, 1]
    tolerance: float = 0.2  # scale up only when forecast utilisation > target * (1 + tolerance)
    cooldown_up_s: float = 2.0  # no scale-up sooner than this after any scale event
    cooldown_down_s: float = 15.0  # scale down to the largest need seen over this window
    startup_timeout_s: float = 60.0  # a requested worker not seen by then counts as lost
    initial_service_s: float = 0.01  # per-request service time until one is measured

    def validate(self, prefix: str = "scaling") -> None:
        require(self.kind in SCALING_KINDS, f"{prefix}.kind", f"must be one of {', '.join(SCALING_KINDS)}",
                 self.kind)
        require(self.n_workers >= 0, f"{prefix}.n_workers", "must be >= 0 (0: one per core, or per GPU)",
                 self.n_workers)
        require(self.minimum >= 0, f"{prefix}.minimum", "must be >= 0", self.minimum)
        require(self.maximum >= max(1, self.minimum), f"{prefix}.maximum", "must be >= max(1, minimum)",
                 self.maximum)
        require(self.interval_s > 0, f"{prefix}.interval_s", "must be > 0", self.interval_s)
        require(self.wait_count >= 1, f"{prefix}.wait_count", "must be >= 1", self.wait_count)
        require(self.target_duration_s > 0, f"{prefix}.target_duration_s", "must be > 0",
                 self.target_duration_s)
        require(0 < self.target_utilisation <= 1, f"{prefix}.target_utilisation", "must be in (0, 1]",
                 self.target_utilisation)
        require(self.forecast_horizon_s >= 0, f"{prefix}.forecast_horizon_s", "must be >= 0",
                 self.forecast_horizon_s)
        require(self.bin_s > 0, f"{prefix}.bin_s", "must be > 0", self.bin_s)
        require(0 < self.holt_alpha <= 1, f"{prefix}.holt_alpha", "must be in (0, 1]", self.holt_alpha)
        require(0 <= self.holt_beta <= 1, f"{prefix}.holt_beta", "must be in [0, 1]", self.holt_beta)
        require(0 <= self.tolerance < 1, f"{prefix}.tolerance", "must be in [0, 1)", self.tolerance)
        for key in ("cooldown_up_s", "cooldown_down_s"):
            require(getattr(self, key) >= 0, f"{prefix}.{key}", "must be >= 0", getattr(self, key))
        require(self.startup_timeout_s > 0, f"{prefix}.startup_timeout_s", "must be > 0",
                 self.startup_timeout_s)
        require(self.initial_service_s > 0, f"{prefix}.initial_service_s", "must be > 0",
                 self.initial_service_s)
