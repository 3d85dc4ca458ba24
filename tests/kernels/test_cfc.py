"""CfC: hand-computed golden values, a naive float64 oracle, state carry, per-sample dt,
operation counts and the errors users see."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.activations import erf
from kernels.cfc import CfC, cfc_params_from_linear
from kernels.numpy_backend import NumpyBackend
from kernels.params import CfCState

TOL = {np.float32: dict(rtol=1e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}
ACT = {
    "lecun_tanh": lambda v: 1.7159 * np.tanh(0.666 * v), "tanh": np.tanh,
    "relu": lambda v: np.maximum(v, 0), "silu": lambda v: v / (1 + np.exp(-v)),
    "gelu": lambda v: 0.5 * v * (1 + np.vectorize(math.erf)(v / math.sqrt(2))),
}


def sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def naive_cfc(x, dt, h, mode, act, backbone, heads, w_tau=None, A=None):
    """neurons.md section 1.1 literally: concat [x_t, h], torch-layout Linears, float64."""
    out = []
    for t in range(x.shape[1]):
        z = np.concatenate([x[:, t], h], axis=1)
        for w, b in backbone:
            z = ACT[act](z @ np.asarray(w, float).T + b)
        f = [z @ np.asarray(w, float).T + b for w, b in heads]
        d = dt[:, t, None]
        if mode == "pure":
            h = -A * np.exp(-d * (np.abs(w_tau) + np.abs(f[0]))) * f[0] + A
        else:
            g = sig(f[2] * d + f[3])
            h = np.tanh(f[0]) + g * np.tanh(f[1]) if mode == "no_gate" else np.tanh(f[0]) * (1 - g) + g * np.tanh(f[1])
        out.append(h)
    return np.stack(out, axis=1), h


def random_layers(rng, n_in, units, mode, backbone_layers, width=10):
    widths = [n_in + units] + [width] * backbone_layers
    lin = lambda i, o: (rng.uniform(-0.6, 0.6, (o, i)), rng.uniform(-0.3, 0.3, o))  # noqa: E731
    backbone = [lin(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)]
    heads = [lin(widths[-1], units) for _ in range(1 if mode == "pure" else 4)]
    extra = (rng.uniform(-1, 1, (1, units)), rng.uniform(-1, 1, (1, units))) if mode == "pure" else (None, None)
    return backbone, heads, extra


def test_erf_matches_math_erf():
    v = np.concatenate([np.linspace(-7, 7, 20001), [0.0, 1e-9, -1e-9, 5.99, 6.0, 6.01, 30.0, -30.0]])
    ref = np.array([math.erf(a) for a in v])
    assert np.max(np.abs(erf(v) - ref)) < 1e-12
    assert erf(np.float32(0.5)).dtype == np.float32


def test_golden_one_unit_default_mode(backend):
    # F = H = 1, no backbone: heads take [x, h]; two steps with dt 1.0 then 0.5.
    heads = [([[0.5, -0.3]], [0.1]), ([[0.2, 0.4]], [-0.2]), ([[1.0, 0.0]], [0.0]), ([[0.0, 0.5]], [0.3])]
    p = cfc_params_from_linear("default", "lecun_tanh", 1, [], heads)
    layer = CfC(p, backend, np.float64)
    x = np.array([[[1.0], [-2.0]]])
    y, state = layer.forward(x, timespans=np.array([[1.0, 0.5]]))
    g1 = 1 / (1 + math.exp(-1.3))  # a*dt + b = 1*1 + 0.3
    h1 = math.tanh(0.6) * (1 - g1)  # f1 = 0.5 + 0.1, f2 = 0.2 - 0.2 = 0
    assert h1 == pytest.approx(0.1150172296, abs=1e-9)
    f1, f2 = -1.0 - 0.3 * h1 + 0.1, -0.4 + 0.4 * h1 - 0.2
    g2 = 1 / (1 + math.exp(-(-2.0 * 0.5 + 0.5 * h1 + 0.3)))
    h2 = math.tanh(f1) * (1 - g2) + g2 * math.tanh(f2)
    np.testing.assert_allclose(backend.to_numpy(y)[0, :, 0], [h1, h2], rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(state.h), [[h2]], rtol=1e-12)


def test_golden_one_unit_pure_and_backbone(backend):
    # backbone U=1 (lecun_tanh), pure head: h = A - A exp(-dt (|w_tau| + |f1|)) f1
    p = cfc_params_from_linear("pure", "lecun_tanh", 1, [([[0.7, 0.2]], [0.1])], [([[1.5]], [-0.2])],
                               w_tau=[[-0.4]], A=[[0.8]])
    y, _ = CfC(p, backend, np.float64).forward(np.array([[[2.0]]]), timespans=0.25)
    z = 1.7159 * math.tanh(0.666 * (0.7 * 2.0 + 0.1))
    f1 = 1.5 * z - 0.2
    h = 0.8 - 0.8 * math.exp(-0.25 * (0.4 + abs(f1))) * f1
    assert backend.to_numpy(y)[0, 0, 0] == pytest.approx(h, rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["default", "pure", "no_gate"])
@pytest.mark.parametrize("backbone_layers, act", [(0, "lecun_tanh"), (1, "lecun_tanh"), (1, "gelu"),
                                                  (2, "silu"), (2, "relu"), (3, "tanh")])
def test_matches_naive_reference(backend, dtype, mode, backbone_layers, act):
    rng = np.random.default_rng(backbone_layers * 7 + len(mode))
    B, T, F, H = 5, 6, 7, 4
    backbone, heads, (w_tau, A) = random_layers(rng, F, H, mode, backbone_layers)
    p = cfc_params_from_linear(mode, act, F, backbone, heads, w_tau, A)
    x = rng.standard_normal((B, T, F))
    dt = rng.uniform(0.1, 3.0, (B, T))
    h0 = rng.uniform(-0.5, 0.5, (B, H))
    y, state = CfC(p, backend, dtype).forward(x.astype(dtype), CfCState(h0.astype(dtype)), dt)
    ref_seq, ref_h = naive_cfc(x, dt, h0, mode, act, backbone, heads, w_tau, A)
    np.testing.assert_allclose(backend.to_numpy(y), ref_seq, **TOL[dtype])
    np.testing.assert_allclose(backend.to_numpy(state.h), ref_h, **TOL[dtype])
    assert y.dtype == dtype and state.h.dtype == dtype


def test_projection_readout(backend):
    rng = np.random.default_rng(1)
    layer = CfC.init(6, 5, proj_size=3, backbone_units=8, backend=backend, dtype=np.float64)
    x = rng.standard_normal((2, 4, 6))
    y, state = layer.forward(x)
    plain = CfC(layer.params.__class__(**{**layer.params.__dict__, "proj_w": None, "proj_b": None}),
                backend, np.float64)
    h_seq, _ = plain.forward(x)
    p = layer.params
    np.testing.assert_allclose(backend.to_numpy(y), backend.to_numpy(h_seq) @ p.proj_w + p.proj_b, rtol=1e-12)
    assert y.shape == (2, 4, 3) and state.h.shape == (2, 5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_carry_equals_one_block(backend, dtype):
    rng = np.random.default_rng(2)
    layer = CfC.init(9, 6, backbone_units=11, backbone_layers=2, backend=backend, dtype=dtype)
    x = rng.standard_normal((4, 10, 9)).astype(dtype)
    ts = rng.uniform(0.5, 1.5, (4, 10, 1)).astype(dtype)
    y, s = layer.forward(x, timespans=ts)
    y1, s1 = layer.forward(x[:, :3], timespans=ts[:, :3])
    y2, s2 = layer.forward(x[:, 3:], s1, timespans=ts[:, 3:])
    np.testing.assert_allclose(np.concatenate([backend.to_numpy(y1), backend.to_numpy(y2)], 1),
                               backend.to_numpy(y), **TOL[dtype])
    np.testing.assert_allclose(backend.to_numpy(s2.h), backend.to_numpy(s.h), **TOL[dtype])


def test_float32_close_to_float64(backend):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 8, 20))
    y64, _ = CfC.init(20, 16, backend=backend, dtype=np.float64).forward(x)
    y32, _ = CfC.init(20, 16, backend=backend, dtype=np.float32).forward(x.astype(np.float32))
    np.testing.assert_allclose(backend.to_numpy(y32), backend.to_numpy(y64), atol=1e-5)


def test_per_sample_dt_with_batch_equal_to_units(backend):
    """B == H is where ncps silently applies sample i's dt to unit i (ncps#83)."""
    rng = np.random.default_rng(5)
    B = H = 6
    layer = CfC.init(3, H, backbone_units=8, backend=backend, dtype=np.float64)
    x = rng.standard_normal((B, 4, 3))
    dt = rng.uniform(0.1, 4.0, (B, 1))
    y, _ = layer.forward(x, timespans=dt)
    for b in range(B):
        yb, _ = layer.forward(x[b : b + 1], timespans=float(dt[b, 0]))
        np.testing.assert_allclose(backend.to_numpy(y)[b], backend.to_numpy(yb)[0], rtol=1e-12)
    y_unit_wise, _ = layer.forward(x, timespans=np.broadcast_to(dt[:, 0], (4, B)).T.copy())
    np.testing.assert_allclose(backend.to_numpy(y_unit_wise), backend.to_numpy(y), rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(1, 5), st.floats(0.01, 50.0), st.sampled_from(["default", "no_gate", "pure"]))
