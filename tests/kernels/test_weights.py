"""weights: pickle-free round trips for every family and format, and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _compare import require_format

from kernels import get_backend
from kernels.cfc import CfC
from kernels.interop import lif_from_snntorch
from kernels.ltc import LTC
from kernels.weights import (
    load_arrays,
    load_network,
    load_params,
    save_arrays,
    save_network,
    save_params,
)

SUFFIXES = [".npz", ".safetensors"]


def assert_same_record(a, b):
    assert type(a) is type(b)
    for name, va in a.__dict__.items():
        vb = getattr(b, name)
        if name == "backbone":
            assert len(va) == len(vb)
            for (wa, ba), (wb, bb) in zip(va, vb, strict=True):
                np.testing.assert_array_equal(wa, wb)
                np.testing.assert_array_equal(ba, bb)
        elif isinstance(va, np.ndarray):
            assert vb.dtype == va.dtype
            np.testing.assert_array_equal(va, vb)
        else:
            assert va == vb


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("kw", [dict(), dict(mode="pure", backbone_layers=0), dict(mode="no_gate", activation="gelu",
                                                                                    backbone_layers=3, proj_size=2)])
def test_cfc_round_trip_and_same_outputs(tmp_path, backend, suffix, kw):
    require_format(suffix)
    layer = CfC.init(5, 4, backbone_units=6, seed=3, backend=backend, **kw)
    path = save_params(tmp_path / f"cfc{suffix}", layer.params)
    loaded = load_params(path)
    assert_same_record(layer.params, loaded)
    x = np.random.default_rng(0).standard_normal((2, 3, 5)).astype(np.float32)
    np.testing.assert_array_equal(backend.to_numpy(CfC(loaded, backend).forward(x)[0]),
                                  backend.to_numpy(layer.forward(x)[0]))


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_ltc_and_lif_round_trip(tmp_path, backend, suffix):
    require_format(suffix)
    ltc = LTC.init(3, 2, ode_unfolds=4, epsilon=1e-7, backend=backend, dtype=np.float64).params
    assert_same_record(ltc, load_params(save_params(tmp_path / f"ltc{suffix}", ltc)))
    lif = lif_from_snntorch([0.9, 0.5], threshold=0.7, reset_mechanism="zero")
    assert_same_record(lif, load_params(save_params(tmp_path / f"lif{suffix}", lif)))


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_arrays_and_metadata(tmp_path, suffix):
    require_format(suffix)
    arrays = {"a": np.arange(6, dtype=np.float64).reshape(2, 3), "b.c": np.ones(2, np.float32)}
    out, meta = load_arrays(save_arrays(tmp_path / f"x{suffix}", arrays, {"k": 1}))
    assert meta == {"k": "1"} and sorted(out) == ["a", "b.c"]
    np.testing.assert_array_equal(out["a"], arrays["a"])
    assert out["b.c"].dtype == np.float32


def test_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"unknown suffix '.pt'; use '.npz' or '.safetensors'"):
        save_arrays(tmp_path / "w.pt", {"a": np.zeros(1)})
    with pytest.raises(ValueError, match="unknown suffix ''"):
        load_params(tmp_path / "weights")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_missing_key_and_foreign_file(tmp_path, suffix):
    require_format(suffix)
    ltc = LTC.init(3, 2, backend=get_backend("numpy")).params
    arrays = {k: v for k, v in ltc.__dict__.items() if isinstance(v, np.ndarray) and k != "mu"}
    meta = {"format": "neuroliquid-params/1", "family": "ltc", "ode_unfolds": "6", "epsilon": "1e-08"}
    path = save_arrays(tmp_path / f"bad{suffix}", arrays, meta)
    with pytest.raises(KeyError, match=r"ltc parameters need 'mu'; found \['cm', 'erev'"):
        load_params(path)
    foreign = save_arrays(tmp_path / f"foreign{suffix}", {"a": np.zeros(1)})
    with pytest.raises(ValueError, match="is not a neuroliquid-params/1 file"):
        load_params(foreign)



@pytest.mark.parametrize("suffix", SUFFIXES)
def test_network_file_round_trip_and_format_check(tmp_path, suffix):
    require_format(suffix)
    arrays = {"readout.w": np.ones((4, 3), np.float32), "readout.b": np.zeros(3, np.float32)}
    path = tmp_path / f"net{suffix}"
    save_network(path, arrays, '{"hidden": 4}')
    out, config_json = load_network(path)
    assert config_json == '{"hidden": 4}' and sorted(out) == ["readout.b", "readout.w"]
    np.testing.assert_array_equal(out["readout.w"], arrays["readout.w"])
    params_file = save_params(tmp_path / f"ltc{suffix}", LTC.init(3, 2, backend=get_backend("numpy")).params)
    with pytest.raises(ValueError, match="is not a neuroliquid-fusion/2 file"):
        load_network(params_file)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_old_network_format_is_refused_by_name(tmp_path, suffix):
    """A file from before the IMU level channel (format 1) fails with the versions and the fix named."""
    from kernels.network import FusionConfig, FusionNetwork
    from kernels.weights import WeightsFormatError

    require_format(suffix)
    net = FusionNetwork.init(FusionConfig(imu_level=False), get_backend("numpy"))
    old_config = {k: v for k, v in json.loads(net.config.to_json()).items() if not k.startswith("imu_level")}
    path = tmp_path / f"old{suffix}"
    save_arrays(path, net.named_arrays(), {"format": "neuroliquid-fusion/1", "config": json.dumps(old_config)})
    with pytest.raises(WeightsFormatError, match=r"has format neuroliquid-fusion/1; this neuroliquid reads "
                                                 r"neuroliquid-fusion/2: its network has no IMU level channel"):
        FusionNetwork.load(path, get_backend("numpy"))

def test_npz_never_unpickles(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, payload=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        load_arrays(path)


def test_rejects_non_records(tmp_path):
    with pytest.raises(TypeError, match="expected CfCParams, LTCParams or LIFParams, got dict"):
        save_params(tmp_path / "x.npz", {"w": np.zeros(2)})
