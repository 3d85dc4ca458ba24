"""interop without torch: layout conversion, key inference and errors on hand-built
state dicts (the parity with real ncps/snnTorch modules is in test_compare_ncps.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kernels.interop import cfc_from_ncps, lif_from_snntorch, ltc_from_ncps, to_numpy


class FakeTensor:
    """Duck-types the part of torch.Tensor that interop may touch."""

    def __init__(self, a):
        self.a = np.asarray(a, np.float32)

    def detach(self):
        return self

    def cpu(self):
        return self

    def numpy(self):
        return self.a


def cfc_dict(rng, F=3, H=2, U=4, backbone_idx=(0,), mode="default", proj=None, prefix="rnn_cell."):
    d, width = {}, F + H
    for i in backbone_idx:
        d[f"{prefix}backbone.{i}.weight"], d[f"{prefix}backbone.{i}.bias"] = rng.random((U, width)), rng.random(U)
        width = U
    for name in ["ff1"] if mode == "pure" else ["ff1", "ff2", "time_a", "time_b"]:
        d[f"{prefix}{name}.weight"], d[f"{prefix}{name}.bias"] = rng.random((H, width)), rng.random(H)
    if mode == "pure":
        d[f"{prefix}w_tau"], d[f"{prefix}A"] = rng.random((1, H)), rng.random((1, H))
    if proj:
        d["fc.weight"], d["fc.bias"] = rng.random((proj, H)), rng.random(proj)
    return d


def test_to_numpy_duck_types_tensors():
    out = to_numpy(FakeTensor([[1.0, 2.0]]))
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert to_numpy(3.0).shape == ()


def test_cfc_layout_and_backbone_inference():
    rng = np.random.default_rng(0)
    d = cfc_dict(rng, backbone_idx=(0, 2, 5), proj=3)  # 5: indices shift past Dropout modules
    p = cfc_from_ncps(d, backbone_layers=3)
    w0 = d["rnn_cell.backbone.0.weight"]
    np.testing.assert_array_equal(p.w_x, w0[:, :3].T)
    np.testing.assert_array_equal(p.w_h, w0[:, 3:].T)
    np.testing.assert_array_equal(p.backbone[1][0], d["rnn_cell.backbone.5.weight"].T)
    heads = ["ff1", "ff2", "time_a", "time_b"]
    np.testing.assert_array_equal(p.w_head, np.concatenate([d[f"rnn_cell.{h}.weight"].T for h in heads], 1))
    np.testing.assert_array_equal(p.proj_w, d["fc.weight"].T)
    assert (p.n_in, p.units, len(p.backbone)) == (3, 2, 2)


def test_cfc_no_backbone_pure_and_bare_cell_keys():
    rng = np.random.default_rng(1)
    d = cfc_dict(rng, backbone_idx=(), mode="pure", prefix="")
    p = cfc_from_ncps({k: FakeTensor(v) for k, v in d.items()}, mode="pure", backbone_layers=0)
    assert p.w_head is None and p.w_x.shape == (3, 2) and p.w_h.shape == (2, 2)
    np.testing.assert_allclose(p.w_tau, d["w_tau"][0], rtol=1e-7)
    assert p.w_x.dtype == np.float32


def test_cfc_errors():
    rng = np.random.default_rng(2)
    d = cfc_dict(rng)
    with pytest.raises(ValueError, match="backbone_layers=2 but the state dict has 1"):
        cfc_from_ncps(d, backbone_layers=2)
    missing = {k: v for k, v in d.items() if k != "rnn_cell.time_b.bias"}
    with pytest.raises(KeyError, match=r"no 'time_b.bias'.*found keys: \['backbone.0.bias'"):
        cfc_from_ncps(missing)
    with pytest.raises(ValueError, match="mode='pure' but the state dict holds ff2"):
        cfc_from_ncps(d, mode="pure")
    with pytest.raises(ValueError, match="mixed_memory"):
        cfc_from_ncps({**d, "lstm.input_map.weight": np.zeros((8, 3))})
    with pytest.raises(ValueError, match="activation must be one of"):
        cfc_from_ncps(d, activation="swish")
    with pytest.raises(TypeError, match="mapping"):
        cfc_from_ncps([("ff1.weight", np.zeros(2))])


def ltc_dict(S=3, N=2):
    rng = np.random.default_rng(3)
    d = {k: rng.random(s).astype(np.float32) for k, s in dict(
        gleak=(N,), vleak=(N,), cm=(N,), w=(N, N), sigma=(N, N), mu=(N, N), erev=(N, N),
        sensory_w=(S, N), sensory_sigma=(S, N), sensory_mu=(S, N), sensory_erev=(S, N),
        input_w=(S,), input_b=(S,), output_w=(1,), output_b=(1,)).items()}
    d["sparsity_mask"] = np.array([[1, 0], [1, 1]], np.float32)
    d["sensory_sparsity_mask"] = np.ones((S, N), np.float32)
    return {f"rnn_cell.{k}": v for k, v in d.items()}


def test_ltc_softplus_masks_and_motor_size():
    d = ltc_dict()
    p = ltc_from_ncps(d, ode_unfolds=3, epsilon=1e-6)
    sp = lambda v: np.log1p(np.exp(v.astype(np.float64)))  # noqa: E731
    np.testing.assert_allclose(p.w, sp(d["rnn_cell.w"]) * d["rnn_cell.sparsity_mask"], rtol=1e-6)
    assert p.w[0, 1] == 0
    np.testing.assert_allclose(p.gleak, sp(d["rnn_cell.gleak"]), rtol=1e-6)
    np.testing.assert_array_equal(p.sigma, d["rnn_cell.sigma"])
    assert (p.ode_unfolds, p.epsilon, p.output_w.shape, p.w.dtype) == (3, 1e-6, (1,), np.float32)


def test_ltc_missing_key_lists_found_keys():
    d = ltc_dict()
    del d["rnn_cell.sensory_mu"]
    with pytest.raises(KeyError, match=r"ltc_from_ncps: state_dict has no 'sensory_mu'.*found keys: \['cm'"):
        ltc_from_ncps(d)


def test_lif_rounds_through_float32_and_clamps():
    p = lif_from_snntorch(0.9, units=4)
    assert p.beta.dtype == np.float32 and p.beta.shape == (4,)
    assert p.beta[0] == np.float32(0.9) and float(p.beta[0]) != 0.9
    q = lif_from_snntorch(FakeTensor([1.5, -0.2, 0.5]), threshold=[1.0, 2.0, 0.5], reset_mechanism="zero")
    np.testing.assert_array_equal(q.beta, [1.0, 0.0, 0.5])
    np.testing.assert_array_equal(q.threshold, [1.0, 2.0, 0.5])
    assert q.reset_mechanism == "zero"
    assert lif_from_snntorch(np.array(0.25), threshold=np.full(2, 0.75)).beta.tolist() == [0.25, 0.25]
    assert math.isclose(float(lif_from_snntorch(0.8, units=1).threshold[0]), 1.0)


def test_lif_errors():
    with pytest.raises(ValueError, match="pass units="):
        lif_from_snntorch(0.9)
    with pytest.raises(ValueError, match="beta has 3 and threshold 2 entries"):
        lif_from_snntorch([0.9, 0.8, 0.7], threshold=[1.0, 1.0])
    with pytest.raises(ValueError, match="expected 1 or units=5"):
        lif_from_snntorch([0.9, 0.8], units=5)
    with pytest.raises(ValueError, match="reset_mechanism must be one of"):
        lif_from_snntorch(0.9, units=2, reset_mechanism="hard")
    with pytest.raises(ValueError, match="finite"):
        lif_from_snntorch(float("nan"), units=2)
