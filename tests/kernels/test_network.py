"""Fusion network: shapes, variants, block carry, masking, state I/O, weights, op counts."""

from __future__ import annotations

import numpy as np
import pytest
from _compare import require, require_format

from kernels import interop
from kernels.network import FusionConfig, FusionNetwork

VARIANTS = {
    "fusion": FusionConfig(),
    "cfc": FusionConfig(spiking=False),
    "ltc": FusionConfig(liquid="ltc", spiking=False, hidden=16),
    "ltc_proj": FusionConfig(liquid="ltc", spiking=False, hidden=16, ltc_sensory=8),  # model=ltc's input projection
    "lif": FusionConfig(liquid=None, threshold=0.3),
}


def _inputs(B=3, T=16, seed=0):
    """Slowly moving camera pattern (sparse events), LIDAR ranges, IMU random walk."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    t = np.arange(T)[None, :, None, None] + rng.uniform(0, 5, (B, 1, 1, 1))
    cam = (127 + 100 * np.sin(0.3 * xx + 0.25 * t) * np.cos(0.2 * yy)).astype(np.uint8)
    lidar = rng.uniform(0.5, 40, (B, T, 360)).astype(np.float32)
    lidar[:, :, ::17] = np.inf  # no return
    imu = np.cumsum(rng.normal(0, 0.1, (B, T, 10, 6)), axis=(2)).astype(np.float32)
    return cam, lidar, imu


@pytest.mark.parametrize("name", list(VARIANTS))
def test_shapes_and_variants(backend, name):
    cfg = VARIANTS[name]
    net = FusionNetwork.init(cfg, backend)
    cam, lidar, imu = _inputs()
    out, st = net.forward(cam, lidar, imu)
    y = backend.to_numpy(out.y)
    assert y.shape == (3, 16, 3) and y.dtype == np.float32 and np.all(np.isfinite(y))
    assert out.spike_counts.shape == (3, 16) and out.event_counts.shape == (3, 16)
    # No camera burst at t=0: only IMU samples 2..10 of the first step can fire (<= 9 * 6).
    assert int(out.event_counts.sum()) > 0 and int(out.event_counts[:, 0].max()) <= 54
    assert (st.liquid is None) == (cfg.liquid is None) and (st.lif is None) == (not cfg.spiking)
    if cfg.spiking:
        assert int(out.spike_counts.sum()) > 0
    else:
        assert int(out.spike_counts.sum()) == 0
    assert np.std(y) > 0


@pytest.mark.parametrize("name", list(VARIANTS))
def test_block_by_block_equals_whole(backend, name):
    net = FusionNetwork.init(VARIANTS[name], backend)
    cam, lidar, imu = _inputs(B=2, T=14, seed=1)
    imu_valid = np.random.default_rng(2).random((2, 14, 10)) > 0.1
    whole, st_whole = net.forward(cam, lidar, imu, imu_valid=imu_valid)
    state, ys, spikes, events = None, [], [], []
    for lo, hi in ((0, 5), (5, 6), (6, 14)):
        out, state = net.forward(cam[:, lo:hi], lidar[:, lo:hi], imu[:, lo:hi], state, imu_valid=imu_valid[:, lo:hi])
        ys.append(backend.to_numpy(out.y))
        spikes.append(backend.to_numpy(out.spike_counts))
        events.append(backend.to_numpy(out.event_counts))
    np.testing.assert_array_equal(np.concatenate(events, 1), backend.to_numpy(whole.event_counts))
    np.testing.assert_array_equal(np.concatenate(spikes, 1), backend.to_numpy(whole.spike_counts))
    np.testing.assert_allclose(np.concatenate(ys, 1), backend.to_numpy(whole.y), rtol=0, atol=2e-5)
    a, b = net.state_to_arrays(state), net.state_to_arrays(st_whole)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=2e-5, err_msg=k)


def test_masking_ignores_invalid_data(backend):
    net = FusionNetwork.init(FusionConfig(), backend)
    cam, lidar, imu = _inputs(B=2, T=8, seed=3)
    cv = np.ones((2, 8), bool)
    cv[0, 3] = False
    lv = cv.copy()
    lv[1, 5] = False
    iv = np.ones((2, 8, 10), bool)
    iv[1, 2, 4:] = False
    clean, _ = net.forward(cam, lidar, imu, camera_valid=cv, lidar_valid=lv, imu_valid=iv)
    cam2, lidar2, imu2 = cam.copy(), lidar.copy(), imu.copy()
    cam2[0, 3] = 255
    lidar2[1, 5] = np.nan
    imu2[1, 2, 4:] = np.nan
    dirty, _ = net.forward(cam2, lidar2, imu2, camera_valid=cv, lidar_valid=lv, imu_valid=iv)
    np.testing.assert_array_equal(backend.to_numpy(dirty.y), backend.to_numpy(clean.y))
    unmasked, _ = net.forward(cam2, lidar, imu)
    assert not np.array_equal(backend.to_numpy(unmasked.y), backend.to_numpy(clean.y))
    with pytest.raises(ValueError, match="lidar has NaN at steps marked valid"):
        net.forward(cam, lidar2, imu)
    with pytest.raises(ValueError, match=r"camera must be \(2, 8, 32, 32\)"):
        net.forward(cam[:, :, :16], lidar, imu)
    with pytest.raises(ValueError, match="imu_valid"):
        net.forward(cam, lidar, imu, imu_valid=cv)


def test_state_arrays_round_trip_and_reset_rows(backend):
    net = FusionNetwork.init(FusionConfig(), backend)
    cam, lidar, imu = _inputs(B=3, T=12, seed=4)
    _, st = net.forward(cam[:, :6], lidar[:, :6], imu[:, :6])
    arrays = net.state_to_arrays(st)
    assert set(arrays) == {"camera.ref", "camera.primed", "imu.ref", "imu.primed", "liquid.h", "lif.mem"}
    assert all(isinstance(v, np.ndarray) and v.shape[0] == 3 for v in arrays.values())
    st2 = net.state_from_arrays(arrays)
    a, _ = net.forward(cam[:, 6:], lidar[:, 6:], imu[:, 6:], st)
    b, _ = net.forward(cam[:, 6:], lidar[:, 6:], imu[:, 6:], st2)
    np.testing.assert_array_equal(backend.to_numpy(a.y), backend.to_numpy(b.y))
    with pytest.raises(KeyError, match="missing"):
        net.state_from_arrays({k: v for k, v in arrays.items() if k != "lif.mem"})
    with pytest.raises(ValueError, match="liquid.h must be"):
        net.state_from_arrays({**arrays, "liquid.h": arrays["liquid.h"][:, :5]})
    # Row 1 restarts: it must continue exactly like a fresh recording; rows 0, 2 carry on.
    reset = net.reset_rows(st, np.array([False, True, False]))
    r, _ = net.forward(cam[:, 6:], lidar[:, 6:], imu[:, 6:], reset)
    fresh, _ = net.forward(cam[1:2, 6:], lidar[1:2, 6:], imu[1:2, 6:])
    np.testing.assert_allclose(backend.to_numpy(r.y)[1], backend.to_numpy(fresh.y)[0], atol=1e-5)
    np.testing.assert_array_equal(backend.to_numpy(r.y)[[0, 2]], backend.to_numpy(a.y)[[0, 2]])
    assert int(r.event_counts[1, 0]) <= 54 < int(a.event_counts[1, 0])


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
@pytest.mark.parametrize("name", ["fusion", "ltc", "ltc_proj", "lif"])
def test_save_load_round_trip(backend, tmp_path, suffix, name):
    require_format(suffix)
    cfg = VARIANTS[name]
    net = FusionNetwork.init(FusionConfig(**{**cfg.__dict__, "seed": 11}), backend)
    path = tmp_path / f"w{suffix}"
    net.save(path)
    net2 = FusionNetwork.load(path, backend)
    assert net2.config == net.config and net2.n_params == net.n_params
    cam, lidar, imu = _inputs(B=2, T=6, seed=5)
    a, _ = net.forward(cam, lidar, imu)
    b, _ = net2.forward(cam, lidar, imu)
    np.testing.assert_array_equal(backend.to_numpy(a.y), backend.to_numpy(b.y))
    other, _ = FusionNetwork.init(cfg, backend).forward(cam, lidar, imu)
    assert not np.array_equal(backend.to_numpy(other.y), backend.to_numpy(a.y))


def test_op_counts_match_formulas(backend):
    cfg = FusionConfig()
    net = FusionNetwork.init(cfg, backend)
    per = net.dense_ops_per_step()
    F, H, U, L, n_out = 1450, 128, 128, 128, 3  # 32*32 pixels + 360 beams + 10*6 IMU events + 6 IMU levels
    level = 6 * (10 + 1)  # the level channel's mean: 10 samples and a scale per channel
    dense = (F + H) * U + U * 4 * H + H * L + (H + L) * n_out + level  # backbone, heads, LIF syn, readout
    assert per.dense_mac == dense
    assert per.nonlin == 32 * 32 + U + 3 * H  # log per pixel, lecun_tanh, tanh f1 f2 + gate
    assert net.mflop_per_sequence(100) == pytest.approx(100 * (2 * dense + per.nonlin) / 1e6)
    cam, lidar, imu = _inputs(B=2, T=10, seed=6)
    net.forward(cam, lidar, imu)
    ops = net.last_ops
    assert ops.dense_mac == 20 * dense and ops.nonlin == 20 * per.nonlin
    assert ops.mac <= ops.dense_mac and ops.mac + ops.acc > 0
    assert net.n_params == 267_392 + 6 * U + L * H + L + (H + L) * n_out + n_out
    # Event paths ran for the sparse camera/IMU inputs and saved MACs.
    event_net = FusionNetwork.init(FusionConfig(event_threshold=1.0), backend)
    event_net.forward(cam, lidar, imu)
    assert event_net.inputs[0].last_path == "event" and event_net.last_ops.acc > 0
    assert event_net.last_ops.mac < ops.dense_mac and event_net.last_ops.dense_mac == ops.dense_mac


def test_ltc_projection_is_the_split_event_driven_input_and_counted_once(backend):
    """LTC with ltc_sensory=S: u = x W_in + b_in (F -> S, the split projection) feeds LTC(S, hidden)."""
    cfg = VARIANTS["ltc_proj"]
    net = FusionNetwork.init(FusionConfig(**{**cfg.__dict__, "event_threshold": 1.0}), backend)
    F, S, H, n_out = 1450, 8, 16, 3
    w_in, b_in = net.parts["ltc_in_w"], net.parts["ltc_in_b"]
    assert w_in.shape == (F, S) and b_in.shape == (S,) and net.liquid.params.n_in == S
    cam, lidar, imu = _inputs(B=2, T=10, seed=6)
    out, _ = net.forward(cam, lidar, imu)
    assert net.inputs[0].last_path == "event" and net.last_ops.acc > 0  # camera events skip the MACs
    x, _ = net.encode(cam, lidar, imu)
    ltc_alone = net.liquid.forward(backend.to_numpy(x) @ w_in + b_in)[0]
    np.testing.assert_allclose(backend.to_numpy(out.y), backend.to_numpy(ltc_alone) @ net.parts["readout_w"]
                               + net.parts["readout_b"], rtol=0, atol=2e-5)
    per = net.dense_ops_per_step()
    assert per.dense_mac == F * S + net.liquid.ops(1, 1).dense_mac + H * n_out + 6 * (10 + 1)
    assert net.last_ops.dense_mac == 20 * per.dense_mac
    assert net.n_params == F * S + S + net.liquid.n_params + H * n_out + n_out


def test_an_ltc_config_without_ltc_sensory_loads_as_before(backend, tmp_path):
    """Files written before ltc_sensory: no key in the config JSON, no projection arrays; same outputs."""
    import json

    from kernels.weights import load_network

    net = FusionNetwork.init(VARIANTS["ltc"], backend)
    net.save(tmp_path / "old.npz")
    arrays, text = load_network(tmp_path / "old.npz")
    assert "ltc_sensory" not in json.loads(text) and not any(k.startswith("ltc_in") for k in arrays)
    loaded = FusionNetwork.load(tmp_path / "old.npz", backend)
    assert loaded.config.ltc_sensory is None and loaded.inputs is None and loaded.liquid.params.n_in == 1450
    cam, lidar, imu = _inputs(B=2, T=6, seed=8)
    a, b = net.forward(cam, lidar, imu)[0], loaded.forward(cam, lidar, imu)[0]
    np.testing.assert_array_equal(backend.to_numpy(a.y), backend.to_numpy(b.y))
    assert "ltc_sensory" in VARIANTS["ltc_proj"].to_json()


def test_config_errors(backend):
    with pytest.raises(ValueError, match="liquid"):
        FusionConfig(liquid="gru")
    with pytest.raises(ValueError, match="at least one layer"):
        FusionConfig(liquid=None, spiking=False)
    with pytest.raises(ValueError, match="imu_thresholds"):
        FusionConfig(imu_thresholds=(0.1, 0.1))
    with pytest.raises(ValueError, match="readout_w must be"):
        FusionNetwork.from_parts(FusionConfig(), backend, readout_w=np.zeros((3, 3)), readout_b=np.zeros(3))
    for bad in (0, True, 2.0):
        with pytest.raises(ValueError, match="ltc_sensory must be None, or an int >= 1 with liquid='ltc'"):
            FusionConfig(liquid="ltc", ltc_sensory=bad)
    with pytest.raises(ValueError, match="ltc_sensory must be"):
        FusionConfig(ltc_sensory=8)  # liquid="cfc"
    with pytest.raises(ValueError, match=r"ltc_in_w, ltc_in_b must be \(1450, 8\), \(8,\) .* got \(3, 8\), \(8,\)"):
        FusionNetwork.from_parts(VARIANTS["ltc_proj"], backend, ltc_in_w=np.zeros((3, 8)), ltc_in_b=np.zeros(8))
    with pytest.raises(ValueError, match=r"must be None, None for liquid='ltc', ltc_sensory=None"):
        FusionNetwork.from_parts(VARIANTS["ltc"], backend, ltc_in_w=np.zeros((1450, 8)), ltc_in_b=np.zeros(8))


@pytest.mark.compare
def test_from_parts_with_ncps_and_snntorch_weights(backend):
    """A CfC trained in ncps, loaded through interop, gives ncps' hidden states on the
    encoded features (readout = identity), and snnTorch LIF params load."""
    torch = require("torch")
    ncps = require("ncps.torch")
    torch.manual_seed(0)
    cfg = FusionConfig(spiking=False, n_outputs=128)
    ref = ncps.CfC(cfg.n_features, 128, batch_first=True).eval()
    net = FusionNetwork.from_parts(cfg, backend, liquid=interop.cfc_from_ncps(ref.state_dict()),
                                   readout_w=np.eye(128, dtype=np.float32), readout_b=np.zeros(128, np.float32))
    cam, lidar, imu = _inputs(B=2, T=8, seed=7)
    out, _ = net.forward(cam, lidar, imu)
    (con, coff), _ = net.camera_enc.forward(cam)
    lid, _ = net.lidar_enc.forward(lidar)
    (ion, ioff), _ = net.imu_enc.forward(imu.reshape(2, 80, 6))
    level = imu.mean(axis=2) * np.array(cfg.imu_level_scale, np.float32)  # every sample valid
    x = np.concatenate([backend.to_numpy(con - coff), backend.to_numpy(lid),
                        backend.to_numpy(ion - ioff).reshape(2, 8, 60), level], axis=2)
    with torch.no_grad():
        want, _ = ref(torch.from_numpy(x))
    np.testing.assert_allclose(backend.to_numpy(out.y), want.numpy(), rtol=0, atol=2e-5)
    lif = interop.lif_from_snntorch(0.8, 0.5, units=128)
    net2 = FusionNetwork.from_parts(FusionConfig(), backend, lif=lif)
    assert float(net2.lif.params.threshold[0]) == 0.5 and net2.lif.params.beta[0] == np.float32(0.8)


def test_features_are_the_readout_inputs_and_with_readout_swaps_only_the_readout():
    """y = b + [h, s] W for the features forward returns; with_readout changes y and nothing else."""
    from kernels import get_backend
    from kernels.fusion_config import FusionConfig
    from kernels.network import FusionNetwork

    be = get_backend("numpy")
    cfg = FusionConfig(liquid="cfc", spiking=True, hidden=12, lif_units=10, camera=(4, 4), beams=8, imu_per_step=3,
                       backbone_units=8, seed=2, dtype="float64")
    net = FusionNetwork.init(cfg, be)
    rng = np.random.default_rng(0)
    cam = rng.integers(0, 255, (3, 5, 4, 4), dtype=np.uint8)
    lid = rng.uniform(0.5, 8, (3, 5, 8))
    imu = rng.normal(size=(3, 5, 3, 6))
    out, _ = net.forward(cam, lid, imu, features=True)
    assert out.features.shape == (3, 5, 22)
    w, b = net.parts["readout_w"], net.parts["readout_b"]
    np.testing.assert_allclose(out.y, out.features @ w + b, rtol=1e-12, atol=1e-12)
    w2, b2 = rng.normal(size=w.shape), rng.normal(size=b.shape)
    other = net.with_readout(w2, b2)
    out2, _ = other.forward(cam, lid, imu, features=True)
    np.testing.assert_array_equal(out2.features, out.features)
    np.testing.assert_allclose(out2.y, out.features @ w2 + b2, rtol=1e-12, atol=1e-12)
    assert net.forward(cam, lid, imu)[0].features is None
