"""Micro-batch descriptors and reading them into aligned network inputs.

A :class:`MicroBatch` is (store, recording slice, step slice): tiny and picklable, so
the scheduler moves descriptors, never tensors.  :func:`read_batch` turns one into an
:class:`AlignedBatch` -- the numpy arrays the network takes -- after validating
everything the batch uses.  Policy ``fail`` raises the first :class:`SensorDataError`;
``quarantine`` masks each bad (recording, block) row, reports it in ``problems`` and
computes the rest as usual.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pipeline.data.align import latest_at_or_before, step_times, window_samples
from pipeline.data.errors import SensorDataError
from pipeline.data.reader import StoreReader, open_reader
from pipeline.data.schema import MODALITIES, NS
from pipeline.data.validate import nonfinite, row_errors

POLICIES = ("fail", "quarantine")


@dataclass(frozen=True, slots=True)
class MicroBatch:
    """Recordings ``[recordings[0], recordings[1])`` x model steps ``[steps[0], steps[1])`` of ``store``.

    ``block`` is the time-block index (``steps[0] // steps_per_block``): block k + 1 of a
    recording group starts from block k's final state.
    """

    store: str
    recordings: tuple[int, int]
    steps: tuple[int, int]
    block: int = 0


@dataclass(frozen=True)
class AlignedBatch:
    """Network inputs for B recordings x T model steps (all numpy).

    camera (B, T, H, W) uint8 latest frame at or before each step; lidar (B, T, beams)
    float32 m latest scan; imu (B, T, window, 6) float32 samples inside the step window
    with imu_valid (B, T, window); camera_valid, lidar_valid (B, T) False before the
    modality's first sample; targets (B, T, 3) float32 (speed m/s, yaw rate rad/s,
    obstacle-ahead 0/1); valid (B, T) False past a recording's end and on quarantined rows;
    quarantined (B,) this block was masked; restart (B,) start this block from zero state
    (a previous block was quarantined); problems: the errors found under quarantine.
    """

    recordings: np.ndarray
    steps: np.ndarray
    camera: np.ndarray
    camera_valid: np.ndarray
    lidar: np.ndarray
    lidar_valid: np.ndarray
    imu: np.ndarray
    imu_valid: np.ndarray
    targets: np.ndarray
    valid: np.ndarray
    quarantined: np.ndarray
    restart: np.ndarray
    problems: tuple[SensorDataError, ...] = field(default=())

    def carry_restart(self) -> np.ndarray:
        """(B,) ``needs_restart`` to pass to the same recordings' next block."""
        return self.quarantined.copy()


def plan_batches(store_path: str, recordings_per_batch: int, steps_per_block: int) -> list[MicroBatch]:
    """The store's recordings x time blocks as descriptors, block-ordered within each group.

    ``recordings_per_batch`` must be a multiple of the store's recording chunk so that
    every batch reads whole chunks (and output regions can align with them).
    """
    reader = open_reader(store_path)
    chunk = reader.arrays["vision"].chunks[0]
    if recordings_per_batch <= 0 or steps_per_block <= 0:
        raise ValueError(f"recordings_per_batch={recordings_per_batch} and steps_per_block={steps_per_block} must be > 0")
    if recordings_per_batch % chunk and recordings_per_batch < reader.n_recordings:
        raise ValueError(f"recordings_per_batch={recordings_per_batch} is not a multiple of the store's "
                         f"recording chunk ({chunk}); micro-batches must align with chunks")
    out = []
    for r0 in range(0, reader.n_recordings, recordings_per_batch):
        r1 = min(r0 + recordings_per_batch, reader.n_recordings)
        n_blocks = math.ceil(int(reader.meta["n_steps"][r0:r1].max(initial=0)) / steps_per_block)
        out += [MicroBatch(str(reader.path), (r0, r1), (k * steps_per_block, (k + 1) * steps_per_block), k)
                for k in range(n_blocks)]
    return out


def _spoiled(spans: dict, tau_abs: np.ndarray, step_ns: int) -> np.ndarray:
    """(R, T) steps whose inputs fall in a span spoiled by bad timestamps."""
    bad = np.zeros(tau_abs.shape, bool)
    for r, rs in spans.items():
        for lo, hi in rs:
            bad[r] |= (tau_abs[r] >= lo) & (tau_abs[r] - step_ns <= hi)
    return bad


