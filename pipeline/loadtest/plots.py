"""The load report's figures (matplotlib's object API on the Agg canvas: no pyplot, no
global figure state, safe in any thread)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def report_plots(report, out_dir: str | Path) -> list[Path]:
    """throughput_p99.png, pool_size.png (if sampled), latency_cdf.png under ``out_dir``."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, Agg canvas

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    fig = Figure(figsize=(8, 4))
    ax = fig.subplots()
    x = np.arange(len(report.phases))
    ax.bar(x, [p.throughput_rps or 0 for p in report.phases], color="tab:blue")
    ax.set(xticks=x, xticklabels=[p.name for p in report.phases], ylabel="throughput (requests/s)")
    ax2 = ax.twinx()
    ax2.plot(x, [np.nan if p.p99_ms is None else p.p99_ms for p in report.phases], "o-", color="tab:red")
    ax2.set_ylabel("p99 latency (ms, all requests)", color="tab:red")
    ax.set_title("throughput (bars) and p99 latency (line) per phase")
    paths.append(_save(fig, out_dir / "throughput_p99.png"))
    if report.scale_log and report.scale_log.samples:
        fig = Figure(figsize=(8, 4))
        ax = fig.subplots()
        t, n = zip(*report.scale_log.samples, strict=True)
        ax.step(np.array(t) - report.t_start, n, where="post")
        for e in report.scale_log.events:
            ax.axvline(e.t - report.t_start, color="tab:green" if e.to > e.from_ else "tab:orange", ls="--")
        _phase_marks(ax, report)
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.set(xlabel="time since the first arrival (s)", ylabel="workers",
               title="pool size, scale events (up green, down orange), phase starts (grey)")
        paths.append(_save(fig, out_dir / "pool_size.png"))
    fig = Figure(figsize=(8, 4))
    ax = fig.subplots()
    for p in report.phases:
        if len(p.latencies_ms):
            lat = np.sort(p.latencies_ms)
            ax.step(lat, np.arange(1, len(lat) + 1) / len(lat), where="post", label=p.name)
    ax.set(xscale="log", xlabel="latency (ms)", ylabel="fraction of requests (failed ones at their failure time)",
           title="latency CDF per phase")
    ax.legend()
    paths.append(_save(fig, out_dir / "latency_cdf.png"))
    return paths


def _phase_marks(ax, report) -> None:
    """A grey line and the phase's name at each phase's scheduled start."""
    for name, t in report.phase_starts:
        x = t - report.t_start
        ax.axvline(x, color="0.6", lw=0.8)
        ax.annotate(name, (x, 1.0), xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right",
                    fontsize=7, color="0.4")


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
