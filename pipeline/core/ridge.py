"""Ridge regression from sufficient statistics (reservoir computing's readout fit).

Each worker returns, per split, the sums of its samples ``x (d,)``, targets ``y (k,)``:
``n, sx = sum x, sy = sum y, xtx = sum x x^T, xty = sum x y^T, yty = sum y y^T``
(:class:`RidgeSums`, float64, mergeable in any order).  The client then fits

    min_W,b  sum ||y - W^T x - b||^2 + lam ||W||^2        (the intercept b is not penalised)

which is ridge on centred data: ``W = (Xc^T Xc + lam I)^-1 Xc^T Yc``, ``b = mean y - W^T mean x``,
with ``Xc^T Xc = xtx - n mx mx^T`` and ``Xc^T Yc = xty - n mx my^T``.  Targets are standardised
(by the training split's mean and std) for choosing lam, so that each target weighs the
same in the validation loss; the fit itself is per target, so the scaling folds back
exactly and ``W, b`` predict in physical units.  The validation loss of any ``(W, b)`` is
also a function of the validation split's sums:

    SSE_j = yty_jj - 2 w~_j^T x~ty_j + w~_j^T x~tx w~_j     (x~ = [x, 1], w~_j = [W_:j, b_j])

so lam is chosen from the configured grid without a second pass over the data, and the
final solve is one Cholesky factorisation in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def readout_targets(targets: np.ndarray) -> np.ndarray:
    """What a fitted readout predicts, from the store's targets ``(..., 3)``: speed (m/s),
    yaw rate (rad/s) and ``2 obstacle - 1``, so that the obstacle output is a score whose
    sign is the class (> 0: obstacle ahead), as a logit's is."""
    out = np.array(targets, np.float64, copy=True)
    out[..., 2] = 2.0 * out[..., 2] - 1.0
    return out


@dataclass
class RidgeSums:
    n: float
    sx: np.ndarray  # (d,)
    sy: np.ndarray  # (k,)
    xtx: np.ndarray  # (d, d)
    xty: np.ndarray  # (d, k)
    yty: np.ndarray  # (k, k)

    @classmethod
    def zeros(cls, d: int, k: int) -> RidgeSums:
        return cls(0.0, np.zeros(d), np.zeros(k), np.zeros((d, d)), np.zeros((d, k)), np.zeros((k, k)))

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray) -> RidgeSums:
        """Sums of the rows of ``x (n, d)`` and ``y (n, k)``, in float64."""
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        return cls(float(len(x)), x.sum(0), y.sum(0), x.T @ x, x.T @ y, y.T @ y)

    def __add__(self, o: RidgeSums) -> RidgeSums:
        return RidgeSums(self.n + o.n, self.sx + o.sx, self.sy + o.sy, self.xtx + o.xtx, self.xty + o.xty,
                         self.yty + o.yty)

    def sse(self, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(k,) sum of squared errors of ``y ~ x W + b`` over these samples."""
        cross = np.einsum("dk,dk->k", w, self.xty) + b * self.sy
        quad = np.einsum("dk,de,ek->k", w, self.xtx, w) + 2 * b * (self.sx @ w) + self.n * b * b
        return np.diag(self.yty) - 2 * cross + quad


@dataclass
class RidgeFit:
    w: np.ndarray  # (d, k)
    b: np.ndarray  # (k,)
    lam: float
    validation_loss: dict[float, float]  # lam -> mean standardised validation MSE over targets


def _centred(s: RidgeSums) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if s.n < 2:
        raise ValueError(f"ridge: {s.n:.0f} training samples; at least 2 are needed")
    mx, my = s.sx / s.n, s.sy / s.n
    return s.xtx - s.n * np.outer(mx, mx), s.xty - s.n * np.outer(mx, my), mx, my


def solve(train: RidgeSums, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """``(W (d, k), b (k,))`` for penalty ``lam`` on the training sums: one Cholesky solve."""
    a, c, mx, my = _centred(train)
    a = a + lam * np.eye(len(a))
    lower = np.linalg.cholesky(a)
    w = np.linalg.solve(lower.T, np.linalg.solve(lower, c))
    return w, my - mx @ w


def fit(train: RidgeSums, validation: RidgeSums | None, lambdas) -> RidgeFit:
    """Choose ``lam`` from ``lambdas`` by the standardised validation loss (from the sums
    alone: one eigendecomposition serves the whole grid), then solve once (Cholesky).
    Without validation samples the smallest ``lam`` of the grid is used."""
    lambdas = sorted(float(v) for v in lambdas)
    if not lambdas or lambdas[0] <= 0:
        raise ValueError(f"ridge: the lambda grid must hold values > 0, got {lambdas}")
    a, c, mx, my = _centred(train)
    var = np.diag(train.yty) / train.n - my * my
    scale = np.where(var > 0, var, 1.0)  # standardised loss: each target in units of its variance
    losses: dict[float, float] = {}
    if validation is not None and validation.n > 0:
        e, v = np.linalg.eigh(a)
        vc = v.T @ c
        for lam in lambdas:
            w = v @ (vc / (np.maximum(e, 0.0) + lam)[:, None])
            b = my - mx @ w
            losses[lam] = float(np.mean(validation.sse(w, b) / validation.n / scale))
        best = min(losses, key=losses.get)
    else:
        best = lambdas[0]
    w, b = solve(train, best)
    return RidgeFit(w, b, best, losses)
