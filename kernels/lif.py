"""Leaky integrate-and-fire neurons with snnTorch ``Leaky`` semantics.

Discrete time, one update per model step (shared/reference/neurons.md section 3,
snnTorch 1.0.0 with its default ``reset_delay=True``).  Membrane U and input current I
are dimensionless (the current is whatever the synapse layer produced); the threshold
theta is in the same units, beta is the per-step decay factor in [0, 1]::

    R_t = [U_{t-1} > theta]                 reset from the PREVIOUS membrane
    subtract:  U_t = beta * U_{t-1} + I_t - R_t * theta
    zero:      U_t = beta * (1 - R_t) * U_{t-1} + I_t
    none:      U_t = beta * U_{t-1} + I_t
    S_t = [U_t > theta]                     strict: U == theta does not spike

The membrane returned for a spiking step is *not* reset (it is > theta); the reset is
applied one step later, after the decay.  That is snnTorch's behaviour and the reason
``mem[:, -1]`` alone is a complete state to carry into the next time block.

Like ``torch.as_tensor``, beta and theta are rounded to float32 before use, even in a
float64 run, so both dtypes agree with snnTorch bit for bit.

Eshraghian et al., "Training Spiking Neural Networks Using Lessons From Deep Learning",
Proc. IEEE 2023, https://doi.org/10.1109/JPROC.2023.3308088
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels.params import RESET_MECHANISMS, LIFParams, LIFState, OpCounts

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def lif_scan_numpy(
    cur: np.ndarray, mem0: np.ndarray, p: LIFParams
) -> tuple[np.ndarray, np.ndarray]:
    """Run the LIF recurrence over a block of T steps (reference implementation).

    Parameters
    ----------
    cur : (B, T, H) float32 or float64
        Input current per step.
    mem0 : (B, H) same dtype as ``cur``
        Membrane before the first step (the previous block's ``mem[:, -1]``; zeros at
        the start of a recording).
    p : LIFParams
        ``beta`` and ``threshold`` of shape (H,), already clamped / float32-rounded.

    Returns
    -------
    spk : (B, T, H) cur.dtype, 0/1
    mem : (B, T, H) cur.dtype, the membrane after each step (not reset at spikes)
    """
    dt = cur.dtype
    beta = np.asarray(p.beta, dtype=dt)
    theta = np.asarray(p.threshold, dtype=dt)
    mechanism = p.reset_mechanism
    spk = np.empty_like(cur)
    mem = np.empty_like(cur)
    u = np.array(mem0, dtype=dt, copy=True)
    for t in range(cur.shape[1]):
        if mechanism == "subtract":
            # Same association as snnTorch: (beta*U + I) - R*theta.
            u = beta * u + cur[:, t] - (u > theta) * theta
        elif mechanism == "zero":
            u = beta * np.where(u > theta, 0, u) + cur[:, t]
        else:
            u = beta * u + cur[:, t]
        mem[:, t] = u
        spk[:, t] = u > theta
    return spk, mem


def _per_neuron(name: str, value: Any, units: int) -> np.ndarray:
    """Scalar or (units,) -> (units,) float32, like ``torch.as_tensor`` then broadcast."""
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim == 0:
        arr = np.full(units, arr, dtype=np.float32)
    if arr.shape != (units,):
        raise ValueError(f"LIF: {name} must be a scalar or shape ({units},), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"LIF: {name} must be finite, got {value!r}")
    return arr


class LIF:
    """A layer of snnTorch-``Leaky`` neurons on a backend.

    Parameters
    ----------
    params : LIFParams
        Host (NumPy) parameters; moved to the backend once, in ``dtype``.
    backend : kernels.backend.Backend
    dtype : np.float32 or np.float64
    """

    def __init__(self, params: LIFParams, backend: Any, dtype: Any = np.float32) -> None:
        dtype = np.dtype(dtype)
        if dtype not in _FLOAT_DTYPES:
            raise ValueError(f"LIF: dtype must be float32 or float64, got {dtype}")
        if params.reset_mechanism not in RESET_MECHANISMS:
            raise ValueError(
                f"LIF: reset_mechanism must be one of {RESET_MECHANISMS}, "
                f"got {params.reset_mechanism!r}"
            )
        beta = np.asarray(params.beta)
        if beta.ndim != 1 or np.asarray(params.threshold).shape != beta.shape:
            raise ValueError(
                "LIF: params.beta and params.threshold must both have shape (units,), got "
                f"{beta.shape} and {np.asarray(params.threshold).shape}"
            )
        self.params = params
        self.backend = backend
        self.dtype = dtype
        self.units = beta.shape[0]
        # Device copies in the compute dtype; the values are float32-rounded already.
        self._dev = LIFParams(
            beta=backend.asarray(params.beta, dtype=dtype),
            threshold=backend.asarray(params.threshold, dtype=dtype),
            reset_mechanism=params.reset_mechanism,
        )
        self.last_ops = OpCounts()

    @classmethod
    def init(
        cls,
        units: int,
        *,
        beta: float | np.ndarray = 0.9,
        threshold: float | np.ndarray = 1.0,
        reset_mechanism: str = "subtract",
        backend: Any,
        dtype: Any = np.float32,
    ) -> LIF:
        """Build a layer; ``beta`` is clamped to [0, 1] as snnTorch does at use.

        ``beta`` and ``threshold`` are scalars or (units,) arrays.
        """
        if not isinstance(units, (int, np.integer)) or isinstance(units, bool) or units < 1:
            raise ValueError(f"LIF: units must be a positive int, got {units!r}")
        if reset_mechanism not in RESET_MECHANISMS:
            raise ValueError(
                f"LIF: reset_mechanism must be one of {RESET_MECHANISMS}, got {reset_mechanism!r}"
            )
        b = np.clip(_per_neuron("beta", beta, int(units)), 0.0, 1.0).astype(np.float32)
        th = _per_neuron("threshold", threshold, int(units))
        return cls(LIFParams(beta=b, threshold=th, reset_mechanism=reset_mechanism), backend, dtype)

    @property
    def n_params(self) -> int:
        """Trainable scalars: none (snnTorch keeps beta and threshold as buffers unless
        ``learn_beta`` / ``learn_threshold``; the synaptic weights live in synapse.Linear)."""
        return 0

    def zero_state(self, batch: int) -> LIFState:
        return LIFState(mem=self.backend.xp.zeros((batch, self.units), dtype=self.dtype))

    def forward(self, cur: Any, state: LIFState | None = None) -> tuple[tuple[Any, Any], LIFState]:
        """Run T steps.

        Parameters
        ----------
        cur : (B, T, units) backend array, ``dtype``
        state : LIFState with mem (B, units), or None for the zero state

        Returns
        -------
        (spk, mem) : (B, T, units) each, ``dtype``; spk is 0/1
        state : LIFState(mem=mem[:, -1]) to carry into the next block
        """
        if cur.ndim != 3 or cur.shape[2] != self.units:
            raise ValueError(f"LIF.forward: cur must be (B, T, {self.units}), got {cur.shape}")
        if cur.dtype != self.dtype:
            raise ValueError(f"LIF.forward: cur dtype must be {self.dtype}, got {cur.dtype}")
        b, t = cur.shape[:2]
        if state is None:
            state = self.zero_state(b)
        mem0 = state.mem
        if mem0.shape != (b, self.units) or mem0.dtype != self.dtype:
            raise ValueError(
                f"LIF.forward: state.mem must be ({b}, {self.units}) {self.dtype}, "
                f"got {mem0.shape} {mem0.dtype}"
            )
        if t == 0:
            empty = self.backend.xp.zeros((b, 0, self.units), dtype=self.dtype)
            self.last_ops = OpCounts()
            return (empty, empty.copy()), state
        spk, mem = self.backend.lif_scan(cur, mem0, self._dev)
        # Compare/add/multiply per neuron-step; none of it is a synaptic MAC or a
        # transcendental, so the energy model prices nothing here (synapse.Linear
        # counts the synaptic work feeding these neurons).
        self.last_ops = OpCounts()
        return (spk, mem), LIFState(mem=mem[:, -1].copy())
