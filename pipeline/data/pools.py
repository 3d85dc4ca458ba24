"""Shard pools: the decoded sensor data that aligned reads gather from.

Each variable keeps a pool of decoded shards (shard rows x time shard) in one
preallocated array ``(slots, rows, times, ...)`` with a lookup table
(row group, time shard) -> slot, so gathering every sample a read uses is a single
fancy index per variable (:func:`pipeline.data.windows.gather`).  Shards not in the pool
are fetched in one round trip to zarr's event loop; the least recently used ones are
replaced.  The pools of a reader share its ``cache_bytes``.  Missing or unreadable inner
chunks are tracked per (slot, row, inner time chunk), so only the reads that use them
are failed or quarantined.
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.data.errors import SensorDataError
from pipeline.data.reader import StoreReader, zarr_read_config
from pipeline.data.schema import MODALITIES, VARIABLES
from pipeline.data.store import chunk_problems, read_failure
from pipeline.data.validate import nonfinite
from pipeline.data.zarr_io import get_many

VARS = (*(m.var for m in MODALITIES.values()), "targets")

class ShardPool:
    """Decoded shards of one variable in one array, for single-fancy-index gathers.

    ``data (cap + 1, RG, TS, ...)`` holds shard (row group g, time shard j) in slot
    ``lut[g * n_ts + j]`` (-1: not held); slot ``cap`` stays all zeros, the source of every
    sample a read does not use (:meth:`flat_index`).  ``bad (cap, RG, TS // TC)`` marks
    missing or unreadable inner chunks, whose values are the variable's fill value;
    ``problems[slot]`` lists them as ``(kind, rows, span[, why])`` for error messages.  For float
    variables ``nonfinite`` (one entry per row of ``flat``) marks the samples holding NaN or
    Inf, found once when a shard is loaded, so reads check the samples they use by lookup.
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
        self.data = np.zeros((self.cap + 1, self.RG, self.TS, *self.shape[2:]), arr.dtype)
        self.flat = self.data.reshape(-1, *self.shape[2:])  # one row per (slot, row, t)
        self.zero = self.cap * self.RG * self.TS  # first sample of the all-zero slot
        self.nonfinite = np.zeros(len(self.flat), bool) if arr.dtype.kind == "f" else None
        self.bad = np.zeros((self.cap, self.RG, math.ceil(self.TS / self.TC)), bool)
        self.any_bad = np.zeros(self.cap, bool)
        self.problems: dict[int, list] = {}
        self.used = np.zeros(self.cap, np.int64)
        self._everywhere = np.ones((self.RG, self.TS), bool)
        self.tick = 0

    def locate(self, recs: np.ndarray, idx: np.ndarray):
        """(key, row, t) of sample ``idx`` (any shape broadcasting with ``recs``) of recordings ``recs``."""
        return (recs // self.RG) * self.n_ts + idx // self.TS, recs % self.RG, idx % self.TS

    def flat_index(self, key: np.ndarray, row: np.ndarray, t: np.ndarray, use: np.ndarray) -> np.ndarray:
        """Rows of :attr:`flat` holding (key, row, t) (held keys), the all-zero slot where not ``use``."""
        return np.where(use, (self.lut[key] * self.RG + row) * self.TS + t, self.zero)

    def needed(self, key: np.ndarray) -> np.ndarray:
        """The distinct keys in ``key`` (1-D), sorted."""
        if self.lut.size <= 1 << 16:  # small key space: counting beats hashing
            return np.flatnonzero(np.bincount(key, minlength=self.lut.size))
        return np.unique(key)

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
        self._find_nonfinite(slot)

    def _find_nonfinite(self, slot: int) -> None:
        if self.nonfinite is not None:
            n = self.RG * self.TS
            self.nonfinite[slot * n: (slot + 1) * n] = nonfinite(self.data[slot], self._everywhere).ravel()

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
                except Exception as exc:  # corrupt chunk bytes the shard index did not reveal
                    why = read_failure(exc)
                    if why is None:  # not a storage fault: a bug must not pass as bad data
                        raise
                    found.append(("unreadable-chunk", rs, ts, why))
        for _, rs, ts, *_ in found:
            a, b = max(rs.start, rows.start) - rows.start, min(rs.stop, rows.stop) - rows.start
            c, d = (max(ts.start, span.start) - span.start) // self.TC, -(-(min(ts.stop, span.stop) - span.start)
                                                                         // self.TC)
            self.bad[slot, a:b, c:d] = True
        self.any_bad[slot] = bool(found)
        self.problems[slot] = found
        self._find_nonfinite(slot)

    def chunk_error(self, slot: int, row: int, t: int) -> SensorDataError:
        """The reader's error for the bad inner chunk under (slot, row, t)."""
        rows, span = self.region(self.keys[slot])
        r, i = rows.start + row, span.start + t
        for kind, rs, ts, *why in self.problems.get(slot, []):
            if rs.start <= r < rs.stop and ts.start <= i < ts.stop:
                return self.reader.chunk_error(kind, self.name, rs, ts, *why)
        return self.reader.chunk_error("missing-chunk", self.name, slice(r, r + 1), slice(i, i + 1))


class PoolState:
    """What aligned reads keep on a reader: shard pools and timestamp-index groups.

    The pools share ``cache_bytes`` so that every variable holds the same number of shards.
    The timestamp index of a modality covers the whole store when its timestamps take at
    most ``cache_bytes / 16`` (then one search serves every request), else one shard row
    group (each touched group is one search).
    """

    def __init__(self, rd: StoreReader) -> None:
        names = [n for n in VARS if n in rd.arrays]  # targets are optional
        per = sum(math.prod(rd.arrays[n].shards or rd.arrays[n].chunks) * rd.arrays[n].dtype.itemsize for n in names)
        cap = max(2, rd.cache_bytes // max(per, 1))
        self.pools = {n: ShardPool(rd, n, cap) for n in names}
        self.group: dict[str, int] = {}
        for name, m in MODALITIES.items():
            arr = rd.arrays[m.time]
            size = (arr.shards or arr.chunks)[0]
            if arr.nbytes <= rd.cache_bytes // 16:
                rd.timestamps(name, slice(0, rd.n_recordings), True)  # built here, at a worker's set-up
                size = rd.n_recordings  # any clocks: RowIndex packs each row on its own t_start
            self.group[name] = size


def pool_state(rd: StoreReader) -> PoolState:
    """The reader's :class:`PoolState`, made on first use."""
    if rd.pools is None:
        rd.pools = PoolState(rd)
    return rd.pools


def prefault(rd: StoreReader) -> None:
    """Build ``rd``'s pools and timestamp indexes if needed and touch the pages of every
    slot that holds no shard (writing the zeros they hold), so that first reads do not
    fault them in one by one (~14 us a page on the dev VM).  Slots holding shards are
    left untouched."""
    for pool in pool_state(rd).pools.values():
        for slot in np.flatnonzero(pool.keys < 0).tolist() + [pool.cap]:
            pool.data[slot].fill(0)


def load_shards(rd: StoreReader, todo: dict[str, list[tuple[int, int]]]) -> None:
    """Fetch the claimed shards of all variables in one round trip to zarr's event loop."""
    pools = rd.pools.pools
    fetch = []
    for name, items in todo.items():
        pool = pools[name]
        for key, slot in items:
            rows, span = pool.region(key)
            problems = chunk_problems(rd.path, pool.arr, name, rows, span, verified=rd.verified[name])
            if problems:
                pool.load_chunkwise(key, slot, problems)
            else:
                fetch.append((pool, key, slot, rows, span))
    if not fetch:
        return
    with zarr_read_config():
        got = get_many(((p.arr, (rows, span)) for p, _, _, rows, span in fetch), return_exceptions=True)
    for (pool, key, slot, _, _), values in zip(fetch, got, strict=True):
        if isinstance(values, Exception):
            if read_failure(values) is None:
                raise values
            pool.load_chunkwise(key, slot, [])  # finds the bad inner chunks and why
        else:
            pool.store(slot, np.asarray(values))
