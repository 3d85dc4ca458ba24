"""Aligned reads: contiguous micro-batches and scattered windows, one vectorised gather.

:func:`read_batch` reads a contiguous block of recordings x steps (a batch run's
micro-batch).  :func:`read_windows` reads N independent windows -- one window of
``steps`` model steps of one recording each, from anywhere in the store (a load test's
micro-batch) -- and row ``i`` equals ``read_batch`` of request ``i`` alone.  Both are
the same :func:`gather` of (recording, start step) rows:

* timestamps: the reader's cached :class:`RowIndex` of each shard's row group (or of the
  whole store), searched for all rows of that group at once (one ``searchsorted`` per
  modality and group);
* sensor data: one fancy index per variable into its shard pool
  (:mod:`pipeline.data.pools`); shards not held are fetched first, in one round trip;
* validation of exactly the samples used: NaN/Inf, missing or unreadable chunks,
  timestamps that repeat or go backwards (policy ``fail`` raises the first
  :class:`SensorDataError`, ``quarantine`` masks the bad rows and lists them).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pipeline.data.align import latest_at_or_before, step_times, window_samples
from pipeline.data.batches import POLICIES, AlignedBatch, MicroBatch
from pipeline.data.errors import SensorDataError
from pipeline.data.pools import load_shards, pool_state
from pipeline.data.reader import StoreReader, open_reader
from pipeline.data.schema import MODALITIES, NS
from pipeline.data.store import chunk_problems
from pipeline.data.validate import row_errors

_WHOLE = (np.iinfo(np.int64).min, np.iinfo(np.int64).max)  # the spoiled span of a row whose timestamps are missing


class _TooManyShards(Exception):
    """One call needs more shards at once than a pool holds: the caller splits the rows."""


def read_batch(mb: MicroBatch, policy: str = "fail", *, imu_window: int = 10,
               needs_restart: np.ndarray | None = None, reader: StoreReader | None = None) -> AlignedBatch:
    """Read, align and validate one micro-batch: recordings ``mb.recordings`` x steps ``mb.steps``.

    Parameters
    ----------
    mb : MicroBatch
    policy : {"fail", "quarantine"}
    imu_window : IMU samples per step handed to the network.
    needs_restart : (B,) bool, the previous block's :meth:`AlignedBatch.carry_restart` (None: none).
    reader : an open :class:`StoreReader` (default: the process-wide one for ``mb.store``).

    Raises
    ------
    SensorDataError
        Under ``fail``, for the first bad input (variable, recordings, time range).
    """
    if policy not in POLICIES:
        raise ValueError(f"policy {policy!r} is not one of {POLICIES}")
    rd = reader or open_reader(mb.store)
    recs = np.arange(*mb.recordings)
    b = gather(rd, recs, np.full(recs.size, mb.steps[0]), mb.steps[1] - mb.steps[0], policy, imu_window)
    prev = np.zeros(recs.size, bool) if needs_restart is None else np.asarray(needs_restart, bool)
    return dataclasses.replace(b, steps=np.arange(*mb.steps), restart=prev & ~b.quarantined)


def read_windows(store: str, recordings: np.ndarray, start_steps: np.ndarray, steps: int, policy: str = "fail", *,
                 imu_window: int = 10, reader: StoreReader | None = None) -> AlignedBatch:
    """Read, align and validate N scattered windows: row i = recording ``recordings[i]``, steps
    ``[start_steps[i], start_steps[i] + steps)``.

    Each row equals ``read_batch(MicroBatch(store, (r, r + 1), (s, s + steps)), policy)`` of its
    request alone (same alignment, masks and validation); rows may repeat a recording and
    come in any order.  Windows start from zero state: ``restart`` is all False.  The
    returned ``recordings`` is (N,) and ``steps`` is (N, steps), each row's model steps.

    Parameters
    ----------
    store : the store path (opens the process-wide reader unless ``reader`` is given).
    recordings, start_steps : (N,) ints, 0 <= recording < n_recordings, start step >= 0.
    steps : model steps per window (> 0).
    policy : {"fail", "quarantine"}: raise the first :class:`SensorDataError`, or mask the
        bad requests (``quarantined[i]``, ``valid[i]`` False, inputs zero) and list them in
        ``problems`` (one error per bad request and kind).
    imu_window : IMU samples per step handed to the network.

    Raises
    ------
    SensorDataError
        Under ``fail``, for the first bad input (variable, recording, time range).
    """
    if policy not in POLICIES:
        raise ValueError(f"policy {policy!r} is not one of {POLICIES}")
    rd = reader or open_reader(store)
    recs = np.asarray(recordings, np.int64).reshape(-1)
    s0 = np.asarray(start_steps, np.int64).reshape(-1)
    if recs.shape != s0.shape:
        raise ValueError(f"recordings {recs.shape} and start_steps {s0.shape} must have the same length")
    if steps <= 0:
        raise ValueError(f"steps={steps} must be > 0")
    if recs.size and (recs.min() < 0 or recs.max() >= rd.n_recordings):
        raise ValueError(f"recordings must lie in [0, {rd.n_recordings}): {recs.min()}..{recs.max()}")
    if s0.size and s0.min() < 0:
        raise ValueError(f"start_steps must be >= 0: {s0.min()}")
    return gather(rd, recs, s0, int(steps), policy, imu_window)


def gather(rd: StoreReader, recs: np.ndarray, s0: np.ndarray, steps: int, policy: str, imu_window: int):
    """:class:`AlignedBatch` of rows (``recs[i]``, steps ``s0[i] + arange(steps)``); arguments checked.

    Rows that need more shards at once than a pool holds are read in halves.
    """
    try:
        return _gather(rd, recs, s0, steps, policy == "quarantine", imu_window)
    except _TooManyShards:
        if recs.size < 2:
            raise RuntimeError(f"one window of {steps} steps needs more shards than the reader's cache_bytes "
                               f"({rd.cache_bytes}) holds") from None
        h = recs.size // 2
        a = gather(rd, recs[:h], s0[:h], steps, policy, imu_window)
        b = gather(rd, recs[h:], s0[h:], steps, policy, imu_window)
        return AlignedBatch(**{f: np.concatenate([getattr(a, f), getattr(b, f)])
                               for f in AlignedBatch.__dataclass_fields__ if f != "problems"},
                            problems=a.problems + b.problems)


def _timestamps_missing(rd: StoreReader, modality: str, r: int) -> SensorDataError:
    """The reader's error for recording ``r``'s missing or unreadable timestamp chunk."""
    m = MODALITIES[modality]
    span = slice(0, max(int(rd.meta[m.count][r]), 1))
    problems = chunk_problems(rd.path, rd.arrays[m.time], m.time, slice(r, r + 1), span)
    kind, rs, ts = problems[0] if problems else ("unreadable-chunk", slice(r, r + 1), span)
    return rd.chunk_error(kind, m.time, rs, ts)


def _groups(recs: np.ndarray, size: int):
    """[(first recording of the group, request indices or slice(None), rows within the group)]."""
    g = recs // size
    if g.size == 0 or (g == g[0]).all():
        return [(int(g[0]) * size if g.size else 0, slice(None), recs - (int(g[0]) * size if g.size else 0))]
    out = []
    for gv in np.unique(g).tolist():
        sel = np.nonzero(g == gv)[0]
        out.append((gv * size, sel, recs[sel] - gv * size))
    return out


def _gather(rd: StoreReader, recs: np.ndarray, s0: np.ndarray, T: int, q: bool, imu_window: int) -> AlignedBatch:
    """:func:`gather` of rows that fit the pools: align, fetch what is missing, gather, validate."""
    N = recs.size
    step_idx = s0[:, None] + np.arange(T)
    tau = step_times(step_idx, rd.step_ns)
    tau_abs = rd.meta["t_start"][recs, None] + tau
    times_s, valid = tau / NS, step_idx < rd.meta["n_steps"][recs, None]
    bad = np.zeros((N, T), bool)
    problems: list[SensorDataError] = []

    def flag(b: np.ndarray, kind: str, variable: str, detail: str) -> None:
        b = b & valid
        if b.any():
            problems.extend(row_errors(b, kind, variable, detail, recs, times_s, step_idx))
            if not q:
                raise problems[0]
            bad[...] |= b

    # 1. timestamps: per shard row group, every request of the group in one search
    state = pool_state(rd)
    aligned, grouped = {}, {}
    for name, m in MODALITIES.items():
        size = state.group[name]
        if size not in grouped:
            grouped[size] = _groups(recs, size)
        imu = name == "imu"
        groups = grouped[size]
        if len(groups) > 1:
            idx = np.zeros((N, T, imu_window) if imu else (N, T), np.int64)
            ok = np.zeros(idx.shape, bool)
        spoiled = np.zeros((N, T), bool)
        for g0, sel, rows in groups:
            # quarantine=True: a missing timestamp chunk of another recording in the group
            # must not fail this one; it is reported below as a spoiled span of its own rows
            index, spans = rd.timestamps(name, slice(g0, min(g0 + size, rd.n_recordings)), True)
            if imu:
                i, o, _ = window_samples(index, tau_abs[sel], rd.step_ns, imu_window, rows)
            else:
                i, o = latest_at_or_before(index, tau_abs[sel], rows)
            if len(groups) > 1:
                idx[sel], ok[sel] = i, o
            else:
                idx, ok = i, o
            if spans:
                at = np.arange(N)[sel]
                for k, r in zip(at.tolist(), rows.tolist(), strict=True):
                    for lo, hi in spans.get(r, ()):
                        if not q and (lo, hi) == _WHOLE:  # its timestamp chunks are missing: name them
                            raise _timestamps_missing(rd, name, g0 + r)
                        spoiled[k] |= (tau_abs[k] >= lo) & (tau_abs[k] - rd.step_ns <= hi)
        flag(spoiled, "timestamps-not-increasing", m.time,
             "timestamps repeat, go backwards or are missing around these steps")
        aligned[name] = (idx, ok)
    aligned["targets"] = (np.minimum(step_idx, rd.arrays["targets"].shape[1] - 1), valid)

    # 2. the shards every used sample lies in: claimed in each pool, fetched in one round trip
    pools = state.pools
    where, todo = {}, {}
    for name, var in (*((n, m.var) for n, m in MODALITIES.items()), ("targets", "targets")):
        idx, ok = aligned[name]
        pool = pools[var]
        r = recs.reshape((N,) + (1,) * (idx.ndim - 1))
        key, row, t = pool.locate(r, idx)
        where[var] = (key, row, t, pool.needed(key[ok]))
        if where[var][3].size > pool.cap:
            raise _TooManyShards
    for var, (_, _, _, need) in where.items():
        todo[var] = pools[var].claim(need)
    if any(todo.values()):
        try:
            load_shards(rd, todo)
        except BaseException:  # never leave a claimed slot without its data
            for var, items in todo.items():
                pools[var].release(items)
            raise

    # 3. gather: one fancy index per variable (zeros where unused); then chunk and value checks
    out = {}
    for name, var in (*((n, m.var) for n, m in MODALITIES.items()), ("targets", "targets")):
        idx, ok = aligned[name]
        pool = pools[var]
        key, row, t, _ = where[var]
        lin = pool.flat_index(key, row, t, ok & (valid[..., None] if ok.ndim == 3 else valid))
        x = pool.flat[lin]
        readable = ok
        if pool.any_bad.any() and pool.any_bad[(slot := pool.lut[key])[ok]].any():
            hole = pool.bad[slot, row, t // pool.TC] & ok
            if hole.any():
                if not q:
                    first = np.argwhere(hole & (valid if hole.ndim == 2 else valid[..., None]))
                    if first.size:
                        at = tuple(first[0])
                        raise pool.chunk_error(int(slot[at]), int(np.broadcast_to(row, hole.shape)[at]), int(t[at]))
                flag(hole.any(axis=-1) if hole.ndim == 3 else hole, "missing-chunk", var,
                     "chunk missing or unreadable")
                readable = ok & ~hole
        if pool.nonfinite is not None:  # NaN/Inf among the samples used (fill values of bad chunks are not)
            nan = pool.nonfinite[lin] & readable
            flag(nan.any(axis=-1) if nan.ndim == 3 else nan, "nan-or-inf", var,
                 "NaN or Inf targets" if name == "targets" else "NaN or Inf values (or fill values of a missing chunk)")
        out[name] = x

    quarantined = bad.any(axis=1)
    keep = valid & ~quarantined[:, None]
    if quarantined.any():  # everything else a read does not use is already zero
        for x in out.values():
            x[quarantined] = 0
    cam_ok, lid_ok = aligned["camera"][1] & keep, aligned["lidar"][1] & keep
    return AlignedBatch(
        recordings=recs, steps=step_idx, camera=out["camera"], camera_valid=cam_ok, lidar=out["lidar"],
        lidar_valid=lid_ok, imu=out["imu"], imu_valid=aligned["imu"][1] & keep[..., None], targets=out["targets"],
        valid=keep, quarantined=quarantined, restart=np.zeros(N, bool), problems=tuple(problems))
