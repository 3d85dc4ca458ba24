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
  :class:`SensorDataError`, ``quarantine`` masks the bad rows and lists them); a missing
  timestamp chunk spoils only the steps that could use its samples;
* stale samples (older than the maximum age, :mod:`pipeline.data.staleness`): invalid
  camera/LIDAR input, counted per row and modality in ``stale_steps``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pipeline.data.align import step_times, window_samples
from pipeline.data.batches import POLICIES, AlignedBatch, MicroBatch
from pipeline.data.errors import SensorDataError
from pipeline.data.pools import load_shards, pool_state
from pipeline.data.reader import StoreReader, open_reader
from pipeline.data.schema import MODALITIES, NS
from pipeline.data.staleness import imu_stale, latest_fresh, max_age_ns
from pipeline.data.validate import row_errors

_I64 = np.iinfo(np.int64)


class _TooManyShards(Exception):
    """One call needs more shards at once than a pool holds: the caller splits the rows."""


def read_batch(mb: MicroBatch, policy: str = "fail", *, imu_window: int = 10,
               needs_restart: np.ndarray | None = None, reader: StoreReader | None = None,
               max_age=None) -> AlignedBatch:
    """Read, align and validate one micro-batch: recordings ``mb.recordings`` x steps ``mb.steps``.

    Parameters
    ----------
    mb : MicroBatch
    policy : {"fail", "quarantine"}
    imu_window : IMU samples per step handed to the network.
    needs_restart : (B,) bool, the previous block's :meth:`AlignedBatch.carry_restart` (None: none).
    reader : an open :class:`StoreReader` (default: the process-wide one for ``mb.store``).
    max_age : oldest sample still valid input, per modality (:func:`max_age_ns`; None:
        3 nominal periods of each modality).

    Raises
    ------
    SensorDataError
        Under ``fail``, for the first bad input (variable, recordings, time range).
    """
    if policy not in POLICIES:
        raise ValueError(f"policy {policy!r} is not one of {POLICIES}")
    rd = reader or open_reader(mb.store)
    recs = np.arange(*mb.recordings)
    b = gather(rd, recs, np.full(recs.size, mb.steps[0]), mb.steps[1] - mb.steps[0], policy, imu_window,
               max_age_ns(rd, max_age))
    prev = np.zeros(recs.size, bool) if needs_restart is None else np.asarray(needs_restart, bool)
    return dataclasses.replace(b, steps=np.arange(*mb.steps), restart=prev & ~b.quarantined)


def read_windows(store: str, recordings: np.ndarray, start_steps: np.ndarray, steps: int, policy: str = "fail", *,
                 imu_window: int = 10, reader: StoreReader | None = None, max_age=None) -> AlignedBatch:
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
    max_age : as :func:`read_batch`.

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
    return gather(rd, recs, s0, int(steps), policy, imu_window, max_age_ns(rd, max_age))


def gather(rd: StoreReader, recs: np.ndarray, s0: np.ndarray, steps: int, policy: str, imu_window: int,
           max_age: dict[str, int | None] | None = None):
    """:class:`AlignedBatch` of rows (``recs[i]``, steps ``s0[i] + arange(steps)``); arguments checked.

    ``max_age``: :func:`max_age_ns` (None: the default).  Rows that need more shards at
    once than a pool holds are read in halves.
    """
    if max_age is None:
        max_age = max_age_ns(rd)
    try:
        return _gather(rd, recs, s0, steps, policy == "quarantine", imu_window, max_age)
    except _TooManyShards:
        if recs.size < 2:
            raise RuntimeError(f"one window of {steps} steps needs more shards than the reader's cache_bytes "
                               f"({rd.cache_bytes}) holds") from None
        h = recs.size // 2
        a = gather(rd, recs[:h], s0[:h], steps, policy, imu_window, max_age)
        b = gather(rd, recs[h:], s0[h:], steps, policy, imu_window, max_age)
        return AlignedBatch(**{f: np.concatenate([getattr(a, f), getattr(b, f)])
                               for f in AlignedBatch.__dataclass_fields__ if f != "problems"},
                            problems=a.problems + b.problems)


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


