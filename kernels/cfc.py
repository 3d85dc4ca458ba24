"""Closed-form continuous-time (CfC) layer, semantics of ncps ``CfC`` (non-wired).

Hasani et al., "Closed-form continuous-time neural networks", Nat. Mach. Intell. 2022,
https://arxiv.org/abs/2106.13898.  Per step, with input x_t (B,F), state h (B,H) and
elapsed time dt (B,1) per sample (shared/reference/neurons.md section 1)::

    z   = act([x_t, h] W1 + b1)   then act(z Wk + bk) for k = 2..L (no backbone: z = [x_t, h])
    f1, f2, a, b = z Wff1 + bff1, z Wff2 + bff2, z Wa + ba, z Wb + bb
    default:  g = sigmoid(a dt + b);  h' = tanh(f1) (1 - g) + g tanh(f2)
    no_gate:  g = sigmoid(a dt + b);  h' = tanh(f1) + g tanh(f2)
    pure:     h' = A - A exp(-dt (|w_tau| + |f1|)) f1

act is lecun_tanh (1.7159 tanh(0.666 x)), tanh, relu, silu or gelu (exact erf form).
The input half of the first stage, ``u = x W1[:F] + b1``, does not depend on h, so it is
one (B*T, F) x (F, Z1) GEMM for the whole block (:meth:`CfC.project`); the scan only
adds ``h W1[F:]`` per step and the heads run as one concatenated GEMM.  Unlike ncps
(mlech26l/ncps#83), dt is honoured per sample for any batch size.
"""

from __future__ import annotations

import math

import numpy as np

from kernels.activations import ACTIVATE as _ACTIVATE
from kernels.params import ACTIVATIONS, CFC_MODES, CfCParams, CfCState, OpCounts
from kernels.sequence import SequenceLayer

# Activations counted as transcendental evaluations in OpCounts.nonlin (relu is not).
_TRANSCENDENTAL = {"lecun_tanh": 1, "tanh": 1, "relu": 0, "silu": 1, "gelu": 1}
def cfc_scan_numpy(u, h0, dt, p: CfCParams):
    """Run the CfC recurrence over a block of T steps (NumPy reference, the oracle).

    Parameters
    ----------
    u : (batch, time, Z1) float32 or float64
        First-stage input half for every step, ``x @ p.w_x + p.b_x``.
    h0 : (batch, units) same dtype
        State before the first step.
    dt : (batch, time) same dtype
        Elapsed time of each step, per sample, > 0.
    p : CfCParams
        Arrays in u's dtype.

    Returns
    -------
    h_seq : (batch, time, units)
        State after each step (a transposed view of a time-major buffer).
    h_T : (batch, units)
        ``h_seq[:, -1]``, contiguous: the state to carry into the next block.
    """
    dtype = u.dtype
    B, T, z1 = u.shape
    H = p.units
    w_h = p.w_h.astype(dtype, copy=False)
    rest = [(w.astype(dtype, copy=False), b.astype(dtype, copy=False)) for w, b in p.backbone]
    has_backbone = p.w_head is not None
    act = _ACTIVATE[p.activation]
    hs = np.empty((T, B, H), dtype)  # time-major so each step's state is contiguous for the GEMM
    z = np.empty((B, z1), dtype)
    ping = [np.empty((B, w.shape[1]), dtype) for w, _ in rest[:2]]  # layers 2..L alternate
    if has_backbone:
        w_head, b_head = p.w_head.astype(dtype, copy=False), p.b_head.astype(dtype, copy=False)
        heads = np.empty((B, w_head.shape[1]), dtype)
    else:
        heads = z  # no backbone: the first stage *is* the concatenated heads
    gate = np.empty((B, H), dtype)
    h = np.asarray(h0, dtype)
    for t in range(T):
        np.matmul(h, w_h, out=z)
        z += u[:, t]
        if has_backbone:
            act(z)
            cur = z
            for k, (w, b) in enumerate(rest):
                nxt = ping[k % 2]
                np.matmul(cur, w, out=nxt)
                nxt += b
                act(nxt)
                cur = nxt
            np.matmul(cur, w_head, out=heads)
            heads += b_head
        _cell(heads, dt[:, t, None], p, hs[t], gate)
        h = hs[t]
    return hs.transpose(1, 0, 2), hs[-1].copy()


