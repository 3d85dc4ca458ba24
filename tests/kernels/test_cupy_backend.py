"""CuPy kernels against the NumPy oracle, per dtype with explicit tolerances, plus a
sentinel proving the CUDA path ran and a check that compile failures are reported at
backend creation.  Runs only where CuPy sees a GPU (``pytest -m gpu tests/kernels``).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from kernels import cuda_sources
from kernels.backend import BackendError, cuda_probe, get_backend
from kernels.params import ACTIVATIONS, CFC_MODES, RESET_MECHANISMS, CfCParams, LIFParams, LTCParams

_OK, _WHY = cuda_probe()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _OK, reason=f"no CuPy GPU: {_WHY}")]

# Explicit per dtype (STYLE.md): float32 kernels vs NumPy float32, float64 vs float64.
ATOL = {np.float32: 1e-5, np.float64: 1e-10}
DTYPES = [np.float32, np.float64]


@pytest.fixture(scope="module")
def gpu():
    return get_backend("cupy")


@pytest.fixture(scope="module")
def ref():
    return get_backend("numpy")


@pytest.fixture(autouse=True)
def _no_forced_variant(gpu):
    yield
    gpu._force_spb = None


def close(gpu, got, want, dtype, what):
    got = gpu.to_numpy(got)
    want = np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    assert np.all(np.isfinite(want)), f"{what}: reference not finite; fix the test data"
    err = float(np.max(np.abs(got.astype(np.float64) - want), initial=0.0))
    assert err <= ATOL[dtype], f"{what}: max abs error {err:.3e} > {ATOL[dtype]:.0e}"


def _xavier(rng, fan_in, fan_out, dtype):
    lim = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-lim, lim, (fan_in, fan_out)).astype(dtype)


def cfc_params(rng, mode, act, layers, F, H, U, dtype):
    """ncps-like init (xavier weights, small biases): a well-conditioned recurrence, so
    float32 round-off does not grow past the tolerance over the test's T."""
    nh = 1 if mode == "pure" else 4
    z1 = U if layers else nh * H
    bias = lambda n: rng.uniform(-0.3, 0.3, n).astype(dtype)  # noqa: E731
    w_first = _xavier(rng, F + H, z1, dtype)
    return CfCParams(
        mode=mode, activation=act, w_x=w_first[:F].copy(), b_x=bias(z1), w_h=w_first[F:].copy(),
        backbone=tuple((_xavier(rng, U, U, dtype), bias(U)) for _ in range(max(layers - 1, 0))),
        w_head=_xavier(rng, U, nh * H, dtype) if layers else None,
        b_head=bias(nh * H) if layers else None,
        w_tau=rng.uniform(-1, 1, H).astype(dtype) if mode == "pure" else None,
        A=rng.uniform(-1, 1, H).astype(dtype) if mode == "pure" else None,
        proj_w=None, proj_b=None,
    )


def run_cfc(gpu, ref, rng, mode, act, layers, B, T, F, H, U, dtype, spb=None):
    p = cfc_params(rng, mode, act, layers, F, H, U, dtype)
    x = rng.normal(0, 1, (B, T, F)).astype(dtype)
    u = (x @ p.w_x + p.b_x).astype(dtype)
    h0 = rng.uniform(-0.5, 0.5, (B, H)).astype(dtype)
    dt = rng.uniform(0.1, 2.0, (B, T)).astype(dtype)  # per-sample, per-step
    want_seq, want_T = ref.cfc_scan(u, h0, dt, p)
    gpu._force_spb = spb
    got_seq, got_T = gpu.cfc_scan(gpu.asarray(u), gpu.asarray(h0), gpu.asarray(dt), p)
    tag = f"cfc {mode}/{act}/L{layers} B{B} T{T} H{H} spb{spb} {np.dtype(dtype).name}"
    close(gpu, got_seq, want_seq, dtype, tag + " h_seq")
    close(gpu, got_T, want_T, dtype, tag + " h_T")


