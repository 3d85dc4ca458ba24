"""Alignment to the model clock: hand-computed cases, a hand-made store, and an oracle."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import StoreLayout
from pipeline.data import (
    MicroBatch,
    RowIndex,
    latest_at_or_before,
    read_batch,
    step_times,
    window_samples,
)
from pipeline.data.convert import Recording, to_dataset, write_dataset
from pipeline.data.reader import StoreReader

MS = 1_000_000
T0 = 1_700_000_000_000_000_000


def test_step_times_are_window_ends():
    assert step_times(np.arange(3), 100 * MS).tolist() == [100 * MS, 200 * MS, 300 * MS]


def test_latest_frame_marks_steps_before_the_first_frame():
    # camera starts at 150 ms, drops the frame at 350 ms; steps end at 100, 200, ..., 500 ms
    t = np.array([[150, 250, 450, 0]]) * MS
    idx, ok = latest_at_or_before(RowIndex(t, np.array([3])), step_times(np.arange(5), 100 * MS)[None])
    assert ok.tolist() == [[False, True, True, True, True]]
    assert idx[ok].tolist() == [0, 1, 1, 2]  # 200->150, 300->250, 400->250 (dropped 350), 500->450


def test_frame_exactly_at_step_time_counts():
    t = np.array([[100, 200]]) * MS
    idx, ok = latest_at_or_before(RowIndex(t, np.array([2])), np.array([[99, 100, 199, 200]]) * MS)
    assert ok.tolist() == [[False, True, True, True]] and idx.tolist() == [[0, 0, 0, 1]]


def test_imu_window_is_half_open_and_keeps_the_latest():
    # samples at 0, 40, 80, 100, 120 ms; window (0, 100] holds 40, 80, 100
    t = np.array([[0, 40, 80, 100, 120]]) * MS
    idx, ok, n_in = window_samples(RowIndex(t, np.array([5])), np.array([[100 * MS, 200 * MS]]), 100 * MS, 2)
    assert n_in.tolist() == [[3, 1]]
    assert idx[0, 0].tolist() == [2, 3] and ok[0, 0].all()  # truncated to the latest two
    assert idx[0, 1, ok[0, 1]].tolist() == [4] and ok[0, 1].tolist() == [True, False]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 10_000), max_size=30), min_size=1, max_size=6),
       st.lists(st.integers(-100, 11_000), min_size=1, max_size=8))
def test_row_index_matches_numpy_per_row(rows, queries):
    rows = [np.unique(r).astype(np.int64) for r in rows]
    n = max(len(r) for r in rows) or 1
    t = np.full((len(rows), n), np.iinfo(np.int64).max, np.int64)
    for i, r in enumerate(rows):
        t[i, : len(r)] = r
    q = np.array([queries] * len(rows), np.int64)
    got = RowIndex(t, np.array([len(r) for r in rows])).search(q)
    want = np.array([np.searchsorted(r, queries, side="right") for r in rows])
    assert np.array_equal(got, want)


def _recording(start_ms: dict, drop: dict | None = None, steps: int = 6) -> Recording:
    """Camera/LIDAR at 10 Hz and IMU at 100 Hz from per-modality start offsets (ms)."""
    drop = drop or {}

    def times(name, period, n):
        t = start_ms[name] + period * np.arange(n)
        return np.array([x for x in t if x not in drop.get(name, ())], np.int64) * MS

    tc, tl, ti = times("camera", 100, 6), times("lidar", 100, 6), times("imu", 10, 60)
    return Recording(
        t_start=T0, t_cam=T0 + tc, vision=(np.arange(len(tc))[:, None, None] + np.zeros((1, 4, 4))).astype(np.uint8),
        t_lidar=T0 + tl, lidar=(np.arange(len(tl))[:, None] + np.ones((1, 8))).astype(np.float32),
        t_imu=T0 + ti, imu=np.repeat(ti[:, None] / MS, 6, axis=1).astype(np.float32),
        targets=np.arange(steps * 3, dtype=np.float32).reshape(steps, 3))


@pytest.fixture(scope="module")
def handmade(tmp_path_factory):
    recs = [_recording({"camera": 150, "lidar": 0, "imu": 5}),
            _recording({"camera": 0, "lidar": 320, "imu": 255}, drop={"camera": (200,)}, steps=4)]
    ds = to_dataset(recs, camera_rate_hz=10, lidar_rate_hz=10, imu_rate_hz=100, targets_rate_hz=10,
                    camera_fov_rad=1.5, lidar_max_range_m=12.0)
    path = tmp_path_factory.mktemp("align") / "hand.zarr"
    write_dataset(ds, path, StoreLayout(chunk_recordings=1, shard_recordings=2, chunk_seconds=0.2, shard_seconds=0.4))
    return str(path)


def test_store_with_modalities_starting_at_different_times(handmade):
    b = read_batch(MicroBatch(handmade, (0, 2), (0, 6)), imu_window=10, reader=StoreReader(handmade))
    # step k ends at (k + 1) * 100 ms
    assert b.camera_valid.tolist() == [[False] + [True] * 5, [True] * 4 + [False] * 2]
    assert b.camera[0, 1:4, 0, 0].tolist() == [0, 1, 2]  # frames at 150, 250, 350 ms
    assert b.camera[1, :4, 0, 0].tolist() == [1, 1, 2, 3]  # frames 0, 100, 300 ms (200 dropped): step 1 keeps 100 ms
    assert b.lidar_valid.tolist() == [[True] * 6, [False, False, False, True, False, False]]
    assert b.lidar[0, :, 0].tolist() == [2, 3, 4, 5, 6, 6]  # scans at 0..500 ms hold 1 + index
    assert b.lidar[1, 3, 0] == 1.0  # first scan at 320 ms
    # IMU: recording 0 samples at 5 + 10 i ms; window (0, 100] holds 5..95 -> 10 samples
    assert b.imu_valid[0].sum(axis=1).tolist() == [10] * 6
    assert b.imu[0, 0, :, 0].tolist() == [5, 15, 25, 35, 45, 55, 65, 75, 85, 95]
    # recording 1 starts at 255 ms: windows (200, 300] -> 255..295 (5 samples)
    assert b.imu_valid[1].sum(axis=1).tolist() == [0, 0, 5, 10, 0, 0]
    assert b.imu[1, 2, :5, 0].tolist() == [255, 265, 275, 285, 295] and not b.imu[1, 2, 5:].any()
    # recording 1 has 4 steps: steps 4, 5 are padding -> invalid, zero
    assert b.valid.tolist() == [[True] * 6, [True] * 4 + [False] * 2]
    assert b.targets[0, 2].tolist() == [6, 7, 8] and not b.targets[1, 4:].any()
    assert not b.quarantined.any() and b.problems == ()


def test_block_in_the_middle_and_one_recording(handmade):
    b = read_batch(MicroBatch(handmade, (1, 2), (2, 4)), imu_window=4, reader=StoreReader(handmade))
    assert b.recordings.tolist() == [1] and b.steps.tolist() == [2, 3]
    assert b.camera[0, :, 0, 0].tolist() == [2, 3] and b.imu.shape == (1, 2, 4, 6)
    assert b.imu[0, 1, :, 0].tolist() == [365, 375, 385, 395]  # latest 4 of (300, 400]
