"""Whole-store validation for ``neuroliquid task=check``.

Opens the store (schema), verifies that every chunk of every variable exists and is
not truncated, then scans the valid part of every modality shard by shard (bounded
memory): timestamps strictly increasing, no NaN/Inf, valid counts consistent, and every
entry past a valid count padding (``not-padding``: int64 max timestamps, NaN floats, 0
vision; targets past ``n_steps`` NaN).  Clocks that are legal but worth a look (before 2000,
far from the store's median start, a forward jump inside a recording) are warnings: they
never fail the check, and alignment does not depend on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.data.errors import SensorDataError
from pipeline.data.reader import StoreReader
from pipeline.data.schema import MODALITIES, NS, PAD_TIME, VARIABLES
from pipeline.data.store import chunk_problems, has_checksums
from pipeline.data.validate import nonfinite, timestamp_problems

CLOCK_2000_NS = 946_684_800 * NS  # 2000-01-01T00:00:00Z: earlier clocks were never set (or are simulated)
CLOCK_FAR_NS = 365 * 86400 * NS  # a recording's clock this far from the store's median start
CLOCK_JUMP_NS = 3600 * NS  # a forward gap this long between consecutive samples: a clock step (NTP)
_I64 = np.iinfo(np.int64)


@dataclass(frozen=True)
class CheckWarning:
    """Legal data worth a look (``task=check`` still passes): ``kind`` names it."""

    kind: str  # clock-before-2000 | clock-far-from-median | clock-jump | no-targets | lidar-not-covered
    recordings: tuple[int, ...]
    detail: str

    def __str__(self) -> str:
        if not self.recordings:
            return f"{self.kind}: {self.detail}"
        shown = ", ".join(map(str, self.recordings[:20]))
        more = f", ... ({len(self.recordings)} in all)" if len(self.recordings) > 20 else ""
        return f"{self.kind}: recording(s) [{shown}{more}]: {self.detail}"


@dataclass
class CheckReport:
    """What ``task=check`` found: store facts and every problem (empty: the store is good)."""

    path: str
    recordings: int = 0
    duration_s: tuple[float, float, float] = (0.0, 0.0, 0.0)  # min, mean, max
    rates_hz: dict[str, tuple[float, float]] = field(default_factory=dict)  # nominal, measured median
    chunking: dict[str, str] = field(default_factory=dict)
    problems: list[SensorDataError] = field(default_factory=list)
    warnings: list[CheckWarning] = field(default_factory=list)  # never make the check fail

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """A human-readable summary, one fact per line."""
        lo, mean, hi = self.duration_s
        lines = [f"store       {self.path}", f"recordings  {self.recordings}",
                 f"duration    min {lo:.1f} s, mean {mean:.1f} s, max {hi:.1f} s"]
        lines += [f"rate        {k:<7} nominal {n:g} Hz, measured median {m:.2f} Hz" for k, (n, m) in self.rates_hz.items()]
        lines += [f"chunking    {k:<9} {v}" for k, v in self.chunking.items()]
        if self.warnings:
            lines.append(f"warnings    {len(self.warnings)} (legal data; alignment uses each recording's own clock)")
            lines += [f"  - {w}" for w in self.warnings]
        lines.append(f"problems    {len(self.problems)}" + ("" if self.problems else " (store is valid)"))
        lines += [f"  - {p}" for p in self.problems[:50]]
        if len(self.problems) > 50:
            lines.append(f"  ... and {len(self.problems) - 50} more")
        return "\n".join(lines)


def check_store(path: str) -> CheckReport:
    """Validate the whole store at ``path``; schema errors raise, everything else is reported."""
    rd = StoreReader(path)
    rep = CheckReport(path=str(rd.path), recordings=rd.n_recordings)
    for name, arr in rd.arrays.items():
        if name in VARIABLES:
            rep.chunking[name] = f"chunks {arr.chunks}" + (f" in shards {arr.shards}" if arr.shards else "") \
                + ("" if has_checksums(arr) else ", no checksums (bit flips go undetected)")
            rep.problems += [rd.chunk_error(kind, name, rs, ts) for kind, rs, ts in chunk_problems(rd.path, arr, name)]
    t_start, recs = rd.meta["t_start"], np.arange(rd.n_recordings)
    dur = rd.meta["n_steps"] / float(rd.attrs["targets_rate_hz"])
    rep.duration_s = (float(dur.min()), float(dur.mean()), float(dur.max())) if dur.size else (0.0, 0.0, 0.0)
    if rep.problems:
        return rep  # values behind missing chunks would only repeat the same problem
    step = rd.arrays["vision"].shards[0] if rd.arrays["vision"].shards else rd.arrays["vision"].chunks[0]
    clocks = _Clocks(t_start)
    for name, m in MODALITIES.items():
        periods = []
        for r0 in range(0, rd.n_recordings, step):
            rows = slice(r0, min(r0 + step, rd.n_recordings))
            counts = rd.meta[m.count][rows]
            try:  # the whole row, padding included (8 bytes a sample): past the count must be padding
                t, _ = rd.read(m.time, rows, slice(0, max(rd.sizes[m.dim], 1)))
            except SensorDataError as exc:  # chunks that fail their checksum or do not decode
                rep.problems += rd.decode_errors(m.time, rows) or [exc]
                continue
            errs, bad = timestamp_problems(t, counts, t_start[rows], recs[rows], m.time)
            rep.problems += errs
            rep.problems += _not_padding(m.time, t != PAD_TIME, 0, counts, m.count, recs[rows])
            d = np.diff(t, axis=1)  # wraps where a gap exceeds int64: only across a clock jump, found below
            pairs = (np.arange(t.shape[1] - 1) < counts[:, None] - 1) & ~bad[:, 1:]
            jumps = clocks.add(name, rows, t, counts, bad, d, pairs)
            periods.append(d[pairs & ~jumps])
            _scan_values(rd, rep, m.var, rows, counts, t, t_start[rows], recs[rows])
        d = np.concatenate(periods) if periods else np.zeros(0)
        rep.rates_hz[name] = (rd.rate(name), float(NS / np.median(d)) if d.size else float("nan"))
    rep.warnings += clocks.warnings()
    if "lidar_covered" in rd.arrays:  # optional (imported stores): beams the sensor does not cover
        cov = np.asarray(rd.arrays["lidar_covered"][:], bool)
        part = np.flatnonzero(~cov.all(axis=1))
        if part.size:
            rep.warnings.append(CheckWarning("lidar-not-covered", tuple(part.tolist()), (
                f"the LIDAR covers {int(cov[part].sum(axis=1).min())}..{int(cov[part].sum(axis=1).max())} of "
                f"{cov.shape[1]} beams (lidar_covered False: those hold lidar_max_range_m, not data)")))
    if "targets" not in rd.arrays:  # legal (recordings without odometry): runs skip evaluation
        rep.warnings.append(CheckWarning("no-targets", [], "the store holds no targets: runs skip evaluation and "
                                                           "task=train refuses it"))
        return rep
    try:
        targets, _ = rd.read("targets", slice(0, rd.n_recordings))
    except SensorDataError as exc:
        rep.problems += rd.decode_errors("targets", slice(0, rd.n_recordings)) or [exc]
        return rep
    used = np.arange(targets.shape[1]) < rd.meta["n_steps"][:, None]
    rep.problems += _not_padding("targets", ~np.isnan(targets).all(axis=-1), 0, rd.meta["n_steps"], "n_steps", recs)
    bad = nonfinite(targets, used)
    for r in np.nonzero(bad.any(axis=1))[0]:
        ks = np.nonzero(bad[r])[0]
        rep.problems.append(SensorDataError("nan-or-inf", "targets", f"{len(ks)} step(s) NaN or Inf", recordings=[r],
                                            steps=(int(ks[0]), int(ks[-1]) + 1)))
    return rep


def _not_padding(var: str, filled: np.ndarray, i0: int, counts, count_name: str, recs) -> list[SensorDataError]:
    """One ``not-padding`` error per row of ``filled (R, T)`` (entries ``i0 + j`` hold data)
    with data past its valid count: the count is too small, or the padding was not written."""
    past = filled & (np.arange(i0, i0 + filled.shape[1]) >= np.asarray(counts)[:, None])
    out = []
    for r in np.nonzero(past.any(axis=1))[0]:
        cols = np.nonzero(past[r])[0] + i0
        out.append(SensorDataError(
            "not-padding", var, f"{len(cols)} entries past {count_name}={int(counts[r])} are not padding (indices "
            f"{cols[0]}..{cols[-1]}; padding is int64 max for timestamps, NaN for floats, 0 for vision): "
            f"the valid count is too small or the padding was not written", recordings=[int(recs[r])]))
    return out


def _scan_values(rd: StoreReader, rep: CheckReport, var: str, rows: slice, counts, t, t0, recs) -> None:
    """NaN/Inf in the valid part of ``var`` and data past the valid counts (must be padding:
    NaN, or 0 for vision), one shard of time at a time over the whole rows."""
    arr = rd.arrays[var]
    span = arr.shards[1] if arr.shards else arr.chunks[1]
    m = next(m for m in MODALITIES.values() if m.var == var)
    for i0 in range(0, arr.shape[1], span):
        try:
            x, _ = rd.read(var, rows, slice(i0, i0 + span))
        except SensorDataError as exc:  # chunks that fail their checksum or do not decode
            rep.problems += rd.decode_errors(var, rows, slice(i0, i0 + span)) or [exc]
            continue
        used = (np.arange(i0, i0 + x.shape[1]) < counts[:, None])
        lo = min(max(int(counts.min(initial=0)) - i0, 0), x.shape[1])  # columns past some row's count
        if lo < x.shape[1]:
            tail = x[:, lo:].reshape(x.shape[0], x.shape[1] - lo, -1)
            filled = (tail != 0) if x.dtype.kind != "f" else ~np.isnan(tail)
            rep.problems += _not_padding(var, filled.any(axis=-1), i0 + lo, counts, m.count, recs)
        bad = nonfinite(x, used)
        for r in np.nonzero(bad.any(axis=1))[0]:
            cols = np.nonzero(bad[r])[0] + i0
            rep.problems.append(SensorDataError(
                "nan-or-inf", var, f"{len(cols)} sample(s) hold NaN or Inf (indices {cols[0]}..{cols[-1]})",
                recordings=[int(recs[r])], time_s=((int(t[r, cols[0]]) - int(t0[r])) / 1e9,
                                                  (int(t[r, cols[-1]]) - int(t0[r])) / 1e9)))


def _iso(ns: int) -> str:
    return str(np.datetime64(int(ns), "ns"))[:19] if int(ns) != _I64.min else "-inf"


class _Clocks:
    """Each recording's clock range (t_start and every valid timestamp) and its forward
    jumps, gathered while :func:`check_store` scans the timestamps; then the warnings."""

    def __init__(self, t_start: np.ndarray) -> None:
        self.t_start = t_start
        self.lo, self.hi = t_start.copy(), t_start.copy()
        self.jumps: dict[int, tuple[int, str, float]] = {}  # recording -> (largest gap ns, modality, at s)

    def add(self, name: str, rows: slice, t, counts, bad, d, pairs) -> np.ndarray:
        """Fold in one row group of one modality; returns the (R, N-1) forward jumps."""
        use = (np.arange(t.shape[1]) < counts[:, None]) & ~bad & (t != PAD_TIME)
        self.lo[rows] = np.minimum(self.lo[rows], np.where(use, t, _I64.max).min(axis=1, initial=_I64.max))
        self.hi[rows] = np.maximum(self.hi[rows], np.where(use, t, _I64.min).max(axis=1, initial=_I64.min))
        jumps = pairs & ((d > CLOCK_JUMP_NS) | (d < 0))  # increasing pairs: d < 0 only where the gap wrapped
        for r, k in zip(*np.nonzero(jumps), strict=True):
            rec, gap = rows.start + int(r), int(t[r, k + 1]) - int(t[r, k])  # exact, in Python ints
            if gap > self.jumps.get(rec, (0,))[0]:
                self.jumps[rec] = (gap, name, (int(t[r, k]) - int(self.t_start[rec])) / NS)
        return jumps

    def warnings(self) -> list[CheckWarning]:
        out = []
        early = np.flatnonzero(self.lo < CLOCK_2000_NS)
        if early.size:
            out.append(CheckWarning("clock-before-2000", tuple(early.tolist()),
                                    f"clock before 2000-01-01 (earliest {_iso(self.lo[early].min())}): a clock never "
                                    "set, or a simulation clock"))
        if self.t_start.size:
            med = int(np.sort(self.t_start)[self.t_start.size // 2])
            a, b = max(med - CLOCK_FAR_NS, _I64.min), min(med + CLOCK_FAR_NS, _I64.max)
            far = np.flatnonzero((self.lo < a) | (self.hi > b))
            if far.size:
                out.append(CheckWarning("clock-far-from-median", tuple(far.tolist()),
                                        f"clock more than one year from the store's median start {_iso(med)} "
                                        f"(from {_iso(self.lo[far].min())} to {_iso(self.hi[far].max())})"))
        if self.jumps:
            recs = sorted(self.jumps)
            gap, name, at, rec = max((*self.jumps[r], r) for r in recs)
            out.append(CheckWarning("clock-jump", tuple(recs),
                                    f"forward clock jump inside a recording (a gap > {CLOCK_JUMP_NS // NS} s between "
                                    f"consecutive samples, e.g. an NTP correction; largest {gap / NS:.6g} s, {name} "
                                    f"of recording {rec} at {at:.3f} s after its t_start): its steps after the jump "
                                    "see no newer sample until the model clock reaches the new time"))
        return out
