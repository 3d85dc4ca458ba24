"""LTC: a hand-computed neuron, a naive float64 oracle (explicit (B,S,N) sigmoids), the
blocking edge cases, state carry, per-sample dt, ncps' wiring and init, and the errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import kernels.ltc as ltc_mod
from kernels.ltc import LTC, ltc_params_from_raw
from kernels.params import LTCParams, LTCState

TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-11, atol=1e-12)}


def sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def naive_ltc(x, dt, v, p: LTCParams):
    """neurons.md section 2.3 literally, float64, materialising every synapse."""
    P = {k: np.asarray(getattr(p, k), np.float64) for k in LTCParams.__dataclass_fields__
         if k not in ("ode_unfolds", "epsilon")}
    K, out = p.ode_unfolds, []
    for t in range(x.shape[1]):
        xt = x[:, t] * P["input_w"] + P["input_b"]
        s = P["sensory_w"] * sig(P["sensory_sigma"] * (xt[:, :, None] - P["sensory_mu"]))
        ns, ds = (s * P["sensory_erev"]).sum(1), s.sum(1)
        cm_t = P["cm"] / (dt[:, t, None] / K)
        for _ in range(K):
            r = P["w"] * sig(P["sigma"] * (v[:, :, None] - P["mu"]))
            num = cm_t * v + P["gleak"] * P["vleak"] + (r * P["erev"]).sum(1) + ns
            den = cm_t + P["gleak"] + r.sum(1) + ds
            v = num / (den + p.epsilon)
        out.append(v)
    v_seq = np.stack(out, 1)
    return v_seq[:, :, : P["output_w"].size] * P["output_w"] + P["output_b"], v


def random_params(rng, S, N, M=None, K=6) -> LTCParams:
    M = N if M is None else M
    u = lambda lo, hi, *shape: rng.uniform(lo, hi, shape)  # noqa: E731
    return LTCParams(
        gleak=u(0.1, 1.5, N), vleak=u(-0.5, 0.5, N), cm=u(0.3, 1.0, N),
        w=u(0.0, 1.3, N, N) * (rng.random((N, N)) > 0.3), sigma=u(2, 9, N, N), mu=u(-0.5, 0.8, N, N),
        erev=rng.choice([-1.0, 1.0], (N, N)), sensory_w=u(0.0, 1.3, S, N), sensory_sigma=u(2, 9, S, N),
        sensory_mu=u(-0.5, 0.8, S, N), sensory_erev=rng.choice([-1.0, 1.0], (S, N)),
        input_w=u(0.5, 2, S), input_b=u(-0.3, 0.3, S), output_w=u(0.5, 2, M), output_b=u(-1, 1, M),
        ode_unfolds=K)


def test_golden_single_neuron(backend):
    one = lambda v: np.array([v], float)  # noqa: E731
    two = lambda v: np.array([[v]], float)  # noqa: E731
    p = LTCParams(gleak=one(0.5), vleak=one(0.1), cm=one(0.4), w=two(0.6), sigma=two(4.0), mu=two(0.3),
                  erev=two(1.0), sensory_w=two(0.8), sensory_sigma=two(5.0), sensory_mu=two(0.5),
                  sensory_erev=two(-1.0), input_w=one(2.0), input_b=one(0.1), output_w=one(3.0),
                  output_b=one(-0.2), ode_unfolds=2, epsilon=0.0)
    y, state = LTC(p, backend, np.float64).forward(np.array([[[0.4]]]), LTCState(np.array([[0.2]])))
    s = 0.8 / (1 + math.exp(-5.0 * (0.9 - 0.5)))  # mapped input 0.4 * 2 + 0.1 = 0.9
    c, v = 0.4 / (1.0 / 2), 0.2
    for _ in range(2):
        r = 0.6 / (1 + math.exp(-4.0 * (v - 0.3)))
        v = (c * v + 0.5 * 0.1 + r - s) / (c + 0.5 + r + s)
    assert v == pytest.approx(-0.3087, abs=1e-4)  # worked by hand: -0.11305 after one sub-step
    assert backend.to_numpy(state.v)[0, 0] == pytest.approx(v, rel=1e-13)
    assert backend.to_numpy(y)[0, 0, 0] == pytest.approx(3 * v - 0.2, rel=1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("B, S, N, M, K", [(1, 1, 1, 1, 1), (5, 7, 4, 2, 6), (11, 13, 9, 9, 3)])
def test_matches_naive_reference(backend, dtype, B, S, N, M, K):
    rng = np.random.default_rng(B + S + N)
    p = random_params(rng, S, N, M, K)
    x, dt = rng.standard_normal((B, 4, S)), rng.uniform(0.1, 3.0, (B, 4))
    v0 = rng.uniform(-0.5, 0.5, (B, N))
    y, state = LTC(p, backend, dtype).forward(x.astype(dtype), LTCState(v0.astype(dtype)), dt)
    ref_y, ref_v = naive_ltc(x, dt, v0, p)
    np.testing.assert_allclose(backend.to_numpy(y), ref_y, **TOL[dtype])
    np.testing.assert_allclose(backend.to_numpy(state.v), ref_v, **TOL[dtype])
    assert y.shape == (B, 4, M) and y.dtype == dtype and state.v.dtype == dtype


def test_blocking_edges(monkeypatch):
    """Ragged batch blocks and many small target blocks give the same numbers."""
    rng = np.random.default_rng(9)
    p = random_params(rng, 10, 7)
    x, dt, v0 = rng.standard_normal((7, 3, 10)), rng.uniform(0.5, 2, (7, 3)), np.zeros((7, 7))
    mapped = x * p.input_w + p.input_b
    ref, _ = ltc_mod.ltc_scan_numpy(mapped, v0, dt, p)
    monkeypatch.setattr(ltc_mod, "_BATCH_BLOCK", 3)
    monkeypatch.setattr(ltc_mod, "_BLOCK_BYTES", 200)  # 2-3 targets per block
    small, v_T = ltc_mod.ltc_scan_numpy(mapped, v0, dt, p)
    np.testing.assert_allclose(small, ref, rtol=1e-13, atol=1e-14)
    np.testing.assert_array_equal(v_T, small[:, -1])
    np.testing.assert_allclose(ref[..., : p.output_w.size] * p.output_w + p.output_b,
                               naive_ltc(x, dt, v0, p)[0], rtol=1e-11)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_carry_equals_one_block(backend, dtype):
    rng = np.random.default_rng(3)
    layer = LTC.init(6, 5, backend=backend, dtype=dtype)
    x = rng.standard_normal((3, 8, 6)).astype(dtype)
    y, s = layer.forward(x, timespans=0.5)
    y1, s1 = layer.forward(x[:, :5], timespans=0.5)
    y2, s2 = layer.forward(x[:, 5:], s1, timespans=0.5)
    np.testing.assert_allclose(np.concatenate([backend.to_numpy(y1), backend.to_numpy(y2)], 1),
                               backend.to_numpy(y), **TOL[dtype])
    np.testing.assert_allclose(backend.to_numpy(s2.v), backend.to_numpy(s.v), **TOL[dtype])


def test_per_sample_dt_with_batch_equal_to_units(backend):
    rng = np.random.default_rng(4)
    B = N = 5
    layer = LTC.init(3, N, backend=backend, dtype=np.float64)
    x, dt = rng.standard_normal((B, 4, 3)), rng.uniform(0.1, 4.0, (B, 1))
    y, _ = layer.forward(x, timespans=dt)
    for b in range(B):
        yb, _ = layer.forward(x[b : b + 1], timespans=float(dt[b, 0]))
        np.testing.assert_allclose(backend.to_numpy(y)[b], backend.to_numpy(yb)[0], rtol=1e-12)


def test_init_reproduces_ncps_wiring_and_ranges(backend):
    S, N = 4, 3
    rng = np.random.default_rng(1111)  # FullyConnected: recurrent polarities, then sensory, one by one
    adjacency = [[rng.choice([-1, 1, 1]) for _ in range(N)] for _ in range(N)]
    sensory = [[rng.choice([-1, 1, 1]) for _ in range(N)] for _ in range(S)]
    layer = LTC.init(S, N, ode_unfolds=4, seed=5, backend=backend)
    p = layer.params
    np.testing.assert_array_equal(p.erev, adjacency)
    np.testing.assert_array_equal(p.sensory_erev, sensory)
    softplus = lambda v: math.log1p(math.exp(v))  # noqa: E731
    assert softplus(0.001) <= p.w.min() and p.w.max() <= softplus(1.0)
    assert softplus(0.4) <= p.cm.min() and p.cm.max() <= softplus(0.6)
    assert 3 <= p.sensory_sigma.min() and p.sensory_sigma.max() <= 8
    assert np.all(np.abs(p.vleak) <= 0.2) and p.ode_unfolds == 4
    np.testing.assert_array_equal(p.input_w, np.ones(S))
    np.testing.assert_array_equal(p.output_b, np.zeros(N))
    assert layer.n_params == 3 * N + 4 * N * N + 4 * S * N + 2 * S + 2 * N  # as ncps counts


def test_implicit_constraints_and_masks():
    raw = dict(gleak=[0.0], vleak=[0.1], cm=[-1.0], w=[[2.0]], sigma=[[4.0]], mu=[[0.3]], erev=[[1.0]],
               sensory_w=[[0.5], [0.7]], sensory_sigma=[[5.0], [5.0]], sensory_mu=[[0.5], [0.5]],
               sensory_erev=[[1.0], [-1.0]], sensory_sparsity_mask=[[1.0], [0.0]])
    raw = {k: np.asarray(v, np.float32) for k, v in raw.items()}
    p = ltc_params_from_raw(raw)
    assert p.gleak[0] == pytest.approx(math.log(2), rel=1e-6)
    assert p.cm[0] == pytest.approx(math.log1p(math.exp(-1)), rel=1e-6)
    assert p.sensory_w[1, 0] == 0 and p.sensory_w[0, 0] == pytest.approx(math.log1p(math.exp(0.5)), rel=1e-6)
    q = ltc_params_from_raw(raw, implicit_param_constraints=False)
    assert q.w[0, 0] == 2.0 and q.cm[0] == -1.0 and q.w.dtype == np.float32


def test_counts_include_ode_unfolds(backend):
    S, N, K = 1444, 128, 6
    layer = LTC.init(S, N, backend=backend)
    layer.forward(np.zeros((2, 3, S), np.float32))
    synapses = S * N + K * N * N
    assert layer.last_ops.nonlin == 6 * synapses
    assert layer.last_ops.mac == layer.last_ops.dense_mac == 6 * (3 * synapses + 2 * K * N + S + N)
    cheap = LTC.init(S, N, ode_unfolds=1, backend=backend)
    assert layer.flops_per_sequence(10) - cheap.flops_per_sequence(10) == 10 * 5 * (7 * N * N + 4 * N)


def test_bad_inputs(backend):
    layer = LTC.init(4, 3, backend=backend)
    with pytest.raises(ValueError, match=r"LTC.forward: x must be \(batch, time, 4\) float32, got \(2, 5\) float32"):
        layer.forward(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match=r"LTC.forward: state must be \(2, 3\) float32 \(or LTCState\)"):
        layer.forward(np.zeros((2, 5, 4), np.float32), LTCState(np.zeros((2, 3))))
    with pytest.raises(ValueError, match=r"LTC.forward: timespans must be finite and > 0"):
        layer.forward(np.zeros((2, 5, 4), np.float32), timespans=np.zeros((2, 5)))
    with pytest.raises(ValueError, match="ode_unfolds must be an int >= 1"):
        LTC.init(4, 3, ode_unfolds=0, backend=backend)
