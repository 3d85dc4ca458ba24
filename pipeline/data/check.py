"""Whole-store validation for ``neuroliquid task=check``.

Opens the store (schema), verifies that every chunk of every variable exists and is
not truncated, then scans the valid part of every modality shard by shard (bounded
memory): timestamps strictly increasing, no NaN/Inf, valid counts consistent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.data.errors import SensorDataError
from pipeline.data.reader import StoreReader
from pipeline.data.schema import MODALITIES, NS, VARIABLES
from pipeline.data.store import chunk_problems
from pipeline.data.validate import nonfinite, timestamp_problems


@dataclass
class CheckReport:
    """What ``task=check`` found: store facts and every problem (empty: the store is good)."""

    path: str
    recordings: int = 0
    duration_s: tuple[float, float, float] = (0.0, 0.0, 0.0)  # min, mean, max
    rates_hz: dict[str, tuple[float, float]] = field(default_factory=dict)  # nominal, measured median
    chunking: dict[str, str] = field(default_factory=dict)
    problems: list[SensorDataError] = field(default_factory=list)

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
            rep.chunking[name] = f"chunks {arr.chunks}" + (f" in shards {arr.shards}" if arr.shards else "")
            rep.problems += [rd.chunk_error(kind, name, rs, ts) for kind, rs, ts in chunk_problems(rd.path, arr, name)]
    t_start, recs = rd.meta["t_start"], np.arange(rd.n_recordings)
    dur = rd.meta["n_steps"] / float(rd.attrs["targets_rate_hz"])
    rep.duration_s = (float(dur.min()), float(dur.mean()), float(dur.max())) if dur.size else (0.0, 0.0, 0.0)
    if rep.problems:
        return rep  # values behind missing chunks would only repeat the same problem
    step = rd.arrays["vision"].shards[0] if rd.arrays["vision"].shards else rd.arrays["vision"].chunks[0]
    for name, m in MODALITIES.items():
        periods = []
        for r0 in range(0, rd.n_recordings, step):
            rows = slice(r0, min(r0 + step, rd.n_recordings))
            counts = rd.meta[m.count][rows]
            t, _ = rd.read(m.time, rows, slice(0, max(int(counts.max(initial=0)), 1)))
            errs, bad = timestamp_problems(t, counts, t_start[rows], recs[rows], m.time)
            rep.problems += errs
            d = np.diff(t, axis=1)[(np.arange(t.shape[1] - 1) < counts[:, None] - 1) & ~bad[:, 1:]]
            periods.append(d)
            _scan_values(rd, rep, m.var, rows, counts, t, t_start[rows], recs[rows])
        d = np.concatenate(periods) if periods else np.zeros(0)
        rep.rates_hz[name] = (rd.rate(name), float(NS / np.median(d)) if d.size else float("nan"))
    targets, _ = rd.read("targets", slice(0, rd.n_recordings))
    used = np.arange(targets.shape[1]) < rd.meta["n_steps"][:, None]
    bad = nonfinite(targets, used)
    for r in np.nonzero(bad.any(axis=1))[0]:
        ks = np.nonzero(bad[r])[0]
        rep.problems.append(SensorDataError("nan-or-inf", "targets", f"{len(ks)} step(s) NaN or Inf", recordings=[r],
                                            steps=(int(ks[0]), int(ks[-1]) + 1)))
    return rep


def _scan_values(rd: StoreReader, rep: CheckReport, var: str, rows: slice, counts, t, t0, recs) -> None:
    """NaN/Inf in the valid part of ``var``, one shard of time at a time."""
    arr = rd.arrays[var]
    span = arr.shards[1] if arr.shards else arr.chunks[1]
    for i0 in range(0, int(counts.max(initial=0)), span):
        x, _ = rd.read(var, rows, slice(i0, i0 + span))
        used = (np.arange(i0, i0 + x.shape[1]) < counts[:, None])
        bad = nonfinite(x, used)
        for r in np.nonzero(bad.any(axis=1))[0]:
            cols = np.nonzero(bad[r])[0] + i0
            rep.problems.append(SensorDataError(
                "nan-or-inf", var, f"{len(cols)} sample(s) hold NaN or Inf (indices {cols[0]}..{cols[-1]})",
                recordings=[int(recs[r])], time_s=((t[r, cols[0]] - t0[r]) / 1e9, (t[r, cols[-1]] - t0[r]) / 1e9)))
