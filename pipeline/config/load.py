"""``conf/load`` and ``conf/slo``: how work is released (batch or open-loop phases) and the objectives it is judged by."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pipeline.config.validation import require

LOAD_KINDS = ("batch", "seed_phases")


@dataclass
class LoadPhase:
    """``requests`` requests offered at ``rate_rps`` per second (``None``: all at once).

    ``duration_s``: the phase's scheduled length; the next phase starts this long after
    this one's scheduled start, whether or not its requests have drained (open loop).
    ``None``: ``requests / rate_rps``, or 1 s for an unlimited phase."""

    name: str = "phase"
    requests: int = 100
    rate_rps: float | None = None
    duration_s: float | None = None

    def scheduled_s(self) -> float:
        """The phase's scheduled length in seconds (see the class docstring)."""
        if self.duration_s is not None:
            return float(self.duration_s)
        return 1.0 if self.rate_rps is None else self.requests / self.rate_rps

    def validate(self, prefix: str = "load.phases[]") -> None:
        require(bool(self.name.strip()), f"{prefix}.name", "must not be empty", self.name)
        require(self.requests >= 1, f"{prefix}.requests", "must be >= 1", self.requests)
        require(self.rate_rps is None or (math.isfinite(self.rate_rps) and self.rate_rps > 0),
                 f"{prefix}.rate_rps", "must be > 0 requests/s, or null for unlimited", self.rate_rps)
        require(self.duration_s is None or (math.isfinite(self.duration_s) and self.duration_s > 0),
                 f"{prefix}.duration_s", "must be > 0 s, or null (requests / rate_rps; 1 s if unlimited)",
                 self.duration_s)


@dataclass
class LoadConfig:
    """How work is released.  ``batch``: every micro-batch at once, state carried across
    time blocks.  ``seed_phases``: open-loop phases of independent requests (one window of
    ``window_steps`` model steps of one recording from zero state), grouped by a
    micro-batcher of at most ``max_batch`` requests waiting at most ``max_wait_ms``."""

    kind: str = "batch"
    phases: list[LoadPhase] = field(default_factory=list)
    scale: float = 1.0  # multiplies every phase's request count
    max_batch: int = 128
    max_wait_ms: float = 5.0
    window_steps: int = 10
    prefer_shard: bool = True  # batch requests that share a store shard first
    request_timeout_s: float = 60.0  # a request not done by then (from its scheduled arrival) fails
    # A micro-batch in flight (submitted, no result) longer than this fails its requests,
    # and the worker running it is probed; None: from the warm-up's measured service time
    # (docs/load.md, "Deadlines").
    inflight_timeout_s: float | None = None
    retire_after_misses: int = 2  # deadline misses after which a worker is retired and replaced
    # kind=batch: a region running longer than this on one worker has that worker restarted
    # and runs elsewhere (twice at most); None: 10x the slowest finished region, >= 30 s
    # (300 s before any has finished).  pipeline.batch.chains.RegionDeadline.
    region_timeout_s: float | None = None
    seed: int = 0  # which recording and window each request reads

    def validate(self, prefix: str = "load") -> None:
        require(self.kind in LOAD_KINDS, f"{prefix}.kind", f"must be one of {', '.join(LOAD_KINDS)}", self.kind)
        require(self.kind == "batch" or len(self.phases) > 0, f"{prefix}.phases",
                 "must list at least one phase for a load test", self.phases)
        names = [p.name for p in self.phases]
        require(len(set(names)) == len(names), f"{prefix}.phases", "phase names must be unique", names)
        for i, p in enumerate(self.phases):
            p.validate(f"{prefix}.phases[{i}]")
        require(math.isfinite(self.scale) and self.scale > 0, f"{prefix}.scale", "must be > 0", self.scale)
        require(self.max_batch >= 1, f"{prefix}.max_batch", "must be >= 1", self.max_batch)
        require(self.max_wait_ms >= 0, f"{prefix}.max_wait_ms", "must be >= 0", self.max_wait_ms)
        require(self.window_steps >= 1, f"{prefix}.window_steps", "must be >= 1", self.window_steps)
        require(self.request_timeout_s > 0, f"{prefix}.request_timeout_s", "must be > 0",
                 self.request_timeout_s)
        require(self.seed >= 0, f"{prefix}.seed", "must be >= 0", self.seed)
        require(self.inflight_timeout_s is None or self.inflight_timeout_s > 0, f"{prefix}.inflight_timeout_s",
                 "must be > 0 s, or null (from the measured service time)", self.inflight_timeout_s)
        require(self.region_timeout_s is None or self.region_timeout_s > 0, f"{prefix}.region_timeout_s",
                 "must be > 0 s, or null (from the measured region time)", self.region_timeout_s)
        require(self.retire_after_misses >= 1, f"{prefix}.retire_after_misses", "must be >= 1",
                 self.retire_after_misses)

    def scaled_phases(self) -> list[LoadPhase]:
        """The phases with ``requests`` multiplied by ``scale`` (rounded, at least 1)."""
        out = []
        for p in self.phases:
            n = max(1, round(p.requests * self.scale))
            # The scaled phase keeps its rate; an explicit length scales with its requests.
            dur = None if p.duration_s is None else p.duration_s * n / p.requests
            out.append(LoadPhase(p.name, n, p.rate_rps, dur))
        return out


@dataclass
class SloConfig:
    """Service-level objectives; defaults are the seed report's (p99 <= 3 ms,
    throughput >= 5,000 requests/s, availability >= 99.9 %)."""

    p99_ms: float = 3.0
    throughput_rps: float = 5000.0
    availability_pct: float = 99.9

    def validate(self, prefix: str = "slo") -> None:
        for key in ("p99_ms", "throughput_rps", "availability_pct"):
            v = getattr(self, key)
            require(isinstance(v, int | float) and math.isfinite(v) and v >= 0, f"{prefix}.{key}",
                     "must be a finite number >= 0", v)
        require(self.p99_ms > 0, f"{prefix}.p99_ms", "must be > 0 (a latency bound)", self.p99_ms)
        require(self.availability_pct <= 100, f"{prefix}.availability_pct",
                 "is a percentage of requests and cannot exceed 100", self.availability_pct)
