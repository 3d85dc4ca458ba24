"""Figures of a batch run (``task=run``): aggregation, MLflow logging, terminal summary.

A *sequence* is one recording over 10 model steps (one second at 10 Hz), the unit the
kernel benchmarks use, so pipeline and kernel throughputs compare directly.  The amount
processed is therefore logged as ``recording_seconds`` (valid steps / 10: seconds of
recording, not a count of recordings); ``throughput_seq_per_s`` is recording-seconds per
wall second.

Time series (MLflow metric histories): ``workers`` and ``workers_t_s`` share their step,
the sample index (0, 1, 2, ...), and ``workers_t_s`` holds each sample's time in seconds
since the run clock started; ``region_finished_s`` is indexed by completion order.

Energy: ``energy.modelled_j_per_sequence`` (and ``energy.modelled_j``) is the model of compute energy
(:mod:`pipeline.core.energy`, op counts x per-op energies of ``conf/energy``), tagged
``energy.source=model`` like a load run's modelled phases; no watts come from it.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kernels.params import OpCounts
from pipeline.core.baselines import BaselineParts
from pipeline.core.metrics import EvalParts

SEQ_STEPS = 10


@dataclass
class RunStats:
    n_regions: int
    n_regions_total: int
    resumed_done: int = 0
    t_start: float = 0.0
    wall_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    finished_s: list[float] = field(default_factory=list)
    read_s: float = 0.0
    compute_s: float = 0.0
    forward_s: float = 0.0  # the network's forward alone, inside compute_s
    write_s: float = 0.0
    valid_steps: int = 0
    bytes_read: int = 0
    ops: OpCounts = field(default_factory=OpCounts)
    spikes: float = 0.0
    quarantined: dict[int, int] = field(default_factory=dict)  # recording -> bad blocks
    problems: list[str] = field(default_factory=list)
    restarted: int = 0
    stale: dict[str, int] = field(default_factory=lambda: {"camera": 0, "lidar": 0, "imu": 0})
    keys: set[str] = field(default_factory=set)
    worker_samples: list[tuple[float, int]] = field(default_factory=list)
    scale_events: list = field(default_factory=list)
    evaluation: EvalParts = field(default_factory=EvalParts)
    baseline: BaselineParts = field(default_factory=BaselineParts)

    def add_scores(self, r: dict) -> None:
        """Merge a region's evaluation (and baseline) parts."""
        if "eval" in r:
            self.evaluation += EvalParts.from_dict(r["eval"])
        if "baseline" in r:
            self.baseline.add(r["baseline"])

    @property
    def sequences(self) -> float:
        return self.valid_steps / SEQ_STEPS

    def add(self, completed, t_start: float) -> None:
        """Count one finished region, once per task key (a retried task reports once)."""
        if completed.key in self.keys:
            return
        self.keys.add(completed.key)
        r = completed.result
        # From the region's start on its worker to its result at the driver (queueing left out).
        self.latencies_s.append(completed.received_at - r["started_at"] if "started_at" in r
                                else completed.finished - completed.ready)
        self.finished_s.append(completed.finished - t_start)
        self.read_s += r["read_s"]
        self.compute_s += r["compute_s"]
        self.forward_s += r["forward_s"]
        self.write_s += r["write_s"]
        self.valid_steps += r["valid_steps"]
        self.bytes_read += r["bytes_read"]
        self.ops = self.ops + OpCounts(**r["ops"])
        self.spikes += r["spikes"]
        self.restarted += r["restarted"]
        for m, n in r.get("stale", {}).items():
            self.stale[m] = self.stale.get(m, 0) + int(n)
        for rec in r["quarantined"]:
            self.quarantined[rec] = self.quarantined.get(rec, 0) + 1
        self.problems.extend(r["problems"][: max(0, 20 - len(self.problems))])
        self.add_scores(r)


