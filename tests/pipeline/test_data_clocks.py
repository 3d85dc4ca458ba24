"""Alignment depends only on each recording's own clock (issue 10, item 1).

A robot whose clock was never set (1970), a fleet spanning years, a first timestamp of
-9e18 or an NTP jump of decades inside one recording must change nothing for the other
recordings, must not overflow anywhere, and must give ``task=check`` named warnings
(never problems).  Every store here is a copy of the session store (32 recordings x 20 s,
row groups of 8) with some recordings' clocks moved, compared with the unmoved store.
"""

from __future__ import annotations

import bisect
import shutil

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.data import MicroBatch, RowIndex, StoreReader, check_store, read_batch, read_windows
from pipeline.data.pools import pool_state, prefault
from pipeline.data.schema import MODALITIES, NS

FIELDS = ("camera", "camera_valid", "lidar", "lidar_valid", "imu", "imu_valid", "targets", "valid", "quarantined")
I64 = np.iinfo(np.int64)
YEAR = 365 * 86400 * NS
UNIX_1970 = 1_000_000_000  # 1 s after the epoch: a clock that was never set
JUMP_S = 8  # the NTP correction in the jump store, seconds after t_start


def _move(path, rec: int, to=None, *, by: int = 0, after_s: float | None = None) -> None:
    """Move recording ``rec``'s clock: t_start and its valid t_cam/t_lidar/t_imu alike
    (padding stays PAD_TIME), to start at ``to`` or ``by`` ns later; with ``after_s``, only
    the samples from ``after_s`` s after t_start on move (a forward jump inside it)."""
    root = zarr.open_group(str(path), mode="r+")
    t0 = int(root["t_start"][rec])
    shift = (to - t0) if to is not None else by
    if after_s is None:
        root["t_start"][rec] = t0 + shift
    for m in MODALITIES.values():
        n = int(root[m.count][rec])
        t = np.asarray(root[m.time][rec, :n]).astype(object)  # exact: the sums may not fit on the way
        moved = t - t0 >= after_s * NS if after_s is not None else np.ones(n, bool)
        t[moved] += shift
        root[m.time][rec, :n] = t.astype(np.int64)


def _copy(store, tmp_path, name: str) -> str:
    path = tmp_path / name
    shutil.copytree(store, path)
    return str(path)


def _reader(path: str, index: str) -> StoreReader:
    """A fresh reader whose timestamp index covers the whole store or one row group of 8
    (:class:`pipeline.data.reader.StoreReader.timestamps` of each group)."""
    rd = StoreReader(path)
    if index == "per-group":
        pool_state(rd).group.update(dict.fromkeys(MODALITIES, 8))
    return rd


def _read_all(path: str, index: str, policy: str = "fail"):
    rd = _reader(path, index)
    n, T = rd.n_recordings, int(rd.n_steps.max())
    return rd, read_batch(MicroBatch(path, (0, n), (0, T)), policy, reader=rd)


def _assert_same(a, b, rows=slice(None), steps=slice(None)) -> None:
    for f in FIELDS:
        x, y = getattr(a, f)[rows], getattr(b, f)[rows]
        x, y = (x[:, steps], y[:, steps]) if x.ndim > 1 else (x, y)
        same = x.dtype == y.dtype and np.array_equal(x, y)
        differ = [] if same or x.ndim < 2 else np.nonzero((x != y).reshape(len(x), -1).any(axis=1))[0].tolist()
        assert same, f"{f} differs (rows {differ})"


SCENARIOS = {
    "1970-and-5-years-ahead": {3: {"to": UNIX_1970}, 20: {"by": 5 * YEAR + 86400 * NS}},
    "first-timestamp-minus-9e18": {5: {"to": -9 * 10**18}},
    "fleet-from-1970-to-2200": {0: {"to": UNIX_1970}, 9: {"to": 230 * YEAR}, 31: {"to": 120 * YEAR}},
}


