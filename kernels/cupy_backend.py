"""CuPy backend: the Backend contract on raw CUDA kernels (``kernels/cuda/*.cu``).

Public methods validate and lay out arrays, :mod:`kernels.launch` computes the
geometry, and one kernel launch runs each scan's whole time loop; dense input
projections stay with the layers (``backend.xp.matmul`` -> cuBLAS).  The ``.cu``
files are read at run time (``kernels.cuda_sources``), compiled by NVRTC through
``cupy.RawModule`` and cached per (device, source, options); ``__init__`` compiles,
loads and launches every kernel once, so a missing NVRTC or a compile error raises
:class:`~kernels.backend.BackendError` with the compiler log when the backend is
created, never in the first micro-batch.

``launches`` counts kernel launches per family ("cfc", "ltc", "lif", "delta",
"event_matmul") after warm-up: the tests' proof that the GPU path ran.
"""

from __future__ import annotations

import weakref
from collections import Counter
from functools import cache
from typing import Any

import cupy as cp
import numpy as np

from kernels import cuda_sources as cs
from kernels import launch
from kernels.backend import BackendError

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@cache
def _module(device_id: int, filename: str, options: tuple[str, ...], code: str) -> cp.RawModule:
    """One compiled module per (device, source text, options); both dtypes live in it."""
    with cp.cuda.Device(device_id):
        return cp.RawModule(code=code, options=options)


def _i32(v: int) -> np.int32:
    if not 0 <= v < 2**31:
        raise ValueError(f"kernel size argument {v} does not fit in int32")
    return np.int32(v)