def summarize(stats: RunStats, net) -> dict:
    lat = np.asarray(stats.latencies_s or [np.nan]) * 1e3
    wall = max(stats.wall_s, 1e-9)
    busy = stats.read_s + stats.compute_s + stats.write_s
    n = max(len(stats.latencies_s), 1)
    workers = [w for _, w in stats.worker_samples] or [1]
    return {
        "regions_executed": len(stats.keys), "regions_total": stats.n_regions_total,
        "regions_already_done": stats.resumed_done, "wall_s": stats.wall_s,
        "recording_seconds": stats.sequences, "throughput_seq_per_s": stats.sequences / wall,
        "throughput_mb_per_s": stats.bytes_read / 1e6 / wall,
        # Nearest rank (the ceil(p/100 n)-th smallest), as the load report: never interpolated.
        "batch_latency_p50_ms": float(np.percentile(lat, 50, method="inverted_cdf")),
        "batch_latency_p95_ms": float(np.percentile(lat, 95, method="inverted_cdf")),
        "batch_latency_p99_ms": float(np.percentile(lat, 99, method="inverted_cdf")),
        "time_read_s": stats.read_s, "time_compute_s": stats.compute_s, "time_write_s": stats.write_s,
        "time_forward_s": stats.forward_s,
        # Worker time not spent reading, computing or writing, per region: scheduling,
        # round trips, start-up and chain ends.
        "overhead_per_region_ms": max(0.0, float(np.mean(workers)) * wall - busy) / n * 1e3,
        "workers_min": min(workers), "workers_max": max(workers),
        "spikes_per_sequence": stats.spikes / max(stats.sequences, 1e-9),
        "quarantined_blocks": int(sum(stats.quarantined.values())),
        "quarantined_recordings": len(stats.quarantined), "restarted_rows": stats.restarted,
        **{f"stale_steps_{m}": n for m, n in stats.stale.items()},
        **{f"ops_{k}": v for k, v in stats.ops._asdict().items()},
        "model_params": net.n_params, "model_mflop_per_sequence": net.mflop_per_sequence(SEQ_STEPS),
        "scale_events": len(stats.scale_events),
    }


def energy_figures(stats: RunStats, energy_cfg) -> tuple[dict, dict]:
    """Modelled compute energy of the run (metrics) and its source (tags)."""
    from pipeline.core.energy import ModelledEnergy

    j = ModelledEnergy(energy_cfg).joules(stats.ops)
    per_seq = j / stats.sequences if stats.sequences > 0 else 0.0
    return ({"energy.modelled_j": j, "energy.modelled_j_per_sequence": per_seq},
            {"energy.source": "model"})


