"""Frozen parameter records and state tuples for every neuron family.

Weights are stored in the layout the kernels use, ``x @ w`` (in, out) -- the
transpose of PyTorch's ``Linear.weight`` -- and as *effective* values: LTC's
softplus constraints and sparsity masks are already applied.  ``kernels.interop``
converts from the ncps / snnTorch state dicts; nothing here knows about torch.

Arrays are NumPy on the host; a layer moves them to its backend once (``Backend.asarray``)
and keeps the device copies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

CFC_MODES = ("default", "pure", "no_gate")
ACTIVATIONS = ("lecun_tanh", "tanh", "relu", "silu", "gelu")
RESET_MECHANISMS = ("subtract", "zero", "none")


@dataclass(frozen=True, eq=False)
class CfCParams:
    """ncps ``CfCCell`` (non-wired), see shared/reference/neurons.md section 1.

    First stage: backbone layer 1 when ``backbone_layers >= 1`` (width U), otherwise
    the heads themselves (width ``n_heads * H``).  Its input half ``w_x``/``b_x`` is
    applied to all T at once; its recurrent half ``w_h`` inside the scan.
    Heads are concatenated along the output axis in the order ff1, ff2, time_a, time_b
    (``pure``: ff1 only).
    """

    mode: str
    activation: str
    w_x: np.ndarray  # (F, Z1)
    b_x: np.ndarray  # (Z1,)
    w_h: np.ndarray  # (H, Z1)
    backbone: tuple[tuple[np.ndarray, np.ndarray], ...]  # layers 2..L: ((U, U), (U,))
    w_head: np.ndarray | None  # (U, n_heads*H); None when there is no backbone
    b_head: np.ndarray | None  # (n_heads*H,)
    w_tau: np.ndarray | None  # (H,) pure mode only
    A: np.ndarray | None  # (H,) pure mode only
    proj_w: np.ndarray | None  # (H, P)
    proj_b: np.ndarray | None  # (P,)

    @property
    def n_in(self) -> int:
        return self.w_x.shape[0]

    @property
    def units(self) -> int:
        return self.w_h.shape[0]

    @property
    def n_heads(self) -> int:
        return 1 if self.mode == "pure" else 4


@dataclass(frozen=True, eq=False)
class LTCParams:
    """ncps ``LTCCell`` with effective (softplus'd, masked) parameters, section 2.

    Synapse arrays are indexed [source, target]: recurrent (N, N), sensory (S, N).
    """

    gleak: np.ndarray  # (N,) softplus applied
    vleak: np.ndarray  # (N,)
    cm: np.ndarray  # (N,) softplus applied
    w: np.ndarray  # (N, N) softplus(w) * mask
    sigma: np.ndarray  # (N, N)
    mu: np.ndarray  # (N, N)
    erev: np.ndarray  # (N, N)
    sensory_w: np.ndarray  # (S, N) softplus(sensory_w) * sensory_mask
    sensory_sigma: np.ndarray  # (S, N)
    sensory_mu: np.ndarray  # (S, N)
    sensory_erev: np.ndarray  # (S, N)
    input_w: np.ndarray  # (S,)
    input_b: np.ndarray  # (S,)
    output_w: np.ndarray  # (M,)
    output_b: np.ndarray  # (M,)
    ode_unfolds: int = 6
    epsilon: float = 1e-8

    @property
    def n_in(self) -> int:
        return self.sensory_w.shape[0]

    @property
    def units(self) -> int:
        return self.w.shape[0]


@dataclass(frozen=True, eq=False)
class LIFParams:
    """snnTorch ``Leaky``: beta already clamped to [0, 1], section 3."""

    beta: np.ndarray  # (H,)
    threshold: np.ndarray  # (H,)
    reset_mechanism: str = "subtract"


class CfCState(NamedTuple):
    h: object  # (B, H)


class LTCState(NamedTuple):
    v: object  # (B, N)


class LIFState(NamedTuple):
    mem: object  # (B, H)


class EncoderState(NamedTuple):
    """Reference level per channel; ``primed`` False means "the next input becomes the
    reference and emits no event" (the zero state)."""

    ref: object  # (B, C) float
    primed: object  # (B, C) bool


class OpCounts(NamedTuple):
    """Operations one forward performed, for the energy model (pipeline/energy.py).

    mac       dense multiply-accumulates executed
    acc       synaptic accumulates executed by event-driven paths (one per input spike
              per fan-out synapse, Norse-style)
    nonlin    transcendental evaluations (exp, tanh, sigmoid, erf)
    dense_mac multiply-accumulates a dense (ANN) implementation of the same layers would
              execute: ``mac`` plus every spike input priced as a full dense product
    syn_events     synaptic events of layers whose inputs are spikes (input spikes x
                   fan-out), counted whichever path (event or dense) executed them
    syn_dense_mac  the dense MACs those spike-input layers amount to (part of dense_mac)

    The neuromorphic estimate prices ``dense_mac - syn_dense_mac`` MACs plus
    ``syn_events`` accumulates against ``dense_mac`` MACs.
    """

    mac: int = 0
    acc: int = 0
    nonlin: int = 0
    dense_mac: int = 0
    syn_events: int = 0
    syn_dense_mac: int = 0

    def __add__(self, other: OpCounts) -> OpCounts:  # type: ignore[override]
        return OpCounts(*(int(a) + int(b) for a, b in zip(self, other, strict=True)))
