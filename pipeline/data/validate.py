"""Checks on recording stores: the schema (always fatal) and the values (policy decides).

:func:`validate_schema` runs once when a store is opened.  :func:`timestamp_problems` and
:func:`nonfinite_problems` run on the rows a micro-batch is about to use and return both
the errors and a mask of the bad samples, so the ``quarantine`` policy can drop exactly
the affected (recording, time block) rows.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from pipeline.data.errors import SchemaError, SensorDataError
from pipeline.data.schema import (
    MODALITIES,
    PAD_TIME,
    REQUIRED_ATTRS,
    SCHEMA_VERSION,
    VARIABLES,
    units_attr,
)


def validate_schema(ds: xr.Dataset) -> None:
    """Raise :class:`SchemaError` naming the first part of the schema ``ds`` breaks."""
    missing = [n for n, s in VARIABLES.items() if s.required and n not in ds.variables]
    if missing:
        mods = [m.name for m in MODALITIES.values() if {m.var, m.time, m.count} & set(missing)]
        what = f" (modality {', '.join(mods)} missing)" if mods else ""
        raise SchemaError(missing[0], f"required variable(s) {missing} not in the store{what}")
    for key, typ in REQUIRED_ATTRS.items():
        if key not in ds.attrs or not isinstance(ds.attrs[key], typ) or isinstance(ds.attrs[key], bool):
            raise SchemaError("<attrs>", f"dataset attr {key!r} missing or not {typ}: {ds.attrs.get(key)!r}")
        if key.endswith("_hz") and not ds.attrs[key] > 0:
            raise SchemaError("<attrs>", f"rate attr {key}={ds.attrs[key]!r} must be > 0")
    if ds.attrs["schema"] != SCHEMA_VERSION:
        raise SchemaError("<attrs>", f"schema attr is {ds.attrs['schema']!r}, expected {SCHEMA_VERSION!r}")
    for name, spec in VARIABLES.items():
        if name not in ds.variables:
            continue
        v = ds.variables[name]
        if v.dims != spec.dims:
            raise SchemaError(name, f"dims {v.dims}, expected {spec.dims}")
        if v.dtype != np.dtype(spec.dtype):
            raise SchemaError(name, f"dtype {v.dtype}, expected {spec.dtype}")
        want = units_attr(spec.units)
        got = v.attrs.get("units")
        if isinstance(got, tuple | np.ndarray):
            got = list(got)
        if got != want:
            raise SchemaError(name, f"units attr {got!r}, expected {want!r}")
    fixed = {"channel": 6, "target": 3, "pose_axis": 3}
    for dim, n in fixed.items():
        if dim in ds.sizes and ds.sizes[dim] != n:
            raise SchemaError(dim, f"dimension {dim!r} has length {ds.sizes[dim]}, expected {n}")
    beams = round(2 * np.pi / ds.attrs["lidar_angle_increment_rad"])
    if ds.sizes["beam"] != beams:
        raise SchemaError("lidar", f"{ds.sizes['beam']} beams but lidar_angle_increment_rad implies {beams}")


def _time_s(t: np.ndarray, t0: int) -> float:
    return float((int(t) - int(t0)) / 1e9) if int(t) != PAD_TIME else float("nan")


def timestamp_problems(t: np.ndarray, counts: np.ndarray, t_start: np.ndarray, recordings: np.ndarray,
                       variable: str, offset: int = 0):
    """Timestamps that repeat, go backwards, or are padding inside the valid count.

    Parameters
    ----------
    t : (R, N) int64 ns, counts (R,), t_start (R,) int64 ns, recordings (R,) store indices.
    offset : index in the store of column 0 of ``t``.

    Returns
    -------
    errors : list of SensorDataError (one per bad recording)
    bad : (R, N) bool, the samples that cannot be trusted (both sides of each bad step).
    """
    R, N = t.shape
    inside = np.arange(N) < (np.asarray(counts) - offset)[:, None]
    bad = inside & (t == PAD_TIME)
    if N > 1:
        step_bad = (t[:, 1:] <= t[:, :-1]) & inside[:, 1:]  # not np.diff: it wraps across -9e18 .. 9e18
        bad[:, 1:] |= step_bad
        bad[:, :-1] |= step_bad
    errors = []
    for r in np.nonzero(bad.any(axis=1))[0]:
        cols = np.nonzero(bad[r])[0]
        good = t[r, cols][t[r, cols] != PAD_TIME]
        span = (_time_s(good.min(), t_start[r]), _time_s(good.max(), t_start[r])) if good.size else None
        errors.append(SensorDataError(
            "timestamps-not-increasing", variable,
            f"{len(cols)} sample(s) at indices {offset + cols[0]}..{offset + cols[-1]} repeat, go backwards "
            "or are padding/missing inside the valid count", recordings=[int(recordings[r])], time_s=span))
    return errors, bad


def nonfinite(x: np.ndarray, used: np.ndarray) -> np.ndarray:
    """(R, T) bool: entries of ``x (R, T, ...)`` that feed the network (``used``) and hold NaN/Inf."""
    if x.dtype.kind != "f":
        return np.zeros(used.shape, bool)
    flat = x.reshape(x.shape[0], x.shape[1], int(np.prod(x.shape[2:])))  # not -1: x may be empty
    # a finite sum proves every term finite (NaN/Inf propagate); one pass, no bool temporaries.
    # A non-finite sum may also be overflow, so those entries are checked exactly.
    suspect = ~np.isfinite(flat.sum(axis=-1)) & used
    if suspect.any():
        suspect[suspect] = ~np.isfinite(flat[suspect]).all(axis=-1)
    return suspect


def row_errors(bad: np.ndarray, kind: str, variable: str, detail: str, recordings: np.ndarray,
               times_s: np.ndarray, steps: np.ndarray) -> list[SensorDataError]:
    """One error per recording with a bad step in ``bad (R, T)``, naming its time and step range.

    ``times_s`` and ``steps`` are (T,) shared by all rows, or (R, T) per row (scattered windows).
    """
    errors = []
    for r in np.nonzero(bad.any(axis=1))[0]:
        ks = np.nonzero(bad[r])[0]
        ts, st = (times_s[r] if times_s.ndim == 2 else times_s), (steps[r] if steps.ndim == 2 else steps)
        errors.append(SensorDataError(
            kind, variable, f"{len(ks)} step(s): {detail}", recordings=[int(recordings[r])],
            time_s=(ts[ks[0]], ts[ks[-1]]), steps=(int(st[ks[0]]), int(st[ks[-1]]) + 1)))
    return errors


def clean_times(t: np.ndarray, counts: np.ndarray, bad: np.ndarray):
    """Make rows with bad timestamps searchable, and find the time spans they spoil.

    Returns ``t_clean`` (running maximum over the valid part, padding-in-count replaced by
    the previous value) and per row a list of ``(lo_ns, hi_ns)`` spans: from the last good
    sample before each bad run to the first good one after it.
    """
    t_clean = t.copy()
    spans: dict[int, list[tuple[int, int]]] = {}
    for r in np.nonzero(bad.any(axis=1))[0]:
        n = int(counts[r])
        row = np.where(t[r, :n] == PAD_TIME, np.iinfo(np.int64).min, t[r, :n])
        row = np.maximum.accumulate(row)
        t_clean[r, :n] = np.where(row == np.iinfo(np.int64).min, 0, row)
        cols = np.nonzero(bad[r, :n])[0]
        runs = np.split(cols, np.nonzero(np.diff(cols) > 1)[0] + 1)
        spans[int(r)] = [(int(t_clean[r, a - 1]) if a > 0 else np.iinfo(np.int64).min,
                          int(t_clean[r, b + 1]) if b + 1 < n else np.iinfo(np.int64).max)
                         for a, b in ((run[0], run[-1]) for run in runs)]
    return t_clean, spans


def lost_runs(lost: np.ndarray, counts: np.ndarray) -> dict[int, list[tuple[int, int]]]:
    """Row -> [(first, last)] runs of samples inside the valid count that ``lost (R, N)`` marks."""
    inside = lost & (np.arange(lost.shape[1]) < np.asarray(counts)[:, None])
    out = {}
    for r in np.nonzero(inside.any(axis=1))[0]:
        cols = np.nonzero(inside[r])[0]
        runs = np.split(cols, np.nonzero(np.diff(cols) > 1)[0] + 1)
        out[int(r)] = [(int(run[0]), int(run[-1])) for run in runs]
    return out


def fill_lost_times(t: np.ndarray, counts: np.ndarray, runs: dict[int, list[tuple[int, int]]],
                    origin: np.ndarray) -> np.ndarray:
    """``t`` with stand-ins for timestamps whose chunks are lost (``runs`` from :func:`lost_runs`).

    Each run becomes a 1-ns ramp just after the last timestamp known before it (just
    before the first one after it at a row's start; from ``origin[r]`` in a row with
    none), so the row stays increasing and searchable without ever leaving the span
    between its known neighbours, which the reader masks (``spans``).
    """
    if not runs:
        return t
    t = t.copy()
    lo_ok, hi_ok = np.iinfo(np.int64).min + 1, PAD_TIME - 1
    for r, rr in runs.items():
        for a, b in rr:
            n = b - a + 1
            before = int(t[r, a - 1]) if a > 0 and t[r, a - 1] != PAD_TIME else None
            after = int(t[r, b + 1]) if b + 1 < counts[r] and t[r, b + 1] != PAD_TIME else None
            if before is not None:
                first = before + 1
            elif after is not None:
                first = after - n
            else:
                first = int(origin[r])
            first = min(max(first, lo_ok), hi_ok - n)
            t[r, a: b + 1] = np.arange(first, first + n, dtype=np.int64)
    return t