def test_timespan_forms_agree_and_stay_finite(batch, steps, dt, mode):
    backend = NumpyBackend()
    layer = CfC.init(3, 4, mode=mode, backbone_units=5, backend=backend, dtype=np.float64)
    x = np.random.default_rng(batch * 10 + steps).standard_normal((batch, steps, 3))
    forms = [dt, np.full((batch, 1), dt), np.full((batch, steps), dt), np.full((batch, steps, 1), dt)]
    ys = [layer.forward(x, timespans=f)[0] for f in forms]
    for y in ys[1:]:
        np.testing.assert_array_equal(y, ys[0])
    assert np.all(np.isfinite(ys[0]))
    if mode == "default":  # a convex blend of two tanh values
        assert np.all(np.abs(ys[0]) <= 1.0)


def test_defaults_and_counts(backend):
    layer = CfC.init(1444, 128, backend=backend)
    assert layer.n_params == 267_392  # ncps CfC(1444, 128)
    x = np.zeros((2, 3, 1444), np.float32)
    y, state = layer.forward(x)
    assert y.dtype == np.float32 and state.h.shape == (2, 128)
    per_step = (1444 + 128) * 128 + 128 * 4 * 128
    ops = layer.last_ops
    assert ops.mac == ops.dense_mac == 6 * per_step and ops.acc == 0
    assert ops.nonlin == 6 * (128 + 3 * 128)
    assert layer.flops_per_sequence(10) == 10 * (2 * per_step + 128 + 3 * 128)
    relu = CfC.init(4, 3, mode="pure", activation="relu", backbone_layers=2, backbone_units=5, backend=backend)
    relu.forward(np.zeros((1, 1, 4), np.float32))
    assert relu.last_ops.nonlin == 3  # relu is not a transcendental; one exp per unit