def _cell(heads, dt, p: CfCParams, out, scratch) -> None:
    """Turn the head pre-activations (B, n_heads*H) into the new state ``out`` (B, H).

    With th = tanh((a dt + b)/2) the gate is g = (1 + th)/2, so one tanh call covers
    f1, f2 and the gate, and default mode's blend needs no explicit g::

        tanh(f1)(1 - g) + g tanh(f2) = ((t1 + t2) + th (t2 - t1)) / 2
        tanh(f1) + g tanh(f2)        = t1 + t2 (1 + th) / 2
    """
    H = p.units
    f1 = heads[:, :H]
    if p.mode == "pure":
        np.abs(f1, out=scratch)
        scratch += np.abs(p.w_tau.astype(out.dtype, copy=False))
        np.multiply(scratch, -dt, out=scratch)
        np.exp(scratch, out=scratch)
        a = p.A.astype(out.dtype, copy=False)
        np.multiply(scratch, -a, out=scratch)
        np.multiply(scratch, f1, out=out)
        out += a
        return
    ta, tb = heads[:, 2 * H : 3 * H], heads[:, 3 * H :]
    np.multiply(ta, dt, out=ta)
    ta += tb
    ta *= 0.5
    np.tanh(heads[:, : 3 * H], out=heads[:, : 3 * H])
    t1, t2, th = heads[:, :H], heads[:, H : 2 * H], ta
    if p.mode == "no_gate":
        th += 1.0
        th *= t2
        th *= 0.5
        np.add(t1, th, out=out)
    else:
        np.subtract(t2, t1, out=out)
        out *= th
        np.add(t1, t2, out=scratch)
        out += scratch
        out *= 0.5