@pytest.mark.parametrize("index", ["whole-store", "per-group"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_moved_clocks_give_the_unmoved_stores_outputs(store, tmp_path, scenario, index):
    path = _copy(store, tmp_path, "moved.zarr")
    for rec, how in SCENARIOS[scenario].items():
        _move(path, rec, **how)
    rd, got = _read_all(path, index)
    _, want = _read_all(store, index)
    assert want.imu_valid.sum() > 1000 * rd.n_recordings  # the reference reads real data
    _assert_same(got, want)
    # scattered windows (the load test's path), both policies
    rng = np.random.default_rng(0)
    recs = np.r_[list(SCENARIOS[scenario]), rng.integers(0, rd.n_recordings, 29)]
    starts = rng.integers(0, 190, recs.size)
    for policy in ("fail", "quarantine"):
        _assert_same(read_windows(path, recs, starts, 10, policy, reader=rd),
                     read_windows(store, recs, starts, 10, policy, reader=_reader(store, index)))


def test_minus_9e18_first_timestamp_sets_up_workers_and_aligns(store, tmp_path):
    path = _copy(store, tmp_path, "early.zarr")
    root = zarr.open_group(path, mode="r+")
    t_cam = np.asarray(root["t_cam"][9, :2])
    root["t_cam"][9, 0] = -9 * 10**18  # the first frame's stamp alone: still increasing
    rd = StoreReader(path)
    prefault(rd)  # a worker's set-up builds the pools and the store-wide indexes
    _, want = _read_all(store, "whole-store")
    for index in ("whole-store", "per-group"):
        for policy in ("fail", "quarantine"):
            _, got = _read_all(path, index, policy)
            others = np.arange(rd.n_recordings) != 9
            _assert_same(got, want, rows=others)
            assert got.problems == () and not got.quarantined.any()
            # recording 9: frame 0 (stamped -9e18) is the latest until frame 1 (valid input
            # unless older than the maximum sample age), then everything as before
            tau = int(root["t_start"][9]) + (np.arange(want.valid.shape[1]) + 1) * rd.step_ns
            before_1 = tau < t_cam[1]
            seen, frames = got.camera_valid[9, before_1], got.camera[9, before_1]
            assert before_1.any() and (frames[seen] == root["vision"][9, 0]).all() and not frames[~seen].any()
            _assert_same(got, want, rows=slice(9, 10), steps=~before_1)
    assert check_store(path).ok


def test_forward_jump_inside_a_recording_aligns_on_both_sides(store, tmp_path):
    # recording 12 boots with an unset clock (1970); at 8 s NTP moves its clock forward by
    # 54 years to the real time; t_start was taken at boot
    path = _copy(store, tmp_path, "jump.zarr")
    t0 = int(zarr.open_group(store)["t_start"][12])
    _move(path, 12, to=UNIX_1970)
    _move(path, 12, by=t0 - UNIX_1970, after_s=JUMP_S)
    _, want = _read_all(store, "whole-store")
    for index in ("whole-store", "per-group"):
        rd, got = _read_all(path, index)
        others = np.arange(rd.n_recordings) != 12
        _assert_same(got, want, rows=others)
        # before the jump: exactly as unmoved; after it nothing new arrives on the model
        # clock (the next samples lie 54 years later): no IMU sample, no newer frame or scan
        k = int(JUMP_S * rd.model_rate_hz) - 1  # the last step whose window ends before the jump
        _assert_same(got, want, rows=slice(12, 13), steps=slice(0, k))
        after = got.valid[12] & (np.arange(got.valid.shape[1]) > k)
        assert after.sum() > 100 and not got.imu_valid[12, after].any()
        for name, var, flag in (("camera", "vision", "camera_valid"), ("lidar", "lidar", "lidar_valid")):
            t = rd.ds[MODALITIES[name].time].values[12]
            last = int(np.searchsorted(t, UNIX_1970 + JUMP_S * NS)) - 1  # the last sample before the jump
            held = getattr(got, flag)[12] & after
            assert (getattr(got, name)[12, held] == rd.ds[var].values[12, last]).all()
        # the index itself finds the samples on both sides of the jump
        index_, _ = rd.timestamps("imu", slice(0, rd.n_recordings), True)
        t = rd.ds["t_imu"].values[12, : rd.meta["n_samples"][12]]
        q = np.array([UNIX_1970 + 3 * NS, t0 + (JUMP_S + 2) * NS], np.int64) - rd.meta["t_start"][12]
        got_idx = index_.search(q[None], rows=np.array([12]))[0]
        assert got_idx.tolist() == [int(np.searchsorted(t, UNIX_1970 + 3 * NS, "right")),
                                    int(np.searchsorted(t, t0 + (JUMP_S + 2) * NS, "right"))]


def test_check_warns_about_clocks_without_refusing(store, tmp_path):
    path = _copy(store, tmp_path, "warn.zarr")
    _move(path, 3, to=UNIX_1970)
    _move(path, 20, by=5 * YEAR)
    _move(path, 7, to=-9 * 10**18)
    t0 = int(zarr.open_group(store)["t_start"][12])
    _move(path, 12, by=2 * 3600 * NS, after_s=JUMP_S)  # an NTP correction of 2 hours
    rep = check_store(path)
    assert rep.ok and rep.problems == []
    warned = {w.kind: list(w.recordings) for w in rep.warnings}
    assert warned == {"clock-before-2000": [3, 7], "clock-far-from-median": [3, 7, 20], "clock-jump": [12]}
    text = rep.summary()
    assert "problems    0 (store is valid)" in text
    for line in ("clock-before-2000: recording(s) [3, 7]", "clock-far-from-median: recording(s) [3, 7, 20]",
                 "clock-jump: recording(s) [12]"):
        assert line in text, text
    assert t0 > 0 and not check_store(store).warnings


# --- the index alone: any int64 values and origins, against an exact per-row search ----

_times = st.integers(I64.min, I64.max - 1)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.lists(_times, max_size=12), _times,
                          st.lists(st.integers(-3, 3), max_size=4)), min_size=1, max_size=5),
       st.lists(st.one_of(_times, st.integers(-10**12, 10**12)), min_size=1, max_size=6),
       st.sampled_from(["left", "right"]), st.booleans())
def test_row_index_is_exact_for_any_int64_clock(rows, queries, side, use_origin):
    # each row: sorted distinct times (some clustered around one point), an origin
    vals = []
    for times, origin, near in rows:
        vals.append(sorted({*times, *(origin + d for d in near if I64.min <= origin + d < I64.max)}))
    n = max(len(v) for v in vals) or 1
    t = np.full((len(vals), n), I64.max, np.int64)
    for i, v in enumerate(vals):
        t[i, : len(v)] = v
    origin = np.array([o for _, o, _ in rows], np.int64) if use_origin else np.zeros(len(rows), np.int64)
    index = RowIndex(t, np.array([len(v) for v in vals]), origin if use_origin else None)
    q = np.array([queries] * len(vals), np.int64)
    want = [[(bisect.bisect_left if side == "left" else bisect.bisect_right)(v, int(o) + x) for x in queries]
            for v, o in zip(vals, origin.tolist(), strict=True)]
    assert index.search(q, side).tolist() == want
    rows_ = np.arange(len(vals))[::-1]
    assert index.search(q[rows_], side, rows=rows_).tolist() == [want[i] for i in rows_]