def progress_plot(stats: RunStats, path: Path) -> Path:
    """``progress.png``: regions finished and workers over the run clock (seconds)."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, Agg canvas

    fig = Figure(figsize=(7, 3.2))
    ax = fig.add_subplot()
    done = sorted(stats.finished_s)
    ax.step([0.0, *done], range(len(done) + 1), where="post", color="tab:blue", label="regions finished")
    ax.set_xlabel("seconds since the first region was submitted")
    ax.set_ylabel("regions finished", color="tab:blue")
    if stats.worker_samples:
        t0 = stats.t_start
        ax2 = ax.twinx()
        ax2.step([t - t0 for t, _ in stats.worker_samples], [n for _, n in stats.worker_samples], where="post",
                 color="tab:orange", label="workers")
        ax2.set_ylabel("workers", color="tab:orange")
        ax2.set_ylim(0, max(n for _, n in stats.worker_samples) + 1)
    ax.set_title(f"batch run: {len(done)} of {stats.n_regions} regions to run "
                 f"({stats.n_regions_total} in all)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def log_run(tracker, cfg, stats: RunStats, net, weights_path: Path, out_path: Path, evaluation) -> dict:
    """Metrics in batches, worker count over time as a step series, artifacts;
    ``evaluation``: a :class:`pipeline.core.evaluation.Evaluation`.

    If the MLflow store failed (its database deleted or locked, during the run or after the
    compute finished: ``tracker.lost``) the figures are kept in ``<output store>.summary.json``
    beside the outputs, the path is printed and returned as ``detail["local_summary"]``."""
    from omegaconf import OmegaConf

    summary = summarize(stats, net)
    energy, energy_tags = energy_figures(stats, cfg.energy)
    summary |= energy
    detail = {**summary, "sequences": summary["recording_seconds"],  # old name, for scripts: same figure
              "output_store": str(out_path), "weights": str(weights_path),
              "quarantined_by_recording": {str(k): v for k, v in sorted(stats.quarantined.items())},
              "problems": stats.problems, "energy_source": energy_tags["energy.source"],
              "scale_events": [dataclasses.asdict(e) for e in stats.scale_events],
              "evaluation": dataclasses.asdict(evaluation), "evaluation_table": evaluation.table()}
    rows = [("workers", float(n), i) for i, (_, n) in enumerate(stats.worker_samples)]
    rows += [("workers_t_s", float(t), i) for i, (t, _) in enumerate(stats.worker_samples)]
    rows += [("region_finished_s", t, i) for i, t in enumerate(sorted(stats.finished_s))]
    tracker.log_metrics({k: v for k, v in summary.items() if isinstance(v, int | float)} | evaluation.metrics())
    tracker.set_tags(evaluation.tags() | energy_tags)
    tracker.log_series(rows)
    tracker.log_artifact_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)), "config.yaml")
    tracker.log_artifact_text(json.dumps(detail, indent=2, default=str), "summary.json")
    tracker.log_artifact_text(summary_table(summary) + "\n\n" + evaluation.table() + "\n", "summary.md")
    with tempfile.TemporaryDirectory() as tmp:
        tracker.log_artifact(progress_plot(stats, Path(tmp) / "progress.png"))
    if tracker.lost:  # the store failed (during the run or just now): keep the figures here
        local = Path(f"{out_path}.summary.json")
        detail |= {"local_summary": str(local), "tracking_error": tracker.lost}
        local.write_text(json.dumps(detail, indent=2, default=str))
        print(f"MLflow: the run's figures are in {local} (the store {cfg.tracking.uri} failed: {tracker.lost})")
    return detail


def summary_table(s: dict) -> str:
    rows = [
        ("regions executed", f"{s['regions_executed']} of {s['regions_total']}"
                             f" ({s['regions_already_done']} already done)"),
        ("recording-seconds processed", f"{s['recording_seconds']:.0f} (valid steps / 10 Hz)"),
        ("wall time", f"{s['wall_s']:.2f} s"),
        ("throughput", f"{s['throughput_seq_per_s']:.0f} seq/s, {s['throughput_mb_per_s']:.1f} MB/s read"),
        ("micro-batch latency p50/p95/p99", f"{s['batch_latency_p50_ms']:.0f} / {s['batch_latency_p95_ms']:.0f}"
                                            f" / {s['batch_latency_p99_ms']:.0f} ms"),
        ("time in read / compute / write", f"{s['time_read_s']:.2f} / {s['time_compute_s']:.2f} / "
                                           f"{s['time_write_s']:.2f} s (summed over workers)"),
        ("idle worker time per region", f"{s['overhead_per_region_ms']:.1f} ms"),
        ("workers (min-max)", f"{s['workers_min']}-{s['workers_max']}"),
        ("quarantined blocks", f"{s['quarantined_blocks']} in {s['quarantined_recordings']} recordings"),
        ("stale steps camera / LIDAR / IMU", f"{s['stale_steps_camera']} / {s['stale_steps_lidar']} / "
                                             f"{s['stale_steps_imu']} (older than data.max_age)"),
        ("model", f"{s['model_params']:,} parameters, {s['model_mflop_per_sequence']:.2f} MFLOP/sequence"),
        ("energy per sequence (modelled)", f"{s['energy.modelled_j_per_sequence']:.3g} J (compute only, op counts x "
                                           "conf/energy; a model, not a measurement)"),
    ]
    w = max(len(k) for k, _ in rows)
    return "\n".join(["| figure | value |", "|---|---|"] + [f"| {k.ljust(w)} | {v} |" for k, v in rows])


def print_summary(summary: dict, tracker, uri: str) -> None:
    print(summary_table(summary))
    print()
    print(summary["evaluation_table"])
    print(f"outputs: {summary['output_store']}")
    if "local_summary" in summary:
        print(f"MLflow: run {tracker.run_id} incomplete in {uri}; figures in {summary['local_summary']}")
        return
    print(f"MLflow: run {tracker.run_id} in experiment {tracker.experiment_id} ({uri}); `make ui`, then "
          f"{ui_link(tracker.experiment_id, tracker.run_id)}")


def ui_link(experiment_id: str, run_id: str, base: str = "http://127.0.0.1:5000") -> str:
    """The run's page in the MLflow UI (`make ui`), in its model-training view: MLflow 3.17's
    UI picks the view from ``workflowType`` (or the browser's last choice), not from the
    experiment's ``mlflow.experimentKind`` tag, and otherwise opens in the GenAI view."""
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"
