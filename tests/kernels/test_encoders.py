"""Encoders: delta-scan contract, block-by-block == whole, no burst at starts, masking."""

from __future__ import annotations

import numpy as np
import pytest

from kernels.encoders import (
    ContrastEncoder,
    DeltaEncoder,
    InverseRange,
    Passthrough,
    delta_scan_numpy,
)
from kernels.params import OpCounts


def _delta_loop(x, th, valid):
    """Scalar transcription of the contract in kernels/backend.py."""
    B, T, C = x.shape
    on, off = np.zeros_like(x), np.zeros_like(x)
    ref, primed = np.zeros((B, C), x.dtype), np.zeros((B, C), bool)
    for b in range(B):
        for c in range(C):
            for t in range(T):
                if not valid[b, t]:
                    continue
                if not primed[b, c]:
                    ref[b, c], primed[b, c] = x[b, t, c], True
                    continue
                on[b, t, c] = x[b, t, c] - ref[b, c] >= th[c]
                off[b, t, c] = ref[b, c] - x[b, t, c] >= th[c]
                if on[b, t, c] or off[b, t, c]:
                    ref[b, c] = x[b, t, c]
    return on, off, ref, primed


def test_golden_delta_sequence():
    x = np.array([5.0, 5.4, 5.5, 5.0, 4.9, 7.0], np.float64)[None, :, None]
    valid = np.array([[True, True, True, True, False, True]])
    on, off, ref, primed = delta_scan_numpy(x, np.zeros((1, 1)), np.zeros((1, 1), bool), valid, np.array([0.5]))
    # t0 primes (no event), t2: 5.5-5.0 >= 0.5 -> ON, ref 5.5; t3: 5.5-5.0 -> OFF; t4 invalid; t5 ON.
    np.testing.assert_array_equal(on[0, :, 0], [0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(off[0, :, 0], [0, 0, 0, 1, 0, 0])
    assert ref[0, 0] == 7.0 and primed[0, 0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_contract_loop(dtype):
    rng = np.random.default_rng(3)
    x = np.cumsum(rng.normal(0, 0.3, (3, 25, 4)), axis=1).astype(dtype)
    valid = rng.random((3, 25)) > 0.2
    th = np.array([0.2, 0.3, 0.5, 1.0], dtype)
    got = delta_scan_numpy(x, np.zeros((3, 4), dtype), np.zeros((3, 4), bool), valid, th)
    want = _delta_loop(x, th, valid)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    assert got[0].dtype == dtype and got[3].dtype == bool and got[0].sum() > 5 and got[1].sum() > 5


def test_block_by_block_equals_whole(backend):
    rng = np.random.default_rng(4)
    enc = DeltaEncoder(6, [0.2, 0.2, 0.2, 0.05, 0.05, 0.05], backend)
    x = backend.asarray(np.cumsum(rng.normal(0, 0.1, (4, 60, 6)), 1), np.float32)
    valid = backend.asarray(rng.random((4, 60)) > 0.1)
    (on, off), st = enc.forward(x, valid=valid)
    parts, state = [], None
    for lo, hi in ((0, 1), (1, 17), (17, 18), (18, 60)):
        (o, f), state = enc.forward(x[:, lo:hi], state, valid[:, lo:hi])
        parts.append((backend.to_numpy(o), backend.to_numpy(f)))
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts], 1), backend.to_numpy(on))
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts], 1), backend.to_numpy(off))
    np.testing.assert_array_equal(backend.to_numpy(state.ref), backend.to_numpy(st.ref))
    assert int(on.sum()) > 20 and int(off.sum()) > 20


def test_no_burst_at_start_and_invalid_steps_skip(backend):
    enc = DeltaEncoder(2, 0.1, backend)
    # A large constant level: a zero reference would fire ON at once; the zero state must not.
    x = np.full((1, 5, 2), 100.0, np.float32)
    x[0, 2] = np.nan  # dropped sample, marked invalid
    valid = np.array([[False, True, False, True, True]])
    (on, off), st = enc.forward(backend.asarray(x), valid=backend.asarray(valid))
    assert int(on.sum()) == 0 and int(off.sum()) == 0
    assert np.all(backend.to_numpy(st.primed)) and np.all(backend.to_numpy(st.ref) == 100.0)
    # An all-invalid block leaves the state untouched.
    (on2, _), st2 = enc.forward(backend.asarray(x * 0), st, backend.asarray(np.zeros((1, 5), bool)))
    assert int(on2.sum()) == 0 and np.all(backend.to_numpy(st2.ref) == 100.0)


