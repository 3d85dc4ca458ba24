"""The predictive scaling policy on a fake clock and fake arrivals (no cluster), plus one
check that the Adaptive subclasses drive a real in-process LocalCluster."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import ConfigError, ScalingConfig
from pipeline.core.pool import ScaleLog, pool_window, worker_seconds
from pipeline.core.scaling import PredictiveAdaptive, PredictivePolicy, RecordingAdaptive

SERVICE_S = 0.05  # one worker serves 20 requests/s


def _cfg(**kw) -> ScalingConfig:
    base = dict(kind="predictive", minimum=1, maximum=20, target_utilisation=0.7, forecast_horizon_s=5.0,
                bin_s=1.0, holt_alpha=0.3, holt_beta=0.1, tolerance=0.2, cooldown_up_s=2.0,
                cooldown_down_s=15.0)
    base.update(kw)
    return ScalingConfig(**base)


def simulate(policy, rate, t_end, *, initial=1, startup_s=2.0, dt=0.1, interval_s=0.5, seed=0,
             poisson=False, lose_at=None, service_s=SERVICE_S):
    """Fluid queue served by the pool; workers take ``startup_s`` to start.  Returns
    (decisions [(t, from, to, reason)], queue [(t, depth)])."""
    rng = np.random.default_rng(seed)
    policy.observe_service_time(service_s)
    running, starting, queue, carry = initial, [], 0.0, 0.0
    decisions, depth = [], []
    for i in range(int(round(t_end / dt))):
        t = i * dt
        if poisson:
            n = int(rng.poisson(rate(t) * dt))
        else:
            carry += rate(t) * dt
            n = int(carry)
            carry -= n
        policy.observe_arrivals(t, n)
        running += sum(1 for r in starting if r <= t)
        starting = [r for r in starting if r > t]
        if lose_at is not None and abs(t - lose_at) < dt / 2:
            running -= 1
        queue = max(0.0, queue + n - running / service_s * dt)
        depth.append((t, queue))
        if i % round(interval_s / dt) == 0:
            have = running + len(starting)
            d = policy.recommend(t, running, len(starting))
            if d.target > have:
                starting += [t + startup_s] * (d.target - have)
            elif d.target < have:
                drop = have - d.target
                cut = min(drop, len(starting))
                starting = starting[cut:]
                running -= drop - cut
            if d.target != have:
                decisions.append((t, have, d.target, d.reason))
    return decisions, depth


def test_scales_up_before_the_queue_builds_on_a_ramp():
    ramp = lambda t: 10 + 4 * t  # noqa: E731  requests/s, 10 -> 250 over a minute
    depth_limit = 50
    decisions, depth = simulate(PredictivePolicy(_cfg()), ramp, 60)
    first_up = next(t for t, a, b, _ in decisions if b > a)
    # Counterfactual: the initial single worker, never scaled.
    _, fixed = simulate(PredictivePolicy(_cfg(maximum=1)), ramp, 60)
    overflow = next(t for t, q in fixed if q > depth_limit)
    assert first_up < overflow
    assert max(q for _, q in depth) <= depth_limit, "the predictive pool let the queue build up"
    # The trend term is what makes it early: a level-only forecast reacts later.
    flat, _ = simulate(PredictivePolicy(_cfg(holt_beta=0.0, forecast_horizon_s=0.0)), ramp, 60)
    assert first_up < next(t for t, a, b, _ in flat if b > a)
    assert all(r.startswith("up:") for _, a, b, r in decisions if b > a)


def _shipped(**kw) -> ScalingConfig:
    """conf/scaling/predictive.yaml, the defaults a load run gets."""
    from omegaconf import OmegaConf

    from pipeline.config import PROJECT_ROOT

    raw = OmegaConf.to_container(OmegaConf.load(PROJECT_ROOT / "conf" / "scaling" / "predictive.yaml"))
    raw.pop("defaults", None)
    return ScalingConfig(**{**raw, **kw})


# load=seed_phases as the policy sees it: rate steps every ~2 s, a burst, a long low phase
# (rates req/s; one worker serves 1 / 1.1 ms = 909 req/s, so the peak needs a second).
SEED_STEPS = [(0.0, 50.0), (2.0, 200.0), (4.5, 500.0), (6.5, 1000.0), (8.5, None), (11.0, 100.0)]
SEED_SERVICE_S, SEED_BURST = 1.1e-3, 5000


def _seed_rate(t, dt=0.1):
    start, r = [(t0, r) for t0, r in SEED_STEPS if t0 <= t + 1e-9][-1]
    if r is None:
        return SEED_BURST / dt if abs(t - start) < dt / 2 else 0.0
    return r


@pytest.mark.parametrize("shipped", [True, False])
def test_seed_phase_steps_scale_up_before_the_queue_and_down_in_the_low_phase(shipped):
    cfg = _shipped(maximum=2) if shipped else _cfg(maximum=2, target_utilisation=0.7, forecast_horizon_s=5.0,
                                                   bin_s=1.0, holt_alpha=0.3, holt_beta=0.1)
    backlog = 64
    decisions, depth = simulate(PredictivePolicy(cfg), _seed_rate, 45.0, service_s=SEED_SERVICE_S)
    _, alone = simulate(PredictivePolicy(_shipped(maximum=1)), _seed_rate, 45.0, service_s=SEED_SERVICE_S)
    onset = next(t for t, q in alone if q > backlog)  # a single worker's queue builds in the peak
    assert SEED_STEPS[3][0] < onset < SEED_STEPS[4][0]
    ups = [t for t, a, b, _ in decisions if b > a]
    if not shipped:  # the old defaults (1 s bins, alpha 0.3, beta 0.1, 5 s horizon) were late
        assert not ups or ups[0] + 2.0 > onset
        return
    # asked for a worker start-up (2 s) before one worker's queue would build, so the
    # pool's own queue stays short until the burst
    assert ups and ups[0] + 2.0 < onset, decisions
    assert max(q for t, q in depth if t < SEED_STEPS[4][0]) <= backlog
    # back to one worker within the low phase: once the burst's queue is gone and the
    # level settles, after cooldown_down_s; and no flapping: one up, one down
    low = SEED_STEPS[5][0]
    downs = [(t, b) for t, a, b, _ in decisions if b < a]
    assert [b for _, b in downs] == [1] and low < downs[0][0] <= low + cfg.cooldown_down_s + 5.0, decisions
    assert len(decisions) == 2


def test_forecast_extrapolates_a_rise_but_not_a_fall():
    p = PredictivePolicy(_cfg(bin_s=1.0, forecast_horizon_s=2.0, holt_alpha=0.5, holt_beta=0.5))
    for k, n in enumerate([100, 200, 300]):
        p.observe_arrivals(k + 0.5, n)
    rising = p.forecast_rate(3.5)
    assert rising > p._level > 200  # level + trend x horizon
    for k, n in enumerate([100, 0, 0], start=3):
        p.observe_arrivals(k + 0.5, n)
    assert p._trend < 0 and p.forecast_rate(6.5) == pytest.approx(max(0.0, p._level))


def test_holds_through_noise():
    steady = lambda t: 21.0  # noqa: E731  1.05 busy workers: need 2 at u = 0.7
    decisions, _ = simulate(PredictivePolicy(_cfg()), steady, 120, initial=2, poisson=True, seed=3)
    assert decisions == []
    # The noise is real: without tolerance, cooldowns and smoothing the same arrivals flap.
    jumpy = _cfg(tolerance=0.0, cooldown_up_s=0.0, cooldown_down_s=0.0, holt_alpha=1.0, holt_beta=0.5)
    flapping, _ = simulate(PredictivePolicy(jumpy), steady, 120, initial=2, poisson=True, seed=3)
    assert len(flapping) >= 4


def test_scales_down_only_after_cooldown():
    drop_at = 30.0
    load = lambda t: 60.0 if t < drop_at else 1.0  # noqa: E731
    cfg = _cfg(cooldown_down_s=10.0)
    decisions, _ = simulate(PredictivePolicy(cfg), load, 80)
    ups = [t for t, a, b, _ in decisions if b > a]
    downs = [(t, b) for t, a, b, _ in decisions if b < a]
    assert ups and downs
    # never down within cooldown_down_s of the previous event, nor of the drop in load
    times = [t for t, *_ in decisions]
    for t, _ in downs:
        prev = max(x for x in times if x < t)
        assert t - prev >= cfg.cooldown_down_s - 1e-9
        assert t >= drop_at + cfg.cooldown_down_s
    assert downs[-1][1] == cfg.minimum
    assert downs[-1][0] <= drop_at + 3 * cfg.cooldown_down_s


@settings(max_examples=40, deadline=None)
@given(rates=st.lists(st.floats(0, 5000), min_size=3, max_size=30), lo=st.integers(0, 3), span=st.integers(0, 5))
def test_never_leaves_min_max(rates, lo, span):
    cfg = _cfg(minimum=lo, maximum=max(1, lo + span), cooldown_up_s=0.0, cooldown_down_s=1.0)
    p = PredictivePolicy(cfg)
    p.observe_service_time(SERVICE_S)
    pool = 0
    for k, r in enumerate(rates):
        p.observe_arrivals(float(k), int(r))
        d = p.recommend(k + 0.5, pool)
        assert cfg.minimum <= d.target <= cfg.maximum, d
        pool = d.target
    p.observe_arrivals(len(rates), 10**6)
    assert p.recommend(len(rates) + 1.5, pool).target == cfg.maximum


def test_replaces_a_lost_worker_at_once():
    cfg = _cfg(cooldown_up_s=100.0, cooldown_down_s=100.0)
    decisions, _ = simulate(PredictivePolicy(cfg), lambda t: 21.0, 60, initial=2, lose_at=30.0)
    assert len(decisions) == 1
    t, have, to, reason = decisions[0]
    assert 30.0 <= t <= 31.0 and (have, to) == (1, 2) and reason.startswith("replace 1 lost")
    # a requested worker that never started (reported lost) is replaced too
    p = PredictivePolicy(cfg)
    p.recommend(0.0, 3)
    assert p.recommend(1.0, 2, starting=1, lost=1).target == 3
    with pytest.raises(ValueError, match="bad pool counts"):
        p.recommend(2.0, 1, starting=0, lost=2)


def test_counts_workers_still_starting():
    p = PredictivePolicy(_cfg(cooldown_up_s=0.0))
    p.observe_service_time(SERVICE_S)
    for k in range(5):
        p.observe_arrivals(float(k), 100)  # 100/s * 50 ms = 5 busy workers
    d = p.recommend(5.0, 1)
    assert d.target == math.ceil(5 / 0.7)
    # the next tick sees 1 running and the rest still starting: no further request
    assert p.recommend(5.5, 1, starting=d.target - 1).target == d.target


def test_worker_seconds_and_pool_window():
    samples = [(0.0, 1), (2.0, 3), (5.0, 2)]
    assert worker_seconds(samples, 6.0) == pytest.approx(1 * 2 + 3 * 3 + 2 * 1)
    assert pool_window(samples, 1.0, 4.0) == (1, pytest.approx((1 * 1 + 3 * 2) / 3), 3)
    with pytest.raises(ValueError, match="back in time"):
        worker_seconds([(1.0, 1), (0.5, 2)])


def test_config_rejects_nonsense():
    with pytest.raises(ConfigError, match="scaling.target_utilisation"):
        _cfg(target_utilisation=1.5).validate()
    with pytest.raises(ConfigError, match="scaling.maximum"):
        _cfg(minimum=4, maximum=2).validate()


def _wait(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("kind", ["predictive", "adaptive"])
def test_adaptive_subclasses_scale_a_real_cluster(kind):
    from distributed import Client, LocalCluster

    log = ScaleLog()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        if kind == "predictive":
            policy = PredictivePolicy(_cfg(maximum=2, bin_s=0.2, forecast_horizon_s=0.2, cooldown_up_s=0.0,
                                           cooldown_down_s=0.6))
            policy.observe_service_time(SERVICE_S)
            ad = cluster.adapt(Adaptive=PredictiveAdaptive, policy=policy, interval="100ms", wait_count=1,
                               scale_log=log)
            t_end = time.monotonic() + 1.0
            while time.monotonic() < t_end:  # 500 requests/s: needs far more than 2 workers
                policy.observe_arrivals(time.monotonic(), 50)
                time.sleep(0.1)
        else:
            ad = cluster.adapt(Adaptive=RecordingAdaptive, minimum=1, maximum=2, interval="100ms",
                               wait_count=2, target_duration="100ms", scale_log=log)
            futs = client.map(time.sleep, [0.3] * 12, pure=False)
        assert _wait(lambda: any(e.to == 2 for e in log.events)), log.events
        if kind == "adaptive":
            client.gather(futs)
        assert _wait(lambda: any(e.to == 1 and e.from_ == 2 for e in log.events)), log.events
        ad.stop()
    assert log.events[0].from_ == 1 and log.events[0].reason
    assert all(e.reason for e in log.events) and log.samples


class _FakeCluster:
    """Just enough of a SpecCluster: named worker specs, of which some are alive."""

    def __init__(self, n):
        self.spec, self.alive, self._next = set(range(n)), set(range(n)), n

    plan = property(lambda self: set(self.spec))
    requested = plan
    observed = property(lambda self: self.alive & self.spec)

    def scale(self, n):
        while len(self.spec) < n:  # requested; alive only when the test says so
            self.spec.add(self._next)
            self._next += 1

    async def scale_down(self, workers):
        self.spec -= set(workers)
        self.alive -= set(workers)


def test_predictive_adaptive_replaces_a_worker_that_never_started():
    import asyncio

    now = [0.0]
    cluster = _FakeCluster(2)
    policy = PredictivePolicy(_cfg(maximum=4, cooldown_up_s=0.0, startup_timeout_s=5.0))
    ad = PredictiveAdaptive(cluster, interval=0, wait_count=1, policy=policy, clock=lambda: now[0])
    policy.observe_service_time(SERVICE_S)

    async def tick(t, arrivals=0):
        now[0] = t
        policy.observe_arrivals(t, arrivals)
        await ad.adapt()

    async def scenario():
        await tick(0.0)
        for k in range(1, 6):
            await tick(float(k), 50)  # 50 req/s * 50 ms = 2.5 busy workers: need 4
        assert cluster.plan == {0, 1, 2, 3} and ad.scale_log.events[-1].to == 4
        cluster.alive.add(2)  # worker 3 never starts
        for k in range(6, 13):
            await tick(float(k), 50)
        assert 3 not in cluster.spec and len(cluster.spec) == 4, cluster.spec

    asyncio.run(scenario())
    ups = [e for e in ad.scale_log.events if e.reason.startswith("up:")]
    replaced = [e for e in ad.scale_log.events if e.reason.startswith("replace")]
    assert ups[-1].to == 4 and all(e.from_ < e.to for e in ad.scale_log.events)
    assert len(replaced) == 1 and (replaced[0].from_, replaced[0].to) == (3, 4)
    assert replaced[0].reason.startswith("replace 1 lost") and replaced[0].t - ups[-1].t > 5.0
    assert ad.scale_log.samples[-1] == (12.0, 3)
