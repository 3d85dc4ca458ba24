"""Scattered windows: many (recording, start step) requests gathered in one vectorised read.

:func:`read_batch` reads a contiguous block of recordings x steps.  A load test serves
independent requests -- one window of ``steps`` model steps of one recording each -- and
a micro-batcher groups a few dozen of them, from anywhere in the store.
:func:`read_windows` turns such a group into one :class:`AlignedBatch` (row ``i`` = request
``i``) with the same alignment and validation as ``read_batch`` of each request alone:

* timestamps: the reader's cached :class:`RowIndex` of each shard's row group, searched for
  all requests of that group at once (one ``searchsorted`` per modality and group);
* sensor data: each variable keeps a pool of decoded shards (shard rows x time shard) in
  one preallocated array ``(slots, rows, times, ...)`` with a lookup table
  (row group, time shard) -> slot, so gathering every request's samples is a single
  fancy index per variable.  Shards not in the pool are fetched in one round trip to
  zarr's event loop; the least recently used ones are replaced (bounded by the reader's
  ``cache_bytes``).
* missing or unreadable inner chunks are tracked per (slot, row, inner time chunk), so
  only the requests that use them are failed or quarantined.
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.data.align import latest_at_or_before, step_times, window_samples
from pipeline.data.batches import POLICIES, AlignedBatch, _zero_where_not
from pipeline.data.errors import SensorDataError
from pipeline.data.reader import StoreReader, open_reader
from pipeline.data.schema import MODALITIES, NS, VARIABLES
from pipeline.data.store import chunk_problems
from pipeline.data.validate import nonfinite, row_errors

_VARS = (*(m.var for m in MODALITIES.values()), "targets")


class _TooManyShards(Exception):
    """One call needs more shards at once than a pool holds: the caller splits the requests."""


class ShardPool:
    """Decoded shards of one variable in one array, for single-fancy-index gathers.

    ``data (cap, RG, TS, ...)`` holds shard (row group g, time shard j) in slot
    ``lut[g * n_ts + j]`` (-1: not held).  ``bad (cap, RG, TS // TC)`` marks missing or
    unreadable inner chunks, whose values are the variable's fill value; ``problems[slot]``
    lists them as ``(kind, rows, span)`` for error messages.
    """

    def __init__(self, reader: StoreReader, name: str, cap: int) -> None:
        arr = reader.arrays[name]
        outer = arr.shards or arr.chunks
        self.name, self.arr, self.reader = name, arr, reader
        self.shape = arr.shape
        self.RG, self.TS = outer[0], min(outer[1], arr.shape[1])
        self.RC, self.TC = arr.chunks[0], arr.chunks[1]
        self.n_ts = math.ceil(self.shape[1] / self.TS)
        n_keys = math.ceil(self.shape[0] / self.RG) * self.n_ts
        self.cap = max(1, min(cap, n_keys))
        self.lut = np.full(n_keys, -1, np.int64)
        self.keys = np.full(self.cap, -1, np.int64)
        # np.zeros (calloc): pages are committed only as slots fill, so a large cap costs nothing up front
        self.data = np.zeros((self.cap, self.RG, self.TS, *self.shape[2:]), arr.dtype)
        self.bad = np.zeros((self.cap, self.RG, math.ceil(self.TS / self.TC)), bool)
        self.any_bad = np.zeros(self.cap, bool)
        self.problems: dict[int, list] = {}
        self.used = np.zeros(self.cap, np.int64)
        self.tick = 0

    def locate(self, recs: np.ndarray, idx: np.ndarray):
        """(key, row, t) of sample ``idx`` (any shape broadcasting with ``recs``) of recordings ``recs``."""
        return (recs // self.RG) * self.n_ts + idx // self.TS, recs % self.RG, idx % self.TS

    def region(self, key: int) -> tuple[slice, slice]:
        g, j = divmod(int(key), self.n_ts)
        return (slice(g * self.RG, min((g + 1) * self.RG, self.shape[0])),
                slice(j * self.TS, min((j + 1) * self.TS, self.shape[1])))

    def claim(self, keys: np.ndarray) -> list[tuple[int, int]]:
        """Mark ``keys`` (unique) in use; give each one not held a slot.  Returns [(key, slot)] to load."""
        self.tick += 1
        slots = self.lut[keys]
        held = slots >= 0
        self.used[slots[held]] = self.tick
        missing = keys[~held]
        if not missing.size:
            return []
        victims = np.argpartition(self.used, missing.size - 1)[: missing.size] if missing.size < self.cap \
            else np.arange(self.cap)
        out = []
        for key, slot in zip(missing.tolist(), victims.tolist(), strict=True):
            if self.keys[slot] >= 0:
                self.lut[self.keys[slot]] = -1
            self.keys[slot], self.lut[key], self.used[slot] = key, slot, self.tick
            self.problems.pop(slot, None)
            self.bad[slot], self.any_bad[slot] = False, False
            out.append((key, slot))
        return out

    def release(self, items: list[tuple[int, int]]) -> None:
        """Forget claimed ``(key, slot)`` pairs (their load failed)."""
        for key, slot in items:
            self.lut[key], self.keys[slot], self.used[slot] = -1, -1, 0

    def store(self, slot: int, values: np.ndarray) -> None:
        self.data[slot, : values.shape[0], : values.shape[1]] = values

    def load_chunkwise(self, key: int, slot: int, problems: list) -> None:
        """Fill ``slot`` inner chunk by inner chunk, marking the missing and unreadable ones."""
        rows, span = self.region(key)
        self.data[slot] = VARIABLES[self.name].fill
        found = list(problems)
        for r0 in range(rows.start, rows.stop, self.RC):
            for t0 in range(span.start, span.stop, self.TC):
                rs, ts = slice(r0, min(r0 + self.RC, rows.stop)), slice(t0, min(t0 + self.TC, span.stop))
                if any(p[1].start < rs.stop and rs.start < p[1].stop and p[2].start < ts.stop and ts.start < p[2].stop
                       for p in problems):
                    continue
                try:
                    self.data[slot, rs.start - rows.start: rs.stop - rows.start,
                              ts.start - span.start: ts.stop - span.start] = np.asarray(self.arr[rs, ts])
                except Exception:  # corrupt chunk bytes the shard index did not reveal
                    found.append(("unreadable-chunk", rs, ts))
        for _, rs, ts in found:
            a, b = max(rs.start, rows.start) - rows.start, min(rs.stop, rows.stop) - rows.start
            c, d = (max(ts.start, span.start) - span.start) // self.TC, -(-(min(ts.stop, span.stop) - span.start)
                                                                         // self.TC)
            self.bad[slot, a:b, c:d] = True
        self.any_bad[slot] = bool(found)
        self.problems[slot] = found

    def chunk_error(self, slot: int, row: int, t: int) -> SensorDataError:
        """The reader's error for the bad inner chunk under (slot, row, t)."""
        rows, span = self.region(self.keys[slot])
        r, i = rows.start + row, span.start + t
        for kind, rs, ts in self.problems.get(slot, []):
            if rs.start <= r < rs.stop and ts.start <= i < ts.stop:
                return self.reader._chunk_error(kind, self.name, rs, ts)
        return self.reader._chunk_error("missing-chunk", self.name, slice(r, r + 1), slice(i, i + 1))


class _WindowState:
    """What :func:`read_windows` keeps on a reader: shard pools and timestamp-index groups.

    The pools share ``cache_bytes`` so that every variable holds the same number of shards.
    The timestamp index of a modality covers the whole store when its timestamps take at
    most ``cache_bytes / 16`` (then one search serves every request), else one shard row
    group (each touched group is one search).
    """

    def __init__(self, rd: StoreReader) -> None:
        per = sum(math.prod(rd.arrays[n].shards or rd.arrays[n].chunks) * rd.arrays[n].dtype.itemsize for n in _VARS)
        cap = max(2, rd._cache_bytes // max(per, 1))
        self.pools = {n: ShardPool(rd, n, cap) for n in _VARS}
        self.group: dict[str, int] = {}
        for name, m in MODALITIES.items():
            arr = rd.arrays[m.time]
            size = (arr.shards or arr.chunks)[0]
            if arr.nbytes <= rd._cache_bytes // 16:
                index, _ = rd.timestamps(name, slice(0, rd.n_recordings), True)
                if int(index.width) * rd.n_recordings < 2**62:  # RowIndex keeps rows apart in one int64 range
                    size = rd.n_recordings
            self.group[name] = size


def _state(rd: StoreReader) -> _WindowState:
    if rd._windows is None:
        rd._windows = _WindowState(rd)
    return rd._windows


def _load(rd: StoreReader, todo: dict[str, list[tuple[int, int]]]) -> None:
    """Fetch the claimed shards of all variables in one round trip to zarr's event loop."""
    import asyncio  # noqa: PLC0415

    from zarr.core.sync import sync  # noqa: PLC0415  (zarr's own sync bridge)

    pools = rd._windows.pools
    fetch = []
    for name, items in todo.items():
        pool = pools[name]
        for key, slot in items:
            rows, span = pool.region(key)
            problems = chunk_problems(rd.path, pool.arr, name, rows, span, verified=rd._verified[name])
            if problems:
                pool.load_chunkwise(key, slot, problems)
            else:
                fetch.append((pool, key, slot, rows, span))
    if not fetch:
        return

    async def get():
        return await asyncio.gather(*(p.arr._async_array.getitem((rows, span)) for p, _, _, rows, span in fetch),
                                    return_exceptions=True)

    for (pool, key, slot, _, _), values in zip(fetch, sync(get()), strict=True):
        if isinstance(values, Exception):
            pool.load_chunkwise(key, slot, [])
        else:
            pool.store(slot, np.asarray(values))


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
    try:
        return _read_windows(rd, recs, s0, int(steps), policy == "quarantine", imu_window)
    except _TooManyShards:  # more distinct shards than a pool holds: halve the request list
        if recs.size < 2:
            raise RuntimeError(f"one window of {steps} steps needs more shards than the reader's cache_bytes "
                               f"({rd._cache_bytes}) holds") from None
        h = recs.size // 2
        a = read_windows(store, recs[:h], s0[:h], steps, policy, imu_window=imu_window, reader=rd)
        b = read_windows(store, recs[h:], s0[h:], steps, policy, imu_window=imu_window, reader=rd)
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


def _read_windows(rd: StoreReader, recs: np.ndarray, s0: np.ndarray, T: int, q: bool, imu_window: int):
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
    state = _state(rd)
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
        where[var] = (key, row, t, np.unique(key[ok]))
        if where[var][3].size > pool.cap:
            raise _TooManyShards
    for var, (_, _, _, need) in where.items():
        todo[var] = pools[var].claim(need)
    if any(todo.values()):
        try:
            _load(rd, todo)
        except BaseException:  # never leave a claimed slot without its data
            for var, items in todo.items():
                pools[var].release(items)
            raise

    # 3. gather: one fancy index per variable; then chunk and value checks
    out = {}
    for name, var in (*((n, m.var) for n, m in MODALITIES.items()), ("targets", "targets")):
        idx, ok = aligned[name]
        pool = pools[var]
        key, row, t, _ = where[var]
        slot = pool.lut[key]  # -1 (not held) only where not ok: reads a harmless slot, masked below
        x = pool.data[slot, row, t]
        readable = ok
        if pool.any_bad.any() and pool.any_bad[slot[ok]].any():
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
        if name == "targets":
            flag(nonfinite(x, readable), "nan-or-inf", var, "NaN or Inf targets")
        else:
            used = readable.any(axis=-1) if name == "imu" else readable
            flag(nonfinite(np.where(readable[..., None], x, 0) if name == "imu" else x, used), "nan-or-inf", var,
                 "NaN or Inf values (or fill values of a missing chunk)")
        out[name] = (x, ok)

    quarantined = bad.any(axis=1)
    keep = valid & ~quarantined[:, None]
    cam, cam_ok = out["camera"]
    lid, lid_ok = out["lidar"]
    imu, imu_ok = out["imu"]
    targets, _ = out["targets"]
    cam_ok, lid_ok, imu_ok = cam_ok & keep, lid_ok & keep, imu_ok & keep[..., None]
    return AlignedBatch(
        recordings=recs, steps=step_idx, camera=_zero_where_not(cam, cam_ok), camera_valid=cam_ok,
        lidar=_zero_where_not(lid, lid_ok), lidar_valid=lid_ok, imu=_zero_where_not(imu, imu_ok), imu_valid=imu_ok,
        targets=_zero_where_not(targets, keep), valid=keep, quarantined=quarantined,
        restart=np.zeros(N, bool), problems=tuple(problems))
