"""Baselines every evaluation is shown beside: what a trivial model gets on the same split.

* ``mean``: the training split's mean speed and yaw rate, and its majority obstacle class.
* ``raw_linear``: ridge regression on the current step's raw inputs, 43 features: the mean
  of each IMU channel over the step's samples (6), the inverse range ``1 / max(r, 0.1 m)``
  of every 10th LIDAR beam (36 of 360; no return: 0), and the mean camera intensity in
  [0, 1] (1).  Fitted on the training split (penalty chosen on the validation split,
  :mod:`pipeline.core.ridge`), scored on the evaluation split.  The network's readout
  sees none of these directly, so a trained network that beats this line has learnt
  something a linear model of the current inputs cannot.

The raw features are computed on the workers from the batches the regions read anyway
(no extra pass over the store); the client fits and scores, and caches the figures per
input store, split and penalty grid under ``<output_dir>/baselines/``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from pipeline.core.metrics import EvalParts
from pipeline.core.ridge import RidgeSums, fit, readout_targets

LIDAR_STRIDE = 10
R_MIN = 0.1


def raw_features(batch) -> np.ndarray:
    """(B, T, 43) float64 raw current-step features of an aligned batch (see the module docstring)."""
    imu = np.where(batch.imu_valid[..., None], batch.imu, 0.0)
    n = batch.imu_valid.sum(axis=2)[..., None]
    imu_mean = np.divide(imu.sum(axis=2), n, out=np.zeros(imu.shape[:2] + (imu.shape[-1],)), where=n > 0)
    r = np.asarray(batch.lidar[..., ::LIDAR_STRIDE], np.float64)
    inv = np.where(np.isfinite(r), 1.0 / np.maximum(np.nan_to_num(r, nan=np.inf), R_MIN), 0.0)
    inv = np.where(batch.lidar_valid[..., None], inv, 0.0)
    cam = np.where(batch.camera_valid, batch.camera.reshape(*batch.camera.shape[:2], -1).mean(axis=2) / 255.0, 0.0)
    return np.concatenate([imu_mean, inv, cam[..., None]], axis=2)


def baseline_parts(batch, labels: np.ndarray, score: np.ndarray, use: np.ndarray) -> dict:
    """A region's share of the baselines: ridge sums of the training (0) and validation (1)
    rows, and the raw features and targets of the rows scored (``score (B,)``), on the
    steps ``use (B, T)``; small arrays only."""
    x = raw_features(batch)
    y = readout_targets(batch.targets)
    out = {}
    for label in (0, 1):
        rows = use & (labels == label)[:, None]
        out[label] = vars(RidgeSums.of(x[rows], y[rows]))
    rows = use & score[:, None]
    out["x"], out["targets"] = x[rows].astype(np.float32), np.asarray(batch.targets)[rows].astype(np.float32)
    return out


class BaselineParts:
    """The merged parts of every region (:func:`baseline_parts`)."""

    def __init__(self) -> None:
        self.sums: dict[int, RidgeSums] = {}
        self.x: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []

    def add(self, part: dict) -> None:
        for label in (0, 1):
            s = RidgeSums(**part[label])
            self.sums[label] = self.sums[label] + s if label in self.sums else s
        self.x.append(part["x"])
        self.targets.append(part["targets"])

    def figures(self, lambdas) -> dict[str, float]:
        """``{"mean.speed.r2": ..., "raw_linear.obstacle.roc_auc": ...}`` on the scored rows."""
        train, val = self.sums[0], self.sums.get(1)
        x = np.concatenate(self.x) if self.x else np.zeros((0, train.sx.size))
        t = np.concatenate(self.targets) if self.targets else np.zeros((0, 3))
        mask = np.ones(len(t), bool)
        mean = train.sy / max(train.n, 1)  # fitted targets: the obstacle mean is 2 p - 1
        yhat_mean = np.broadcast_to(mean, t.shape).copy()
        yhat_mean[:, 2] = 1.0 if mean[2] > 0 else -1.0  # the majority class, as a score
        ridge = fit(train, val, lambdas)
        out = {f"mean.{k}": v for k, v in EvalParts.of(yhat_mean, t, mask).metrics().items()}
        out.update({f"raw_linear.{k}": v for k, v in EvalParts.of(x @ ridge.w + ridge.b, t, mask).metrics().items()})
        out["raw_linear.lambda"] = ridge.lam
        return out


def cache_path(output_dir: str | Path, fingerprint: str, split_digest: str, split: str, lambdas) -> Path:
    grid = hashlib.sha256(json.dumps([float(v) for v in lambdas]).encode()).hexdigest()[:8]
    key = f"{fingerprint}-{split_digest}-{split}-{grid}"
    return Path(output_dir) / "baselines" / f"{key}.json"


def load_cached(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def save_cached(path: Path, figures: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(figures, sort_keys=True, indent=1))
    tmp.replace(path)
