"""A sweep's accuracy against its cost: for each target metric, every child run's score
against modelled energy per sequence and against inference sequences/s, the Pareto front
marked (no other point is both more accurate and cheaper / faster), as PNGs and a table.

Children are read back from MLflow (``eval.*``, ``energy.modelled_j_per_sequence``,
``inference.seq_per_s``, as ``task=train trainer=bptt`` logs them); runs missing a figure
are left out and counted in the table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TARGETS = (("eval.speed.r2", "speed R²"), ("eval.yaw_rate.r2", "yaw-rate R²"),
           ("eval.obstacle.accuracy", "obstacle accuracy"))
COSTS = (("energy.modelled_j_per_sequence", "modelled energy per sequence (J)", "min"),
         ("inference.seq_per_s", "inference sequences/s (NumPy, 1 process)", "max"))


def pareto_front(score: np.ndarray, cost: np.ndarray, better_cost: str) -> np.ndarray:
    """(n,) bool: the points no other point beats on both (higher score, lower or higher cost)."""
    c = cost if better_cost == "min" else -cost
    front = np.ones(len(score), bool)
    for i in range(len(score)):
        dominated = (score >= score[i]) & (c <= c[i]) & ((score > score[i]) | (c < c[i]))
        front[i] = not dominated.any()
    return front


def sweep_report(children: list[dict], out_dir: Path) -> tuple[list[Path], str]:
    """PNGs (one per target and cost) and a markdown table; ``children``: dicts with ``name``
    and the metrics above."""
    from matplotlib.figure import Figure

    out_dir.mkdir(parents=True, exist_ok=True)
    keys = [t for t, _ in TARGETS] + [c for c, _, _ in COSTS]
    rows = [c for c in children if all(np.isfinite(c.get(k, np.nan)) for k in keys)]
    paths = []
    for t, t_label in TARGETS:
        for c, c_label, better in COSTS:
            if not rows:
                continue
            score = np.array([r[t] for r in rows])
            cost = np.array([r[c] for r in rows])
            front = pareto_front(score, cost, better)
            fig = Figure(figsize=(7, 4.5))
            ax = fig.subplots()
            ax.scatter(cost[~front], score[~front], color="tab:gray", label="dominated")
            order = np.argsort(cost[front])
            ax.plot(cost[front][order], score[front][order], "o-", color="tab:red", label="Pareto front")
            for r, x, y in zip(rows, cost, score, strict=True):
                ax.annotate(r["name"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
            ax.set(xlabel=c_label, ylabel=t_label, title=f"{t_label} against {c_label.split(' (')[0]}")
            if better == "min":
                ax.set_xscale("log")
            ax.legend()
            fig.tight_layout()
            p = out_dir / f"pareto_{t.split('.')[1]}_vs_{c.split('.')[0]}.png"
            fig.savefig(p, dpi=100)
            paths.append(p)
    head = "| run | " + " | ".join(k for k in keys) + " |"
    lines = [head, "|---|" + "---|" * len(keys)]
    for r in rows:
        lines.append(f"| {r['name']} | " + " | ".join(f"{r[k]:.4g}" for k in keys) + " |")
    if len(rows) < len(children):
        lines.append(f"\n{len(children) - len(rows)} child run(s) without every figure left out.")
    return paths, "\n".join(lines) + "\n"


def children_of(tracking_uri: str, parent_run_id: str) -> list[dict]:
    """The finished child runs of ``parent_run_id`` with their metrics."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    parent = client.get_run(parent_run_id)
    runs = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'",
                              max_results=1000)
    return [{"name": _label(r), **r.data.metrics} for r in runs if r.info.status == "FINISHED"]


def _label(run) -> str:
    """``fusion h64`` (the swept model settings), else the run name."""
    p = run.data.params
    if "model.kind" in p:
        return f"{p['model.kind']} h{p.get('model.hidden', '?')}" + (
            f" lif{p['model.lif_units']}" if p["model.kind"] in ("fusion", "lif") else "")
    return run.info.run_name
