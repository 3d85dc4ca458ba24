"""Stale sensor data (a maximum sample age per modality), padding past the valid counts
(``task=check``), and quarantine of exactly the cells a missing timestamp chunk spoils."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from pipeline.config import ConfigError, DataConfig, MaxAgeConfig, StoreLayout
from pipeline.data import (
    STALE_COLUMNS,
    MicroBatch,
    SensorDataError,
    StoreReader,
    check_store,
    max_age_ns,
    plan_batches,
    read_batch,
    read_windows,
)
from pipeline.data.generator import generate_store

S = 1_000_000_000
NO_LIMIT = {"camera_s": float("inf"), "lidar_s": float("inf"), "imu_s": float("inf")}
FIELDS = ("camera", "camera_valid", "lidar", "lidar_valid", "imu", "imu_valid", "targets", "valid")


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> str:
    """4 recordings x 6 s (lengths vary), no dropped frames; shards of 2 recordings x 2 s."""
    cfg = DataConfig(path=str(tmp_path_factory.mktemp("stale") / "clean.zarr"), recordings=4, duration_s=6.0, seed=3,
                     workers=1,
                     layout=StoreLayout(chunk_recordings=2, shard_recordings=2, chunk_seconds=1.0, shard_seconds=2.0))
    cfg.synthetic.start_offset_s, cfg.synthetic.drop_prob, cfg.synthetic.imu_drop_prob = 0.2, 0.0, 0.0
    cfg.validate()
    generate_store(cfg, progress=False)
    return cfg.path


def _copy(clean: str, tmp_path: Path) -> str:
    return shutil.copytree(clean, tmp_path / "bad.zarr")


def _arr(path: str, name: str):
    return zarr.open_array(f"{path}/{name}", mode="r+")


def _whole(path: str, reader: StoreReader | None = None, **kw):
    """Every recording, every step, in one read."""
    rd = reader or StoreReader(path)
    return read_batch(MicroBatch(path, (0, rd.n_recordings), (0, int(rd.n_steps.max()))), reader=rd, **kw)


def _expected_stale(rd: StoreReader, t: np.ndarray, count: int, r: int, age_ns: int) -> np.ndarray:
    """(steps,) the valid steps of recording r whose latest sample (of t[:count]) is older than age_ns."""
    n = int(rd.n_steps[r])
    tau = int(rd.meta["t_start"][r]) + (np.arange(n) + 1) * rd.step_ns
    j = np.searchsorted(t[:count], tau, side="right") - 1
    return (j >= 0) & (tau - t[np.maximum(j, 0)] > age_ns)


def test_default_max_age_is_three_nominal_periods_and_config_is_validated(clean):
    rd = StoreReader(clean)
    assert max_age_ns(rd) == {"camera": 3 * S // 10, "lidar": 3 * S // 10, "imu": 3 * S // 100}
    assert max_age_ns(rd, MaxAgeConfig(periods=5, lidar_s=0.25)) == {"camera": S // 2, "lidar": S // 4,
                                                                     "imu": S // 20}
    assert max_age_ns(rd, NO_LIMIT) == {"camera": None, "lidar": None, "imu": None}
    for bad in (MaxAgeConfig(periods=0.5), MaxAgeConfig(camera_s=0.0), MaxAgeConfig(imu_s=-1.0)):
        with pytest.raises(ConfigError, match="data.max_age"):
            bad.validate()
        with pytest.raises(ValueError, match="max_age"):
            max_age_ns(rd, bad)
    b = _whole(clean)  # a clean store: nothing stale
    assert b.stale_steps.shape == (4, 3) and not b.stale_steps.any() and STALE_COLUMNS == ("camera", "lidar", "imu")


def test_lidar_valid_count_cut_short_makes_later_steps_stale(clean, tmp_path):
    """The store says recording 1 has 20 scans (the rest is data past the count): the last
    one must not be fed as current for the rest of the recording."""
    path = _copy(clean, tmp_path)
    _arr(path, "n_scans")[1] = 20
    rd = StoreReader(path)
    t = np.asarray(_arr(path, "t_lidar")[1])
    expect = _expected_stale(rd, t, 20, 1, 3 * S // 10)
    assert 20 < expect.sum() < int(rd.n_steps[1])  # the outage really covers most of the recording
    b = _whole(path, rd)
    n = int(rd.n_steps[1])
    assert b.lidar_valid[1, :n].tolist() == (_whole(clean).lidar_valid[1, :n] & ~expect).tolist()
    assert not b.lidar_valid[1, :n][expect].any() and not b.lidar[1, :n][expect].any()  # invalid and zero
    assert b.stale_steps[:, STALE_COLUMNS.index("lidar")].tolist() == [0, int(expect.sum()), 0, 0]
    assert b.stale_counts() == {"camera": 0, "lidar": int(expect.sum()), "imu": 0}
    # the other modalities and recordings are read as before; no limit gives the old reads back
    ref = _whole(clean)
    for f in FIELDS:
        if not f.startswith("lidar"):
            assert np.array_equal(getattr(b, f), getattr(ref, f)), f
    old = _whole(path, rd, max_age=NO_LIMIT)
    assert old.lidar_valid[1, :n].all() and not old.stale_steps.any()
    assert b.problems == () and not b.quarantined.any()


def test_lidar_outage_mid_recording_counted_in_batches_and_windows(clean, tmp_path):
    """Scans 20.. of recording 2 arrive 1.5 s late: a 1.5 s gap after scan 19 (~2 s)."""
    path = _copy(clean, tmp_path)
    rd0 = StoreReader(clean)
    count = int(rd0.meta["n_scans"][2])
    tl = _arr(path, "t_lidar")
    t = np.asarray(tl[2])
    t[20:count] += 1_500_000_000
    tl[2] = t
    rd = StoreReader(path)
    for age_s, age_ns in ((None, 3 * S // 10), (1.0, S)):
        ma = MaxAgeConfig(lidar_s=age_s)
        expect = _expected_stale(rd, t, count, 2, age_ns)
        assert expect.any()
        steps = np.nonzero(expect)[0]
        assert rd.step_ns * steps[0] > 2 * S and rd.step_ns * steps[-1] < 4 * S  # inside the gap
        got = [read_batch(mb, reader=rd, max_age=ma) for mb in plan_batches(path, 4, 10)]
        stale = np.sum([b.stale_steps for b in got], axis=0)
        assert stale.tolist() == [[0, 0, 0], [0, 0, 0], [0, int(expect.sum()), 0], [0, 0, 0]]
        lidar_valid = np.concatenate([b.lidar_valid[2] for b in got])[: int(rd.n_steps[2])]
        assert not lidar_valid[expect].any() and lidar_valid[steps[-1] + 1:].all()
        # scattered windows: the same masks and counts per request, also from per-group indexes
        for reader in (rd, StoreReader(path, cache_bytes=64 << 10)):
            w = read_windows(path, [2, 0, 2], [steps[0] - 3, steps[0] - 3, steps[-1] - 1], 6, reader=reader,
                             max_age=ma)
            assert w.stale_steps[:, 1].tolist() == [int(expect[steps[0] - 3: steps[0] + 3].sum()), 0,
                                                    int(expect[steps[-1] - 1: steps[-1] + 5].sum())]
            assert w.lidar_valid[0].tolist() == (~expect[steps[0] - 3: steps[0] + 3]).tolist()


@pytest.mark.parametrize("imu_s,age_ns,lo,hi", [(None, 3 * S // 100, 3, 6), (0.25, S // 4, 1, 3)])
def test_imu_outage_is_counted_and_its_window_samples_stay_valid(clean, tmp_path, imu_s, age_ns, lo, hi):
    """IMU samples 200.. of recording 3 arrive 0.5 s late: steps in the gap have no IMU
    sample (windows empty, as before) and are counted stale; no sample is dropped."""
    path = _copy(clean, tmp_path)
    count = int(StoreReader(clean).meta["n_samples"][3])
    ti = _arr(path, "t_imu")
    t = np.asarray(ti[3])
    t[200:count] += 500_000_000
    ti[3] = t
    rd = StoreReader(path)
    expect = _expected_stale(rd, t, count, 3, age_ns)
    assert lo <= expect.sum() <= hi
    b, old = _whole(path, rd, max_age=MaxAgeConfig(imu_s=imu_s)), _whole(path, rd, max_age=NO_LIMIT)
    assert b.stale_steps[:, 2].tolist() == [0, 0, 0, int(expect.sum())] and not old.stale_steps.any()
    for f in FIELDS:
        assert np.array_equal(getattr(b, f), getattr(old, f)), f


@pytest.mark.parametrize("count,time_var,var", [("n_scans", "t_lidar", "lidar"), ("n_frames", "t_cam", "vision"),
                                                ("n_samples", "t_imu", "imu")])
def test_check_flags_data_past_a_valid_count(clean, tmp_path, count, time_var, var):
    assert check_store(clean).ok
    path = _copy(clean, tmp_path)
    n = _arr(path, count)
    n[1] = int(n[1]) - 7  # a valid count smaller than the data
    rep = check_store(path)
    got = {(p.kind, p.variable, p.recordings) for p in rep.problems}
    assert got == {("not-padding", time_var, (1,)), ("not-padding", var, (1,))}, rep.summary()
    assert any(f"7 entries past {count}=" in str(p) for p in rep.problems)


def test_check_flags_garbage_in_padding(clean, tmp_path):
    path = _copy(clean, tmp_path)
    rd = StoreReader(clean)
    r = int(np.argmin(rd.meta["n_scans"]))
    n = int(rd.meta["n_scans"][r])
    assert n < rd.sizes["scan"]
    _arr(path, "t_lidar")[r, n] = 0  # padding must be int64 max
    _arr(path, "lidar")[r, rd.sizes["scan"] - 1, 5] = 1.0  # NaN, in the last time shard
    k = int(np.argmin(rd.n_steps))
    _arr(path, "targets")[k, int(rd.n_steps[k]), 0] = 0.0
    got = {(p.kind, p.variable, p.recordings) for p in check_store(path).problems}
    assert got == {("not-padding", "t_lidar", (r,)), ("not-padding", "lidar", (r,)), ("not-padding", "targets", (k,))}


def _spoiled_cells(rd: StoreReader, t: np.ndarray, r: int, first: int, last: int, imu: bool, block: int) -> set:
    """(recording, block) cells with a valid step that could use samples first..last of t (their
    timestamps unknown): its latest sample, or for the IMU its window, may lie among them."""
    lo = int(t[first - 1]) if first > 0 else np.iinfo(np.int64).min
    hi = int(t[last + 1]) if last + 1 < len(t) else np.iinfo(np.int64).max
    k = np.arange(int(rd.n_steps[r]))
    tau = int(rd.meta["t_start"][r]) + (k + 1) * rd.step_ns
    hit = (tau >= lo) & ((tau - rd.step_ns <= hi) if imu else (tau < hi))
    return {(r, int(b)) for b in np.unique(k[hit] // block)}


@pytest.mark.parametrize("modality,chunk,rows,first,last", [
    ("lidar", "t_lidar/c/0/1", (0, 1), 20, 39),  # scans 20-39 (2-4 s) of recordings 0-1
    ("imu", "t_imu/c/1/0", (2, 3), 0, 199),  # the first 200 samples (0-2 s) of recordings 2-3
])
def test_missing_timestamp_chunk_quarantines_exactly_the_cells_it_spoils(clean, tmp_path, modality, chunk, rows,
                                                                         first, last):
    path = _copy(clean, tmp_path)
    (Path(path) / chunk).unlink()
    ref_rd, rd = StoreReader(clean), StoreReader(path)
    name = {"lidar": ("t_lidar", "n_scans"), "imu": ("t_imu", "n_samples")}[modality]
    expect = set()
    for r in rows:
        t = np.asarray(zarr.open_array(f"{clean}/{name[0]}", mode="r")[r])[: int(ref_rd.meta[name[1]][r])]
        expect |= _spoiled_cells(ref_rd, t, r, first, last, modality == "imu", 10)
    n_cells = sum(int(np.ceil(n / 10)) for n in ref_rd.n_steps[list(rows)])
    assert 0 < len(expect) < n_cells  # the bug masked all n_cells
    got, needs = set(), None
    for mb in plan_batches(path, 2, 10):
        b = read_batch(mb, "quarantine", reader=rd, needs_restart=needs)
        needs = b.carry_restart()
        ref = read_batch(mb, reader=ref_rd)
        got |= {(int(r), mb.block) for r in b.recordings[b.quarantined]}
        keep = ~b.quarantined
        for f in FIELDS:
            assert np.array_equal(getattr(b, f)[keep], getattr(ref, f)[keep]), (f, mb)
        assert not b.valid[b.quarantined].any()
        assert {(p.kind, p.variable) for p in b.problems} <= {("missing-chunk", name[0])}
    assert got == expect
    # policy fail: blocks that do not use the missing timestamps read; one that does names the chunk
    clean_block = min(k for k in range(6) if all((r, k) not in expect for r in rows))
    read_batch(MicroBatch(path, (rows[0], rows[1] + 1), (10 * clean_block, 10 * clean_block + 10)), reader=rd)
    bad_block = min(k for _, k in expect)
    with pytest.raises(SensorDataError) as info:
        read_batch(MicroBatch(path, (rows[0], rows[1] + 1), (10 * bad_block, 10 * bad_block + 10)), reader=rd)
    assert info.value.kind == "missing-chunk" and info.value.variable == name[0]
    assert info.value.recordings == rows