def test_contrast_encoder_log_intensity_and_blocks(backend):
    rng = np.random.default_rng(5)
    enc = ContrastEncoder(4, 5, threshold=0.15, backend=backend)
    frames = rng.integers(0, 256, (2, 12, 4, 5), dtype=np.uint8)
    frames[:, 6:] = frames[:, 5:6]  # still scene after t=5: no events from t=6 on
    valid = np.ones((2, 12), bool)
    valid[1, 3] = False
    (on, off), st = enc.forward(frames, valid=backend.asarray(valid))
    on_np, off_np = backend.to_numpy(on), backend.to_numpy(off)
    assert on_np.shape == (2, 12, 20) and on_np[:, 0].sum() == 0
    assert on_np[:, 7:].sum() == 0 and off_np[:, 7:].sum() == 0 and on_np.sum() > 10
    logi = np.log(frames.reshape(2, 12, 20).astype(np.float32) / np.float32(255) + np.float32(1e-3))
    ref = delta_scan_numpy(logi, np.zeros((2, 20), np.float32), np.zeros((2, 20), bool), valid,
                           np.full(20, 0.15, np.float32))
    np.testing.assert_array_equal(on_np, ref[0])
    np.testing.assert_array_equal(off_np, ref[1])
    (o1, _), s1 = enc.forward(frames[:, :5], valid=backend.asarray(valid[:, :5]))
    (o2, _), _ = enc.forward(frames[:, 5:], s1, backend.asarray(valid[:, 5:]))
    np.testing.assert_array_equal(np.concatenate([backend.to_numpy(o1), backend.to_numpy(o2)], 1), on_np)
    assert enc.last_ops == OpCounts(nonlin=2 * 7 * 20)  # one log per pixel-frame
    # float frames in [0, 1] give the same events as their uint8 originals / 255
    (of, _), _ = enc.forward(backend.asarray(frames.astype(np.float32) / 255), valid=backend.asarray(valid))
    np.testing.assert_array_equal(backend.to_numpy(of), on_np)


def test_passthrough_and_inverse_range_mask(backend):
    x = np.array([[[2.0, np.inf, 0.01], [np.nan, np.nan, np.nan]]], np.float32)
    valid = backend.asarray(np.array([[True, False]]))
    cur, st = InverseRange(3, r_min=0.1, backend=backend).forward(backend.asarray(x), valid=valid)
    assert st is None
    np.testing.assert_allclose(backend.to_numpy(cur), [[[0.5, 0.0, 10.0], [0, 0, 0]]], rtol=1e-6)
    cur, _ = Passthrough(3, backend).forward(backend.asarray(x), valid=valid)
    np.testing.assert_array_equal(backend.to_numpy(cur)[0, 1], [0, 0, 0])


def test_errors(backend):
    with pytest.raises(ValueError, match=r"DeltaEncoder: threshold must be a scalar or \(3,\)"):
        DeltaEncoder(3, [0.1, 0.2], backend)
    with pytest.raises(ValueError, match="> 0"):
        DeltaEncoder(3, 0.0, backend)
    enc = DeltaEncoder(3, 0.1, backend)
    with pytest.raises(ValueError, match=r"valid must be \(1, 4\) bool"):
        enc.forward(backend.asarray(np.zeros((1, 4, 3)), np.float32), valid=backend.asarray(np.ones((1, 3), bool)))
    with pytest.raises(ValueError, match="expected 3 channels"):
        enc.forward(backend.asarray(np.zeros((1, 4, 2)), np.float32))
    cam = ContrastEncoder(2, 2, backend=backend)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cam.forward(backend.asarray(np.full((1, 2, 2, 2), 3.0, np.float32)))
    with pytest.raises(ValueError, match="uint8 or float"):
        cam.forward(backend.asarray(np.zeros((1, 2, 2, 2), np.int32)))
    with pytest.raises(ValueError, match="r_min"):
        InverseRange(3, r_min=0.0, backend=backend)


def test_imu_level_keeps_the_absolute_rate_the_delta_events_drop(backend):
    """A steady 0.4 rad/s yaw fires no gyro events after the first sample; the level channel
    gives 0.4 at every step.  Means are over valid samples only (NaN there never reaches
    them); a step with no valid sample gives 0."""
    from kernels.imu_level import WindowMean

    B, T, S = 2, 5, 10
    imu = np.zeros((B, T, S, 6), np.float32)
    imu[..., 2] = 9.81
    imu[..., 5] = 0.4
    enc = DeltaEncoder(6, [0.2, 0.2, 0.2, 0.05, 0.05, 0.05], backend, np.float32)
    (on, off), _ = enc.forward(imu.reshape(B, T * S, 6))
    assert int(backend.to_numpy(on).sum() + backend.to_numpy(off).sum()) == 0
    level = WindowMean(6, (0.1, 0.1, 0.1, 1.0, 1.0, 1.0), backend, np.float32)
    valid = np.ones((B, T, S), bool)
    imu[1, 2, 3:, 5] = np.nan  # dropped samples hold NaN
    valid[1, 2, 3:] = False
    imu[0, 1, 0, 5] = 1.4  # one sample of ten differs: the mean moves by 0.1
    valid[1, 4] = False  # a step with no sample at all
    got = backend.to_numpy(level.forward(backend.asarray(imu), backend.asarray(valid)))
    want = np.zeros((B, T, 6), np.float32)
    want[..., 2], want[..., 5] = 0.981, 0.4
    want[0, 1, 5] = 0.5
    want[1, 4] = 0.0
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert level.last_ops == OpCounts(mac=B * T * 6 * (S + 1), dense_mac=B * T * 6 * (S + 1))
    with pytest.raises(ValueError, match="scale must be 6 finite values"):
        WindowMean(6, (1.0, 2.0), backend)
    with pytest.raises(ValueError, match=r"x must be \(B, T, S, 6\)"):
        level.forward(backend.asarray(imu[..., :5]), backend.asarray(valid))