def cfc_params_from_linear(mode, activation, n_in, backbone, heads, w_tau=None, A=None, proj=None):
    """Build :class:`CfCParams` from PyTorch-layout ``(weight (out, in), bias (out,))`` pairs.

    ``backbone`` lists layers 1..L (empty for no backbone); ``heads`` is ff1[, ff2, time_a,
    time_b].  Used by :meth:`CfC.init` and :func:`kernels.interop.cfc_from_ncps`.
    """
    if mode not in CFC_MODES:
        raise ValueError(f"CfC: mode must be one of {CFC_MODES}, got {mode!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"CfC: activation must be one of {ACTIVATIONS}, got {activation!r}")
    w_head = np.concatenate([np.asarray(w).T for w, _ in heads], axis=1)
    b_head = np.concatenate([np.asarray(b) for _, b in heads])
    first_w, first_b = (backbone[0] if backbone else (w_head.T, b_head))
    first_w = np.asarray(first_w).T  # (F+H, Z1)
    return CfCParams(
        mode=mode, activation=activation,
        w_x=np.ascontiguousarray(first_w[:n_in]), b_x=np.asarray(first_b),
        w_h=np.ascontiguousarray(first_w[n_in:]),
        backbone=tuple((np.ascontiguousarray(np.asarray(w).T), np.asarray(b)) for w, b in backbone[1:]),
        w_head=np.ascontiguousarray(w_head) if backbone else None,
        b_head=b_head if backbone else None,
        w_tau=None if w_tau is None else np.asarray(w_tau).reshape(-1),
        A=None if A is None else np.asarray(A).reshape(-1),
        proj_w=None if proj is None else np.ascontiguousarray(np.asarray(proj[0]).T),
        proj_b=None if proj is None else np.asarray(proj[1]),
    )


class CfC(SequenceLayer):
    """A CfC layer bound to a backend: ``forward(x (B,T,F)) -> (y (B,T,P|H), CfCState)``."""

    name = "CfC"
    state_type = CfCState
    _param_fields = ("w_x", "b_x", "w_h", "w_head", "b_head", "w_tau", "A", "proj_w", "proj_b")

    def __init__(self, params: CfCParams, backend, dtype=np.float32) -> None:
        super().__init__(params, backend, dtype)
        if params.mode not in CFC_MODES or params.activation not in ACTIVATIONS:
            raise ValueError(f"CfC: mode must be one of {CFC_MODES} and activation one of {ACTIVATIONS}, "
                             f"got {params.mode!r}, {params.activation!r}")
        if params.mode == "pure" and (params.w_tau is None or params.A is None):
            raise ValueError("CfC: mode 'pure' needs params.w_tau and params.A")
        bb = tuple((self._dev(w), self._dev(b)) for w, b in params.backbone)
        self._p = CfCParams(mode=params.mode, activation=params.activation, backbone=bb,
                            **{k: self._dev(getattr(params, k)) for k in self._param_fields})

    def _param_arrays(self):
        p = self.params
        fields = [getattr(p, k) for k in self._param_fields]
        return [a for a in fields if a is not None] + [a for wb in p.backbone for a in wb]

    @classmethod
    def init(cls, n_in, units, *, mode="default", activation="lecun_tanh", backbone_units=128,
             backbone_layers=1, proj_size=None, seed=0, backend, dtype=np.float32) -> CfC:
        """ncps' initialisation with ``numpy.random.default_rng(seed)``: xavier_uniform on
        every 2-D weight (pure mode's w_tau and A too), biases U(+-1/sqrt(fan_in)), and the
        PyTorch default U(+-1/sqrt(H)) for the projection."""
        for arg, value, low in (("n_in", n_in, 1), ("units", units, 1), ("backbone_units", backbone_units, 1),
                                ("backbone_layers", backbone_layers, 0), ("proj_size", 1 if proj_size is None else proj_size, 1)):
            if not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"CfC.init: {arg} must be an int >= {low}, got {value!r}")
        rng = np.random.default_rng(seed)

        def linear(fan_in, fan_out, xavier=True):
            bound = math.sqrt(6.0 / (fan_in + fan_out)) if xavier else 1 / math.sqrt(fan_in)
            w = rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32)
            return w, rng.uniform(-1, 1, fan_out).astype(np.float32) / np.float32(math.sqrt(fan_in))

        widths = [n_in + units] + [backbone_units] * backbone_layers
        backbone = [linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        heads = [linear(widths[-1], units) for _ in range(1 if mode == "pure" else 4)]
        tau_a = [linear(units, 1)[0] for _ in range(2)] if mode == "pure" else [None, None]
        proj = linear(units, proj_size, xavier=False) if proj_size else None
        p = cfc_params_from_linear(mode, activation, n_in, backbone, heads, *tau_a, proj)
        return cls(p, backend, dtype)

    def project(self, x):
        """u = x @ w_x + b_x for all steps in one GEMM: (B,T,F) -> (B,T,Z1)."""
        B, T, F = x.shape
        u = self.xp.matmul(x.reshape(B * T, F), self._p.w_x)
        u += self._p.b_x
        return u.reshape(B, T, -1)

    def scan(self, u, state=None, timespans=None):
        """Run the recurrence on a projected block ``u (B,T,Z1)``.

        Returns ``(h_seq (B,T,H), CfCState(h_T (B,H)))``.
        """
        u = self._check_x(u, "scan", self.params.w_x.shape[1], "u")
        return self._scan(u, state, timespans, "scan")

    def _scan(self, u, state, timespans, method):
        B, T = u.shape[:2]
        h0 = self._state(state, B, method)
        dt = self._dt(timespans, B, T, method)
        h_seq, h_T = self.backend.cfc_scan(u, h0, dt, self._p)
        return h_seq, CfCState(h_T)

    def forward(self, x, state=None, timespans=None):
        """Project, scan and read out one block, carrying the state.

        Parameters
        ----------
        x : (batch, time, n_in) float32 or float64 (the layer's dtype)
        state : CfCState or (batch, units) array, optional
            Zeros when None.
        timespans : None, scalar, (batch, 1), (batch, time) or (batch, time, 1), optional
            Elapsed time per step, per sample; 1.0 when None.

        Returns
        -------
        y : (batch, time, proj_size or units)
            ncps' readout: ``h_t @ proj_w + proj_b`` or ``h_t`` itself.
        state : CfCState
            ``h_T (batch, units)``, unprojected, to pass to the next call.
        """
        x = self._check_x(x, "forward")
        B, T = x.shape[:2]
        h_seq, new_state = self._scan(self.project(x), state, timespans, "forward")
        y = h_seq
        if self._p.proj_w is not None:
            y = self.xp.matmul(h_seq.reshape(B * T, -1), self._p.proj_w)
            y += self._p.proj_b
            y = y.reshape(B, T, -1)
        self.last_ops = self.ops(B, T)
        return y, new_state

    def ops(self, batch: int, steps: int) -> OpCounts:
        """Dense MACs (projection, recurrence, backbone, heads, proj) and transcendentals."""
        p, H = self.params, self.params.units
        z1 = p.w_x.shape[1]
        per_step = (p.n_in + H) * z1 + sum(w.size for w, _ in p.backbone)
        per_step += 0 if p.w_head is None else p.w_head.size
        per_step += 0 if p.proj_w is None else p.proj_w.size
        layers = 0 if p.w_head is None else 1 + len(p.backbone)
        nonlin = layers * z1 * _TRANSCENDENTAL[p.activation] + (H if p.mode == "pure" else 3 * H)
        n = batch * steps
        return OpCounts(mac=n * per_step, nonlin=n * nonlin, dense_mac=n * per_step)
