"""LIF: golden sequences, state carry, dtypes, validation, and parity with snnTorch Leaky."""

from __future__ import annotations

import numpy as np
import pytest
from _compare import require

from kernels.lif import LIF, lif_scan_numpy
from kernels.params import LIFParams, LIFState, OpCounts

F32 = np.float32


class _NP:  # minimal backend for host-only unit tests of the layer
    xp = np

    @staticmethod
    def asarray(a, dtype=None):
        return np.asarray(a, dtype=dtype)

    @staticmethod
    def lif_scan(cur, mem0, p):
        return lif_scan_numpy(cur, mem0, p)


def _run(cur, reset, beta=0.5, threshold=1.0, dtype=np.float64):
    p = LIF.init(1, beta=beta, threshold=threshold, reset_mechanism=reset, backend=_NP).params
    c = np.asarray(cur, dtype=dtype)[None, :, None]
    spk, mem = lif_scan_numpy(c, np.zeros((1, 1), dtype), p)
    return spk[0, :, 0], mem[0, :, 0]


def test_golden_subtract_delayed_reset():
    # beta 0.5: U1 = 1.5 spikes; the reset (-1) applies at step 2 after the decay:
    # U2 = 0.75 + 0 - 1 = -0.25; U3 = -0.125 + 1 = 0.875; U4 = 0.4375 + 1 = 1.4375 spikes.
    spk, mem = _run([1.5, 0.0, 1.0, 1.0], "subtract")
    np.testing.assert_array_equal(spk, [1, 0, 0, 1])
    np.testing.assert_allclose(mem, [1.5, -0.25, 0.875, 1.4375], rtol=0, atol=1e-15)


def test_golden_zero_reset():
    spk, mem = _run([1.5, 0.25, 1.0, 0.0], "zero")
    # U2 = 0.5 * 0 + 0.25; U3 = 0.125 + 1 = 1.125 (spike, not reset yet); U4 = 0.
    np.testing.assert_array_equal(spk, [1, 0, 1, 0])
    np.testing.assert_allclose(mem, [1.5, 0.25, 1.125, 0.0], atol=1e-15)


def test_golden_no_reset():
    # No reset ever: U2 = 0.75, U3 = 0.375 + 0.75 = 1.125 spikes again.
    spk, mem = _run([1.5, 0.0, 0.75], "none")
    np.testing.assert_array_equal(spk, [1, 0, 1])
    np.testing.assert_allclose(mem, [1.5, 0.75, 1.125], atol=1e-15)


def test_strict_threshold_at_equality():
    spk, mem = _run([1.0, 0.5, 0.5], "subtract", beta=1.0)
    # U1 == theta exactly: no spike, no reset; U2 = 1.5 spikes; U3 = 1.5 + 0.5 - 1 = 1.0: no spike.
    np.testing.assert_array_equal(spk, [0, 1, 0])
    np.testing.assert_array_equal(mem, [1.0, 1.5, 1.0])


def test_per_neuron_beta_and_clamping():
    p = LIF.init(3, beta=[-0.5, 0.25, 2.0], threshold=10.0, backend=_NP).params
    np.testing.assert_array_equal(p.beta, np.array([0.0, 0.25, 1.0], F32))
    assert p.beta.dtype == F32
    cur = np.ones((1, 3, 3))
    _, mem = lif_scan_numpy(cur, np.zeros((1, 3)), p)
    np.testing.assert_allclose(mem[0, -1], [1.0, 1.3125, 3.0])


