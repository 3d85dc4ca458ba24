"""Alignment of per-modality timestamps to the model clock (pure NumPy, int64 ns).

Model step ``k`` of a recording is the instant ``tau_k = (k + 1) * step_ns`` after the
recording's ``t_start`` (the end of window ``(tau_k - step_ns, tau_k]``), so everything a
step sees had happened by then:

* camera and LIDAR: the latest frame/scan with ``t <= tau_k``; a step before the first
  one is marked invalid (``*_valid`` False), never filled with an invented frame;
* IMU: the samples with ``tau_k - step_ns < t <= tau_k``, the latest ``window`` of them if
  jitter puts more in a window, left-aligned and padded, with a per-sample valid mask.

All recordings are searched at once (:class:`RowIndex`): each row of timestamps is
taken relative to its own recording's ``t_start`` and shifted into its own disjoint int64
range, so one 1-D ``np.searchsorted`` does every row, and one recording's clock (1970, the
far future, a jump of years) never changes another's alignment.
"""

from __future__ import annotations

import numpy as np

_I64 = np.iinfo(np.int64)


def step_times(steps: np.ndarray, step_ns: int) -> np.ndarray:
    """``tau_k`` (int64 ns from the recording's start) for model steps ``steps``."""
    return (np.asarray(steps, np.int64) + 1) * np.int64(step_ns)