class CupyBackend:
    name = "cupy"
    xp = cp

    def __init__(self, reason: str = "requested", device_id: int = 0) -> None:
        self.reason = reason
        self.device_id = int(device_id)
        try:
            self._device = cp.cuda.Device(self.device_id)
            props = cp.cuda.runtime.getDeviceProperties(self.device_id)
            name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
            self.attrs = launch.DeviceAttrs.from_attributes(name, self._device.attributes)
        except Exception as exc:  # invalid id, driver failure
            raise BackendError(f"cupy backend: CUDA device {device_id} is unusable "
                               f"({type(exc).__name__}: {exc})") from exc
        self.device = self.attrs.name
        self._params: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._force_spb: int | None = None  # tests only: pin the NL_SPB variant
        self.launches: Counter[str] = Counter()
        self._kernels = self._compile_all()
        self._warm()
        self.launches.clear()

    def __repr__(self) -> str:
        return f"CupyBackend(device_id={self.device_id}, device={self.device!r})"

    # ------------------------------------------------------------------ loading
    def _compile_all(self) -> dict[tuple[str, str, str], Any]:
        kernels = {}
        for filename, variant, options in cs.compile_units():
            try:
                code = cs.source(filename)
                with self._device:
                    mod = _module(self.device_id, filename, options, code)
                    for dtype, names in cs.KERNELS[filename].items():
                        for kname in names:
                            kernels[(kname, variant, dtype)] = mod.get_function(kname)
            except Exception as exc:  # CompileException carries the NVRTC log in its text
                raise BackendError(
                    f"cupy backend: compiling kernels/cuda/{filename} ({variant}, options "
                    f"{' '.join(options)}) for {self.device} failed:\n{exc}"
                ) from exc
        return kernels

    def _warm(self) -> None:
        """Launch every entry point once on tiny inputs (module load, first-launch cost)."""
        try:
            for dtype in _DTYPES:
                self._warm_dtype(dtype)
            self.synchronize()
        except Exception as exc:
            raise BackendError(f"cupy backend: warm-up launch on {self.device} failed "
                               f"({type(exc).__name__}: {exc})") from exc

    def _warm_dtype(self, dtype: np.dtype) -> None:
        from kernels.params import CfCParams, LIFParams, LTCParams  # noqa: PLC0415

        z = lambda *s: cp.zeros(s, dtype)  # noqa: E731
        o = lambda *s: cp.ones(s, dtype)  # noqa: E731
        for spb in cs.SPB_VARIANTS:
            self._force_spb = spb
            p = CfCParams("default", "lecun_tanh", z(1, 4), z(4), z(2, 4), (), z(4, 8), z(8),
                          None, None, None, None)
            self.cfc_scan(z(1, 1, 4), z(1, 2), o(1, 1), p)
            lp = LTCParams(o(2), z(2), o(2), z(2, 2), z(2, 2), z(2, 2), z(2, 2), z(1, 2),
                           z(1, 2), z(1, 2), z(1, 2), o(1), z(1), o(2), z(2), 1, 1e-8)
            self.ltc_scan(z(1, 1, 1), z(1, 2), o(1, 1), lp)
        self._force_spb = None
        self.lif_scan(z(1, 1, 2), z(1, 2), LIFParams(o(2), o(2)))
        self.delta_scan(z(1, 1, 2), z(1, 2), cp.zeros((1, 2), bool), o(2), cp.ones((1, 1), bool))
        self.event_matmul(z(1, 2), z(2, 3))

    def _kernel(self, base: str, variant: str, dtype: np.dtype):
        return self._kernels[(base + cs.DTYPE_SUFFIX[dtype.name], variant, dtype.name)]

    def _launch(self, family: str, kern, cfg: launch.LaunchConfig, args: tuple) -> None:
        if cfg.smem_bytes > self.attrs.smem_per_block:
            kern.max_dynamic_shared_size_bytes = cfg.smem_bytes  # opt-in above 48 KiB
        with self._device:
            kern(cfg.grid, cfg.block, args, shared_mem=cfg.smem_bytes)
        self.launches[family] += 1

    # ------------------------------------------------------------------ arrays
    def asarray(self, a: Any, dtype: Any = None) -> cp.ndarray:
        with self._device:
            return cp.asarray(a, dtype=dtype)

    def to_numpy(self, a: Any) -> np.ndarray:
        return cp.asnumpy(a) if isinstance(a, cp.ndarray) else np.asarray(a)

    def synchronize(self) -> None:
        self._device.synchronize()

    def _c(self, a: Any, dtype: Any) -> cp.ndarray:
        with self._device:
            return cp.ascontiguousarray(cp.asarray(a, dtype=dtype))

    @staticmethod
    def _dtype(a: Any, what: str) -> np.dtype:
        dt = np.dtype(getattr(a, "dtype", np.float64))
        if dt not in _DTYPES:
            raise TypeError(f"cupy backend: {what} must be float32 or float64, got {dt}")
        return dt

    def _device_params(self, p: Any, dtype: np.dtype, pack) -> tuple:
        """Device copies of ``p``'s arrays in ``dtype``, made once per params object."""
        per = self._params.setdefault(p, {})
        if dtype.name not in per:
            per[dtype.name] = pack(p, dtype)
        return per[dtype.name]

    def _spb(self, cfg_spb: int) -> int:
        return self._force_spb if self._force_spb is not None else cfg_spb

    # ------------------------------------------------------------------ CfC
    def _pack_cfc(self, p, dtype):
        c = lambda a: self._c(a, dtype)  # noqa: E731
        dummy = cp.zeros(1, dtype)
        if p.backbone:
            bb_w = c(cp.stack([cp.asarray(w, dtype) for w, _ in p.backbone]))
            bb_b = c(cp.stack([cp.asarray(b, dtype) for _, b in p.backbone]))
        else:
            bb_w = bb_b = dummy
        has_head = p.w_head is not None
        return (c(p.w_h), bb_w, bb_b, c(p.w_head) if has_head else dummy,
                c(p.b_head) if has_head else dummy,
                c(p.w_tau).reshape(-1) if p.mode == "pure" else dummy,
                c(p.A).reshape(-1) if p.mode == "pure" else dummy)

    def cfc_scan(self, u, h0, dt, p):
        """See kernels.backend: ``(u (B,T,Z1), h0 (B,H), dt (B,T), p) -> (h_seq, h_T)``."""
        dtype = self._dtype(u, "cfc_scan u")
        if p.mode not in cs.CFC_MODE_CODES or p.activation not in cs.ACTIVATION_CODES:
            raise ValueError(f"cfc_scan: unknown mode {p.mode!r} or activation {p.activation!r}")
        B, T, Z1 = u.shape
        H = p.units
        nh = p.n_heads
        L = 0 if p.w_head is None else 1 + len(p.backbone)
        if p.w_h.shape != (H, Z1) or (L == 0 and Z1 != nh * H):
            raise ValueError(f"cfc_scan: u (B,T,{Z1}) does not match w_h {p.w_h.shape} / {nh} heads")
        if tuple(h0.shape) != (B, H) or tuple(dt.shape) != (B, T):
            raise ValueError(f"cfc_scan: h0 {h0.shape} / dt {dt.shape} do not match ({B}, {T}, H={H})")
        u, h0, dt = self._c(u, dtype), self._c(h0, dtype), self._c(dt, dtype)
        h_seq = cp.empty((B, T, H), dtype)
        if B == 0 or T == 0:
            return h_seq, h0.copy()
        w_h, bb_w, bb_b, w_head, b_head, w_tau, a_par = self._device_params(p, dtype, self._pack_cfc)
        cfg = launch.cfc_launch(B, H, Z1, L, nh, dtype.itemsize, self.attrs)
        spb = self._spb(cfg.spb)
        if spb != cfg.spb:
            cfg = launch.LaunchConfig(((B + spb - 1) // spb, 1, 1), cfg.block,
                                      launch.cfc_smem_elems(spb, H, Z1, L) * dtype.itemsize, spb, False)
        args = (u, h0, dt, w_h, bb_w, bb_b, w_head, b_head, w_tau, a_par, h_seq,
                _i32(B), _i32(T), _i32(H), _i32(Z1), _i32(L), _i32(cs.CFC_MODE_CODES[p.mode]),
                _i32(cs.ACTIVATION_CODES[p.activation]), _i32(int(cfg.stage_w)))
        self._launch("cfc", self._kernel("cfc_scan", f"spb{spb}", dtype), cfg, args)
        return h_seq, h_seq[:, -1].copy()

    # ------------------------------------------------------------------ LTC
    def _pack_ltc(self, p, dtype):
        c = lambda a: self._c(a, dtype)  # noqa: E731
        return tuple(c(getattr(p, k)) for k in (
            "gleak", "vleak", "cm", "w", "sigma", "mu", "erev",
            "sensory_w", "sensory_sigma", "sensory_mu", "sensory_erev"))

    def ltc_scan(self, x, v0, dt, p):
        """See kernels.backend: ``(x (B,T,S), v0 (B,N), dt (B,T), p) -> (v_seq, v_T)``."""
        dtype = self._dtype(x, "ltc_scan x")
        B, T, S = x.shape
        N = p.units
        K = int(p.ode_unfolds)
        if K < 1:
            raise ValueError(f"ltc_scan: ode_unfolds must be >= 1, got {p.ode_unfolds}")
        if p.n_in != S or tuple(v0.shape) != (B, N) or tuple(dt.shape) != (B, T):
            raise ValueError(f"ltc_scan: x {x.shape}, v0 {v0.shape}, dt {dt.shape} do not match "
                             f"S={p.n_in}, N={N}")
        x, v0, dt = self._c(x, dtype), self._c(v0, dtype), self._c(dt, dtype)
        v_seq = cp.empty((B, T, N), dtype)
        if B == 0 or T == 0:
            return v_seq, v0.copy()
        dev = self._device_params(p, dtype, self._pack_ltc)
        cfg = launch.ltc_launch(B, S, N, dtype.itemsize, self.attrs)
        spb = self._spb(cfg.spb)
        if spb != cfg.spb:
            cfg = launch.LaunchConfig(((B + spb - 1) // spb, 1, 1), cfg.block,
                                      launch.ltc_smem_elems(spb, S, N) * dtype.itemsize, spb, False)
        args = (x, v0, dt, *dev, v_seq, _i32(B), _i32(T), _i32(S), _i32(N), _i32(K),
                dtype.type(p.epsilon), _i32(int(cfg.stage_w)))
        self._launch("ltc", self._kernel("ltc_scan", f"spb{spb}", dtype), cfg, args)
        return v_seq, v_seq[:, -1].copy()

    # ------------------------------------------------------------------ LIF
    def lif_scan(self, cur, mem0, p):
        """See kernels.backend: ``(cur (B,T,H), mem0 (B,H), p) -> (spk, mem)``."""
        dtype = self._dtype(cur, "lif_scan cur")
        if p.reset_mechanism not in cs.RESET_CODES:
            raise ValueError(f"lif_scan: unknown reset_mechanism {p.reset_mechanism!r}")
        B, T, H = cur.shape
        if tuple(mem0.shape) != (B, H) or tuple(np.shape(p.beta)) != (H,):
            raise ValueError(f"lif_scan: mem0 {mem0.shape} / beta {np.shape(p.beta)} do not match cur {cur.shape}")
        cur, mem0 = self._c(cur, dtype), self._c(mem0, dtype)
        spk, mem = cp.empty((B, T, H), dtype), cp.empty((B, T, H), dtype)
        if B * H == 0 or T == 0:
            return spk, mem
        beta, thr = self._device_params(
            p, dtype, lambda q, d: (self._c(q.beta, d), self._c(q.threshold, d)))
        cfg = launch.elementwise_launch(B * H, self.attrs)
        args = (cur, mem0, beta, thr, spk, mem, _i32(B), _i32(T), _i32(H),
                _i32(cs.RESET_CODES[p.reset_mechanism]))
        self._launch("lif", self._kernel("lif_scan", "default", dtype), cfg, args)
        return spk, mem

    # ------------------------------------------------------------------ delta
    def delta_scan(self, x, ref0, primed0, threshold, valid):
        """See kernels.backend: ``-> (on, off, ref_T, primed_T)``."""
        dtype = self._dtype(x, "delta_scan x")
        B, T, C = x.shape
        if tuple(ref0.shape) != (B, C) or tuple(primed0.shape) != (B, C) or tuple(valid.shape) != (B, T):
            raise ValueError(f"delta_scan: ref0 {ref0.shape}, primed0 {primed0.shape}, valid "
                             f"{valid.shape} do not match x {x.shape}")
        x, ref0, thr = self._c(x, dtype), self._c(ref0, dtype), self._c(threshold, dtype)
        primed0, valid = self._c(primed0, bool), self._c(valid, bool)
        on, off = cp.zeros((B, T, C), dtype), cp.zeros((B, T, C), dtype)
        if B * C == 0 or T == 0:
            return on, off, ref0.copy(), primed0.copy()
        ref_t, primed_t = cp.empty((B, C), dtype), cp.empty((B, C), bool)
        cfg = launch.elementwise_launch(B * C, self.attrs)
        args = (x, ref0, primed0, thr, valid, on, off, ref_t, primed_t, _i32(B), _i32(T), _i32(C))
        self._launch("delta", self._kernel("delta_scan", "default", dtype), cfg, args)
        return on, off, ref_t, primed_t

    # ------------------------------------------------------------------ synapse
    def event_matmul(self, spikes, w):
        """See kernels.backend: ``(spikes (N,F), w (F,O)) -> (N,O)``: the sum of the rows of
        ``w`` whose input is nonzero (``spikes @ w`` for 0/1 spikes), event-driven."""
        dtype = self._dtype(w, "event_matmul w")
        F, n_out = w.shape
        lead = tuple(spikes.shape[:-1])
        if spikes.shape[-1] != F:
            raise ValueError(f"event_matmul: spikes {spikes.shape} do not match w {w.shape}")
        s2 = self._c(spikes, dtype).reshape(-1, F)
        w = self._c(w, dtype)
        N = s2.shape[0]
        out = cp.zeros((N, n_out), dtype)
        if N and n_out:
            cfg = launch.event_matmul_launch(N, n_out, self.attrs)
            args = (s2, w, out, _i32(N), _i32(F), _i32(n_out))
            self._launch("event_matmul", self._kernel("event_matmul", "default", dtype), cfg, args)
        return out.reshape(*lead, n_out)
