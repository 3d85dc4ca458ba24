"""Synaptic projections: dense matmul, or event-driven accumulation of fired rows.

For binary input s in {0,1}^(N x F) and weights W (F, O)::

    y_n = sum_{f : s_nf = 1} W_f          (event path: nnz * O accumulates)
    y   = s @ W                           (dense path: N * F * O MACs)

Both give the same sums (in a different order, so float results agree to rounding;
with weights whose partial sums are exact, e.g. multiples of 2^-8, they are equal).
The energy model prices the two differently (Norse-style synaptic operations: one
accumulate per input spike per fan-out synapse), which is why ``Linear`` records
``last_path`` and ``last_ops``.

Where the event path beats dense depends on F, O, the backend and its BLAS threads;
measure it rather than trust a table: ``python benchmarks/kernels.py`` (the "event matmul
@ 2% / 10% activity" rows of benchmarks/results/kernels.json: at F = 1444, O = 128,
N = 2560 the event path ran at 0.38x dense speed at 2 % activity and 0.13x at 10 %) and
``kernels.synapse.measure_crossover(backend)``, which times both paths over a density
sweep on any backend.  ``DEFAULT_EVENT_THRESHOLD`` = 0.01 takes the event path only
below 1 % activity; a GPU's crossover differs: measure it there and pass
``event_threshold`` (the network config carries it).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from kernels.params import OpCounts

DEFAULT_EVENT_THRESHOLD = 0.01
# Above this many events in one row, one reduceat beats k Python-level rounds.
_MAX_ROUNDS = 256


def event_matmul_numpy(spikes: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Sum the rows of ``w`` selected by each row of ``spikes``.

    Parameters
    ----------
    spikes : (N, F) float or bool, entries in {0, 1} (any nonzero counts as a spike)
    w : (F, O) float32 or float64

    Returns
    -------
    (N, O) w.dtype, equal to ``spikes @ w`` up to summation order
    """
    n, f = spikes.shape
    o = w.shape[1]
    out = np.zeros((n, o), dtype=w.dtype)
    # flatnonzero on a bool view is ~10x faster than on floats (NumPy 2.4).
    flat = np.flatnonzero(spikes.astype(bool, copy=False))
    if flat.size == 0:
        return out
    rows = flat // f
    cols = flat - rows * f
    seg = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])  # first event of each row
    counts = np.diff(np.r_[seg, flat.size])
    k = int(counts.max())
    if k <= _MAX_ROUNDS:
        # Rows sorted by event count, busiest first: in round j the rows with more
        # than j events form a prefix, so each round is one contiguous gather-add and
        # the total work is exactly nnz * O adds, with no padding.
        order = np.argsort(-counts, kind="stable")
        first = seg[order]
        n_more = np.searchsorted(-counts[order], -np.arange(k), side="left")  # rows with > j
        acc = np.zeros((order.size, o), dtype=w.dtype)
        for j in range(k):
            m = n_more[j]
            acc[:m] += w[cols[first[:m] + j]]
        out[rows[first]] = acc
        return out
    # A very busy row (one frame full of events) would need many rounds: segment sums
    # along the contiguous axis of the gathered, transposed rows instead.
    gathered = np.take(np.ascontiguousarray(w.T), cols, axis=1)
    out[rows[seg]] = np.add.reduceat(gathered, seg, axis=1).T
    return out


