"""``SequenceLayer``: the shared base of the time-loop layers CfC and LTC.

:class:`kernels.cfc.CfC` and :class:`kernels.ltc.LTC` subclass it for what they share
around the backend's scan (the time loop itself): the dtype, device copies of the
parameters, parameter and FLOP counts, and the checks on ``x``, ``state`` and
``timespans`` (turned into ``dt`` per sample and step).
"""

from __future__ import annotations

import numpy as np

from kernels.params import CfCState, OpCounts

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class SequenceLayer:
    """Shared by :class:`kernels.cfc.CfC` and :class:`kernels.ltc.LTC`: dtype, device copies of the
    parameters, and the checks on ``x``, ``state`` and ``timespans`` that name the layer,
    the argument, what was expected and what was given."""

    name = "layer"
    state_type: type = CfCState

    def __init__(self, params, backend, dtype) -> None:
        dtype = np.dtype(dtype)
        if dtype not in _FLOATS:
            raise TypeError(f"{self.name}: dtype must be float32 or float64, got {dtype}")
        self.params, self.backend, self.dtype, self.xp = params, backend, dtype, backend.xp
        self.last_ops = OpCounts()

    def _dev(self, a):
        return None if a is None else self.backend.asarray(a, self.dtype)

    @property
    def n_params(self) -> int:
        """Trainable scalars, counted as ncps counts them (masks excluded)."""
        return sum(int(np.size(a)) for a in self._param_arrays())

    def flops_per_sequence(self, steps: int) -> int:
        """FLOPs for one sequence of ``steps`` steps: 2 per MAC + 1 per transcendental."""
        ops = self.ops(1, steps)
        return 2 * ops.mac + ops.nonlin

    def _check_x(self, x, method: str, width: int | None = None, what: str = "x"):
        width = self.params.n_in if width is None else width
        shape, dtype = getattr(x, "shape", None), getattr(x, "dtype", None)
        if shape is None or dtype is None:
            raise TypeError(f"{self.name}.{method}: {what} must be an array, got {type(x).__name__}")
        if len(shape) != 3 or shape[2] != width or np.dtype(dtype) != self.dtype:
            raise ValueError(f"{self.name}.{method}: {what} must be (batch, time, {width}) "
                             f"{self.dtype}, got {tuple(shape)} {np.dtype(dtype)}")
        if shape[0] < 1 or shape[1] < 1:
            raise ValueError(f"{self.name}.{method}: {what} needs batch and time >= 1, got {tuple(shape)}")
        return self.xp.asarray(x)

    def _state(self, state, batch: int, method: str):
        units = self.params.units
        if state is None:
            return self.xp.zeros((batch, units), self.dtype)
        h = state[0] if isinstance(state, self.state_type) else state
        shape, dtype = getattr(h, "shape", None), getattr(h, "dtype", None)
        if shape is None or tuple(shape) != (batch, units) or np.dtype(dtype) != self.dtype:
            got = f"{tuple(shape)} {np.dtype(dtype)}" if shape is not None else type(h).__name__
            raise ValueError(f"{self.name}.{method}: state must be ({batch}, {units}) "
                             f"{self.dtype} (or {self.state_type.__name__}), got {got}")
        return self.xp.asarray(h)

    def _dt(self, timespans, batch: int, steps: int, method: str = "forward"):
        """None (1.0), a scalar, (B,1), (B,T) or (B,T,1) -> dt (B,T), finite and > 0."""
        xp, where = self.xp, f"{self.name}.{method}: timespans"
        if timespans is None:
            return xp.ones((batch, steps), self.dtype)
        kind = timespans.dtype.kind if hasattr(timespans, "dtype") else np.asarray(timespans).dtype.kind
        if isinstance(timespans, bool) or kind not in "fiu":
            raise TypeError(f"{where} must be a real number or array, got {type(timespans).__name__}")
        ts = xp.asarray(timespans, dtype=self.dtype)
        if ts.ndim == 3 and ts.shape[2] == 1:
            ts = ts[..., 0]
        if ts.ndim != 0 and not (ts.ndim == 2 and ts.shape[0] == batch and ts.shape[1] in (1, steps)):
            raise ValueError(f"{where} must be a scalar, ({batch}, 1), ({batch}, {steps}) or "
                             f"({batch}, {steps}, 1), got shape {tuple(ts.shape)}")
        if not bool(xp.all(xp.isfinite(ts) & (ts > 0))):
            raise ValueError(f"{where} must be finite and > 0 (elapsed time per step)")
        return xp.ascontiguousarray(xp.broadcast_to(ts if ts.ndim else ts[None, None], (batch, steps)))
