"""The load generator's schedule and micro-batcher, without a cluster."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from pipeline.config import ScalingConfig
from pipeline.loadtest.batcher import inflight_cap, take_batch
from pipeline.loadtest.schedule import plan_phase, shard_warm_requests


def test_schedule_is_open_loop_at_the_offered_rate():
    rng = np.random.default_rng(0)
    n_steps = np.array([100, 5, 300])
    r = plan_phase(rng, 200, 50.0, 10.0, n_steps, window=10, shard_recordings=2, shard_steps=100)
    np.testing.assert_allclose(np.diff(r.arrival_s), 1 / 50.0)
    assert r.arrival_s[0] == 10.0
    assert set(r.recordings) <= {0, 2}  # recording 1 is shorter than a window
    assert np.all(r.starts + 10 <= n_steps[r.recordings])
    assert np.all(r.shard == (r.recordings // 2) * 1_000_000 + r.starts // 100)


def test_unlimited_rate_arrives_at_once():
    r = plan_phase(np.random.default_rng(1), 50, None, 3.0, np.array([40, 40]), 10, 64, 100)
    assert np.all(r.arrival_s == 3.0)


def test_no_recording_long_enough_is_an_error():
    with pytest.raises(ValueError, match="10 model steps"):
        plan_phase(np.random.default_rng(0), 5, 1.0, 0.0, np.array([3, 9]), 10, 64, 100)


def test_batch_takes_oldest_then_same_shard_then_fifo():
    shard = np.array([7, 1, 7, 2, 7, 1])
    pending = deque(range(6))
    assert take_batch(pending, shard, 4, prefer_shard=True) == [0, 2, 4, 1]
    assert list(pending) == [3, 5]
    pending = deque(range(6))
    assert take_batch(pending, shard, 4, prefer_shard=False) == [0, 1, 2, 3]
    pending = deque([5])
    assert take_batch(pending, shard, 4, prefer_shard=True) == [5] and not pending


def test_inflight_cap_lets_dask_adaptive_see_the_backlog():
    fixed, predictive = ScalingConfig(kind="fixed", n_workers=2), ScalingConfig(kind="predictive", maximum=4)
    adaptive = ScalingConfig(kind="adaptive", minimum=1, maximum=4)
    assert [inflight_cap(fixed, n) for n in (0, 1, 2)] == [2, 2, 4]  # two per worker
    assert [inflight_cap(predictive, n) for n in (1, 3)] == [2, 6]  # reads arrivals, not the queue
    # Dask's Adaptive scales on the scheduler's queue: two per worker of the maximum pool
    assert [inflight_cap(adaptive, n) for n in (0, 1, 4, 5)] == [8, 8, 8, 10]


def test_warm_requests_touch_every_shard_once():
    n_steps = np.array([120, 250, 9, 60, 30])
    recs, starts = shard_warm_requests(n_steps, window=10, shard_recordings=2, shard_steps=100)
    # group {0, 1}: its longest recording (1) at every step shard; {2, 3}: recording 3; {4}: 4
    assert list(zip(recs, starts, strict=True)) == [(1, 0), (1, 100), (1, 200), (3, 0), (4, 0)]
    assert all(s + 10 <= n_steps[r] for r, s in zip(recs, starts, strict=True))
