"""The load-test report in the seed's shape, computed from raw per-request records.

Definitions (times in s on the run's one monotonic clock, latencies in ms):

    latency_i    = completion_i - scheduled arrival_i           (no coordinated omission)
    phase window = [first scheduled arrival, last completion] of the phase's requests
    throughput   = completed / window length                    requests/s
    pXX          = nearest rank: the ceil(XX/100 * n)-th smallest latency of completed requests
    success      = 100 * completed / requests                   (failed, quarantined, timed out count)
    energy/req   = phase energy / completed requests            J (source: nvml, rapl or model)
    workers      = min, time-weighted mean, max of the pool over the window
    worker-s     = integral of the pool size over the run's window (first arrival to last
                   completion): the run's cost figure
    scalability  = peak phase throughput / first (baseline) phase throughput

SLA verdicts: worst phase p99 <= slo.p99_ms, peak phase throughput >= slo.throughput_rps,
overall success >= slo.availability_pct.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.config import SloConfig
from pipeline.core.energy import PhaseEnergy
from pipeline.core.pool import ScaleLog, pool_window


@dataclass(frozen=True)
class RequestRecord:
    phase: str
    arrival_s: float  # scheduled arrival
    completion_s: float | None  # when the client saw the result; None: never
    ok: bool  # False: failed, quarantined or timed out
    batch_size: int = 1
    worker: str = ""
    error: str = ""
    recording: int = -1  # which window of which recording the request asked for (-1: not given)
    start_step: int = -1


@dataclass
class PhaseMeta:
    name: str
    offered_rps: float | None = None  # None: unlimited
    energy: PhaseEnergy | None = None
    generator_lag_s: float = 0.0  # worst (actual release - scheduled arrival)


@dataclass
class ClusterStatus:
    workers: int
    healthy: int
    capacity_rps: float | None = None  # healthy workers / measured service s per request


@dataclass
class ModelSize:
    parameters: int
    mflop_per_request: float


@dataclass
class PhaseStats:
    name: str
    offered_rps: float | None
    requests: int
    completed: int
    failed: int
    duration_s: float
    throughput_rps: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    success_pct: float
    energy_j: float | None
    energy_per_request_j: float | None
    energy_source: str
    mean_power_w: float | None
    workers_min: int | None
    workers_mean: float | None
    workers_max: int | None
    scale_events: int
    generator_lag_ms: float
    latencies_ms: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))


@dataclass
class Headline:
    peak_rps: float | None
    average_rps: float | None
    scalability: float | None
    total_requests: int
    total_completed: int
    availability_pct: float
    scale_events: int
    worker_seconds: float | None
    duration_s: float


@dataclass
class SlaVerdict:
    name: str
    op: str  # "<=" | ">="
    target: float
    measured: float | None
    unit: str
    ok: bool


def nearest_rank(values: np.ndarray, p: float) -> float | None:
    """The ceil(p/100 * n)-th smallest value (p in (0, 100]); None when empty."""
    if len(values) == 0:
        return None
    return float(np.sort(values)[max(1, math.ceil(p / 100 * len(values))) - 1])


def phase_stats(records: list[RequestRecord], meta: PhaseMeta, scale_log: ScaleLog | None = None) -> PhaseStats:
    rs = [r for r in records if r.phase == meta.name]
    if not rs:
        raise ValueError(f"phase {meta.name!r} has no request records")
    ok = [r for r in rs if r.ok and r.completion_s is not None]
    lat = np.array([(r.completion_s - r.arrival_s) * 1e3 for r in ok], dtype=float)
    if (lat < 0).any():
        raise ValueError(f"phase {meta.name!r}: a request completed before its scheduled arrival")
    t0 = min(r.arrival_s for r in rs)
    t1 = max([r.completion_s for r in rs if r.completion_s is not None] or [t0])
    dur = t1 - t0
    e = meta.energy
    wmin = wmean = wmax = None
    if scale_log is not None and scale_log.samples and dur > 0:
        wmin, wmean, wmax = pool_window(scale_log.samples, t0, t1)
    return PhaseStats(
        meta.name, meta.offered_rps, len(rs), len(ok), len(rs) - len(ok), dur,
        len(ok) / dur if dur > 0 else None, nearest_rank(lat, 50), nearest_rank(lat, 95), nearest_rank(lat, 99),
        float(lat.max()) if len(lat) else None, 100.0 * len(ok) / len(rs),
        e.joules if e else None, e.joules / len(ok) if e and ok else None, e.source if e else "none",
        e.mean_power_w if e and e.source != "model" else None, wmin, wmean, wmax,
        len(scale_log.between(t0, t1)) if scale_log is not None else 0, meta.generator_lag_s * 1e3, lat)


def sla_verdicts(phases: list[PhaseStats], headline: Headline, slo: SloConfig) -> list[SlaVerdict]:
    slo.validate()
    p99s = [p.p99_ms for p in phases]
    worst = None if any(v is None for v in p99s) else max(p99s)
    out = [("p99 latency, worst phase", "<=", slo.p99_ms, worst, "ms"),
           ("throughput, peak phase", ">=", slo.throughput_rps, headline.peak_rps, "requests/s"),
           ("availability", ">=", slo.availability_pct, headline.availability_pct, "%")]
    return [SlaVerdict(n, op, t, m, u, m is not None and (m <= t if op == "<=" else m >= t))
            for n, op, t, m, u in out]


@dataclass
class LoadReport:
    phases: list[PhaseStats]
    headline: Headline
    sla: list[SlaVerdict]
    t_start: float
    scale_log: ScaleLog | None = None
    cluster: ClusterStatus | None = None
    model: ModelSize | None = None
    neuromorphic: dict | None = None
    roundtrip_ms: tuple[float, float] | None = None  # measured Dask submit-to-result (p50, p99)

    def markdown(self) -> str:
        h, f = self.headline, _fmt
        lines = ["# Load test report", "", "## Headline", "",
                 f"- Peak throughput: {f(h.peak_rps, 1)} requests/s",
                 f"- Average throughput: {f(h.average_rps, 1)} requests/s (all completed / whole run)",
                 f"- Scalability factor (peak / baseline): {f(h.scalability, 2)}x",
                 f"- Total requests: {h.total_requests} ({h.total_completed} completed, "
                 f"availability {f(h.availability_pct, 3)} %) in {f(h.duration_s, 1)} s",
                 f"- Autoscaling events: {h.scale_events}; worker-seconds: {f(h.worker_seconds, 1)}", "",
                 "## Load phases", "",
                 "| Phase | Offered (req/s) | Requests | Completed | Failed | Throughput (req/s) | p50 (ms) | p95 (ms) "
                 "| p99 (ms) | max (ms) | Success (%) | Energy/request (J) | Source | Mean power (W) "
                 "| Workers min/mean/max | Scale events | Generator lag (ms) |",
                 "|" + "---|" * 17]
        for p in self.phases:
            lines.append(
                f"| {p.name} | {'unlimited' if p.offered_rps is None else f(p.offered_rps, 0)} | {p.requests} "
                f"| {p.completed} | {p.failed} | {f(p.throughput_rps, 1)} | {f(p.p50_ms, 2)} | {f(p.p95_ms, 2)} "
                f"| {f(p.p99_ms, 2)} | {f(p.max_ms, 2)} | {f(p.success_pct, 2)} | {_sci(p.energy_per_request_j)} "
                f"| {p.energy_source} | {f(p.mean_power_w, 1)} | {p.workers_min if p.workers_min is not None else '-'}"
                f"/{f(p.workers_mean, 2)}/{p.workers_max if p.workers_max is not None else '-'} | {p.scale_events} "
                f"| {f(p.generator_lag_ms, 1)} |")
        lines += ["", "## Cluster status", ""]
        c = self.cluster
        lines += ([f"- Workers: {c.workers}, healthy: {c.healthy}, capacity: {f(c.capacity_rps, 1)} requests/s "
                   "(healthy workers / measured service time)"] if c else ["- not reported"])
        lines += ["", "## SLA compliance", "", "| Objective | Target | Measured | Verdict |", "|---|---|---|---|"]
        lines += [f"| {v.name} | {v.op} {v.target:g} {v.unit} | {f(v.measured, 3)} {v.unit} "
                  f"| {'PASS' if v.ok else 'FAIL'} |" for v in self.sla]
        if self.roundtrip_ms:
            lines += ["", f"Latency floor of this deployment: a no-op Dask task's submit-to-result round trip "
                      f"measured {self.roundtrip_ms[0]:.2f} ms p50 / {self.roundtrip_ms[1]:.2f} ms p99 in this run, "
                      "before any reading or compute."]
        lines += ["", "## Energy", ""]
        for p in self.phases:
            lines.append(f"- {p.name}: {_sci(p.energy_j)} J, source {p.energy_source}"
                         + (" (estimate of compute energy only, lower bound; no watts)" if p.energy_source == "model"
                            else ""))
        if self.neuromorphic:
            n = self.neuromorphic
            lines += ["", f"Neuromorphic estimate per request: event-driven {_sci(n['event_j'])} J vs dense-equivalent "
                      f"{_sci(n['dense_j'])} J, ratio {f(n['ratio'], 2)}x.", "", f"Assumptions: {n['assumptions']}"]
        if self.model:
            lines += ["", "## Model", "", f"- Parameters: {self.model.parameters:,}",
                      f"- MFLOP per request: {self.model.mflop_per_request:.3f}"]
        if self.scale_log and self.scale_log.events:
            lines += ["", "## Scale events", "", "| t (s) | from | to | reason |", "|---|---|---|---|"]
            lines += [f"| {e.t - self.t_start:.2f} | {e.from_} | {e.to} | {e.reason} |" for e in self.scale_log.events]
        return "\n".join(lines) + "\n"

    def metrics(self) -> dict[str, float]:
        """Every figure of the report, flat, for MLflow (None values left out)."""
        out: dict[str, float | None] = {f"load.headline.{k}": v for k, v in vars(self.headline).items()}
        if self.roundtrip_ms:
            out["load.roundtrip_p50_ms"], out["load.roundtrip_p99_ms"] = self.roundtrip_ms
        for p in self.phases:
            key = f"load.phase.{_key(p.name)}."
            out.update({key + k: v for k, v in vars(p).items()
                        if k not in ("name", "energy_source", "latencies_ms")})
        for v in self.sla:
            key = f"sla.{_key(v.name)}."
            out.update({key + "target": v.target, key + "measured": v.measured, key + "ok": float(v.ok)})
        if self.cluster:
            out.update({f"cluster.{k}": v for k, v in vars(self.cluster).items()})
        if self.model:
            out.update({"model.parameters": self.model.parameters, "model.mflop_per_request": self.model.mflop_per_request})
        if self.neuromorphic:
            out.update({f"energy.neuromorphic.{k}": self.neuromorphic[k] for k in ("event_j", "dense_j", "ratio")})
        return {k: float(v) for k, v in out.items() if v is not None}

    def tags(self) -> dict[str, str]:
        tags = {f"energy.source.{_key(p.name)}": p.energy_source for p in self.phases}
        tags["energy.sources"] = ",".join(sorted({p.energy_source for p in self.phases}))
        tags["sla.all_ok"] = str(all(v.ok for v in self.sla))
        return tags

    def plots(self, out_dir: str | Path) -> list[Path]:
        """The report's figures as PNGs under ``out_dir`` (:mod:`pipeline.loadtest.plots`)."""
        from pipeline.loadtest.plots import report_plots

        return report_plots(self, out_dir)