def test_init_follows_ncps_ranges(backend):
    a = CfC.init(30, 10, mode="pure", backbone_units=20, proj_size=4, seed=7, backend=backend)
    b = CfC.init(30, 10, mode="pure", backbone_units=20, proj_size=4, seed=7, backend=backend)
    c = CfC.init(30, 10, mode="pure", backbone_units=20, proj_size=4, seed=8, backend=backend)
    np.testing.assert_array_equal(a.params.w_x, b.params.w_x)
    assert not np.array_equal(a.params.w_x, c.params.w_x)
    p = a.params
    assert np.abs(np.concatenate([p.w_x, p.w_h])).max() <= math.sqrt(6 / (40 + 20))
    assert np.abs(p.w_x).max() > 0.8 * math.sqrt(6 / 60)
    assert np.abs(p.b_x).max() <= 1 / math.sqrt(40)
    assert np.abs(p.w_tau).max() <= math.sqrt(6 / 11) and np.abs(p.A).max() <= math.sqrt(6 / 11)
    assert np.abs(p.proj_w).max() <= 1 / math.sqrt(10)
    assert p.w_head.shape == (20, 10) and p.w_x.dtype == np.float32


def test_bad_inputs_name_layer_argument_and_shapes(backend):
    layer = CfC.init(1444, 8, backbone_units=4, backend=backend)
    with pytest.raises(ValueError, match=r"CfC.forward: x must be \(batch, time, 1444\) float32, "
                                         r"got \(8, 20, 100\) float32"):
        layer.forward(np.zeros((8, 20, 100), np.float32))
    with pytest.raises(ValueError, match=r"got \(2, 3, 1444\) float64"):
        layer.forward(np.zeros((2, 3, 1444)))
    with pytest.raises(TypeError, match="CfC.forward: x must be an array, got list"):
        layer.forward([[[0.0]]])
    x = np.zeros((2, 3, 1444), np.float32)
    with pytest.raises(ValueError, match=r"CfC.forward: state must be \(2, 8\) float32.*got \(3, 8\) float32"):
        layer.forward(x, np.zeros((3, 8), np.float32))
    with pytest.raises(ValueError, match=r"CfC.forward: timespans must be a scalar, \(2, 1\), \(2, 3\)"):
        layer.forward(x, timespans=np.ones(2, np.float32))
    for bad in (0.0, -1.0, float("nan"), float("inf"), np.array([[1.0], [-2.0]])):
        with pytest.raises(ValueError, match="finite and > 0"):
            layer.forward(x, timespans=bad)
    with pytest.raises(TypeError, match="timespans must be a real number"):
        layer.forward(x, timespans="1.0")
    with pytest.raises(ValueError, match=r"CfC.scan: u must be \(batch, time, 4\)"):
        layer.scan(np.zeros((2, 3, 5), np.float32))
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        CfC.init(3, 2, backend=backend, dtype=np.int32)
    with pytest.raises(ValueError, match="mode must be one of"):
        CfC.init(3, 2, mode="fast", backend=backend)
    with pytest.raises(ValueError, match="activation must be one of"):
        CfC.init(3, 2, activation="softsign", backend=backend)
    with pytest.raises(ValueError, match="proj_size must be an int >= 1"):
        CfC.init(3, 2, proj_size=0, backend=backend)
