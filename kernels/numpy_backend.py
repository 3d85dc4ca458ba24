"""NumPy backend: the reference implementation and the test oracle.

The per-family reference scans live beside their layers (``kernels.cfc``,
``kernels.ltc``, ``kernels.lif``, ``kernels.encoders``, ``kernels.synapse``); this class
only binds them to the :class:`kernels.backend.Backend` contract and, when
``threads > 1``, runs independent batch slices on a thread pool (NumPy ufuncs and BLAS
release the GIL, so one process uses several cores without BLAS-level threading).
Inside Dask workers ``threads`` is 1: the worker pool, not this class, uses the cores.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import Any

import numpy as np

from kernels import cfc, encoders, lif, ltc, synapse


class NumpyBackend:
    name = "numpy"
    xp = np

    def __init__(self, reason: str = "requested", threads: int = 1) -> None:
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"NumpyBackend threads must be a positive int, got {threads!r}")
        self.threads = threads
        self.reason = reason
        self.device = f"cpu ({threads} thread{'s' if threads > 1 else ''})"

    def __repr__(self) -> str:
        return f"NumpyBackend(threads={self.threads})"

    @cached_property
    def _pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(self.threads, thread_name_prefix="neuroliquid-np")

    def asarray(self, a: Any, dtype: Any = None) -> np.ndarray:
        return np.asarray(a, dtype=dtype)

    def to_numpy(self, a: Any) -> np.ndarray:
        return np.asarray(a)

    def synchronize(self) -> None:
        """NumPy is synchronous; present so timing code is backend-agnostic."""

    def _batch_parallel(self, fn: Callable, batched: tuple, rest: tuple) -> tuple:
        """Run ``fn(*batched, *rest)`` over slices of axis 0 and concatenate the results."""
        n = batched[0].shape[0]
        k = min(self.threads, n)
        if k <= 1:
            return fn(*batched, *rest)
        bounds = np.linspace(0, n, k + 1).astype(int)
        futures = [
            self._pool.submit(fn, *(a[lo:hi] for a in batched), *rest)
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        parts = [f.result() for f in futures]
        return tuple(np.concatenate(p, axis=0) for p in zip(*parts, strict=True))

    def cfc_scan(self, u, h0, dt, p):
        return self._batch_parallel(cfc.cfc_scan_numpy, (u, h0, dt), (p,))

    def ltc_scan(self, x, v0, dt, p):
        return self._batch_parallel(ltc.ltc_scan_numpy, (x, v0, dt), (p,))

    def lif_scan(self, cur, mem0, p):
        return self._batch_parallel(lif.lif_scan_numpy, (cur, mem0), (p,))

    def delta_scan(self, x, ref0, primed0, threshold, valid):
        return self._batch_parallel(
            encoders.delta_scan_numpy, (x, ref0, primed0, valid), (threshold,)
        )

    def event_matmul(self, spikes, w):
        return synapse.event_matmul_numpy(spikes, w)