# ----------------------------------------------------------------------------- CfC
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layers", [0, 1, 2])
@pytest.mark.parametrize(("mode", "act"), list(itertools.product(CFC_MODES, ACTIVATIONS)))
def test_cfc_modes_activations_backbones(gpu, ref, mode, act, layers, dtype):
    if layers == 0 and act != "lecun_tanh":
        pytest.skip("no backbone: the activation is unused")
    run_cfc(gpu, ref, np.random.default_rng(1), mode, act, layers, 5, 6, 3, 7, 33, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("B", "T", "F", "H", "U", "layers"),
    [
        (1, 1, 1, 1, 1, 1),      # H = 1, T = 1
        (3, 1, 4, 1, 8, 0),      # H = 1 without backbone
        (8, 5, 4, 8, 16, 1),     # B == H: per-sample dt must not become per-unit (ncps#83)
        (33, 4, 6, 20, 70, 2),   # B not a multiple of anything; U > warp
        (2, 3, 5, 300, 40, 1),   # H > 256 threads: each thread owns several units
        (3, 3, 5, 70, 260, 1),   # U > 256 threads
        (2, 4, 3, 300, 0, 0),    # no backbone, 4*H heads > threads
    ],
)
def test_cfc_shapes(gpu, ref, B, T, F, H, U, layers, dtype):
    run_cfc(gpu, ref, np.random.default_rng(2), "default", "lecun_tanh", layers, B, T, F, H, U, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spb", cuda_sources.SPB_VARIANTS)
@pytest.mark.parametrize(("mode", "layers"), [("default", 1), ("pure", 2), ("no_gate", 0)])
def test_cfc_every_compiled_variant(gpu, ref, mode, layers, spb, dtype):
    # B = 9: the last block of 4 holds one real sample and three padding rows.
    run_cfc(gpu, ref, np.random.default_rng(3), mode, "silu", layers, 9, 5, 3, 6, 20, dtype, spb=spb)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cfc_large_batch_picks_spb_variant(gpu, ref, dtype):
    B = 4 * gpu.attrs.sm_count + 3  # choose_spb -> 4, with a partial last block
    run_cfc(gpu, ref, np.random.default_rng(4), "default", "gelu", 1, B, 3, 3, 5, 12, dtype)


def test_cfc_state_carries_across_blocks(gpu):
    rng = np.random.default_rng(5)
    p = cfc_params(rng, "default", "lecun_tanh", 1, 3, 6, 10, np.float64)
    u = rng.normal(0, 1, (4, 10, 10))
    h0 = np.zeros((4, 6))
    dt = rng.uniform(0.5, 1.5, (4, 10))
    whole, _ = gpu.cfc_scan(u, h0, dt, p)
    first, h_mid = gpu.cfc_scan(u[:, :4], h0, dt[:, :4], p)
    second, _ = gpu.cfc_scan(gpu.asarray(u[:, 4:]), h_mid, dt[:, 4:], p)
    np.testing.assert_allclose(gpu.to_numpy(second), gpu.to_numpy(whole)[:, 4:], rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- LTC
def ltc_params(rng, S, N, dtype, unfolds=6):
    sp = lambda z: np.log1p(np.exp(z))  # noqa: E731  effective (softplus'd) values
    u = lambda lo, hi, *s: rng.uniform(lo, hi, s)  # noqa: E731
    mask = (rng.random((N, N)) < 0.8).astype(float)
    arrays = dict(
        gleak=sp(u(0.001, 1, N)), vleak=u(-0.2, 0.2, N), cm=sp(u(0.4, 0.6, N)),
        w=sp(u(0.001, 1, N, N)) * mask, sigma=u(3, 8, N, N), mu=u(0.3, 0.8, N, N),
        erev=rng.choice([-1.0, 1.0, 1.0], (N, N)),
        sensory_w=sp(u(0.001, 1, S, N)), sensory_sigma=u(3, 8, S, N), sensory_mu=u(0.3, 0.8, S, N),
        sensory_erev=rng.choice([-1.0, 1.0, 1.0], (S, N)),
        input_w=np.ones(S), input_b=np.zeros(S), output_w=np.ones(N), output_b=np.zeros(N),
    )
    return LTCParams(**{k: v.astype(dtype) for k, v in arrays.items()}, ode_unfolds=unfolds, epsilon=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("B", "T", "S", "N", "unfolds", "spb"),
    [
        (1, 1, 1, 1, 6, None),      # smallest; T = 1
        (5, 7, 3, 5, 6, None),      # small N: recurrent synapses staged in shared memory
        (3, 4, 40, 70, 6, None),    # 4*70*70 elements: read from global
        (8, 3, 4, 8, 1, None),      # B == N, one unfold
        (2, 2, 6, 260, 2, None),    # N > 256 threads
        (9, 3, 5, 12, 6, 1),        # every compiled NL_SPB variant, partial last block
        (9, 3, 5, 12, 6, 4),
    ],
)
def test_ltc_parity(gpu, ref, B, T, S, N, unfolds, spb, dtype):
    rng = np.random.default_rng(6)
    p = ltc_params(rng, S, N, dtype, unfolds)
    x = rng.uniform(-1, 1, (B, T, S)).astype(dtype)
    v0 = rng.uniform(-0.5, 0.5, (B, N)).astype(dtype)
    dt = rng.uniform(0.2, 2.0, (B, T)).astype(dtype)
    want_seq, want_T = ref.ltc_scan(x, v0, dt, p)
    gpu._force_spb = spb
    got_seq, got_T = gpu.ltc_scan(gpu.asarray(x), gpu.asarray(v0), gpu.asarray(dt), p)
    tag = f"ltc B{B} T{T} S{S} N{N} K{unfolds} spb{spb} {np.dtype(dtype).name}"
    close(gpu, got_seq, want_seq, dtype, tag + " v_seq")
    close(gpu, got_T, want_T, dtype, tag + " v_T")


@pytest.mark.parametrize("dtype", DTYPES)
def test_ltc_large_batch_picks_spb_variant(gpu, ref, dtype):
    rng = np.random.default_rng(7)
    B = 4 * gpu.attrs.sm_count + 1
    p = ltc_params(rng, 3, 6, dtype)
    x, v0 = rng.uniform(-1, 1, (B, 2, 3)).astype(dtype), np.zeros((B, 6), dtype)
    dt = rng.uniform(0.5, 1.5, (B, 2)).astype(dtype)
    close(gpu, gpu.ltc_scan(x, v0, dt, p)[0], ref.ltc_scan(x, v0, dt, p)[0], dtype, "ltc large B")


# ----------------------------------------------------------------------------- LIF
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reset", RESET_MECHANISMS)
@pytest.mark.parametrize(("B", "T", "H"), [(1, 1, 1), (3, 50, 37), (7, 9, 300), (4, 20, 4)])
def test_lif_parity(gpu, ref, B, T, H, reset, dtype):
    rng = np.random.default_rng(8)
    p = LIFParams(beta=rng.uniform(0, 1, H).astype(np.float32),
                  threshold=rng.uniform(0.5, 1.5, H).astype(np.float32), reset_mechanism=reset)
    cur = rng.normal(0.4, 0.8, (B, T, H)).astype(dtype)
    mem0 = rng.normal(0, 1, (B, H)).astype(dtype)
    want_spk, want_mem = ref.lif_scan(cur, mem0, p)
    got_spk, got_mem = gpu.lif_scan(gpu.asarray(cur), gpu.asarray(mem0), p)
    # No FMA contraction in lif.cu: spikes are identical, not merely close.
    np.testing.assert_array_equal(gpu.to_numpy(got_spk), want_spk)
    close(gpu, got_mem, want_mem, dtype, f"lif {reset} B{B} T{T} H{H}")


# ----------------------------------------------------------------------------- delta
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("B", "T", "C"), [(1, 1, 1), (4, 30, 6), (3, 12, 300)])
def test_delta_scan_parity(gpu, ref, B, T, C, dtype):
    rng = np.random.default_rng(9)
    x = np.cumsum(rng.normal(0, 0.3, (B, T, C)), axis=1).astype(dtype)
    valid = rng.random((B, T)) < 0.75
    x[~valid] = np.nan  # invalid steps may hold garbage; it must never be read
    ref0 = rng.normal(0, 1, (B, C)).astype(dtype)
    primed0 = rng.random((B, C)) < 0.5
    thr = rng.uniform(0.1, 0.5, C).astype(dtype)
    want = ref.delta_scan(x, ref0, primed0, thr, valid)
    got = gpu.delta_scan(gpu.asarray(x), gpu.asarray(ref0), gpu.asarray(primed0),
                         gpu.asarray(thr), gpu.asarray(valid))
    for name, g, w in zip(("on", "off", "ref_T", "primed_T"), got, want, strict=True):
        g = gpu.to_numpy(g)
        assert g.dtype == w.dtype and g.shape == w.shape, name
        np.testing.assert_array_equal(g, w, err_msg=name)


# ----------------------------------------------------------------------------- synapse
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("density", [0.0, 0.03, 0.5, 1.0])
@pytest.mark.parametrize(("N", "F", "n_out"), [(1, 1, 1), (7, 300, 290), (33, 1000, 64)])
def test_event_matmul_equals_dense(gpu, ref, N, F, n_out, density, dtype):
    rng = np.random.default_rng(10)
    spikes = (rng.random((N, F)) < density).astype(dtype)
    w = rng.normal(0, 1, (F, n_out)).astype(dtype)
    got = gpu.event_matmul(gpu.asarray(spikes), gpu.asarray(w))
    # Summation order differs from BLAS; scale the tolerance by the events per row.
    tol = ATOL[dtype] * max(1.0, np.sqrt(spikes.sum(1).max()))
    err = np.abs(gpu.to_numpy(got) - spikes.astype(np.float64) @ w).max(initial=0.0)
    assert err <= tol, f"event_matmul vs dense: {err:.2e} > {tol:.1e}"
    want = ref.event_matmul(spikes, w)
    assert np.abs(gpu.to_numpy(got) - want).max(initial=0.0) <= tol, "event_matmul vs oracle"


# ----------------------------------------------------------------------------- sentinel
def test_sentinel_each_scan_is_one_cuda_launch(gpu):
    """SpikingJelly's idea: prove the CuPy kernels ran, not a silent NumPy fallback."""
    import cupy

    rng = np.random.default_rng(11)
    before = dict(gpu.launches)
    p = cfc_params(rng, "default", "lecun_tanh", 1, 2, 3, 4, np.float32)
    h_seq, _ = gpu.cfc_scan(np.zeros((2, 5, 4), np.float32), np.zeros((2, 3), np.float32),
                            np.ones((2, 5), np.float32), p)
    lp = LIFParams(np.full(3, 0.9, np.float32), np.ones(3, np.float32))
    spk, _ = gpu.lif_scan(np.ones((2, 5, 3), np.float32), np.zeros((2, 3), np.float32), lp)
    assert isinstance(h_seq, cupy.ndarray) and isinstance(spk, cupy.ndarray)
    assert gpu.launches["cfc"] == before.get("cfc", 0) + 1  # whole time loop, one launch
    assert gpu.launches["lif"] == before.get("lif", 0) + 1
    assert gpu.name == "cupy" and gpu.device


def test_params_are_uploaded_once(gpu):
    rng = np.random.default_rng(12)
    p = cfc_params(rng, "default", "tanh", 1, 2, 3, 4, np.float32)
    args = (np.zeros((1, 2, 4), np.float32), np.zeros((1, 3), np.float32), np.ones((1, 2), np.float32))
    gpu.cfc_scan(*args, p)
    first = gpu._params[p]["float32"]
    gpu.cfc_scan(*args, p)
    assert all(a is b for a, b in zip(gpu._params[p]["float32"], first, strict=True))


def test_compile_failure_raises_backend_error(monkeypatch):
    good = cuda_sources.source

    def broken(filename):
        text = good(filename)
        return text + "\nthis is not CUDA;\n" if filename == "cfc.cu" else text

    monkeypatch.setattr(cuda_sources, "source", broken)
    with pytest.raises(BackendError, match=r"cfc\.cu"):
        get_backend("cupy")


def test_bad_device_id_raises_backend_error():
    with pytest.raises(BackendError):
        get_backend("cupy", device_id=10_000)
