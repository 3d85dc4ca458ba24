"""The Backend contract and ``get_backend``.

One interface, two implementations (``numpy_backend.NumpyBackend``, the oracle, and
``cupy_backend.CupyBackend``, raw CUDA kernels).  Layers in ``kernels.network`` do
their dense projections with ``backend.xp`` (numpy or cupy, cuBLAS on the GPU) and hand
every *recurrence* -- the time loop -- to one backend call, so the CuPy backend runs
each layer's whole micro-batch in ONE kernel launch.

The backend is chosen once, by name, and never silently swapped: ``"cupy"`` without a
working GPU raises :class:`BackendError`; ``"auto"`` picks CuPy only when it imports
and a CUDA device is visible, and says why in ``Backend.reason``.

Shapes (B batch, T steps, F inputs, H units, C channels); every array is a ``backend.xp``
array of one floating dtype (float32 or float64) unless said otherwise:

* ``cfc_scan(u (B,T,Z), h0 (B,H), dt (B,T), p: CfCParams) -> (h_seq (B,T,H), h_T (B,H))``
  ``u`` is the input half of the first stage, already projected for all T
  (``x @ p.w_x + p.b_x``); the recurrence adds ``h @ p.w_h`` each step.
* ``ltc_scan(x (B,T,S), v0 (B,N), dt (B,T), p: LTCParams) -> (v_seq (B,T,N), v_T (B,N))``
  ``x`` is the input after the affine input map; sensory sigmoids are evaluated inside.
* ``lif_scan(cur (B,T,H), mem0 (B,H), p: LIFParams) -> (spk (B,T,H), mem (B,T,H))``
  snnTorch ``Leaky`` semantics; the state after the block is ``mem[:, -1]``.
* ``delta_scan(x (B,T,C), ref0 (B,C), primed0 (B,C) bool, threshold (C,), valid (B,T) bool)
  -> (on (B,T,C), off (B,T,C), ref_T (B,C), primed_T (B,C) bool)``
  Per step where ``valid``: if not primed, ``ref = x`` and ``primed = True`` (no event);
  else ``on = x - ref >= threshold``, ``off = ref - x >= threshold`` and, where either
  fired, ``ref = x``.  Invalid steps emit nothing and leave the state unchanged.
  ``on``/``off`` are 0/1 in x's dtype.
* ``event_matmul(spikes (N,F) in {0,1}, w (F,O)) -> (N,O)``: accumulates only the rows of
  ``w`` whose input fired; equal to ``spikes @ w``.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import numpy as np


class BackendError(RuntimeError):
    """A backend that was asked for cannot run here (missing package, GPU or compiler)."""


@runtime_checkable
class Backend(Protocol):
    name: str  # "numpy" | "cupy"
    xp: ModuleType  # the array module: numpy or cupy
    device: str  # "cpu (<n> threads)" or the GPU's name
    reason: str  # why this backend was chosen

    def asarray(self, a: Any, dtype: Any = None) -> Any: ...
    def to_numpy(self, a: Any) -> np.ndarray: ...
    def synchronize(self) -> None: ...
    def cfc_scan(self, u, h0, dt, p): ...
    def ltc_scan(self, x, v0, dt, p): ...
    def lif_scan(self, cur, mem0, p): ...
    def delta_scan(self, x, ref0, primed0, threshold, valid): ...
    def event_matmul(self, spikes, w): ...


# name -> "module:Class"; a dict, not an if/elif chain (STYLE.md).
_REGISTRY: dict[str, str] = {
    "numpy": "kernels.numpy_backend:NumpyBackend",
    "cupy": "kernels.cupy_backend:CupyBackend",
}


# Options each backend understands; "auto" passes a backend only its own, so
# ``get_backend("auto", threads=1)`` works whichever is chosen.
_OPTIONS: dict[str, frozenset[str]] = {
    "numpy": frozenset({"threads"}),
    "cupy": frozenset({"device_id"}),
}


def _load(name: str, reason: str, **options: Any) -> Backend:
    module, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)(reason=reason, **options)


def cuda_probe() -> tuple[bool, str]:
    """Return (usable, why): whether CuPy imports and sees at least one CUDA device."""
    try:
        import cupy  # noqa: PLC0415  (optional dependency)
    except Exception as exc:  # ImportError, or a broken CUDA install raising at import
        return False, f"cupy is not importable ({type(exc).__name__}: {exc})"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, f"cupy imports but the CUDA runtime fails ({type(exc).__name__}: {exc})"
    if n < 1:
        return False, "cupy imports but no CUDA device is visible"
    return True, f"cupy {cupy.__version__} sees {n} CUDA device(s)"


def get_backend(name: str = "auto", **options: Any) -> Backend:
    """Return a ready backend.

    Parameters
    ----------
    name : {"auto", "numpy", "cupy"}
        ``auto`` picks CuPy when it imports and a CUDA device is visible, else NumPy.
    **options
        Passed to the backend (``threads`` for NumPy, ``device_id`` for CuPy).

    Raises
    ------
    BackendError
        ``name`` is unknown, or ``"cupy"`` was asked for and CuPy, the GPU or the
        kernel compilation is not available.  Never falls back silently.
    """
    if name == "auto":
        ok, why = cuda_probe()
        chosen = "cupy" if ok else "numpy"
        unknown = set(options) - _OPTIONS["numpy"] - _OPTIONS["cupy"]
        if unknown:
            raise BackendError(f"unknown backend option(s) {sorted(unknown)}")
        mine = {k: v for k, v in options.items() if k in _OPTIONS[chosen]}
        left = {k: v for k, v in options.items() if k not in mine and not (k == "threads" and v == 1)}
        note = f"; {', '.join(f'{k}={v}' for k, v in left.items())} not used by {chosen}" if left else ""
        return _load(chosen, f"auto: {why}{note}", **mine)
    if name not in _REGISTRY:
        raise BackendError(f"unknown backend {name!r}; choose one of 'auto', {', '.join(map(repr, _REGISTRY))}")
    if name == "cupy":
        ok, why = cuda_probe()
        if not ok:
            raise BackendError(f"backend 'cupy' was requested but {why}; use backend 'numpy' or 'auto'")
        return _load("cupy", f"requested: {why}", **options)
    return _load(name, "requested", **options)