def read_batch(mb: MicroBatch, policy: str = "fail", *, imu_window: int = 10,
               needs_restart: np.ndarray | None = None, reader: StoreReader | None = None) -> AlignedBatch:
    """Read, align and validate one micro-batch.

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
    q = policy == "quarantine"
    rd = reader or open_reader(mb.store)
    rows = slice(*mb.recordings)
    recs, steps = np.arange(*mb.recordings), np.arange(*mb.steps)
    R, T = len(recs), len(steps)
    tau = step_times(steps, rd.step_ns)
    tau_abs = rd.meta["t_start"][rows, None] + tau
    times_s, valid = tau / NS, steps < rd.meta["n_steps"][rows, None]
    bad = np.zeros((R, T), bool)
    problems: list[SensorDataError] = []

    def flag(b: np.ndarray, kind: str, variable: str, detail: str) -> None:
        b = b & valid
        if b.any():
            problems.extend(row_errors(b, kind, variable, detail, recs, times_s, steps))
            if not q:
                raise problems[0]
            bad[...] |= b

    aligned, spans = {}, {}
    for name, m in MODALITIES.items():
        index, spoiled = rd.timestamps(name, rows, q)
        flag(_spoiled(spoiled, tau_abs, rd.step_ns), "timestamps-not-increasing", m.time,
             "timestamps repeat, go backwards or are missing around these steps")
        if name == "imu":
            idx, ok, _ = window_samples(index, tau_abs, rd.step_ns, imu_window)
        else:
            idx, ok = latest_at_or_before(index, tau_abs)
        lo, hi = (int(idx[ok].min()), int(idx[ok].max()) + 1) if ok.any() else (0, 1)
        aligned[name], spans[m.var] = (idx, ok, lo, hi), slice(lo, hi)
    spans["targets"] = slice(*mb.steps)
    slabs = rd.read_many(rows, spans, q)

    out = {}
    for name, m in MODALITIES.items():
        idx, ok, lo, hi = aligned[name]
        data, bad_rows = slabs[m.var]
        used = ok.any(axis=-1) if name == "imu" else ok
        flag(bad_rows[:, None] & used, "missing-chunk", m.var, "chunk missing or unreadable")
        take = np.clip(idx - lo, 0, hi - lo - 1)
        x = data[np.arange(R).reshape((R,) + (1,) * (take.ndim - 1)), take]
        readable = used & ~bad_rows[:, None]  # fill values of a missing chunk are reported once, above
        flag(nonfinite(x if name != "imu" else np.where(ok[..., None], x, 0), readable), "nan-or-inf", m.var,
             "NaN or Inf values (or fill values of a missing chunk)")
        out[name] = (x, ok)
    targets, bad_rows = slabs["targets"]
    targets = np.pad(targets, ((0, 0), (0, T - targets.shape[1]), (0, 0)), constant_values=np.nan)
    flag(bad_rows[:, None] & valid, "missing-chunk", "targets", "chunk missing or unreadable")
    flag(nonfinite(targets, valid & ~bad_rows[:, None]), "nan-or-inf", "targets", "NaN or Inf targets")

    quarantined = bad.any(axis=1)
    keep = valid & ~quarantined[:, None]
    cam, cam_ok = out["camera"]
    lid, lid_ok = out["lidar"]
    imu, imu_ok = out["imu"]
    cam_ok, lid_ok, imu_ok = cam_ok & keep, lid_ok & keep, imu_ok & keep[..., None]
    prev = np.zeros(R, bool) if needs_restart is None else np.asarray(needs_restart, bool)
    return AlignedBatch(
        recordings=recs, steps=steps, camera=_zero_where_not(cam, cam_ok), camera_valid=cam_ok,
        lidar=_zero_where_not(lid, lid_ok), lidar_valid=lid_ok, imu=_zero_where_not(imu, imu_ok), imu_valid=imu_ok,
        targets=_zero_where_not(targets, keep), valid=keep, quarantined=quarantined,
        restart=prev & ~quarantined, problems=tuple(problems))


def _zero_where_not(x: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """``x`` with the entries not ``ok`` (mask over its leading dims) set to 0, in place."""
    if not ok.all():
        x[~ok] = 0
    return x
