"""Scattered windows (read_windows): every row equals read_batch of its request alone,
bad input under both policies, and the edge cases (past the end, before the first
frame, repeated recordings, tiny caches that evict and split)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from pipeline.config import DataConfig, StoreLayout
from pipeline.data import MicroBatch, SensorDataError, StoreReader, read_batch, read_windows
from pipeline.data.generator import generate_store

FIELDS = ("camera", "camera_valid", "lidar", "lidar_valid", "imu", "imu_valid", "targets", "valid", "quarantined")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> str:
    """6 recordings x 4 s (varying lengths, modalities starting up to 0.5 s late, drops);
    shards of 4 recordings x 2 s, so 2 row groups (the last one partial) x 2 time shards."""
    cfg = DataConfig(path=str(tmp_path_factory.mktemp("win") / "small.zarr"), recordings=6, duration_s=4.0, seed=11,
                     workers=1,
                     layout=StoreLayout(chunk_recordings=2, shard_recordings=4, chunk_seconds=1.0, shard_seconds=2.0))
    cfg.synthetic.drop_prob = 0.05
    cfg.validate()
    generate_store(cfg, progress=False)
    return cfg.path


def _assert_rows_match(path: str, got, recs, starts, steps: int, policy: str = "fail", **kw) -> None:
    """Row i of ``got`` == read_batch of request i alone, on a reader of its own."""
    assert got.recordings.tolist() == list(recs)
    assert got.steps.shape == (len(recs), steps) and not got.restart.any()
    reader = StoreReader(path)
    for i, (r, s) in enumerate(zip(recs, starts, strict=True)):
        ref = read_batch(MicroBatch(path, (int(r), int(r) + 1), (int(s), int(s) + steps)), policy, reader=reader, **kw)
        assert got.steps[i].tolist() == ref.steps.tolist()
        for f in FIELDS:
            a, b = getattr(got, f)[i], getattr(ref, f)[0]
            assert a.dtype == b.dtype and np.array_equal(a, b), (f, i, r, s)


def _requests(reader: StoreReader, n: int, steps: int, seed: int):
    rng = np.random.default_rng(seed)
    recs = rng.integers(0, reader.n_recordings, n)
    # starts anywhere up to a bit past each recording's end (so some windows run past it)
    starts = (rng.random(n) * (reader.meta["n_steps"][recs] + 5)).astype(np.int64)
    starts[:3] = 0  # steps before the modalities' first samples
    recs[-3:] = recs[-4]  # repeated recording, overlapping and identical windows
    starts[-3:] = [starts[-4], starts[-4], starts[-4] + 3]
    return recs, starts


@pytest.mark.parametrize("cache_bytes", [512 * 2**20, 64 * 2**10], ids=["default-cache", "tiny-cache"])
def test_rows_equal_read_batch_of_each_request(small, cache_bytes):
    # the tiny cache puts the timestamp index per shard row group and holds 2 shards per
    # variable, so requests evict each other and big request lists are split
    reader = StoreReader(small, cache_bytes=cache_bytes)
    for seed in range(3):
        recs, starts = _requests(reader, 24, 10, seed)
        got = read_windows(small, recs, starts, 10, reader=reader)
        _assert_rows_match(small, got, recs.tolist(), starts.tolist(), 10)
        assert got.problems == ()
    # the edge cases really occur in these requests
    assert not got.camera_valid[:3].all() or not got.lidar_valid[:3].all()
    assert not got.valid.all()


def test_session_store_multiple_row_groups_and_imu_window(store):
    reader = StoreReader(store)
    recs, starts = _requests(reader, 32, 7, seed=5)
    got = read_windows(store, recs, starts, 7, imu_window=4, reader=reader)
    _assert_rows_match(store, got, recs.tolist(), starts.tolist(), 7, imu_window=4)
    assert got.imu.shape == (32, 7, 4, 6) and got.camera.shape == (32, 7, 32, 32)


def test_window_past_the_end_and_before_the_first_frame(small):
    reader = StoreReader(small)
    n = int(reader.meta["n_steps"][1])
    got = read_windows(small, [1, 1, 1], [n - 3, n + 50, 0], 10, reader=reader)
    assert got.valid[0].tolist() == [True] * 3 + [False] * 7
    assert not got.valid[1].any() and not got.camera_valid[1].any() and not got.targets[1].any()
    assert not got.imu[1].any() and not got.lidar[1].any()
    t_cam = zarr.open_array(f"{small}/t_cam", mode="r")[1, 0]
    first = (int(t_cam) - int(reader.meta["t_start"][1])) // reader.step_ns  # steps k with (k+1)*step < t
    assert got.camera_valid[2].tolist() == [k >= first for k in range(10)]
    assert not got.camera[2, :first].any()
    _assert_rows_match(small, got, [1, 1, 1], [n - 3, n + 50, 0], 10)


def test_repeated_and_unordered_requests_give_identical_rows(small):
    reader = StoreReader(small)
    got = read_windows(small, [5, 0, 5, 3, 0], [12, 4, 12, 20, 4], 10, reader=reader)
    for f in FIELDS:
        x = getattr(got, f)
        assert np.array_equal(x[0], x[2]) and np.array_equal(x[1], x[4]), f
    back = read_windows(small, [0, 5], [4, 12], 10, reader=reader)
    assert np.array_equal(back.lidar, got.lidar[[1, 0]]) and np.array_equal(back.imu_valid, got.imu_valid[[1, 0]])


def test_empty_and_invalid_requests(small):
    reader = StoreReader(small)
    empty = read_windows(small, [], [], 10, reader=reader)
    assert empty.camera.shape == (0, 10, 32, 32) and empty.valid.shape == (0, 10)
    for recs, starts, steps, policy, words in [([0], [0], 10, "skip", "policy"), ([0, 1], [0], 10, "fail", "length"),
                                               ([6], [0], 10, "fail", "recordings"), ([0], [-1], 10, "fail", ">= 0"),
                                               ([0], [0], 0, "fail", "steps")]:
        with pytest.raises(ValueError, match=words):
            read_windows(small, recs, starts, steps, policy, reader=reader)


def _copy(src: str, tmp_path: Path) -> str:
    return shutil.copytree(src, tmp_path / "bad.zarr")


def _scan_step(reader: StoreReader, r: int, scan: int) -> int:
    """The first model step that uses LIDAR scan ``scan`` of recording ``r``."""
    t = int(zarr.open_array(f"{reader.path}/t_lidar", mode="r")[r, scan]) - int(reader.meta["t_start"][r])
    return -(-t // reader.step_ns) - 1


def test_nan_fails_or_quarantines_only_the_requests_that_use_it(small, tmp_path):
    path = _copy(small, tmp_path)
    reader = StoreReader(path)
    k = _scan_step(reader, 2, 15)
    zarr.open_array(f"{path}/lidar", mode="r+")[2, 15, 7] = np.nan
    recs, starts = [0, 2, 2, 4, 2], [k - 2, k - 5, k + 30, k, max(k - 9, 0)]
    with pytest.raises(SensorDataError) as info:
        read_windows(path, recs, starts, 10, "fail", reader=reader)
    err = info.value
    assert err.kind == "nan-or-inf" and err.variable == "lidar" and err.recordings == (2,)
    assert err.steps[0] == k and err.time_s[0] == pytest.approx((k + 1) * reader.step_ns / 1e9)
    got = read_windows(path, recs, starts, 10, "quarantine", reader=reader)
    assert got.quarantined.tolist() == [False, True, False, False, True]
    assert not got.valid[[1, 4]].any() and not got.lidar[[1, 4]].any() and not got.imu_valid[[1, 4]].any()
    assert [(p.kind, p.variable, p.recordings) for p in got.problems] == [("nan-or-inf", "lidar", (2,))] * 2
    _assert_rows_match(path, got, recs, starts, 10, "quarantine")  # same flags and zeros as read_batch
    clean = read_windows(small, recs, starts, 10, reader=StoreReader(small))
    for f in FIELDS[:-1]:
        assert np.array_equal(getattr(got, f)[[0, 2, 3]], getattr(clean, f)[[0, 2, 3]]), f
    read_windows(path, [0, 2, 4], [k - 2, k + 30, k], 10, "fail", reader=reader)  # clean requests pass


def test_backwards_timestamps(small, tmp_path):
    path = _copy(small, tmp_path)
    t = zarr.open_array(f"{path}/t_cam", mode="r+")
    t[3, 12] = t[3, 10]
    reader = StoreReader(path)
    with pytest.raises(SensorDataError) as info:
        read_windows(path, [1, 3], [5, 8], 10, reader=reader)
    assert info.value.kind == "timestamps-not-increasing" and info.value.variable == "t_cam"
    assert info.value.recordings == (3,)
    got = read_windows(path, [3, 1, 3], [8, 5, 30], 10, "quarantine", reader=reader)
    assert got.quarantined.tolist() == [True, False, False]
    _assert_rows_match(path, got, [3, 1, 3], [8, 5, 30], 10, "quarantine")


def test_missing_chunk_fails_or_quarantines(small, tmp_path):
    path = _copy(small, tmp_path)
    (Path(path) / "imu/c/0/1/0").unlink()  # recordings 0-3, samples 200-399 (2-4 s)
    reader = StoreReader(path)
    recs, starts = [1, 4, 2, 0], [25, 25, 2, 15]
    with pytest.raises(SensorDataError) as info:
        read_windows(path, recs, starts, 10, reader=reader)
    err = info.value
    assert err.kind == "missing-chunk" and err.variable == "imu" and err.recordings == (0, 1, 2, 3)
    assert "time 2.000-4.000 s" in str(err)
    got = read_windows(path, recs, starts, 10, "quarantine", reader=reader)
    assert got.quarantined.tolist() == [True, False, False, True]
    assert {(p.kind, p.variable) for p in got.problems} == {("missing-chunk", "imu")}
    assert not got.imu[[0, 3]].any() and not got.valid[[0, 3]].any()
    _assert_rows_match(path, got, recs, starts, 10, "quarantine")


def test_truncated_shard(small, tmp_path):
    path = _copy(small, tmp_path)
    shard = Path(path) / "vision/c/1/0/0/0"  # recordings 4-5, frames 0-19
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    reader = StoreReader(path)
    with pytest.raises(SensorDataError) as info:
        read_windows(path, [0, 5], [2, 2], 10, reader=reader)
    assert info.value.kind == "unreadable-chunk" and info.value.variable == "vision"
    assert info.value.recordings == (4, 5)
    got = read_windows(path, [0, 5, 5], [2, 2, 25], 10, "quarantine", reader=reader)
    assert got.quarantined.tolist() == [False, True, False] and not got.camera[1].any()
    _assert_rows_match(path, got, [0, 5, 5], [2, 2, 25], 10, "quarantine")


def test_prefault_keeps_loaded_shards_and_reads_stay_identical(small):
    """A batch worker's setup prefaults its reader's empty pool slots; run on a reader that
    already holds shards (a second run on the same workers), it must not touch them."""
    from pipeline.data.pools import pool_state, prefault

    mb = MicroBatch(small, (0, 4), (0, 20), 0)
    rd = StoreReader(small, cache_bytes=1 << 20)
    before = read_batch(mb, reader=rd)
    held = {n: int((p.keys >= 0).sum()) for n, p in pool_state(rd).pools.items()}
    assert all(held.values())
    prefault(rd)
    assert {n: int((p.keys >= 0).sum()) for n, p in pool_state(rd).pools.items()} == held
    after = read_batch(mb, reader=rd)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(after, f), getattr(before, f), err_msg=f)
    fresh = StoreReader(small, cache_bytes=1 << 20)
    prefault(fresh)  # a new reader: pools built, nothing held yet
    assert not any((p.keys >= 0).any() for p in pool_state(fresh).pools.values())
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(read_batch(mb, reader=fresh), f), getattr(before, f), err_msg=f)
