"""``conf/tracking`` and ``conf/energy``: what a run records -- the MLflow store, and how energy is measured or modelled."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from omegaconf import MISSING

from pipeline.config.validation import require

# Placeholders of a ``tracking.run_name`` template (pipeline.core.experiment.run_name).
RUN_NAME_FIELDS = ("task", "model", "hidden", "backend", "data", "experiment", "time", "hex")


@dataclass
class TrackingConfig:
    """MLflow: SQLite store (absolute path) and artifacts under mlruns/."""

    uri: str = MISSING
    artifact_dir: str = MISSING
    experiment: str = "neuroliquid"
    run_name: str | None = None
    parent_run_id: str | None = None

    def validate(self) -> None:
        require(self.uri.startswith(("sqlite:///", "http://", "https://", "postgresql", "mysql")),
                 "tracking.uri", "must be a database or server URI (MLflow 3 refuses plain file stores)", self.uri)
        self.artifact_dir = str(Path(self.artifact_dir).expanduser().resolve())
        require(bool(self.experiment), "tracking.experiment", "must not be empty", self.experiment)
        if self.run_name:
            import string

            try:
                fields = {f for _, f, _, _ in string.Formatter().parse(self.run_name) if f is not None}
            except ValueError as exc:
                fields = {f"<{exc}>"}
            require(fields <= set(RUN_NAME_FIELDS), "tracking.run_name",
                    f"a name, or a template of {{{'}, {'.join(RUN_NAME_FIELDS)}}}", self.run_name)


@dataclass
class EnergyConfig:
    """Per-operation energies for the modelled estimate, with their sources, and where
    the measured counters are.  The model prices arithmetic only (no memory traffic, idle
    or host power) at 45 nm per-op costs (a newer node costs less per op), so a modelled
    figure is an estimate, not a bound either way; no watts come from it."""

    pj_per_mac: float = 4.6  # 32-bit float multiply 3.7 pJ + add 0.9 pJ
    pj_per_acc: float = 0.9  # one 32-bit float add per synaptic event
    pj_per_nonlin: float = 0.0
    mac_source: str = ("Horowitz, 'Computing's energy problem', ISSCC 2014, 45 nm: "
                       "fp32 mult 3.7 pJ + fp32 add 0.9 pJ")
    acc_source: str = "Horowitz, ISSCC 2014, 45 nm: fp32 add 0.9 pJ"
    nonlin_source: str = ("not priced: the cited table has no figure for exp/tanh/erf; "
                          "counted but left at 0 pJ (not priced)")
    rapl_root: str = "/sys/class/powercap"
    use_nvml: bool = True
    use_rapl: bool = True

    def validate(self, prefix: str = "energy") -> None:
        for key in ("pj_per_mac", "pj_per_acc", "pj_per_nonlin"):
            v = getattr(self, key)
            require(math.isfinite(v) and v >= 0, f"{prefix}.{key}", "must be a finite energy >= 0 pJ", v)
        for key in ("mac_source", "acc_source", "nonlin_source"):
            require(bool(str(getattr(self, key)).strip()), f"{prefix}.{key}",
                     "must cite where the per-operation energy comes from", getattr(self, key))