def _gather(rd: StoreReader, recs: np.ndarray, s0: np.ndarray, T: int, q: bool, imu_window: int,
            max_age: dict[str, int | None]) -> AlignedBatch:
    """:func:`gather` of rows that fit the pools: align, fetch what is missing, gather, validate."""
    N = recs.size
    step_idx = s0[:, None] + np.arange(T)
    tau = step_times(step_idx, rd.step_ns)
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
    aligned, grouped, stale = {}, {}, {}
    for name, m in MODALITIES.items():
        size = state.group[name]
        if size not in grouped:
            grouped[size] = _groups(recs, size)
        imu = name == "imu"
        groups = grouped[size]
        if len(groups) > 1:
            idx = np.zeros((N, T, imu_window) if imu else (N, T), np.int64)
            ok = np.zeros(idx.shape, bool)
            old = np.zeros((N, T), bool)
        spoiled, lost, first_lost = np.zeros((N, T), bool), {}, None
        for g0, sel, rows in groups:
            # quarantine=True: a missing timestamp chunk of another recording in the group
            # must not fail this one; it is reported below as a spoiled span of its own rows
            index, spans = rd.timestamps(name, slice(g0, min(g0 + size, rd.n_recordings)), True)
            if imu:  # the window holds the step's own samples; a step with none recent is counted stale
                i, o, n_in = window_samples(index, tau[sel], rd.step_ns, imu_window, rows)
                st = (False if max_age[name] is None else
                      imu_stale(index, tau[sel], max_age[name], rd.step_ns, rows, i, n_in))
            else:  # the latest frame/scan, unless it is older than the maximum age
                i, o, st = latest_fresh(index, tau[sel], max_age[name], rd.step_ns, rows)
                o = o & ~st
            if len(groups) > 1:
                idx[sel], ok[sel], old[sel] = i, o, st
            else:
                idx, ok, old = i, o, np.broadcast_to(st, (N, T))
            if spans:
                at = np.arange(N)[sel]
                for k, r in zip(at.tolist(), rows.tolist(), strict=True):
                    t0 = int(rd.meta["t_start"][recs[k]])
                    for lo, hi, cause in spans.get(r, ()):
                        # steps whose sample, or IMU window, may lie among the spoiled timestamps
                        # (epoch-ns span made relative to t_start in Python ints: nothing wraps)
                        lo, hi = max(lo - t0, _I64.min), min(hi - t0, _I64.max)
                        hit = (tau[k] >= lo) & ((tau[k] - rd.step_ns <= hi) if imu else (tau[k] < hi))
                        if cause is None:
                            spoiled[k] |= hit
                        else:
                            lost.setdefault(cause[0], np.zeros((N, T), bool))[k] |= hit
                            if first_lost is None and (hit & valid[k]).any():
                                first_lost = cause
        if first_lost is not None and not q:  # name the missing or unreadable timestamp chunk
            raise rd.chunk_error(first_lost[0], m.time, first_lost[1], first_lost[2], *first_lost[3:])
        for kind, b in lost.items():
            flag(b, kind, m.time, "timestamp chunk missing or unreadable: the samples of these steps are unknown")
        flag(spoiled, "timestamps-not-increasing", m.time, "timestamps repeat, go backwards or are missing around "
             "these steps")
        aligned[name], stale[name] = (idx, ok), old
    read_vars = [(n, m.var) for n, m in MODALITIES.items()]
    if "targets" in rd.arrays:  # optional: a store without targets still runs
        aligned["targets"] = (np.minimum(step_idx, rd.arrays["targets"].shape[1] - 1), valid)
        read_vars.append(("targets", "targets"))

    # 2. the shards every used sample lies in: claimed in each pool, fetched in one round trip
    pools = state.pools
    where, todo = {}, {}
    for name, var in read_vars:
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
    for name, var in read_vars:
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
                cells = hole.any(axis=-1) if hole.ndim == 3 else hole
                used = hole & (valid if hole.ndim == 2 else valid[..., None])
                for i in np.unique(np.nonzero(cells & valid)[0]).tolist():  # what each row hit, and why
                    at = (i, *np.argwhere(used[i])[0])
                    err = pool.chunk_error(int(slot[at]), int(np.broadcast_to(row, hole.shape)[at]), int(t[at]))
                    flag(cells & (np.arange(N) == i)[:, None], err.kind, var, err.detail)
                readable = ok & ~hole
        if pool.nonfinite is not None:  # NaN/Inf among the samples used (fill values of bad chunks are not)
            nan = pool.nonfinite[lin] & readable
            flag(nan.any(axis=-1) if nan.ndim == 3 else nan, "nan-or-inf", var,
                 "NaN or Inf targets" if name == "targets" else "NaN or Inf values (or fill values of a missing chunk)")
        out[name] = x

    quarantined = bad.any(axis=1)
    keep = valid & ~quarantined[:, None]
    stale_steps = np.stack([(stale[n] & keep).sum(axis=1, dtype=np.int32) for n in MODALITIES], axis=1)
    if quarantined.any():  # everything else a read does not use is already zero
        for x in out.values():
            x[quarantined] = 0
    cam_ok, lid_ok = aligned["camera"][1] & keep, aligned["lidar"][1] & keep
    return AlignedBatch(
        recordings=recs, steps=step_idx, camera=out["camera"], camera_valid=cam_ok, lidar=out["lidar"],
        lidar_valid=lid_ok, imu=out["imu"], imu_valid=aligned["imu"][1] & keep[..., None], targets=out.get("targets"),
        valid=keep, quarantined=quarantined, restart=np.zeros(N, bool), stale_steps=stale_steps,
        problems=tuple(problems))
