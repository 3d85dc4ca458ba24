"""Stale sensor data: a maximum sample age per modality, and the searches that find it.

"Latest at or before" alone has no age limit: a LIDAR or camera outage, or a valid count
smaller than the data, would make one old scan "current" for the rest of a recording.  A
sample older than its modality's maximum age (``data.max_age``,
:class:`pipeline.config.MaxAgeConfig`; default 3 periods of the store's nominal rate) is
stale: camera and LIDAR steps get ``*_valid`` False and zero input, IMU steps (whose
windows only hold the step's own samples) are counted; :func:`pipeline.data.read_batch`
and :func:`pipeline.data.read_windows` count stale steps in ``AlignedBatch.stale_steps``.
Both checks cost one more ``searchsorted`` of the steps per modality, on a
:class:`pipeline.data.align.RowIndex` (any object with its ``search``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from pipeline.data.schema import MODALITIES, NS

MAX_AGE_PERIODS = 3.0  # default maximum sample age, in periods of each modality's nominal rate
_I64 = np.iinfo(np.int64)


def max_age_ns(rd, max_age=None) -> dict[str, int | None]:
    """Maximum sample age (int ns, None: no limit) per modality for reads of ``rd``'s store
    (a :class:`pipeline.data.reader.StoreReader`: its ``rate(modality)``).

    ``max_age``: None (every modality :data:`MAX_AGE_PERIODS` periods of its nominal rate
    attr), a :class:`pipeline.config.MaxAgeConfig`, or a mapping with its keys
    (``periods``, ``camera_s``, ``lidar_s``, ``imu_s``; a missing or None ``<modality>_s``
    is ``periods`` nominal periods, ``inf`` no limit).
    """
    if max_age is None:
        get = dict().get
    elif isinstance(max_age, Mapping):
        get = max_age.get
    else:
        def get(key, default=None):
            return getattr(max_age, key, default)
    periods = get("periods", None)
    periods = MAX_AGE_PERIODS if periods is None else float(periods)
    if not periods >= 1:
        raise ValueError(f"max_age periods={periods!r} must be >= 1")
    out = {}
    for name in MODALITIES:
        s = get(f"{name}_s", None)
        s = periods / rd.rate(name) if s is None else float(s)
        if not s > 0:
            raise ValueError(f"max_age {name}_s={s!r} must be > 0 seconds (inf: no limit)")
        out[name] = None if not math.isfinite(s) or s * NS >= 2.0**62 else int(round(s * NS))
    return out


def latest_fresh(index, tau: np.ndarray, age: int | None, step_ns: int, rows: np.ndarray | None):
    """Latest sample at or before ``tau`` per (row, step): ``(idx, seen, stale)``.

    ``tau (n, T)``: consecutive model steps in each row (as :func:`pipeline.data.windows.gather` builds them).
    ``idx`` (0 where not ``seen``) as :func:`pipeline.data.align.latest_at_or_before`;
    ``seen``: there is one; ``stale``: it is older than ``age`` ns (None: never), that is,
    no sample lies in ``(tau - age, tau]``.  One search: of ``tau`` and ``tau - age``, or,
    when ``age`` is a whole number m of steps, of ``tau`` and the m steps before it.
    """
    T = tau.shape[-1]
    if age is None:
        hi = index.search(tau, "right", rows)
        stale = np.zeros(tau.shape, bool)
    else:
        m, rem = divmod(age, step_ns)
        if rem == 0 and 0 < m < T:  # tau - age is the step m steps earlier
            first = np.maximum(tau[..., :1], _I64.min + age)  # saturating: never wraps
            both = index.search(np.concatenate([first - np.arange(m, 0, -1) * np.int64(step_ns), tau], axis=-1),
                                "right", rows)
            hi, before = both[..., m:], both[..., :T]
        else:
            older = np.maximum(tau, _I64.min + age) - np.int64(age)
            both = index.search(np.concatenate([tau, older], axis=-1), "right", rows)
            hi, before = both[..., :T], both[..., T:]
        stale = (hi > 0) & (before == hi)
    seen = hi > 0
    return np.where(seen, hi - 1, 0), seen, stale


def imu_stale(index, tau: np.ndarray, age: int, step_ns: int, rows, idx: np.ndarray, n_in: np.ndarray) -> np.ndarray:
    """(n, T) steps whose newest IMU sample at or before ``tau`` is older than ``age`` ns.

    ``idx``, ``n_in``: the steps' windows (:func:`pipeline.data.align.window_samples`).  When ``age`` is at
    most one step, a window's samples locate the newest one, so one search of ``tau - age``
    does; else :func:`latest_fresh`.
    """
    if age > step_ns:
        return latest_fresh(index, tau, age, step_ns, rows)[2]
    before = index.search(np.maximum(tau, _I64.min + age) - np.int64(age), "right", rows)
    # a window with samples ends at sample first + min(n_in, window); an empty one at `before`
    newest = idx[..., 0] + np.minimum(n_in, idx.shape[-1])
    return np.where(n_in > 0, before == newest, before > 0)
