"""The worker pool over time: one sampler, the scale log, worker-seconds.

Every application samples the pool the same way (:class:`PoolSampler`, asking the
scheduler directly), and the scaling mechanism records its events and samples into the
same :class:`ScaleLog`, from which worker-seconds and per-window pool sizes are computed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScaleEvent:
    t: float  # seconds, the run's monotonic clock
    from_: int
    to: int
    reason: str


@dataclass
class ScaleLog:
    """Scale events and pool-size samples ``(t, workers)`` of one run."""

    events: list[ScaleEvent] = field(default_factory=list)
    samples: list[tuple[float, int]] = field(default_factory=list)

    def record(self, t: float, from_: int, to: int, reason: str) -> ScaleEvent:
        ev = ScaleEvent(float(t), int(from_), int(to), reason)
        self.events.append(ev)
        return ev

    def sample(self, t: float, n: int) -> None:
        self.samples.append((float(t), int(n)))

    def between(self, t0: float, t1: float) -> list[ScaleEvent]:
        return [e for e in self.events if t0 <= e.t < t1]


def _check_samples(samples: Sequence[tuple[float, int]]) -> None:
    if not samples:
        raise ValueError("pool-size samples are empty: sample the pool at least once")
    for (ta, _), (tb, _) in zip(samples, samples[1:], strict=False):
        if tb < ta:
            raise ValueError(f"pool-size samples go back in time ({ta} then {tb})")


def worker_seconds(samples: Sequence[tuple[float, int]], t_end: float | None = None) -> float:
    """Integral of pool size over time, step-wise: sum_i n_i (t_{i+1} - t_i), the last
    sample held until ``t_end`` (default: its own time).  Worker-seconds."""
    _check_samples(samples)
    ts = [t for t, _ in samples] + [samples[-1][0] if t_end is None else t_end]
    if ts[-1] < ts[-2]:
        raise ValueError(f"t_end={t_end} is before the last sample at {ts[-2]}")
    return float(sum(n * (ts[i + 1] - ts[i]) for i, (_, n) in enumerate(samples)))


def pool_window(samples: Sequence[tuple[float, int]], t0: float, t1: float) -> tuple[int, float, int]:
    """(min, time-weighted mean, max) pool size over [t0, t1]; the size at t0 is the last
    sample at or before t0 (or the first sample if none is that early)."""
    _check_samples(samples)
    if t1 <= t0:
        raise ValueError(f"empty window [{t0}, {t1}]")
    start = max((i for i, (t, _) in enumerate(samples) if t <= t0), default=0)
    win = [(t0, samples[start][1])] + [(t, n) for t, n in samples[start + 1:] if t0 < t < t1]
    ns = [n for _, n in win]
    return min(ns), worker_seconds(win, t1) / (t1 - t0), max(ns)


def n_workers(client) -> int:
    """Workers the scheduler knows now, from a direct RPC.  ``client.scheduler_info()``
    returns a cache that the client's own periodic refresh overwrites with an empty
    worker list (it asks for ``n_workers=0``), so a reader racing it saw 0 workers."""
    return len(client.nthreads())


def processing_on(keys, dask_scheduler=None) -> dict[str, str]:
    """For ``client.run_on_scheduler``: the worker each of ``keys`` is processing on (keys
    not processing are left out), so a late task's worker can be probed or restarted."""
    out = {}
    for k in keys:
        ts = dask_scheduler.tasks.get(k)
        if ts is not None and ts.processing_on is not None:
            out[k] = ts.processing_on.address
    return out


class PoolSampler:
    """The pool size as the scheduler sees it, on the run's ``clock``.

    :meth:`sample` reads it (at most every ``every_s`` unless forced) and, when ``log`` is
    given, records ``(t, n)`` there; :meth:`start` does so from a thread every ``every_s``,
    so a driver loop reads the latest size (``sampler()``) without a scheduler round trip.
    Pools scaled by an Adaptive are recorded by the Adaptive itself: pass ``log=None``."""

    def __init__(self, client, clock: Callable[[], float], log: ScaleLog | None = None,
                 every_s: float = 0.5) -> None:
        self.client, self.clock, self.log, self.every_s = client, clock, log, every_s
        self.n = 0
        self._last = -1e9
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0  # failed samples (each logged once per distinct message)
        self.last_error: str = ""

    def sample(self, force: bool = False) -> int:
        t = self.clock()
        if force or t - self._last >= self.every_s:
            self.n = n_workers(self.client)
            self._last = t
            if self.log is not None:
                self.log.sample(t, self.n)
        return self.n

    def start(self) -> PoolSampler:
        self.sample(force=True)
        self._thread = threading.Thread(target=self._loop, daemon=True, name="pool-sampler")
        self._thread.start()
        return self

    def _loop(self) -> None:
        """Samples until :meth:`stop`; a failed sample (a scheduler that is slow to answer,
        a closing client) is counted and logged, and the sampler keeps going: the pool
        size it serves stays the last one read, never silently frozen for the run."""
        while not self._stop.wait(self.every_s):
            try:
                self.sample(force=True)
            except Exception as exc:  # noqa: BLE001 -- counted, logged, and sampling goes on
                self.errors += 1
                msg = f"{type(exc).__name__}: {exc}"[:300]
                if msg != self.last_error:
                    log.warning("pool sampler: reading the pool size failed (%s); keeping the last size %d "
                                "and trying again every %.2f s", msg, self.n, self.every_s)
                self.last_error = msg

    def __call__(self) -> int:
        return self.n

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
