"""Liquid time-constant (LTC) layer, semantics of ncps ``LTC`` with a FullyConnected wiring.

Hasani et al., "Liquid time-constant networks", AAAI 2021, https://arxiv.org/abs/2006.04439.
Per step, with mapped input x (B,S), membrane v (B,N) and elapsed time dt (B,1) per
sample, K = ode_unfolds fused semi-implicit Euler sub-steps of dt/K
(shared/reference/neurons.md section 2; all weights already softplus'd and masked)::

    s_bij = sensory_w_ij sigmoid(sensory_sigma_ij (x_bi - sensory_mu_ij))     once per step
    Ns_bj = sum_i s_bij sensory_erev_ij,   Ds_bj = sum_i s_bij
    c_bj  = cm_j / (dt_b / K)
    K times:  r_bij = w_ij sigmoid(sigma_ij (v_bi - mu_ij))
              v_bj <- (c_bj v_bj + gleak_j vleak_j + sum_i r_bij erev_ij + Ns_bj)
                      / (c_bj + gleak_j + sum_i r_bij + Ds_bj + epsilon)
    y = v[:, :M] output_w + output_b

Evaluation strategy (identical maths, different association):
sigmoid(s (x - mu)) = 1/2 + 1/2 tanh(s x / 2 - s mu / 2), so the constant halves of both
sums are precomputed and each synapse costs one multiply-subtract, one tanh and its share
of a (targets, batch, sources) x (targets, sources, 2) batched GEMM that forms numerator
and denominator together.  The (B, S, N) synapse tensor is never materialised: the batch
and the targets are processed in blocks whose scratch fits in L2.
"""

from __future__ import annotations

import numpy as np

from kernels.params import LTCParams, LTCState, OpCounts
from kernels.sequence import SequenceLayer

# Scratch per block: sized for a 1 MiB L2, half left to the weights streamed beside it
# (micro-benchmark on the dev box: ~1.0-1.1 ns per synapse with 0.4-0.7 MiB blocks,
# 1.3 ns with 5.8 MiB ones; batch blocks of 8 keep the Python overhead near 10%).
_BLOCK_BYTES = 1 << 19
_BATCH_BLOCK = 8

_INIT_RANGES = {  # ncps LTCCell._init_ranges
    "gleak": (0.001, 1.0), "vleak": (-0.2, 0.2), "cm": (0.4, 0.6),
    "w": (0.001, 1.0), "sigma": (3.0, 8.0), "mu": (0.3, 0.8),
    "sensory_w": (0.001, 1.0), "sensory_sigma": (3.0, 8.0), "sensory_mu": (0.3, 0.8),
}
_POSITIVE = ("gleak", "cm", "w", "sensory_w")  # used through softplus in ncps' LTC


def _synapse_constants(w, sigma, mu, erev, dtype):
    """Target-major constants for one synapse population (sources S, targets N).

    Returns ``a (N,S) = sigma/2``, ``c (N,S) = sigma mu/2``, ``wr (N,S,2) = [w erev, w]/2``
    and ``base (2,N) = sum_i [w erev, w]/2`` (the constant half of the sigmoid).
    """
    w, sigma, mu, erev = (np.asarray(a, np.float64) for a in (w, sigma, mu, erev))
    pair = np.stack([w * erev, w], axis=-1) * 0.5  # (S, N, 2)
    return (np.ascontiguousarray((0.5 * sigma).T, dtype), np.ascontiguousarray((0.5 * sigma * mu).T, dtype),
            np.ascontiguousarray(pair.transpose(1, 0, 2), dtype), pair.sum(axis=0).T.astype(dtype))


def _synapse_sums(src, a, c, wr, buf, red, step):
    """Numerator/denominator sums ``red (N, b, 2)`` of the non-constant sigmoid halves.

    src (b, S) presynaptic values; targets are processed ``step`` at a time through
    ``buf`` (>= (step, b, S)) so the tanh argument never leaves cache.
    """
    n, b = a.shape[0], src.shape[0]
    for j0 in range(0, n, step):
        j1 = min(j0 + step, n)
        blk = buf[: j1 - j0, :b]
        np.multiply(a[j0:j1, None, :], src[None], out=blk)
        np.subtract(blk, c[j0:j1, None, :], out=blk)
        np.tanh(blk, out=blk)
        np.matmul(blk, wr[j0:j1], out=red[j0:j1, :b])


