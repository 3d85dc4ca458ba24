"""Import trained weights from ncps (CfC, LTC) and snnTorch (Leaky) -- without torch.

State-dict values may be NumPy arrays or torch tensors: anything with
``.detach().cpu().numpy()`` is converted through it (duck-typed, so kernels/ never imports
torch), everything else through ``np.asarray``.  Keys may carry the sequence wrapper's
``rnn_cell.`` prefix or not.  The result is a frozen parameter record in the kernels'
layout (``x @ w``, effective LTC values); see shared/reference/neurons.md sections 1-3.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from kernels.cfc import cfc_params_from_linear
from kernels.ltc import ltc_params_from_raw
from kernels.params import RESET_MECHANISMS, CfCParams, LIFParams, LTCParams

_LTC_REQUIRED = ("gleak", "vleak", "cm", "w", "sigma", "mu", "erev", "sensory_w", "sensory_sigma",
                 "sensory_mu", "sensory_erev")


def to_numpy(value: Any) -> np.ndarray:
    """A NumPy array from an array, a scalar or a torch tensor (detached, on the CPU)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _cell_dict(state_dict: Mapping[str, Any], family: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Split into (cell params without ``rnn_cell.``, wrapper params) as NumPy arrays."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"{family}: state_dict must be a mapping of name -> array, got {type(state_dict).__name__}")
    cell, outer = {}, {}
    for key, value in state_dict.items():
        if key.startswith("rnn_cell."):
            cell[key[len("rnn_cell."):]] = to_numpy(value)
        else:
            outer[key] = to_numpy(value)
    if not cell:  # a bare cell's state dict
        cell, outer = outer, {k: v for k, v in outer.items() if k.startswith("fc.")}
    return cell, outer


def _need(d: Mapping[str, Any], key: str, family: str) -> Any:
    if key not in d:
        raise KeyError(f"{family}: state_dict has no {key!r} (with or without 'rnn_cell.'); "
                       f"found keys: {sorted(d)}")
    return d[key]


def cfc_from_ncps(state_dict: Mapping[str, Any], *, mode: str = "default", activation: str = "lecun_tanh",
                  backbone_layers: int | None = None) -> CfCParams:
    """:class:`CfCParams` from an ncps ``CfC`` (non-wired) or ``CfCCell`` state dict.

    Parameters
    ----------
    state_dict : mapping of str -> array or tensor
        ``rnn_cell.backbone.{i}.weight`` (U, F+H) ..., ``rnn_cell.ff1.weight`` (H, Z) ...,
        pure mode ``rnn_cell.w_tau``/``rnn_cell.A`` (1, H), optional ``fc.weight`` (P, H).
    mode, activation : str
        As given to ncps (the weights cannot tell default from no_gate, nor the activation).
    backbone_layers : int, optional
        Checked against the number of ``backbone.*.weight`` keys when given; 0 = no backbone.

    Raises
    ------
    KeyError
        A required key is missing (the message lists the keys found).
    ValueError
        Mixed-memory or wired cells, or weights inconsistent with ``mode``/``backbone_layers``.
    """
    cell, outer = _cell_dict(state_dict, "cfc_from_ncps")
    if any(k.startswith("layer_") for k in cell) or "lstm.input_map.weight" in outer:
        raise ValueError("cfc_from_ncps: wired (WiredCfCCell) and mixed_memory CfCs are not supported; "
                         f"found keys: {sorted(cell) + sorted(outer)}")
    index = sorted(int(m.group(1)) for k in cell if (m := re.fullmatch(r"backbone\.(\d+)\.weight", k)))
    if backbone_layers is not None and backbone_layers != len(index):
        raise ValueError(f"cfc_from_ncps: backbone_layers={backbone_layers} but the state dict has "
                         f"{len(index)} backbone Linear layers (indices {index})")
    backbone = [(cell[f"backbone.{i}.weight"], _need(cell, f"backbone.{i}.bias", "cfc_from_ncps")) for i in index]
    names = ["ff1"] if mode == "pure" else ["ff1", "ff2", "time_a", "time_b"]
    heads = [(_need(cell, f"{n}.weight", "cfc_from_ncps"), _need(cell, f"{n}.bias", "cfc_from_ncps")) for n in names]
    if mode != "pure" and "w_tau" in cell:
        raise ValueError(f"cfc_from_ncps: mode={mode!r} but the state dict holds pure-mode w_tau/A")
    w_tau = A = None
    if mode == "pure":
        if "ff2.weight" in cell:
            raise ValueError("cfc_from_ncps: mode='pure' but the state dict holds ff2/time_a/time_b heads")
        w_tau, A = _need(cell, "w_tau", "cfc_from_ncps"), _need(cell, "A", "cfc_from_ncps")
    units = heads[0][0].shape[0]
    first = backbone[0][0] if backbone else heads[0][0]
    n_in = first.shape[1] - units
    if n_in < 1:
        raise ValueError(f"cfc_from_ncps: first layer takes {first.shape[1]} inputs, not more than units={units}")
    proj = None
    if "fc.weight" in outer:
        proj = (outer["fc.weight"], _need(outer, "fc.bias", "cfc_from_ncps"))
    return cfc_params_from_linear(mode, activation, n_in, backbone, heads, w_tau, A, proj)


def ltc_from_ncps(state_dict: Mapping[str, Any], *, ode_unfolds: int = 6, epsilon: float = 1e-8,
                  implicit_param_constraints: bool = True) -> LTCParams:
    """:class:`LTCParams` from an ncps ``LTC`` / ``LTCCell`` state dict (FullyConnected or any
    wiring: the masks in the state dict are applied).

    ``implicit_param_constraints`` must match the model: ncps' ``LTC`` wrapper uses True
    (softplus on gleak, cm, w, sensory_w), a bare ``LTCCell`` defaults to False.

    Raises
    ------
    KeyError
        A required key is missing (the message lists the keys found).
    """
    cell, _ = _cell_dict(state_dict, "ltc_from_ncps")
    for key in _LTC_REQUIRED:
        _need(cell, key, "ltc_from_ncps")
    return ltc_params_from_raw(cell, ode_unfolds=ode_unfolds, epsilon=epsilon,
                               implicit_param_constraints=implicit_param_constraints)


def lif_from_snntorch(beta: Any, threshold: Any = 1.0, reset_mechanism: str = "subtract",
                      units: int | None = None) -> LIFParams:
    """:class:`LIFParams` from snnTorch ``Leaky(beta, threshold, reset_mechanism)``.

    Like ``torch.as_tensor``, beta and threshold are rounded to float32 (0.9 -> 0.89999998);
    beta is clamped to [0, 1] as ``Leaky`` does at use.  Scalars are broadcast to ``units``
    (required when both are scalars); per-neuron arrays must have ``units`` entries.
    """
    if reset_mechanism not in RESET_MECHANISMS:
        raise ValueError(f"lif_from_snntorch: reset_mechanism must be one of {RESET_MECHANISMS}, "
                         f"got {reset_mechanism!r}")
    b = to_numpy(beta).astype(np.float32).reshape(-1)
    th = to_numpy(threshold).astype(np.float32).reshape(-1)
    sizes = {a.size for a in (b, th) if a.size != 1}
    if units is None:
        if not sizes:
            raise ValueError("lif_from_snntorch: beta and threshold are scalars; pass units=")
        units = sizes.pop()
    if sizes - {units} or units < 1:
        raise ValueError(f"lif_from_snntorch: beta has {b.size} and threshold {th.size} entries; "
                         f"expected 1 or units={units}")
    if not (np.all(np.isfinite(b)) and np.all(np.isfinite(th))):
        raise ValueError("lif_from_snntorch: beta and threshold must be finite")
    b = np.clip(b, np.float32(0), np.float32(1))
    return LIFParams(beta=np.broadcast_to(b, (units,)).copy(), threshold=np.broadcast_to(th, (units,)).copy(),
                     reset_mechanism=reset_mechanism)
