"""An open recording store for workers: schema checked once, metadata and timestamps cached.

A worker keeps one :class:`StoreReader` per store (see :func:`open_reader`).  Per-recording
metadata is read once; each modality's timestamps are read once per group of recordings
(they are the seek index into the sensor arrays: 8 bytes per sample) and kept in a
bounded LRU cache; each shard's presence and index are verified once.  Sensor data is
read through the reader's shard pools (:mod:`pipeline.data.pools`): whole decoded shards,
so the next blocks of a batch run's recordings, and other requests in the same shards,
are served from memory.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from pathlib import Path

import numpy as np

from pipeline.data.align import RowIndex
from pipeline.data.errors import SchemaError, SensorDataError
from pipeline.data.schema import MODALITIES, NS, VARIABLES
from pipeline.data.store import (
    chunk_problems,
    decode_problems,
    open_dataset,
    read_failure,
    zarr_arrays,
)
from pipeline.data.validate import (
    clean_times,
    fill_lost_times,
    lost_runs,
    timestamp_problems,
    validate_schema,
)

# zarr decodes one chunk per asyncio batch by default; a shard holds 20 inner chunks, and
# this decodes 16 at a time when reading a shard set (7 variables, 18.0 MB in the demo
# store: `du -cb data/demo.zarr/{vision,lidar,imu,t_cam,t_lidar,t_imu,targets}/c/0/0`).
# In force around every read of this package.
ZARR_READ_CONFIG = {"codec_pipeline.batch_size": 16}


def zarr_read_config():
    """Context manager: :data:`ZARR_READ_CONFIG` in force (zarr reads it when it decodes)."""
    import zarr

    return zarr.config.set(ZARR_READ_CONFIG)


class StoreReader:
    """Read-side handle on one store (``path``); safe to reuse across micro-batches.

    ``cache_bytes`` bounds each cache (timestamp indexes; the shard pools that
    :func:`pipeline.data.read_batch` and :func:`pipeline.data.read_windows` gather from).
    """

    def __init__(self, path: str | Path, cache_bytes: int = 512 * 2**20) -> None:
        self.path = Path(path).resolve()
        self.ds = open_dataset(self.path)
        validate_schema(self.ds)
        self.arrays = zarr_arrays(self.path)
        self.attrs = dict(self.ds.attrs)
        self.n_recordings = self.ds.sizes["recording"]
        self.step_ns = int(round(NS / float(self.attrs["targets_rate_hz"])))
        self.meta = {n: self._read_meta(n) for n in ("t_start", "n_steps", *(m.count for m in MODALITIES.values()))}
        for m in MODALITIES.values():
            over = np.nonzero((self.meta[m.count] < 0) | (self.meta[m.count] > self.ds.sizes[m.dim]))[0]
            if over.size:
                raise SchemaError(m.count, f"valid count outside [0, {self.ds.sizes[m.dim]}]", recordings=over)
        self._times: OrderedDict = OrderedDict()
        self.cache_bytes, self._cached = cache_bytes, 0
        self.verified: dict[str, set] = {n: set() for n in VARIABLES}
        self.pools = None  # pipeline.data.pools.PoolState (shard pools, index groups), made on first use

    def _read_meta(self, name: str) -> np.ndarray:
        problems = chunk_problems(self.path, self.arrays[name], name)
        if problems:
            raise SensorDataError(problems[0][0], name, "per-recording metadata chunk absent or truncated",
                                  recordings=range(problems[0][1].start, problems[0][1].stop))
        try:
            return np.asarray(self.ds.variables[name].values)
        except Exception as exc:  # checksum mismatch, undecodable bytes: fatal, as a missing chunk is
            if read_failure(exc) is None:
                raise
            everything = slice(0, self.n_recordings)
            raise (self.decode_errors(name, everything)[:1]
                   or [self.chunk_error("unreadable-chunk", name, everything, slice(0, 1), exc)])[0] from exc

    @property
    def model_rate_hz(self) -> float:
        """The model clock (Hz) the store's targets are on (attrs ``targets_rate_hz``)."""
        return float(self.attrs["targets_rate_hz"])

    @property
    def n_steps(self) -> np.ndarray:
        """(recording,) int32: valid model steps per recording."""
        return self.meta["n_steps"]

    @property
    def sizes(self):
        """Dimension sizes of the store (``recording``, ``y``, ``x``, ``beam``, ...)."""
        return self.ds.sizes

    @property
    def recording_chunk(self) -> int:
        """Recordings per input chunk (micro-batches align with it)."""
        return int(self.arrays["vision"].chunks[0])

    @property
    def recording_shard(self) -> int:
        """Recordings per input shard (per chunk where the store is not sharded)."""
        arr = self.arrays["vision"]
        return int((arr.shards or arr.chunks)[0])

    def rate(self, modality: str) -> float:
        """Nominal rate (Hz) of ``modality`` from the store's attrs."""
        return float(self.attrs[MODALITIES[modality].rate_attr])

    def read(self, name: str, rows: slice, span: slice | None = None, quarantine: bool = False):
        """Values of ``name`` over rows x span (first two dims), checking its chunks first.

        Returns ``(values, bad_rows)``: ``bad_rows (len(rows),)`` marks rows whose chunks are
        missing or unreadable (filled with the variable's fill value) -- only possible with
        ``quarantine``; otherwise the problem raises :class:`SensorDataError`.
        """
        arr, var = self.arrays[name], self.ds.variables[name]
        span = span if span is not None else slice(0, var.shape[1])
        problems = chunk_problems(self.path, arr, name, rows, span, verified=self.verified[name])
        bad = np.zeros(rows.stop - rows.start, bool)
        for kind, rs, ts in problems:
            if not quarantine:
                raise self.chunk_error(kind, name, rs, ts)
            bad[max(rs.start, rows.start) - rows.start: min(rs.stop, rows.stop) - rows.start] = True
        key = (rows, span) if var.ndim > 1 else (rows,)
        if not bad.any():
            try:
                with zarr_read_config():
                    return np.asarray(var[key].values), bad
            except Exception as exc:  # corrupt chunk bytes that the index did not reveal
                if read_failure(exc) is None:
                    raise
                if not quarantine:
                    raise (self.decode_errors(name, rows, span)[:1] or
                           [self.chunk_error("unreadable-chunk", name, rows, span, exc)])[0] from exc
        out = np.full(var[key].shape, VARIABLES[name].fill, var.dtype)
        step = arr.chunks[0]
        for a in range(rows.start - rows.start % step, rows.stop, step):
            sub = slice(max(a, rows.start), min(a + step, rows.stop))
            if bad[sub.start - rows.start: sub.stop - rows.start].any():
                continue
            try:
                out[sub.start - rows.start: sub.stop - rows.start] = var[(sub, span)[: var.ndim]].values
            except Exception as exc:
                if read_failure(exc) is None:
                    raise
                bad[sub.start - rows.start: sub.stop - rows.start] = True
        return out, bad

    def decode_errors(self, name: str, rows: slice, span: slice | None = None) -> list[SensorDataError]:
        """One error per inner chunk of ``name`` under rows x span that fails to read
        (checksum mismatch, undecodable bytes, I/O error), each read alone: slow, for
        naming exactly what a failed read hit."""
        return [self.chunk_error(kind, name, rs, ts, why)
                for kind, rs, ts, why in decode_problems(self.arrays[name], rows, span)]

    def read_cells(self, name: str, rows: slice, span: slice):
        """Values of ``name`` over rows x span (first two dims) and the inner chunks lost there.

        Like :meth:`read` with ``quarantine``, but exact to the inner chunk: returns
        ``(values, lost)`` with ``lost`` a list of ``(kind, rows, span[, exc])`` (missing or
        unreadable inner chunks, possibly reaching past rows x span) whose values are the
        variable's fill value.  Only storage faults are caught (:func:`read_failure`).
        """
        arr, var = self.arrays[name], self.ds.variables[name]
        lost = list(chunk_problems(self.path, arr, name, rows, span, verified=self.verified[name]))
        if not lost:
            try:
                with zarr_read_config():
                    return np.asarray(var[rows, span].values), lost
            except Exception as exc:
                if read_failure(exc) is None:
                    raise
        out = np.full(var[rows, span].shape, VARIABLES[name].fill, var.dtype)
        outer, inner = arr.shards or arr.chunks, arr.chunks

        def hit(rs: slice, ts: slice) -> bool:
            return any(p[1].start < rs.stop and rs.start < p[1].stop and p[2].start < ts.stop and ts.start < p[2].stop
                       for p in lost)

        def get(rs: slice, ts: slice) -> Exception | None:  # None: read
            try:
                with zarr_read_config():
                    out[rs.start - rows.start: rs.stop - rows.start, ts.start - span.start: ts.stop - span.start] = \
                        var[rs, ts].values
            except Exception as exc:
                if read_failure(exc) is None:
                    raise
                return exc
            return None

        def tiles(sl: slice, step: int):
            for a in range(sl.start - sl.start % step, sl.stop, step):
                yield slice(max(a, sl.start), min(a + step, sl.stop))

        for rs_o in tiles(rows, outer[0]):  # whole shards where they read; inner chunks elsewhere
            for ts_o in tiles(span, outer[1]):
                if not hit(rs_o, ts_o) and get(rs_o, ts_o) is None:
                    continue
                for rs in tiles(rs_o, inner[0]):
                    for ts in tiles(ts_o, inner[1]):
                        if not hit(rs, ts) and (exc := get(rs, ts)) is not None:
                            lost.append(("unreadable-chunk", rs, ts, exc))
        return out, lost

    def chunk_error(self, kind, name, rs: slice, ts: slice, exc=None) -> SensorDataError:
        """The error for bad chunks of ``name`` under rs x ts; ``exc``: the read's exception, or
        what it meant (:func:`pipeline.data.store.read_failure`)."""
        dim = VARIABLES[name].dims[1] if len(VARIABLES[name].dims) > 1 else None
        rate = {m.dim: self.rate(k) for k, m in MODALITIES.items()} | {"step": float(self.attrs["targets_rate_hz"])}
        time_s = (ts.start / rate[dim], ts.stop / rate[dim]) if dim in rate else None
        why = "" if exc is None else f"; {exc}" if isinstance(exc, str) else \
            f"; {read_failure(exc) or f'{type(exc).__name__}: {exc}'}"
        return SensorDataError(kind, name, f"chunk rows {rs.start}..{rs.stop - 1}, {dim or 'index'} "
                               f"{ts.start}..{ts.stop - 1} (time approx. from the nominal rate){why}",
                               recordings=range(rs.start, rs.stop), time_s=time_s)

    def timestamps(self, modality: str, rows: slice, quarantine: bool = False):
        """Cached ``(index, spans)`` of one modality's timestamps for recordings ``rows``.

        ``index`` is a :class:`RowIndex` over the timestamps, queried in ns after each
        recording's ``t_start`` (its own clock only), searchable even where the raw
        ones repeat or go back (running maximum); ``spans`` maps row -> [(lo_ns, hi_ns, lost)]
        time spans spoiled by bad timestamps (``lost`` None) or by timestamps whose inner
        chunks are missing or unreadable (``quarantine`` only; ``lost`` is the chunk's
        ``(kind, rows, span[, exc])``): from the last known timestamp before them to the first
        known one after them, so only the steps that could use them are spoiled.
        """
        key = (modality, rows.start, rows.stop, quarantine)
        if key in self._times:
            self._times.move_to_end(key)
            return self._times[key]
        m = MODALITIES[modality]
        counts = self.meta[m.count][rows]
        span = slice(0, max(int(counts.max(initial=0)), 1))
        t, lost = self.read_cells(m.time, rows, span) if quarantine else (self.read(m.time, rows, span)[0], [])
        runs = {}
        if lost:  # stand-ins for the lost timestamps; their span is masked below
            mask = np.zeros(t.shape, bool)
            for _, rs, ts, *_ in lost:
                mask[max(rs.start - rows.start, 0): rs.stop - rows.start, max(ts.start, 0): ts.stop] = True
            runs = lost_runs(mask, counts)
            t = fill_lost_times(t, counts, runs, self.meta["t_start"][rows])
        _, bad = timestamp_problems(t, counts, self.meta["t_start"][rows], np.arange(rows.start, rows.stop), m.time)
        t_clean, spans = clean_times(t, counts, bad)
        spans = {r: [(lo, hi, None) for lo, hi in v] for r, v in spans.items()}
        for r, rr in runs.items():
            n, g = int(counts[r]), rows.start + r
            for a, b in rr:
                cause = next(p for p in lost if p[1].start <= g < p[1].stop and p[2].start <= b and a < p[2].stop)
                spans.setdefault(r, []).append((int(t_clean[r, a - 1]) if a > 0 else np.iinfo(np.int64).min,
                                                int(t_clean[r, b + 1]) if b + 1 < n else np.iinfo(np.int64).max,
                                                cause))
        entry = (RowIndex(t_clean, counts, self.meta["t_start"][rows]), spans)  # queries: ns after t_start
        self._times[key] = entry
        self._cached += entry[0].nbytes
        while self._cached > self.cache_bytes and len(self._times) > 1:
            _, old = self._times.popitem(last=False)
            self._cached -= old[0].nbytes
        return entry


# A reader that walks a store in order (a batch run's regions, a trainer's recording groups:
# region grid = shard grid, each shard set read once) keeps a few shard sets, not the default
# 512 MiB, so its slots are reused while their pages are warm.  With every shard in a fresh
# slot, each region's shard set (18.0 MB, the du command above) faults in page by page.
SEQUENTIAL_CACHE_BYTES = 64 << 20


@functools.lru_cache(maxsize=8)
def _cached_reader(path: str, stamp: int, cache_bytes: int | None) -> StoreReader:
    return StoreReader(path) if cache_bytes is None else StoreReader(path, cache_bytes)


def open_reader(path: str | Path, cache_bytes: int | None = None) -> StoreReader:
    """A per-process shared :class:`StoreReader` (one per ``cache_bytes``; None: the
    default), reopened when the store is rewritten."""
    p = Path(path).resolve()
    try:
        stamp = (p / "zarr.json").stat().st_mtime_ns
    except FileNotFoundError:
        return StoreReader(p)  # raises a SchemaError naming the missing store
    return _cached_reader(str(p), stamp, cache_bytes)
