"""Alignment of per-modality timestamps to the model clock (pure NumPy, int64 ns).

Model step ``k`` of a recording is the instant ``tau_k = (k + 1) * step_ns`` after the
recording's ``t_start`` (the end of window ``(tau_k - step_ns, tau_k]``), so everything a
step sees had happened by then:

* camera and LIDAR: the latest frame/scan with ``t <= tau_k``; a step before the first
  one is marked invalid (``*_valid`` False), never filled with an invented frame;
* IMU: the samples with ``tau_k - step_ns < t <= tau_k``, the latest ``window`` of them if
  jitter puts more in a window, left-aligned and padded, with a per-sample valid mask.

All recordings are searched at once (:class:`RowIndex`): each row of timestamps is
shifted into its own disjoint int64 range, so one 1-D ``np.searchsorted`` does every row.
"""

from __future__ import annotations

import numpy as np


def step_times(steps: np.ndarray, step_ns: int) -> np.ndarray:
    """``tau_k`` (int64 ns from the recording's start) for model steps ``steps``."""
    return (np.asarray(steps, np.int64) + 1) * np.int64(step_ns)


class RowIndex:
    """Per-row ``searchsorted`` over ``t (R, N)`` int64, built once, queried per block.

    Rows must increase within their first ``counts[r]`` entries; the rest is ignored.
    Building is O(R N); a query batch is O(R T log(R N)), independent of the span.
    """

    def __init__(self, t: np.ndarray, counts: np.ndarray) -> None:
        R, N = t.shape
        self.counts = np.asarray(counts, np.int64)
        valid = np.arange(N) < self.counts[:, None]
        self.lo = int(t[valid].min()) if valid.any() else 0
        hi = int(t[valid].max()) if valid.any() else 0
        # values in [0, w - 4], queries clipped to [-1, w - 3], padding w - 2: rows never mix
        self.width = np.int64(hi - self.lo + 4)
        self.base = np.arange(R, dtype=np.int64)[:, None] * self.width + 1
        self.flat = (np.where(valid, t - self.lo, self.width - 2) + self.base).ravel()
        self.row0 = np.arange(R, dtype=np.int64)[:, None] * N

    def search(self, q: np.ndarray, side: str = "right", rows: np.ndarray | None = None) -> np.ndarray:
        """``searchsorted(t[r, :counts[r]], q[r], side)`` for every row: q (R, T) -> (R, T) int64.

        ``rows (n,)`` (optional) searches those rows of the index instead, one per row of
        ``q (n, T)``, in any order and repeated at will (scattered windows).
        """
        base, row0, counts = ((self.base, self.row0, self.counts[:, None]) if rows is None else
                              (self.base[rows], self.row0[rows], self.counts[rows, None]))
        qq = q - self.lo
        np.minimum(np.maximum(qq, -1, out=qq), self.width - 3, out=qq)  # np.clip costs 5x more per call
        qq += base
        idx = np.searchsorted(self.flat, qq, side=side)
        idx -= row0
        return np.minimum(np.maximum(idx, 0, out=idx), counts, out=idx)


def latest_at_or_before(index: RowIndex, tau: np.ndarray, rows: np.ndarray | None = None):
    """Index of the latest sample with ``t <= tau`` per (recording, step).

    ``tau (R, T)`` int64 ns on the index's origin (``rows``: see :meth:`RowIndex.search`).
    Returns ``idx (R, T)`` int64 (0 where invalid) and ``valid (R, T)`` bool (False before
    the modality's first sample).
    """
    idx = index.search(tau, "right", rows) - 1
    valid = idx >= 0
    return np.where(valid, idx, 0), valid


def window_samples(index: RowIndex, tau: np.ndarray, step_ns: int, window: int, rows: np.ndarray | None = None):
    """Sample indices inside ``(tau - step_ns, tau]`` per (recording, step) (``rows``: see :meth:`RowIndex.search`).

    Returns ``idx (R, T, window)`` int64 (0 where padded), ``valid (R, T, window)`` bool and
    ``n_in (R, T)`` the number of samples in the window before truncation to ``window``.
    """
    T = tau.shape[-1]
    if T and (tau[..., 1:] - tau[..., :-1] == step_ns).all():  # consecutive steps: a window starts where the last ends
        edges = index.search(np.concatenate([tau[..., :1] - np.int64(step_ns), tau], axis=-1), "right", rows)
        lo, hi = edges[..., :-1], edges[..., 1:]
    else:
        both = index.search(np.concatenate([tau, tau - np.int64(step_ns)], axis=-1), "right", rows)  # one search
        hi, lo = both[..., :T], both[..., T:]
    n_in = hi - lo
    first = np.maximum(lo, hi - window)  # keep the latest `window` samples
    idx = first[..., None] + np.arange(window)
    valid = idx < hi[..., None]
    return np.where(valid, idx, 0), valid, n_in