def test_beta_float32_rounding_in_float64():
    p = LIF.init(2, beta=0.9, backend=_NP).params
    assert p.beta[0] == F32(0.9) and float(p.beta[0]) != 0.9
    _, mem = lif_scan_numpy(np.zeros((1, 1, 2)), np.ones((1, 2)) * 0.5, p)
    assert mem[0, 0, 0] == float(F32(0.9)) * 0.5


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_carry_equals_whole(backend, reset, dtype):
    rng = np.random.default_rng(1)
    lif = LIF.init(16, beta=rng.uniform(0.5, 1.0, 16), reset_mechanism=reset, backend=backend, dtype=dtype)
    cur = backend.asarray(rng.normal(0.4, 0.8, (5, 30, 16)), dtype=dtype)
    (spk, mem), st = lif.forward(cur)
    assert spk.dtype == dtype and mem.dtype == dtype and spk.shape == (5, 30, 16)
    s_parts, m_parts, state = [], [], None
    for lo, hi in ((0, 7), (7, 8), (8, 30)):
        (s, m), state = lif.forward(cur[:, lo:hi], state)
        s_parts.append(backend.to_numpy(s))
        m_parts.append(backend.to_numpy(m))
    np.testing.assert_array_equal(np.concatenate(s_parts, 1), backend.to_numpy(spk))
    np.testing.assert_array_equal(np.concatenate(m_parts, 1), backend.to_numpy(mem))
    np.testing.assert_array_equal(backend.to_numpy(state.mem), backend.to_numpy(st.mem))
    assert 0 < float(spk.mean()) < 1  # the test exercised spikes and silence


def test_ops_and_params(backend):
    lif = LIF.init(4, backend=backend)
    lif.forward(backend.asarray(np.ones((2, 3, 4)), dtype=F32))
    assert lif.last_ops == OpCounts() and lif.n_params == 0


def test_validation_errors(backend):
    with pytest.raises(ValueError, match="reset_mechanism"):
        LIF.init(4, reset_mechanism="hard", backend=backend)
    with pytest.raises(ValueError, match=r"beta must be a scalar or shape \(4,\)"):
        LIF.init(4, beta=[0.5, 0.5], backend=backend)
    with pytest.raises(ValueError, match="finite"):
        LIF.init(4, threshold=np.nan, backend=backend)
    with pytest.raises(ValueError, match="units"):
        LIF.init(0, backend=backend)
    lif = LIF.init(4, backend=backend)
    with pytest.raises(ValueError, match=r"cur must be \(B, T, 4\)"):
        lif.forward(backend.asarray(np.ones((2, 3, 5)), dtype=F32))
    with pytest.raises(ValueError, match="dtype"):
        lif.forward(backend.asarray(np.ones((2, 3, 4)), dtype=np.float64))
    with pytest.raises(ValueError, match="state.mem"):
        lif.forward(backend.asarray(np.ones((2, 3, 4)), dtype=F32), LIFState(backend.asarray(np.ones((3, 4)), F32)))
    with pytest.raises(ValueError, match="reset_mechanism"):
        LIF(LIFParams(np.ones(2, F32), np.ones(2, F32), "zero!"), backend)


@pytest.mark.compare
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parity_snntorch_leaky(backend, reset, dtype):
    torch = require("torch")
    snn = require("snntorch")
    B, T, H = 8, 40, 32
    rng = np.random.default_rng(7)
    beta = rng.uniform(0.3, 1.2, H)  # some > 1: both sides clamp
    cur = rng.normal(0.35, 0.9, (B, T, H)).astype(dtype)
    leaky = snn.Leaky(beta=torch.as_tensor(beta.astype(np.float32)), threshold=0.8, reset_mechanism=reset)
    mem = torch.zeros(B, H, dtype=torch.float64 if dtype == np.float64 else torch.float32)
    ref_spk, ref_mem = [], []
    with torch.no_grad():
        for t in range(T):
            s, mem = leaky(torch.from_numpy(cur[:, t]), mem)
            ref_spk.append(s.numpy())
            ref_mem.append(mem.numpy())
    ref_spk, ref_mem = np.stack(ref_spk, 1), np.stack(ref_mem, 1)
    lif = LIF.init(H, beta=beta, threshold=0.8, reset_mechanism=reset, backend=backend, dtype=dtype)
    (spk, m), _ = lif.forward(backend.asarray(cur))
    np.testing.assert_array_equal(backend.to_numpy(spk), ref_spk)
    assert np.max(np.abs(backend.to_numpy(m) - ref_mem)) <= 1e-5
    assert 0.02 < ref_spk.mean() < 0.98