def ltc_scan_numpy(x, v0, dt, p: LTCParams):
    """Run the LTC recurrence over a block of T steps (NumPy reference, the oracle).

    Parameters
    ----------
    x : (batch, time, S) float32 or float64
        Input after the affine input map.
    v0 : (batch, N) same dtype
        Membrane before the first step.
    dt : (batch, time) same dtype
        Elapsed time per step and sample, > 0.
    p : LTCParams

    Returns
    -------
    v_seq : (batch, time, N)
        Raw membrane after each step.
    v_T : (batch, N)
        ``v_seq[:, -1]``, the state to carry into the next block.
    """
    dtype = x.dtype
    B, T, S = x.shape
    N, K = p.units, int(p.ode_unfolds)
    item = np.dtype(dtype).itemsize
    sa, sc, swr, s0 = _synapse_constants(p.sensory_w, p.sensory_sigma, p.sensory_mu, p.sensory_erev, dtype)
    ra, rc, rwr, r0 = _synapse_constants(p.w, p.sigma, p.mu, p.erev, dtype)
    gleak, cm = p.gleak.astype(dtype), p.cm.astype(dtype)
    lead = (p.gleak * p.vleak).astype(dtype) + s0[0] + r0[0]  # constant part of the numerator
    lead_den = (gleak + s0[1] + r0[1] + dtype.type(p.epsilon)).astype(dtype)

    bb = max(1, min(_BATCH_BLOCK, B))
    s_step = max(1, _BLOCK_BYTES // (bb * S * item))
    r_step = max(1, _BLOCK_BYTES // (bb * N * item))
    buf = np.empty((max(min(s_step, N) * S, min(r_step, N) * N) * bb,), dtype)
    sbuf = buf[: min(s_step, N) * bb * S].reshape(-1, bb, S)
    rbuf = buf[: min(r_step, N) * bb * N].reshape(-1, bb, N)
    sred, rred = np.empty((N, bb, 2), dtype), np.empty((N, bb, 2), dtype)
    num, den, cm_t = (np.empty((bb, N), dtype) for _ in range(3))
    v_seq = np.empty((B, T, N), dtype)
    for b0 in range(0, B, bb):  # samples are independent: finish a block over all T
        b1 = min(b0 + bb, B)
        nb = b1 - b0
        v = np.array(v0[b0:b1], dtype)
        for t in range(T):
            xt = np.ascontiguousarray(x[b0:b1, t])
            _synapse_sums(xt, sa, sc, swr, sbuf, sred, s_step)
            c = cm_t[:nb]
            np.divide(cm, dt[b0:b1, t, None] / K, out=c)  # ncps: cm / (elapsed_time / K)
            num_lead = lead + sred[:, :nb, 0].T
            den_lead = lead_den + c + sred[:, :nb, 1].T
            for _ in range(K):
                _synapse_sums(v, ra, rc, rwr, rbuf, rred, r_step)
                n_, d_ = num[:nb], den[:nb]
                np.multiply(c, v, out=n_)
                n_ += num_lead
                n_ += rred[:, :nb, 0].T
                np.add(den_lead, rred[:, :nb, 1].T, out=d_)
                np.divide(n_, d_, out=v)
            v_seq[b0:b1, t] = v
    return v_seq, v_seq[:, -1].copy()


def _softplus(a):
    return np.logaddexp(0.0, np.asarray(a, np.float64))


def ltc_params_from_raw(raw: dict, *, ode_unfolds=6, epsilon=1e-8, implicit_param_constraints=True) -> LTCParams:
    """Effective :class:`LTCParams` from ncps' raw parameters (names without ``rnn_cell.``).

    With implicit constraints gleak, cm, w and sensory_w go through softplus (as ncps' LTC
    wrapper does); the sparsity masks multiply w and sensory_w.  Missing input/output maps
    ("linear"/none mappings) become identity weights and zero biases.
    """
    pos = _softplus if implicit_param_constraints else (lambda a: np.asarray(a, np.float64))
    dtype = np.result_type(np.asarray(raw["w"]).dtype, np.float32)
    n, s = np.shape(raw["w"])[0], np.shape(raw["sensory_w"])[0]
    mask = np.asarray(raw.get("sparsity_mask", np.ones((n, n))))
    smask = np.asarray(raw.get("sensory_sparsity_mask", np.ones((s, n))))
    m = np.shape(raw["output_w"])[0] if "output_w" in raw else n
    as_ = {k: np.asarray(raw[k], np.float64) for k in ("vleak", "sigma", "mu", "erev", "sensory_sigma",
                                                       "sensory_mu", "sensory_erev")}
    fields = dict(
        gleak=pos(raw["gleak"]), cm=pos(raw["cm"]), w=pos(raw["w"]) * mask,
        sensory_w=pos(raw["sensory_w"]) * smask, **as_,
        input_w=np.asarray(raw.get("input_w", np.ones(s))), input_b=np.asarray(raw.get("input_b", np.zeros(s))),
        output_w=np.asarray(raw.get("output_w", np.ones(m))), output_b=np.asarray(raw.get("output_b", np.zeros(m))),
    )
    return LTCParams(**{k: np.asarray(v).astype(dtype) for k, v in fields.items()},
                     ode_unfolds=int(ode_unfolds), epsilon=float(epsilon))


class LTC(SequenceLayer):
    """An LTC layer bound to a backend: ``forward(x (B,T,S)) -> (y (B,T,M), LTCState)``."""

    name = "LTC"
    state_type = LTCState
    _fields = ("gleak", "vleak", "cm", "w", "sigma", "mu", "erev", "sensory_w", "sensory_sigma",
               "sensory_mu", "sensory_erev", "input_w", "input_b", "output_w", "output_b")

    def __init__(self, params: LTCParams, backend, dtype=np.float32) -> None:
        super().__init__(params, backend, dtype)
        if int(params.ode_unfolds) < 1:
            raise ValueError(f"LTC: ode_unfolds must be >= 1, got {params.ode_unfolds}")
        self._p = LTCParams(**{k: self._dev(getattr(params, k)) for k in self._fields},
                            ode_unfolds=int(params.ode_unfolds), epsilon=float(params.epsilon))

    def _param_arrays(self):
        return [getattr(self.params, k) for k in self._fields]

    @classmethod
    def init(cls, n_in, units, *, ode_unfolds=6, epsilon=1e-8, seed=0, backend, dtype=np.float32) -> LTC:
        """ncps ``LTC(n_in, units)``: FullyConnected polarities from ``default_rng(1111)``
        (recurrent then sensory, P(+1) = 2/3), parameters uniform in ncps' init ranges from
        ``default_rng(seed)``, softplus constraints, identity input/output maps."""
        for arg, value in (("n_in", n_in), ("units", units), ("ode_unfolds", ode_unfolds)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"LTC.init: {arg} must be an int >= 1, got {value!r}")
        wiring = np.random.default_rng(1111)  # ncps FullyConnected(erev_init_seed=1111)
        erev = wiring.choice([-1, 1, 1], size=units * units).reshape(units, units)
        sensory_erev = wiring.choice([-1, 1, 1], size=n_in * units).reshape(n_in, units)
        rng = np.random.default_rng(seed)
        shapes = {"gleak": (units,), "vleak": (units,), "cm": (units,)}
        shapes.update({k: (units, units) for k in ("w", "sigma", "mu")})
        shapes.update({k: (n_in, units) for k in ("sensory_w", "sensory_sigma", "sensory_mu")})
        raw = {k: rng.uniform(*_INIT_RANGES[k], shapes[k]).astype(np.float32) for k in shapes}
        raw.update(erev=erev.astype(np.float32), sensory_erev=sensory_erev.astype(np.float32))
        params = ltc_params_from_raw(raw, ode_unfolds=ode_unfolds, epsilon=epsilon)
        return cls(params, backend, dtype)

    def forward(self, x, state=None, timespans=None):
        """Map inputs, integrate and map outputs for one block, carrying the state.

        Parameters
        ----------
        x : (batch, time, n_in) float32 or float64 (the layer's dtype)
        state : LTCState or (batch, units) array, optional
            Raw membrane; zeros when None.
        timespans : None, scalar, (batch, 1), (batch, time) or (batch, time, 1), optional
            Elapsed time per step, per sample; 1.0 when None.

        Returns
        -------
        y : (batch, time, M)
            Output-mapped motor neurons ``v[..., :M] * output_w + output_b``.
        state : LTCState
            Raw membrane ``v_T (batch, units)``.
        """
        x = self._check_x(x, "forward")
        B, T = x.shape[:2]
        v0 = self._state(state, B, "forward")
        dt = self._dt(timespans, B, T, "forward")
        p = self._p
        v_seq, v_T = self.backend.ltc_scan(x * p.input_w + p.input_b, v0, dt, p)
        y = v_seq[:, :, : p.output_w.shape[0]] * p.output_w + p.output_b
        self.last_ops = self.ops(B, T)
        return y, LTCState(v_T)

    def ops(self, batch: int, steps: int) -> OpCounts:
        """Per synapse evaluation 3 MACs (argument, numerator, denominator) and 1 sigmoid;
        sensory synapses once per step, recurrent ones ``ode_unfolds`` times; plus 2 MACs
        per neuron and sub-step for the update and the input/output maps."""
        p = self.params
        S, N, M, K = p.n_in, p.units, p.output_w.shape[0], int(p.ode_unfolds)
        synapses = S * N + K * N * N
        mac = 3 * synapses + 2 * K * N + S + M
        n = batch * steps
        return OpCounts(mac=n * mac, nonlin=n * synapses, dense_mac=n * mac)
