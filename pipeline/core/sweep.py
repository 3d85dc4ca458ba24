"""Hydra callbacks.  ``-m`` sweeps: one MLflow parent run per multirun.

``on_multirun_start`` creates the parent run once and writes its id to
``<sweep dir>/mlflow_parent_run_id``; each job reads that file and passes it
explicitly as ``parent_run_id`` (never through ``MLFLOW_RUN_ID``, which overrides
nesting: mlflow#15713).  ``on_multirun_end`` closes the parent with the jobs' outcome.
"""

from __future__ import annotations

import atexit
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

PARENT_FILE = "mlflow_parent_run_id"


def parent_file(sweep_dir: str | Path) -> Path:
    return Path(sweep_dir) / PARENT_FILE


def read_parent_run_id(sweep_dir: str | Path) -> str | None:
    f = parent_file(sweep_dir)
    return f.read_text().strip() if f.is_file() else None


class MlflowParentRun(Callback):
    """Creates the sweep's parent run; jobs nest under it."""

    def __init__(self) -> None:
        self.tracker = None
        self.failed = False
        self.ended = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from pipeline.core.tracking import Tracker

        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        overrides = list(config.hydra.overrides.task)
        self.tracker = Tracker(
            config.tracking.uri, config.tracking.experiment,
            run_name=f"sweep {' '.join(overrides)}"[:200],
            artifact_root=Path(config.tracking.artifact_dir),
            tags={"neuroliquid.sweep": "parent", "neuroliquid.sweep_dir": str(sweep_dir)},
        )
        self.tracker.log_params({"sweep.overrides": " ".join(overrides)})
        parent_file(sweep_dir).write_text(self.tracker.run_id)
        atexit.register(self._end_if_open)

    def _end_if_open(self) -> None:
        """At exit without ``on_multirun_end`` (an interrupted sweep): the parent is KILLED."""
        if self.tracker is not None and not self.ended:
            self.ended = True
            try:
                self.tracker.end("KILLED")
            except Exception as exc:  # at exit: say it, never raise
                print(f"MLflow: could not close the sweep's parent run ({type(exc).__name__})")

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus

        if getattr(job_return, "status", None) == JobStatus.FAILED:
            self.failed = True

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.tracker is not None and not self.ended:
            self._pareto(config)
            self.ended = True
            self.tracker.end("FAILED" if self.failed else "FINISHED")

    def _pareto(self, config: DictConfig) -> None:
        """Accuracy against energy and speed over the children that report both
        (``task=train trainer=bptt`` children do): PNGs and a table on the parent run."""
        from pipeline.core.pareto import children_of, sweep_report

        children = children_of(config.tracking.uri, self.tracker.run_id)
        if not any("energy.modelled_j_per_sequence" in c for c in children):
            return
        paths, table = sweep_report(children, Path(config.hydra.sweep.dir) / "pareto")
        for p in paths:
            self.tracker.log_artifact(p, "pareto")
        self.tracker.log_artifact_text(table, "pareto/pareto.md")
        print(f"sweep: {len(paths)} Pareto plots and pareto/pareto.md on the parent run {self.tracker.run_id}")
