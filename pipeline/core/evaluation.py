"""What a run reports about its predictions: the task metrics on the evaluation split,
beside the baselines, with units, the split and whether the weights were trained.

MLflow metric names: ``eval.<target>.<metric>`` and ``baseline.<mean|raw_linear>.<target>.<metric>``
with targets ``speed`` (m/s), ``yaw_rate`` (rad/s) and ``obstacle`` (accuracy, F1, ROC-AUC
of the obstacle score); see docs/training.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

ROWS = (("speed", "m/s", ("r2", "rmse", "mae")), ("yaw_rate", "rad/s", ("r2", "rmse", "mae")),
        ("obstacle", "", ("accuracy", "f1", "roc_auc")))


@dataclass
class Evaluation:
    split: str  # the split scored: test | validation | train | all
    recordings: int  # recordings in it
    trained: bool  # weights from a trainer (kernels.weights.network_info), not a seeded init
    model: dict[str, float] = field(default_factory=dict)  # "speed.r2" -> value
    baselines: dict[str, float] = field(default_factory=dict)  # "mean.speed.r2" -> value
    skipped: str = ""  # why there is no evaluation (a store without targets)

    def metrics(self) -> dict[str, float]:
        """Finite figures for MLflow."""
        out = {f"eval.{k}": v for k, v in self.model.items()}
        out.update({f"baseline.{k}": v for k, v in self.baselines.items()})
        return {k: float(v) for k, v in out.items() if isinstance(v, int | float) and math.isfinite(v)}

    def tags(self) -> dict[str, str]:
        tags = {"model.trained": str(self.trained).lower(), "eval.split": self.split}
        if self.skipped:
            tags["eval.skipped"] = self.skipped
        return tags

    def table(self) -> str:
        if self.skipped:
            return f"evaluation skipped: {self.skipped}"
        head = (f"evaluation on the {self.split} split ({self.recordings} recordings, valid steps); "
                + ("trained weights" if self.trained else
                   "untrained (seeded) weights: the model column is a random network's"))
        have = [b for b in ("mean", "raw_linear") if any(k.startswith(b + ".") for k in self.baselines)]
        lines = [head, "", "| target | metric | model | " + " | ".join(have) + " |",
                 "|---|---|---|" + "---|" * len(have)]
        for target, unit, names in ROWS:
            for m in names:
                label = f"{target} ({unit})" if unit and m != "r2" else target
                vals = [self.model.get(f"{target}.{m}")] + [self.baselines.get(f"{b}.{target}.{m}") for b in have]
                lines.append(f"| {label} | {m} | " + " | ".join(_fmt(v) for v in vals) + " |")
        return "\n".join(lines)


def _fmt(v) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3f}"
