"""The load-test report in the seed's shape, computed from raw per-request records.

This module is over 300 lines because the report is one dataclass with its definitions, its computation
from the raw records and its three renderings (markdown, MLflow metrics, tags) side by
side, so a figure and its definition are changed together (the plots are apart).

Definitions (times in s on the run's one monotonic clock, latencies in ms):

    latency_i    = completion_i - scheduled arrival_i           (no coordinated omission)
                   a failed request's completion is when it was declared failed (a timed-out
                   one: at its deadline), so failures count in the percentiles
    phase window = [first scheduled arrival, last completion] of the phase's requests
    throughput   = completed / window length                    requests/s
    pXX          = nearest rank: the ceil(XX/100 * n)-th smallest latency over ALL the
                   phase's requests, failed ones included (see latency_i)
    release lag  = actual release - scheduled arrival, p50/p99/max (nearest rank)
    backlog      = the phase's requests not finished at the next phase's scheduled start
    success      = 100 * completed / requests                   (failed, quarantined, timed out count)
    energy/req   = phase energy / completed requests            J (source: nvml, rapl or model)
    workers      = min, time-weighted mean, max of the pool over the window
    worker-s     = integral of the pool size over the run's window (first arrival to last
                   completion): the run's cost figure
    scalability  = best throughput of a rate-limited phase / first (baseline) phase throughput:
                   like with like (an unlimited burst drains at whatever rate the pool
                   manages and is left out; None when the first phase is unlimited)

SLA verdicts: worst phase p99 <= slo.p99_ms, best phase throughput >= slo.throughput_rps
(each row names the phase its figure comes from), overall success >= slo.availability_pct.
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
    release_s: float | None = None  # when the generator released it to the batcher (run clock)


@dataclass
class PhaseMeta:
    name: str
    offered_rps: float | None = None  # None: unlimited
    energy: PhaseEnergy | None = None
    generator_lag_s: float = 0.0  # worst (actual release - scheduled arrival), when records lack release_s
    scheduled_start_s: float | None = None  # the schedule's phase start (run clock)
    scheduled_end_s: float | None = None  # the next phase's scheduled start


@dataclass
class ClusterStatus:
    workers: int
    healthy: int  # workers that answered a probe at the end of the run
    capacity_rps: float | None = None  # healthy workers / measured service s per request
    deadline_misses: int = 0
    retired: list = field(default_factory=list)  # (t, worker, reason, outcome)
    workers_lost: int = 0  # pool drops no scale-down event explains (a killed or dead worker)


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
    release_lag_p50_ms: float | None = None
    release_lag_p99_ms: float | None = None
    backlog_carried: int | None = None  # requests not finished at the next phase's scheduled start
    finished_late_s: float | None = None  # last completion after the scheduled end (s), if any
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
    name: str  # stable: it names the MLflow keys
    op: str  # "<=" | ">="
    target: float
    measured: float | None
    unit: str
    ok: bool
    phase: str = ""  # the phase the measured figure comes from


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
    # Over ALL requests: a failed one counts at the time it was declared failed.
    lat = np.array([(r.completion_s - r.arrival_s) * 1e3 for r in rs if r.completion_s is not None], dtype=float)
    if (lat < 0).any():
        raise ValueError(f"phase {meta.name!r}: a request completed before its scheduled arrival")
    t0 = min(r.arrival_s for r in rs)
    t1 = max([r.completion_s for r in rs if r.completion_s is not None] or [t0])
    dur = t1 - t0
    e = meta.energy
    if all(r.release_s is not None for r in rs):
        lag = np.array([(r.release_s - r.arrival_s) * 1e3 for r in rs])
        lag_p50, lag_p99, lag_max = nearest_rank(lag, 50), nearest_rank(lag, 99), float(lag.max())
    else:
        lag_p50 = lag_p99 = None
        lag_max = meta.generator_lag_s * 1e3
    backlog = late = None
    if meta.scheduled_end_s is not None:
        end = meta.scheduled_end_s
        backlog = sum(r.completion_s is None or r.completion_s > end for r in rs)
        late = max(t1 - end, 0.0)
    wmin = wmean = wmax = None
    if scale_log is not None and scale_log.samples and dur > 0:
        wmin, wmean, wmax = pool_window(scale_log.samples, t0, t1)
    return PhaseStats(
        meta.name, meta.offered_rps, len(rs), len(ok), len(rs) - len(ok), dur,
        len(ok) / dur if dur > 0 else None, nearest_rank(lat, 50), nearest_rank(lat, 95), nearest_rank(lat, 99),
        float(lat.max()) if len(lat) else None, 100.0 * len(ok) / len(rs),
        e.joules if e else None, e.joules / len(ok) if e and ok else None, e.source if e else "none",
        e.mean_power_w if e and e.source != "model" else None, wmin, wmean, wmax,
        len(scale_log.between(t0, t1)) if scale_log is not None else 0, lag_max, lag_p50, lag_p99, backlog, late,
        lat)


def sla_verdicts(phases: list[PhaseStats], headline: Headline, slo: SloConfig) -> list[SlaVerdict]:
    slo.validate()
    p99s = [p.p99_ms for p in phases]
    worst = None if any(v is None for v in p99s) else max(p99s)
    worst_phase = "" if worst is None else phases[p99s.index(worst)].name
    rates = [p.throughput_rps or 0.0 for p in phases]
    best_phase = phases[rates.index(max(rates))].name if phases and headline.peak_rps is not None else ""
    # The MLflow key of the throughput row keeps its old name ("peak phase"); the row's
    # label names the phase the figure comes from.
    out = [("p99 latency, worst phase", "<=", slo.p99_ms, worst, "ms", worst_phase),
           ("throughput, peak phase", ">=", slo.throughput_rps, headline.peak_rps, "requests/s", best_phase),
           ("availability", ">=", slo.availability_pct, headline.availability_pct, "%", "all phases")]
    return [SlaVerdict(n, op, t, m, u, m is not None and (m <= t if op == "<=" else m >= t), ph)
            for n, op, t, m, u, ph in out]


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
    phase_starts: list = field(default_factory=list)  # (name, scheduled start) where the schedule gave one

    def markdown(self) -> str:
        h, f = self.headline, _fmt
        measured_power = any(p.mean_power_w is not None for p in self.phases)
        lines = ["# Load test report", "", "## Headline", "",
                 f"- Best phase throughput: {f(h.peak_rps, 1)} requests/s"
                 f"{f' ({self._best_phase()})' if self._best_phase() else ''}",
                 f"- Average throughput: {f(h.average_rps, 1)} requests/s (all completed / whole run)",
                 f"- Scalability factor: {f(h.scalability, 2)}x (best rate-limited phase's throughput / the "
                 "first phase's; unlimited bursts left out)",
                 f"- Total requests: {h.total_requests} ({h.total_completed} completed, "
                 f"availability {f(h.availability_pct, 3)} %) in {f(h.duration_s, 1)} s",
                 f"- Autoscaling events: {h.scale_events}; worker-seconds: {f(h.worker_seconds, 1)}", "",
                 "## Load phases", "",
                 "Latency percentiles are nearest-rank over all of a phase's requests, failed ones counted "
                 "when they were declared failed (a timed-out request at its deadline). Phases follow the "
                 "schedule (open loop): backlog is the phase's requests still unfinished at the next phase's "
                 "scheduled start.", "",
                 "| Phase | Offered (req/s) | Requests | Completed | Failed | Throughput (req/s) | p50 (ms) | p95 (ms) "
                 "| p99 (ms) | max (ms) | Success (%) | Energy/request (J) | Source |"
                 + (" Mean power (W) |" if measured_power else "")
                 + " Workers min/mean/max | Scale events | Release lag p50/p99/max (ms) | Backlog carried |",
                 "|" + "---|" * (17 if measured_power else 16)]
        for p in self.phases:
            lines.append(
                f"| {p.name} | {'unlimited' if p.offered_rps is None else f(p.offered_rps, 0)} | {p.requests} "
                f"| {p.completed} | {p.failed} | {f(p.throughput_rps, 1)} | {f(p.p50_ms, 2)} | {f(p.p95_ms, 2)} "
                f"| {f(p.p99_ms, 2)} | {f(p.max_ms, 2)} | {f(p.success_pct, 2)} | {_sci(p.energy_per_request_j)} "
                f"| {p.energy_source} |" + (f" {f(p.mean_power_w, 1)} |" if measured_power else "")
                + f" {p.workers_min if p.workers_min is not None else '-'}"
                f"/{f(p.workers_mean, 2)}/{p.workers_max if p.workers_max is not None else '-'} | {p.scale_events} "
                f"| {f(p.release_lag_p50_ms, 1)}/{f(p.release_lag_p99_ms, 1)}/{f(p.generator_lag_ms, 1)} "
                f"| {'-' if p.backlog_carried is None else p.backlog_carried}"
                + (f" (drained {p.finished_late_s:.2f} s later)" if p.backlog_carried and p.finished_late_s else "")
                + " |")
        lines += ["", "## Cluster status", ""]
        c = self.cluster
        if c:
            lines += [f"- Workers at the end: {c.workers}, of which healthy (answered a probe): {c.healthy}; "
                      f"capacity: {f(c.capacity_rps, 1)} requests/s (healthy workers / measured service time)",
                      f"- Micro-batches past their deadline: {c.deadline_misses}; workers retired: {len(c.retired)}; "
                      f"workers lost (the pool shrank with no scale-down event): {c.workers_lost}"]
            lines += [f"  - t={t - self.t_start:.2f} s {w}: {why}; {outcome}" for t, w, why, outcome in c.retired]
        else:
            lines += ["- not reported"]
        lines += ["", "## SLA compliance", "", "| Objective | Target | Measured | Verdict |", "|---|---|---|---|"]
        for v in self.sla:
            verdict = "PASS" if v.ok else "FAIL"
            if v.name.startswith("p99") and self.roundtrip_ms:
                verdict += (f" (floor on this cluster: a no-op Dask task's round trip is {self.roundtrip_ms[0]:.2f} ms "
                            f"p50 / {self.roundtrip_ms[1]:.2f} ms p99 before any reading or compute)")
            label = f"{v.name} ({v.phase})" if v.phase else v.name
            lines.append(f"| {label} | {v.op} {v.target:g} {v.unit} | {f(v.measured, 3)} {v.unit} | {verdict} |")
        if self.roundtrip_ms:
            lines += ["", f"Latency floor of this deployment: a no-op Dask task's submit-to-result round trip "
                      f"measured {self.roundtrip_ms[0]:.2f} ms p50 / {self.roundtrip_ms[1]:.2f} ms p99 in this run, "
                      "before any reading or compute."]
        lines += ["", "## Energy", ""]
        for p in self.phases:
            lines.append(f"- {p.name}: {_sci(p.energy_j)} J, source {p.energy_source}"
                         + (" (modelled arithmetic energy at 45 nm per-op costs: excludes memory traffic, idle "
                            "and host power, so not a bound on any real device; no watts)"
                            if p.energy_source == "model" else ""))
        if self.neuromorphic:
            n = self.neuromorphic
            lines += ["", f"Neuromorphic estimate per completed request: event-driven {_sci(n['event_j'])} J vs "
                      f"dense-equivalent {_sci(n['dense_j'])} J, ratio {f(n['ratio'], 2)}x.", "",
                      f"Assumptions: {n['assumptions']}"]
        if self.model:
            lines += ["", "## Model", "", f"- Parameters: {self.model.parameters:,}",
                      f"- MFLOP per request: {self.model.mflop_per_request:.3f}"]
        if self.scale_log and self.scale_log.events:
            lines += ["", "## Scale events", "", "| t (s) | from | to | reason |", "|---|---|---|---|"]
            lines += [f"| {e.t - self.t_start:.2f} | {e.from_} | {e.to} | {e.reason} |" for e in self.scale_log.events]
        return "\n".join(lines) + "\n"

    def _best_phase(self) -> str:
        v = next((v for v in self.sla if v.name.startswith("throughput")), None)
        return v.phase if v else ""

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
            out.update({f"cluster.{k}": v for k, v in vars(self.cluster).items() if k != "retired"})
            out["cluster.workers_retired"] = len(self.cluster.retired)
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
    base = phases[0].throughput_rps if phases[0].offered_rps is not None else None
    limited = [p.throughput_rps for p in phases if p.offered_rps is not None and p.throughput_rps is not None]
    best_limited = max(limited) if limited else None
    # Over the run's window only, as the phases' pool figures: the pool before the first
    # arrival (start-up, warm-up) and after the last completion is not the load's cost, and
    # fixed and adaptive pools start sampling at different times.
    ws = (pool_window(scale_log.samples, t0, t1)[1] * (t1 - t0)
          if scale_log and scale_log.samples and t1 > t0 else None)
    head = Headline(peak, completed / (t1 - t0) if t1 > t0 else None, best_limited / base if best_limited and base else None,
                    total, completed, 100.0 * completed / total,
                    len(scale_log.events) if scale_log else 0, ws, t1 - t0)
    starts = [(m.name, m.scheduled_start_s) for m in metas if m.scheduled_start_s is not None]
    return LoadReport(phases, head, sla_verdicts(phases, head, slo), t0, scale_log, cluster, model, neuromorphic,
                      phase_starts=starts)


def workers_lost(scale_log: ScaleLog, retired_at: list[float] = (), slack_s: float = 2.0) -> int:
    """Workers the pool lost that no scale-down event (within ``slack_s``) and no
    retirement explains: each drop between consecutive samples counts its size."""
    downs = [e.t for e in scale_log.events if e.to < e.from_] + list(retired_at)
    lost = 0
    for (_, a), (t, b) in zip(scale_log.samples, scale_log.samples[1:], strict=False):
        if b < a and not any(abs(t - d) <= slack_s or 0 <= t - d <= slack_s * 5 for d in downs):
            lost += a - b
    return lost


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
