"""The predictive scaling policy: pure, no Dask (the mechanism is :mod:`.adaptive`, kept
apart as in ``distributed/deploy/adaptive_core.py``).

Predictive policy, times in seconds on one monotonic clock, rates in requests/s:

    arrivals counted in bins of width D (``bin_s``):  y_k = n_k / D
    Holt's linear method:  l_k = a y_k + (1 - a)(l_{k-1} + b_{k-1})
                           b_k = c (l_k - l_{k-1}) + (1 - c) b_{k-1}     (a = alpha, c = beta)
    forecast  r(t + H) = max(0, l_K, l_K + b_K (t + H - m_K) / D)   m_K: middle of the last bin
    demand    W = r(t + H) * s          busy workers (s: measured service s/request)
    need      N = ceil(W / u)           clamped to [minimum, maximum]  (u: target utilisation)

    level need  N_l = ceil(max(0, l_K) s / u), clamped     (the smoothed rate now, no trend)

Scale up to N when the pool we have or are starting (running + starting - lost) would run
above ``u (1 + tolerance)`` and ``cooldown_up_s`` has passed since the last event.  Scale
down only to the largest N_l seen over the last ``cooldown_down_s`` (a stabilisation window
as in Kubernetes' HPA), and not sooner than ``cooldown_down_s`` after the last event.
Workers lost below the committed target are replaced at once, cooldowns notwithstanding:
flapping and retiring busy workers are what users hit (pitfalls.md, Dask adaptive).

The forecast sees only observed arrivals, never the configured load schedule.  Up and down
read different signals on purpose.  Up anticipates: a rising trend is extrapolated over
the horizon H (set to the worker start-up time plus one interval, so a worker asked for
now serves when the forecast load arrives), and a falling one never forecasts below the
level (the max).  Down waits for what is arriving: after a burst Holt's trend undershoots
and then overshoots as it recovers, and a step up from idle reads as a rising trend, so a
trend-extrapolated need would hold a pool for many bins of a low steady load.  This
cannot flap on a ramp as long as ``cooldown_down_s >= H``: over the window the level
itself grows by more than the trend term added at its start.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from typing import NamedTuple

from pipeline.config import ScalingConfig

# Weight of each request in the service-time EWMA: a batch of n requests moves it by
# 1 - (1 - w)^n, so the estimate is request-weighted (a 1-request batch barely moves it,
# a full 32-request batch by ~48 %) and spans ~1/w = 50 requests, not 3 batches.
_SERVICE_WEIGHT_PER_REQUEST = 0.02


class Decision(NamedTuple):
    """The pool size the policy wants now, and why (the caller compares it with its pool)."""

    target: int
    reason: str


class PredictivePolicy:
    """The pure policy (module docstring); thread-safe, the clock is the caller's ``now``."""

    def __init__(self, cfg: ScalingConfig) -> None:
        cfg.validate()
        self.cfg = cfg
        self.service_s = cfg.initial_service_s
        self._measured = False
        self._lock = threading.Lock()
        self._t0: float | None = None
        self._open_bin = 0
        self._open_count = 0
        self._level: float | None = None
        self._trend = 0.0
        self._committed: int | None = None
        self._last_event = -math.inf
        self._needs: deque[tuple[float, int]] = deque()

    def _clamp(self, n: int) -> int:
        return max(self.cfg.minimum, min(self.cfg.maximum, n))

    def _close_bins(self, upto: int) -> None:
        a, c = self.cfg.holt_alpha, self.cfg.holt_beta
        while self._open_bin < upto:
            y = self._open_count / self.cfg.bin_s
            if self._level is None:
                self._level = y
            else:
                prev = self._level
                self._level = a * y + (1 - a) * (prev + self._trend)
                self._trend = c * (self._level - prev) + (1 - c) * self._trend
            self._open_bin += 1
            self._open_count = 0

    def _bin_of(self, t: float) -> int:
        if self._t0 is None:
            self._t0 = t
        return math.floor((t - self._t0) / self.cfg.bin_s)

    def observe_arrivals(self, t: float, n: int = 1) -> None:
        """``n`` requests arrived at time ``t`` (s); late reports count in the open bin."""
        if n < 0:
            raise ValueError(f"arrival count must be >= 0, got {n}")
        with self._lock:
            self._close_bins(self._bin_of(t))
            self._open_count += n

    def observe_service_time(self, s_per_request: float, requests: int = 1) -> None:
        """A batch of ``requests`` took ``s_per_request`` worker-seconds per request,
        smoothed by a request-weighted EWMA (one request of small, noisy batches moves it
        little; demand W = rate * s counts requests, so s is a per-request mean); the
        first measurement replaces ``initial_service_s``."""
        if not (s_per_request > 0 and math.isfinite(s_per_request)):
            raise ValueError(f"service time per request must be > 0 s, got {s_per_request}")
        if requests < 1:
            raise ValueError(f"a service-time measurement covers >= 1 request, got {requests}")
        with self._lock:
            w = 1 - (1 - _SERVICE_WEIGHT_PER_REQUEST) ** requests if self._measured else 1.0
            self.service_s += w * (s_per_request - self.service_s)
            self._measured = True

    def forecast_rate(self, now: float) -> float | None:
        """Forecast arrival rate at ``now + forecast_horizon_s`` (requests/s); None before
        the first bin has closed."""
        with self._lock:
            return self._forecast(now)

    def _forecast(self, now: float) -> float | None:
        self._close_bins(self._bin_of(now))
        if self._level is None:
            return None
        mid = self._t0 + (self._open_bin - 0.5) * self.cfg.bin_s
        steps = (now + self.cfg.forecast_horizon_s - mid) / self.cfg.bin_s
        return max(0.0, self._level, self._level + self._trend * steps)

    def recommend(self, now: float, current: int, starting: int = 0, lost: int = 0) -> Decision:
        """Target pool size at ``now``: ``current`` workers running, ``starting`` requested
        but not yet running, ``lost`` of those known dead (e.g. never started)."""
        if min(current, starting, lost) < 0 or lost > current + starting:
            raise ValueError(f"bad pool counts current={current} starting={starting} lost={lost}")
        cfg = self.cfg
        with self._lock:
            have = current + starting - lost
            if self._committed is None:
                self._committed, self._last_event = have, now
            rate = self._forecast(now)
            if rate is None:
                need = level_need = self._committed
                why = "no closed arrival bin yet"
            else:
                level_need = self._clamp(math.ceil(max(0.0, self._level) * self.service_s
                                                   / cfg.target_utilisation - 1e-9))
                demand = rate * self.service_s
                raw = math.ceil(demand / cfg.target_utilisation - 1e-9)
                need = self._clamp(raw)
                why = (f"forecast {rate:.1f} req/s at +{cfg.forecast_horizon_s:g} s x "
                       f"{self.service_s * 1e3:.2f} ms/req = {demand:.2f} busy workers / u={cfg.target_utilisation:g}"
                       f" -> need {raw}" + (f", clamped to {need}" if need != raw else ""))
            self._needs.append((now, level_need))
            while self._needs and self._needs[0][0] < now - cfg.cooldown_down_s:
                self._needs.popleft()
            old = self._committed
            if not cfg.minimum <= old <= cfg.maximum:
                return self._commit(now, old, f"bounds: {old} outside [{cfg.minimum}, {cfg.maximum}]; {why}")
            if have < old:
                return self._commit(now, max(old, need), f"replace {old - have} lost worker(s); {why}")
            busy = rate is not None and rate * self.service_s > cfg.target_utilisation * (1 + cfg.tolerance) * have
            if need > old and busy and now - self._last_event >= cfg.cooldown_up_s:
                return self._commit(now, need, f"up: {why}")
            down_to = max(n for _, n in self._needs)
            if down_to < old and now - self._last_event >= cfg.cooldown_down_s:
                return self._commit(now, down_to, f"down: largest need over {cfg.cooldown_down_s:g} s is "
                                                  f"{down_to} (level {max(0.0, self._level or 0.0):.1f} req/s "
                                                  f"now); {why}")
            return Decision(old, f"hold: {why}")

    def _commit(self, now: float, target: int, reason: str) -> Decision:
        self._committed, self._last_event = self._clamp(target), now
        return Decision(self._committed, reason)
