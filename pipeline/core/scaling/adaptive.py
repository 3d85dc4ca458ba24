"""The scaling mechanism: thin Dask ``Adaptive`` subclasses that apply a policy (Dask's own
``adaptive_target``, or :class:`pipeline.core.scaling.policy.PredictivePolicy`) and record
every scale event and pool sample in a :class:`pipeline.core.pool.ScaleLog`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from inspect import isawaitable

from distributed.deploy.adaptive import Adaptive

from pipeline.config import ScalingConfig
from pipeline.core.pool import ScaleLog
from pipeline.core.scaling.policy import Decision, PredictivePolicy


class _RecordingMixin:
    """Records each scale_up/scale_down as a ScaleEvent and samples the pool every adapt."""

    def _init_recording(self, log: ScaleLog | None, clock: Callable[[], float]) -> None:
        self.scale_log = log if log is not None else ScaleLog()
        self.clock = clock

    def _reason(self, direction: str, to: int) -> str:
        """Why the pool moves; the concrete Adaptives below say more."""
        return f"{direction}: target {to} workers"

    async def scale_up(self, n):
        before = len(self.plan)
        self.scale_log.record(self.clock(), before, n, self._reason("up", n))
        await super().scale_up(n)

    async def scale_down(self, workers):
        if workers:
            before = len(self.plan)
            to = before - len(workers)
            self.scale_log.record(self.clock(), before, to, self._reason("down", to) + f"; retire {sorted(map(str, workers))}")
        await super().scale_down(workers)

    async def adapt(self) -> None:
        await super().adapt()
        self.scale_log.sample(self.clock(), len(self.observed))


class RecordingAdaptive(_RecordingMixin, Adaptive):
    """Dask's own Adaptive (scheduler ``adaptive_target``), every decision recorded."""

    def __init__(self, cluster, *args, scale_log: ScaleLog | None = None,
                 clock: Callable[[], float] = time.monotonic, **kwargs) -> None:
        self._init_recording(scale_log, clock)
        self._last_target: int | None = None
        super().__init__(cluster, *args, **kwargs)

    async def target(self) -> int:
        self._last_target = int(await super().target())
        return self._last_target

    def _reason(self, direction: str, to: int) -> str:
        why = f"dask adaptive_target={self._last_target} (target_duration {self.target_duration:g} s)"
        return why if direction == "up" else f"{why}, seen {self.wait_count} times in a row"


class PredictiveAdaptive(_RecordingMixin, Adaptive):
    """Adaptive whose target comes from a :class:`PredictivePolicy`; the load driver feeds
    ``adaptive.policy.observe_arrivals`` and ``observe_service_time``."""

    def __init__(self, cluster, *args, policy: PredictivePolicy, scale_log: ScaleLog | None = None,
                 clock: Callable[[], float] = time.monotonic, **kwargs) -> None:
        self.policy = policy
        self.last_decision: Decision | None = None
        self._pending_since: dict = {}
        self._init_recording(scale_log, clock)
        kwargs.setdefault("minimum", policy.cfg.minimum)
        kwargs.setdefault("maximum", policy.cfg.maximum)
        super().__init__(cluster, *args, **kwargs)

    async def target(self) -> int:
        now = self.clock()
        plan, observed = set(self.plan), set(self.observed)
        pending = plan - observed
        self._pending_since = {w: self._pending_since.get(w, now) for w in pending}
        lost = [w for w, t in self._pending_since.items() if now - t > self.policy.cfg.startup_timeout_s]
        if lost and hasattr(self.cluster, "scale_down"):
            # Drop the dead specs so that scale_up(n) really starts replacements.
            f = self.cluster.scale_down(lost)
            if isawaitable(f):
                await f
        self.last_decision = self.policy.recommend(now, len(observed), len(pending), len(lost))
        return self.last_decision.target

    def _reason(self, direction: str, to: int) -> str:
        return self.last_decision.reason if self.last_decision else "no decision yet"


def attach_scaling(cluster, cfg: ScalingConfig, scale_log: ScaleLog | None = None,
                   clock: Callable[[], float] = time.monotonic) -> Adaptive | None:
    """Apply ``cfg`` to ``cluster``: fixed scales to ``n_workers`` and returns None;
    adaptive/predictive return the running Adaptive (its ``scale_log`` holds the events)."""
    cfg.validate()
    if cfg.kind == "fixed":
        cluster.scale(cfg.n_workers)
        return None
    common = dict(minimum=cfg.minimum, maximum=cfg.maximum, interval=cfg.interval_s,
                  wait_count=cfg.wait_count, scale_log=scale_log, clock=clock)
    if cfg.kind == "adaptive":
        return cluster.adapt(Adaptive=RecordingAdaptive, target_duration=cfg.target_duration_s, **common)
    return cluster.adapt(Adaptive=PredictiveAdaptive, policy=PredictivePolicy(cfg), **common)