class Linear:
    """``y = x @ w + b`` that runs event-driven when ``x`` is sparse binary.

    Parameters
    ----------
    w : (F, O) host array
    b : (O,) host array or None
    backend : kernels.backend.Backend
    dtype : np.float32 or np.float64
    event_threshold : float in [0, 1]
        Binary inputs with density (fraction of ones) below this take the event path;
        0 disables it.  Default: the measured CPU crossover, ``DEFAULT_EVENT_THRESHOLD``.
    name : str, used in error messages
    """

    def __init__(
        self,
        w: Any,
        b: Any,
        backend: Any,
        dtype: Any = np.float32,
        event_threshold: float = DEFAULT_EVENT_THRESHOLD,
        name: str = "Linear",
    ) -> None:
        w = np.asarray(w)
        if w.ndim != 2:
            raise ValueError(f"{name}: w must be (F, O), got shape {w.shape}")
        if b is not None and np.shape(b) != (w.shape[1],):
            raise ValueError(f"{name}: b must be ({w.shape[1]},) or None, got {np.shape(b)}")
        if not 0.0 <= event_threshold <= 1.0:
            raise ValueError(f"{name}: event_threshold must lie in [0, 1], got {event_threshold!r}")
        self.name = name
        self.backend = backend
        self.dtype = np.dtype(dtype)
        self.w = backend.asarray(w, dtype=self.dtype)
        self.b = None if b is None else backend.asarray(b, dtype=self.dtype)
        self.n_in, self.n_out = w.shape
        self.event_threshold = float(event_threshold)
        self.last_path = "dense"
        self.last_ops = OpCounts()

    @property
    def n_params(self) -> int:
        return self.n_in * self.n_out + (0 if self.b is None else self.n_out)

    def forward(self, x: Any, binary: bool | None = None) -> Any:
        """Project ``x``.

        Parameters
        ----------
        x : (..., F) backend array, ``dtype``
        binary : True if the caller knows ``x`` is 0/1 (skips the check), False to force
            the dense path, None to detect.

        Returns
        -------
        (..., O) ``dtype``
        """
        xp = self.backend.xp
        if x.shape[-1] != self.n_in:
            raise ValueError(f"{self.name}: x must be (..., {self.n_in}), got {x.shape}")
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.n_in)
        n = x2.shape[0]
        dense_mac = n * self.n_in * self.n_out
        if binary is None:
            binary = self.event_threshold > 0 and bool(xp.all((x2 == 0) | (x2 == 1)))
        nnz = int(xp.count_nonzero(x2)) if binary else -1
        # Spike inputs: their synaptic events are counted whichever path runs, for the
        # neuromorphic estimate (pipeline/energy.py); mac/acc count what actually ran.
        syn = OpCounts(syn_events=nnz * self.n_out, syn_dense_mac=dense_mac) if binary else OpCounts()
        if 0 <= nnz < self.event_threshold * x2.size:
            y = self.backend.event_matmul(x2, self.w)
            self.last_path = "event"
            self.last_ops = syn + OpCounts(acc=nnz * self.n_out, dense_mac=dense_mac)
        else:
            y = x2 @ self.w
            self.last_path = "dense"
            self.last_ops = syn + OpCounts(mac=dense_mac, dense_mac=dense_mac)
        if self.b is not None:
            y = y + self.b
        return y.reshape(*lead, self.n_out)


    def forward_signed(self, on: Any, off: Any) -> Any:
        """Project signed events ``(on - off) @ w + b`` with ``on``, ``off`` 0/1 (..., F).

        Event path: two accumulations, ``acc = (nnz(on) + nnz(off)) * O``.  Dense path:
        one product of the difference.  Either way ``dense_mac = N * F * O`` -- a dense
        implementation multiplies the signed input once.
        """
        xp = self.backend.xp
        if on.shape != off.shape or on.shape[-1] != self.n_in:
            raise ValueError(f"{self.name}: on and off must both be (..., {self.n_in}), got {on.shape}, {off.shape}")
        lead = on.shape[:-1]
        on2, off2 = on.reshape(-1, self.n_in), off.reshape(-1, self.n_in)
        dense_mac = on2.shape[0] * self.n_in * self.n_out
        nnz = int(xp.count_nonzero(on2)) + int(xp.count_nonzero(off2))
        syn = OpCounts(syn_events=nnz * self.n_out, syn_dense_mac=dense_mac)
        if nnz < self.event_threshold * on2.size:
            y = self.backend.event_matmul(on2, self.w) - self.backend.event_matmul(off2, self.w)
            self.last_path = "event"
            self.last_ops = syn + OpCounts(acc=nnz * self.n_out, dense_mac=dense_mac)
        else:
            y = (on2 - off2) @ self.w
            self.last_path = "dense"
            self.last_ops = syn + OpCounts(mac=dense_mac, dense_mac=dense_mac)
        if self.b is not None:
            y = y + self.b
        return y.reshape(*lead, self.n_out)


def measure_crossover(
    backend: Any,
    n_rows: int = 2560,
    n_in: int = 1024,
    n_out: int = 128,
    densities: tuple[float, ...] = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05),
    repeats: int = 9,
    dtype: Any = np.float32,
    seed: int = 0,
) -> tuple[float, list[tuple[float, float, float]]]:
    """Time dense vs event matmul per density; best of ``repeats`` after one warm-up.

    Returns
    -------
    crossover : the highest density at which the event path was faster (0.0 if never)
    table : [(density, dense_seconds, event_seconds), ...]
    """
    rng = np.random.default_rng(seed)
    w = backend.asarray(rng.standard_normal((n_in, n_out)), dtype=dtype)
    table, crossover = [], 0.0
    for d in densities:
        s = backend.asarray(rng.random((n_rows, n_in)) < d, dtype=dtype)
        times = []
        for fn in (lambda s=s: s @ w, lambda s=s: backend.event_matmul(s, w)):
            fn()
            backend.synchronize()
            best = np.inf
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                backend.synchronize()
                best = min(best, time.perf_counter() - t0)
            times.append(best)
        table.append((d, times[0], times[1]))
        if times[1] < times[0]:
            crossover = d
    return crossover, table
