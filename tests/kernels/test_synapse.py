"""Synapse: event path == dense, automatic path choice, operation counts."""

from __future__ import annotations

import numpy as np
import pytest

from kernels.synapse import DEFAULT_EVENT_THRESHOLD, Linear, event_matmul_numpy, measure_crossover


def _dyadic(rng, shape, dtype=np.float32):
    # Multiples of 2^-8 below 1: every partial sum of <= 2^15 terms is exact in float32,
    # so any summation order gives identical bits and equality can be exact.
    return (rng.integers(-255, 256, shape) / 256).astype(dtype)


@pytest.mark.parametrize("density", [0.0, 0.001, 0.01, 0.05, 0.3, 1.0])
@pytest.mark.parametrize("shape", [(257, 1024, 128), (40, 60, 7), (5, 1, 3)])
def test_event_equals_dense_exactly(density, shape):
    n, f, o = shape
    rng = np.random.default_rng(int(density * 1000) + f)
    s = (rng.random((n, f)) < density).astype(np.float32)
    w = _dyadic(rng, (f, o))
    np.testing.assert_array_equal(event_matmul_numpy(s, w), s @ w)


def test_event_skewed_rows_and_float_weights():
    rng = np.random.default_rng(2)
    s = (rng.random((64, 1024)) < 0.002).astype(np.float64)
    s[10] = 1.0  # one saturated row: exercises the segment-sum branch
    w = _dyadic(rng, (1024, 32), np.float64)
    np.testing.assert_array_equal(event_matmul_numpy(s, w), s @ w)
    wf = rng.standard_normal((1024, 32))
    np.testing.assert_allclose(event_matmul_numpy(s, wf), s @ wf, rtol=1e-12, atol=1e-12)
    assert event_matmul_numpy(s.astype(bool), w).dtype == np.float64


def test_backend_event_matmul(backend):
    rng = np.random.default_rng(3)
    s = (rng.random((300, 200)) < 0.02).astype(np.float32)
    w = _dyadic(rng, (200, 64))
    got = backend.event_matmul(backend.asarray(s), backend.asarray(w))
    np.testing.assert_array_equal(backend.to_numpy(got), s @ w)


def test_linear_auto_path_and_ops(backend):
    rng = np.random.default_rng(4)
    w, b = _dyadic(rng, (100, 16)), _dyadic(rng, (16,))
    lin = Linear(w, b, backend, event_threshold=0.05)
    sparse = (rng.random((3, 10, 100)) < 0.01).astype(np.float32)
    sparse[0, 0, :3] = 1  # at least a few events
    y = lin.forward(backend.asarray(sparse))
    nnz = int(sparse.sum())
    assert lin.last_path == "event" and y.shape == (3, 10, 16)
    assert tuple(lin.last_ops) == (0, nnz * 16, 0, 30 * 100 * 16, nnz * 16, 30 * 100 * 16)
    np.testing.assert_array_equal(backend.to_numpy(y), sparse @ w + b)
    dense = (rng.random((3, 10, 100)) < 0.5).astype(np.float32)
    lin.forward(backend.asarray(dense))
    # the dense path ran; the spikes' synaptic events are still counted for the estimate
    events = int(dense.sum()) * 16
    assert lin.last_path == "dense" and tuple(lin.last_ops) == (48000, 0, 0, 48000, events, 48000)
    analog = sparse * 0.5  # sparse but not binary: must stay dense, and is no spike train
    y = lin.forward(backend.asarray(analog))
    assert lin.last_path == "dense" and lin.last_ops.syn_events == 0
    np.testing.assert_array_equal(backend.to_numpy(y), analog @ w + b)
    off = Linear(w, None, backend, event_threshold=0.0)
    off.forward(backend.asarray(sparse))
    assert off.last_path == "dense" and off.n_params == 1600 and lin.n_params == 1616


def test_forward_signed(backend):
    rng = np.random.default_rng(5)
    w = _dyadic(rng, (50, 8))
    on = (rng.random((4, 6, 50)) < 0.02).astype(np.float32)
    off = ((rng.random((4, 6, 50)) < 0.02) & (on == 0)).astype(np.float32)
    for thr, path in ((0.5, "event"), (0.0, "dense")):
        lin = Linear(w, None, backend, event_threshold=thr)
        y = lin.forward_signed(backend.asarray(on), backend.asarray(off))
        np.testing.assert_array_equal(backend.to_numpy(y), (on - off) @ w)
        assert lin.last_path == path and lin.last_ops.dense_mac == 24 * 50 * 8
        want = (0, int(on.sum() + off.sum()) * 8) if path == "event" else (24 * 50 * 8, 0)
        assert tuple(lin.last_ops)[:2] == want


def test_linear_errors(backend):
    with pytest.raises(ValueError, match=r"Linear: w must be \(F, O\)"):
        Linear(np.ones(3), None, backend)
    with pytest.raises(ValueError, match=r"b must be \(2,\)"):
        Linear(np.ones((3, 2)), np.ones(3), backend)
    with pytest.raises(ValueError, match="event_threshold"):
        Linear(np.ones((3, 2)), None, backend, event_threshold=2.0)
    with pytest.raises(ValueError, match=r"x must be \(\.\.\., 3\)"):
        Linear(np.ones((3, 2)), None, backend).forward(backend.asarray(np.ones((2, 4)), np.float32))


def test_measure_crossover_runs(backend):
    cross, table = measure_crossover(backend, n_rows=64, n_in=64, n_out=8, densities=(0.001, 0.5), repeats=1)
    assert len(table) == 2 and cross in (0.0, 0.001, 0.5)
    assert all(d > 0 and e > 0 for _, d, e in table)
    assert 0 < DEFAULT_EVENT_THRESHOLD < 0.05
