"""Micro-batch descriptors and the aligned network inputs they are read into.

A :class:`MicroBatch` is (store, recording slice, step slice): tiny and picklable, so
the scheduler moves descriptors, never tensors.  :func:`pipeline.data.read_batch` turns
one into an :class:`AlignedBatch` -- the numpy arrays the network takes -- after
validating everything the batch uses.  Policy ``fail`` raises the first
:class:`SensorDataError`; ``quarantine`` masks each bad (recording, block) row, reports
it in ``problems`` and computes the rest as usual.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pipeline.data.errors import SensorDataError
from pipeline.data.reader import open_reader
from pipeline.data.schema import MODALITIES

POLICIES = ("fail", "quarantine")
STALE_COLUMNS = tuple(MODALITIES)  # columns of AlignedBatch.stale_steps: camera, lidar, imu


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
    (a previous block was quarantined); stale_steps (B, 3) int32, per row and modality
    (:data:`STALE_COLUMNS`: camera, lidar, imu), the valid steps whose latest sample was
    older than the maximum age (camera/LIDAR: fed as invalid, zero input; IMU: counted
    only, its window holds the step's own samples); problems: the errors found under
    quarantine.
    """

    recordings: np.ndarray
    steps: np.ndarray
    camera: np.ndarray
    camera_valid: np.ndarray
    lidar: np.ndarray
    lidar_valid: np.ndarray
    imu: np.ndarray
    imu_valid: np.ndarray
    targets: np.ndarray | None  # None: the store holds no targets
    valid: np.ndarray
    quarantined: np.ndarray
    restart: np.ndarray
    stale_steps: np.ndarray
    problems: tuple[SensorDataError, ...] = field(default=())

    def carry_restart(self) -> np.ndarray:
        """(B,) ``needs_restart`` to pass to the same recordings' next block."""
        return self.quarantined.copy()

    def stale_counts(self) -> dict[str, int]:
        """Stale steps per modality over the whole batch (``{"camera": n, "lidar": n, "imu": n}``)."""
        return dict(zip(STALE_COLUMNS, self.stale_steps.sum(axis=0).tolist(), strict=True))


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