class RowIndex:
    """Per-row ``searchsorted`` over ``t (R, N)`` int64, built once, queried per block.

    Rows must not decrease within their first ``counts[r]`` entries (their first and last
    are their min and max); the rest is ignored.
    Queries are ns after each row's ``origin (R,)`` (the recording's ``t_start``; None: 0,
    i.e. absolute times).  Each row is packed on its own origin, so its values never depend
    on another row's clock: the rows whose times lie within ``span_budget(R)`` of their
    origin share one int64 range (one ``searchsorted`` does them all); the others (a clock
    jump of years inside a recording, an origin far from the row's times) are searched row
    by row on their raw times.  No wrapped int64 value is ever used: each row's span is
    checked exactly before it is packed, and queries are clipped before they are shifted.
    Building is O(R N); a query batch is O(R T log(R N)), independent of the span.
    """

    def __init__(self, t: np.ndarray, counts: np.ndarray, origin: np.ndarray | None = None) -> None:
        t = np.asarray(t, np.int64)
        R, N = t.shape
        self.counts = np.asarray(counts, np.int64)
        self.origin = np.zeros(R, np.int64) if origin is None else np.asarray(origin, np.int64).reshape(R)
        valid = np.arange(N) < self.counts[:, None]
        has = (self.counts > 0) & (N > 0)
        # per row: first and last valid time (its min and max: rows increase), relative to the origin
        ends = t[:, [0, -1]] if N else np.zeros((R, 2), np.int64)
        if N:
            ends[:, 1] = t[np.arange(R), np.clip(self.counts - 1, 0, N - 1)]
        tmin, tmax = ends[:, 0], ends[:, 1]
        rmin, rmax = tmin - self.origin, tmax - self.origin  # wrapped where the difference leaves int64
        fits = has & ~_sub_wrapped(tmin, self.origin, rmin) & ~_sub_wrapped(tmax, self.origin, rmax)
        budget = span_budget(R)
        lo, hi = (int(rmin[fits].min()), int(rmax[fits].max())) if fits.any() else (0, 0)
        if hi - lo > budget:  # keep the rows around the typical start; the rest are searched alone
            c = int(np.sort(rmin[fits])[fits.sum() // 2])
            a, b = max(c - budget // 2, _I64.min), min(c + budget // 2, _I64.max)
            fits &= (rmin >= a) & (rmax <= b)
            lo, hi = (int(rmin[fits].min()), int(rmax[fits].max())) if fits.any() else (0, 0)
        packed = fits | ~has
        # packed row r holds t - origin - lo + base[r] in [base, base + width - 4], its padding
        # base + width - 2, queries are clipped to [lo - 1, hi + 1] -> [base - 1, base + width - 3]:
        # rows never mix
        self.width = np.int64(hi - lo + 4)
        base = np.arange(R, dtype=np.int64) * self.width + 1
        # t - (origin + lo) is exact (mod 2**64) wherever its result fits: in every packed row;
        # the other rows wrap, and np.where drops them
        rel = t - (self.origin + np.int64(lo))[:, None]
        self.flat = (np.where(valid & packed[:, None], rel, self.width - 2) + base[:, None]).ravel()
        self.qlo, self.qhi = np.int64(max(lo - 1, _I64.min)), np.int64(min(hi + 1, _I64.max))
        # base - lo in one addition when it fits (it does unless the origins are far from the times)
        fold = _I64.min <= 1 - lo and (R - 1) * int(self.width) + 1 - lo <= _I64.max
        self.lo = np.int64(lo)
        self.shift = (base - self.lo)[:, None] if fold else None
        self.base = base[:, None]
        self.row0 = np.arange(R, dtype=np.int64)[:, None] * N
        self.wide = ~packed  # rows searched alone, on their own valid times
        self.n_wide = int(self.wide.sum())
        self.wide_times = {int(r): t[r, : self.counts[r]].copy() for r in np.flatnonzero(self.wide)}

    @property
    def nbytes(self) -> int:
        return self.flat.nbytes + sum(v.nbytes for v in self.wide_times.values())

    def search(self, q: np.ndarray, side: str = "right", rows: np.ndarray | None = None) -> np.ndarray:
        """``searchsorted(t[r, :counts[r]], origin[r] + q[r], side)`` for every row: q (R, T) -> (R, T) int64.

        ``rows (n,)`` (optional) searches those rows of the index instead, one per row of
        ``q (n, T)``, in any order and repeated at will (scattered windows).
        """
        if rows is None:
            shift, row0, counts = self.shift, self.row0, self.counts[:, None]
        else:
            shift = self.shift[rows] if self.shift is not None else None
            row0, counts = self.row0[rows], self.counts[rows, None]
        qq = np.maximum(q, self.qlo)  # np.clip costs 5x more per call
        np.minimum(qq, self.qhi, out=qq)
        if shift is not None:
            qq += shift
        else:
            qq -= self.lo
            qq += self.base if rows is None else self.base[rows]
        idx = np.searchsorted(self.flat, qq, side=side)
        idx -= row0
        out = np.minimum(np.maximum(idx, 0, out=idx), counts, out=idx)
        if self.n_wide:
            self._search_wide(np.asarray(q, np.int64), side, rows, out)
        return out

    def _search_wide(self, q: np.ndarray, side: str, rows: np.ndarray | None, out: np.ndarray) -> None:
        """Rows not packed: ``searchsorted`` on their own times at ``origin + q``, saturated
        where that sum leaves int64 (then it is past every time, or before every one)."""
        at = np.flatnonzero(self.wide if rows is None else self.wide[rows])
        for i in at.tolist():
            r = i if rows is None else int(rows[i])
            times, o = self.wide_times[r], self.origin[r]
            s = q[i] + o
            res = np.searchsorted(times, s, side=side)
            wrapped = ((q[i] ^ s) & (o ^ s)) < 0
            if wrapped.any():
                res[wrapped] = np.where(q[i][wrapped] > 0, times.size, 0)
            out[i] = res


def span_budget(rows: int) -> int:
    """The largest span (ns) of a row's times, relative to its origin, that a :class:`RowIndex`
    of ``rows`` rows packs (all rows side by side in [0, 2**62)); wider rows are searched alone."""
    return (1 << 62) // max(rows, 1) - 4


def _sub_wrapped(a: np.ndarray, b: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Where ``d = a - b`` (int64) wrapped around: a and b of opposite signs, d not of a's."""
    return ((a ^ b) & (a ^ d)) < 0


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