def build_report(records: list[RequestRecord], metas: list[PhaseMeta], slo: SloConfig,
                 scale_log: ScaleLog | None = None, cluster: ClusterStatus | None = None,
                 model: ModelSize | None = None, neuromorphic: dict | None = None) -> LoadReport:
    """The whole report from the raw records and per-phase meta, in phase order."""
    phases = [phase_stats(records, m, scale_log) for m in metas]
    t0 = min(r.arrival_s for r in records)
    t1 = max([r.completion_s for r in records if r.completion_s is not None] or [t0])
    completed = sum(p.completed for p in phases)
    total = sum(p.requests for p in phases)
    rates = [p.throughput_rps for p in phases if p.throughput_rps is not None]
    peak = max(rates) if rates else None
    base = phases[0].throughput_rps
    # Over the run's window only, as the phases' pool figures: the pool before the first
    # arrival (start-up, warm-up) and after the last completion is not the load's cost, and
    # fixed and adaptive pools start sampling at different times.
    ws = (pool_window(scale_log.samples, t0, t1)[1] * (t1 - t0)
          if scale_log and scale_log.samples and t1 > t0 else None)
    head = Headline(peak, completed / (t1 - t0) if t1 > t0 else None, peak / base if peak and base else None,
                    total, completed, 100.0 * completed / total,
                    len(scale_log.events) if scale_log else 0, ws, t1 - t0)
    return LoadReport(phases, head, sla_verdicts(phases, head, slo), t0, scale_log, cluster, model, neuromorphic)


def log_report(tracker, report: LoadReport, out_dir: str | Path) -> list[Path]:
    """Metrics, energy-source tags, the markdown and the PNGs to the run (``pipeline.core.tracking.Tracker``)."""
    tracker.log_metrics(report.metrics())
    tracker.set_tags(report.tags())
    tracker.log_artifact_text(report.markdown(), "report/load_report.md")
    paths = report.plots(out_dir)
    for p in paths:
        tracker.log_artifact(p, "report")
    return paths


def _key(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def _fmt(v, digits: int) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def _sci(v) -> str:
    return "-" if v is None else f"{v:.3g}"
