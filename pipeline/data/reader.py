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
from pipeline.data.store import chunk_problems, open_dataset, zarr_arrays
from pipeline.data.validate import clean_times, timestamp_problems, validate_schema

# zarr decodes one chunk per asyncio batch by default; a shard holds 20 inner chunks, and
# decoding 16 at a time reads a shard set (7 variables, 17.5 MB) in 19 instead of 26 ms
# (warm page cache, interleaved repeats).  In force around every read of this package.
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
        return np.asarray(self.ds.variables[name].values)

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
                if not quarantine:
                    raise self.chunk_error("unreadable-chunk", name, rows, span, exc) from exc
        out = np.full(var[key].shape, VARIABLES[name].fill, var.dtype)
        step = arr.chunks[0]
        for a in range(rows.start - rows.start % step, rows.stop, step):
            sub = slice(max(a, rows.start), min(a + step, rows.stop))
            if bad[sub.start - rows.start: sub.stop - rows.start].any():
                continue
            try:
                out[sub.start - rows.start: sub.stop - rows.start] = var[(sub, span)[: var.ndim]].values
            except Exception:
                bad[sub.start - rows.start: sub.stop - rows.start] = True
        return out, bad

    def chunk_error(self, kind, name, rs: slice, ts: slice, exc=None) -> SensorDataError:
        dim = VARIABLES[name].dims[1] if len(VARIABLES[name].dims) > 1 else None
        rate = {m.dim: self.rate(k) for k, m in MODALITIES.items()} | {"step": float(self.attrs["targets_rate_hz"])}
        time_s = (ts.start / rate[dim], ts.stop / rate[dim]) if dim in rate else None
        why = f"; {type(exc).__name__}: {exc}" if exc is not None else ""
        return SensorDataError(kind, name, f"chunk rows {rs.start}..{rs.stop - 1}, {dim or 'index'} "
                               f"{ts.start}..{ts.stop - 1} (time approx. from the nominal rate){why}",
                               recordings=range(rs.start, rs.stop), time_s=time_s)

    def timestamps(self, modality: str, rows: slice, quarantine: bool = False):
        """Cached ``(index, spans)`` of one modality's timestamps for recordings ``rows``.

        ``index`` is a :class:`RowIndex` over the timestamps, searchable even where the raw
        ones repeat or go back (running maximum); ``spans`` maps row -> [(lo_ns, hi_ns)] time spans spoiled by bad timestamps
        (including rows whose timestamp chunks are missing: one span covering everything).
        """
        key = (modality, rows.start, rows.stop, quarantine)
        if key in self._times:
            self._times.move_to_end(key)
            return self._times[key]
        m = MODALITIES[modality]
        counts = self.meta[m.count][rows]
        t, bad_rows = self.read(m.time, rows, slice(0, max(int(counts.max(initial=0)), 1)), quarantine)
        _, bad = timestamp_problems(t, counts, self.meta["t_start"][rows], np.arange(rows.start, rows.stop), m.time)
        bad[bad_rows] = False
        t_clean, spans = clean_times(t, counts, bad)
        for r in np.nonzero(bad_rows)[0]:
            spans[int(r)] = [(np.iinfo(np.int64).min, np.iinfo(np.int64).max)]
        entry = (RowIndex(t_clean, counts), spans)
        self._times[key] = entry
        self._cached += entry[0].flat.nbytes
        while self._cached > self.cache_bytes and len(self._times) > 1:
            _, old = self._times.popitem(last=False)
            self._cached -= old[0].flat.nbytes
        return entry


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
