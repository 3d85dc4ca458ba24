"""Task metrics from mergeable parts, computed where the predictions are (the workers).

Regression (speed m/s, yaw rate rad/s), over the valid steps scored: each region returns
``n, sum y, sum y^2, sum yhat, sum (y - yhat)^2, sum |y - yhat|`` in float64; parts add in
any order, and

    R^2  = 1 - SSE / (sum y^2 - (sum y)^2 / n)        (as sklearn.metrics.r2_score)
    RMSE = sqrt(SSE / n)      MAE = sum|y - yhat| / n  (in the target's unit)

Classification (obstacle ahead, 0/1, from the readout's logit or score: class 1 where it
is > 0): each region returns its (score, label) pairs, small enough to gather, so that
ROC-AUC is exact (Mann-Whitney U with tied scores at their average rank, as
sklearn.metrics.roc_auc_score); accuracy and F1 of the positive class beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

REGRESSION_TARGETS = (("speed", 0, "m s-1"), ("yaw_rate", 1, "rad s-1"))
CLASSIFICATION_TARGET = ("obstacle", 2)


@dataclass
class RegressionSums:
    n: float = 0.0
    sy: float = 0.0
    syy: float = 0.0
    syhat: float = 0.0
    sse: float = 0.0
    sae: float = 0.0

    @classmethod
    def of(cls, y: np.ndarray, yhat: np.ndarray) -> RegressionSums:
        y, yhat = np.asarray(y, np.float64).ravel(), np.asarray(yhat, np.float64).ravel()
        e = y - yhat
        return cls(float(y.size), float(y.sum()), float(y @ y), float(yhat.sum()), float(e @ e),
                   float(np.abs(e).sum()))

    def __add__(self, o: RegressionSums) -> RegressionSums:
        return RegressionSums(*(a + b for a, b in zip(self.as_tuple(), o.as_tuple(), strict=True)))

    def as_tuple(self) -> tuple[float, ...]:
        return self.n, self.sy, self.syy, self.syhat, self.sse, self.sae

    def metrics(self) -> dict[str, float]:
        """r2, rmse, mae (NaN where undefined: no samples, or constant y for r2)."""
        if self.n == 0:
            return {"r2": math.nan, "rmse": math.nan, "mae": math.nan}
        sst = self.syy - self.sy * self.sy / self.n
        r2 = 1.0 - self.sse / sst if sst > 0 else math.nan
        return {"r2": r2, "rmse": math.sqrt(max(self.sse, 0.0) / self.n), "mae": self.sae / self.n}


@dataclass
class ClassificationParts:
    scores: list = field(default_factory=list)  # arrays of float32 scores (logits)
    labels: list = field(default_factory=list)  # arrays of bool labels

    def add(self, scores: np.ndarray, labels: np.ndarray) -> None:
        self.scores.append(np.asarray(scores, np.float32).ravel())
        self.labels.append(np.asarray(labels).ravel() > 0.5)

    def __add__(self, o: ClassificationParts) -> ClassificationParts:
        return ClassificationParts(self.scores + o.scores, self.labels + o.labels)

    def __iadd__(self, o: ClassificationParts) -> ClassificationParts:
        """In place: a run merging thousands of regions does not copy the lists each time."""
        self.scores += o.scores
        self.labels += o.labels
        return self

    def metrics(self) -> dict[str, float]:
        s = np.concatenate(self.scores) if self.scores else np.zeros(0, np.float32)
        y = np.concatenate(self.labels) if self.labels else np.zeros(0, bool)
        if not y.size:
            return {"accuracy": math.nan, "f1": math.nan, "roc_auc": math.nan}
        pred = s > 0
        tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        return {"accuracy": float((pred == y).mean()), "f1": f1, "roc_auc": roc_auc(s, y)}


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Exact ROC-AUC: the probability that a positive outscores a negative, ties counted
    half (NaN with only one class present)."""
    y = np.asarray(labels, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return math.nan
    s = np.asarray(scores, np.float64)
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    sorted_s = s[order]
    # average ranks over runs of equal scores
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    avg = (starts + ends - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


@dataclass
class EvalParts:
    """One region's (or a merged set of regions') evaluation parts."""

    regression: dict[str, RegressionSums] = field(default_factory=dict)
    classification: ClassificationParts = field(default_factory=ClassificationParts)

    @classmethod
    def of(cls, yhat: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> EvalParts:
        """Parts for ``yhat (B, T, 3)`` against ``targets (B, T, 3)`` on the steps ``mask (B, T)``."""
        out = cls()
        for name, j, _ in REGRESSION_TARGETS:
            out.regression[name] = RegressionSums.of(targets[..., j][mask], yhat[..., j][mask])
        _, j = CLASSIFICATION_TARGET
        out.classification.add(yhat[..., j][mask], targets[..., j][mask])
        return out

    def __add__(self, o: EvalParts) -> EvalParts:
        names = set(self.regression) | set(o.regression)
        reg = {n: self.regression.get(n, RegressionSums()) + o.regression.get(n, RegressionSums()) for n in names}
        return EvalParts(reg, self.classification + o.classification)

    def __iadd__(self, o: EvalParts) -> EvalParts:
        for n, r in o.regression.items():
            self.regression[n] = self.regression.get(n, RegressionSums()) + r
        self.classification += o.classification
        return self

    def to_dict(self) -> dict:
        """Plain types and small arrays, for a task's result."""
        return {"regression": {n: list(r.as_tuple()) for n, r in self.regression.items()},
                "scores": list(self.classification.scores), "labels": list(self.classification.labels)}

    @classmethod
    def from_dict(cls, d: dict) -> EvalParts:
        return cls({n: RegressionSums(*v) for n, v in d["regression"].items()},
                   ClassificationParts([np.asarray(a, np.float32) for a in d["scores"]],
                                       [np.asarray(a, bool) for a in d["labels"]]))

    def metrics(self) -> dict[str, float]:
        """``{"speed.r2": ..., "obstacle.roc_auc": ...}``."""
        out = {f"{n}.{k}": v for n, r in self.regression.items() for k, v in r.metrics().items()}
        out.update({f"{CLASSIFICATION_TARGET[0]}.{k}": v for k, v in self.classification.metrics().items()})
        return out
