"""Pickle-free weight files (ncps#36: users need weights, not pickles).

Two kinds of file share one writer and reader (:func:`save_arrays`, :func:`load_arrays`):

* parameter records (:func:`save_params` / :func:`load_params`, format
  ``neuroliquid-params/1``): one CfC, LTC or LIF layer;
* fusion network files (:func:`save_network` / :func:`load_network`, format
  ``neuroliquid-fusion/2``): the named arrays of ``kernels.network.FusionNetwork`` with
  its ``FusionConfig`` as JSON.  Version 2 added the IMU level channel (six more input
  rows in the first layer); a version 1 file is refused with :class:`WeightsFormatError`.

The format is chosen by the file suffix:

* ``.npz``  -- ``numpy.savez``; read back with ``allow_pickle=False``.  Metadata is one
  JSON string stored as the 0-d unicode array ``__metadata__``.
* ``.safetensors`` -- ``safetensors.numpy``; metadata in the safetensors header.

Arrays are stored under explicit names (``w_x``, ``backbone.0.w``, ``sensory_mu`` ...), in
their own dtype, so a file written from a float32 model loads as float32.  Parameter
metadata holds the family (``cfc``, ``ltc``, ``lif``) and the non-array fields (mode,
activation, ode_unfolds, epsilon, reset_mechanism).
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from kernels.params import CfCParams, LIFParams, LTCParams

FORMAT = "neuroliquid-params/1"
NETWORK_FORMAT = "neuroliquid-fusion/2"
_OLD_NETWORK_FORMATS = {
    "neuroliquid-fusion/1": "its network has no IMU level channel (six input rows fewer in the first layer)",
}
_META_KEY = "__metadata__"
_FAMILIES = {"cfc": CfCParams, "ltc": LTCParams, "lif": LIFParams}
_SCALARS = {"mode", "activation", "reset_mechanism", "ode_unfolds", "epsilon"}


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".safetensors"):
        raise ValueError(f"weights file {str(path)!r}: unknown suffix {suffix!r}; use '.npz' or '.safetensors'")
    return suffix


def save_arrays(path: str | Path, arrays: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> Path:
    """Write named arrays (and string metadata) to ``path`` (.npz or .safetensors)."""
    path = Path(path)
    suffix = _suffix(path)
    metadata = {str(k): str(v) for k, v in (metadata or {}).items()}
    arrays = {k: np.ascontiguousarray(np.asarray(v)) for k, v in arrays.items()}
    if _META_KEY in arrays:
        raise ValueError(f"save_arrays: {_META_KEY!r} is a reserved name")
    if suffix == ".npz":
        with open(path, "wb") as fh:  # an open file keeps numpy from appending ".npz" twice
            np.savez(fh, **arrays, **{_META_KEY: np.array(json.dumps(metadata))})
    else:
        from safetensors.numpy import save_file  # noqa: PLC0415  (product dependency, loaded on use)

        save_file(arrays, str(path), metadata=metadata)
    return path


def load_arrays(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read ``(arrays, metadata)`` written by :func:`save_arrays` (no pickle is ever loaded)."""
    path = Path(path)
    suffix = _suffix(path)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop(_META_KEY))) if _META_KEY in arrays else {}
        return arrays, meta
    from safetensors import safe_open  # noqa: PLC0415

    with safe_open(str(path), framework="np") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata() or {})



def save_network(path: str | Path, arrays: dict[str, np.ndarray], config_json: str,
                 info: dict | None = None) -> None:
    """Write a fusion network's named arrays and its config JSON (by suffix, as above);
    ``info`` (JSON-serialisable: how the weights were trained, on which split) rides along."""
    meta = {"format": NETWORK_FORMAT, "config": config_json}
    if info:
        meta["info"] = json.dumps(info, sort_keys=True)
    save_arrays(path, arrays, meta)


def network_info(path: str | Path) -> dict:
    """The ``info`` a network file was saved with ({} when none: e.g. seeded, untrained)."""
    _, meta = load_arrays(path)
    return json.loads(meta["info"]) if "info" in meta else {}


class WeightsFormatError(ValueError):
    """A fusion network file written in an older format version than this code reads."""


def load_network(path: str | Path) -> tuple[dict[str, np.ndarray], str]:
    """Read what :func:`save_network` wrote: (named arrays, config JSON).

    Raises :class:`WeightsFormatError` for an older format version (naming the file, both
    versions and what changed), ValueError for a file that is not a network file."""
    arrays, meta = load_arrays(path)
    old = meta.get("format")
    if old in _OLD_NETWORK_FORMATS:
        raise WeightsFormatError(
            f"weights file {str(path)!r} has format {old}; this neuroliquid reads {NETWORK_FORMAT}: "
            f"{_OLD_NETWORK_FORMATS[old]}. Train it again (neuroliquid task=train trainer=bptt) or use a "
            f"neuroliquid release that writes {old}")
    if meta.get("format") != NETWORK_FORMAT or "config" not in meta:
        raise ValueError(f"load: {str(path)!r} is not a {NETWORK_FORMAT} file (metadata: {sorted(meta)})")
    return arrays, meta["config"]

def _flatten(params: Any) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    family = next((name for name, cls in _FAMILIES.items() if isinstance(params, cls)), None)
    if family is None:
        raise TypeError(f"save_params: expected CfCParams, LTCParams or LIFParams, got {type(params).__name__}")
    arrays, meta = {}, {"format": FORMAT, "family": family}
    for f in fields(params):
        value = getattr(params, f.name)
        if f.name in _SCALARS:
            meta[f.name] = json.dumps(value)
        elif f.name == "backbone":
            meta["backbone_layers"] = json.dumps(len(value))
            for k, (w, b) in enumerate(value):
                arrays[f"backbone.{k}.w"], arrays[f"backbone.{k}.b"] = w, b
        elif value is not None:
            arrays[f.name] = np.asarray(value)
    return arrays, meta


def save_params(path: str | Path, params: CfCParams | LTCParams | LIFParams) -> Path:
    """Save a parameter record with its family and settings; the suffix picks the format."""
    arrays, meta = _flatten(params)
    return save_arrays(path, arrays, meta)


def load_params(path: str | Path) -> CfCParams | LTCParams | LIFParams:
    """Load a record saved by :func:`save_params`.

    Raises
    ------
    ValueError
        Unknown suffix, or a file that is not a neuroliquid parameter file.
    KeyError
        A required array or metadata entry is missing (the message lists what was found).
    """
    arrays, meta = load_arrays(path)
    family = meta.get("family")
    if meta.get("format") != FORMAT or family not in _FAMILIES:
        raise ValueError(f"{str(path)!r} is not a {FORMAT} file (metadata: {meta})")

    def need(key: str, store: dict) -> Any:
        if key not in store:
            raise KeyError(f"{str(path)!r}: {family} parameters need {key!r}; found {sorted(store)}")
        return store[key]

    cls, kwargs = _FAMILIES[family], {}
    for f in fields(cls):
        if f.name in _SCALARS:
            kwargs[f.name] = json.loads(need(f.name, meta))
        elif f.name == "backbone":
            n = json.loads(need("backbone_layers", meta))
            kwargs[f.name] = tuple((need(f"backbone.{k}.w", arrays), need(f"backbone.{k}.b", arrays)) for k in range(n))
        elif f.name in arrays:
            kwargs[f.name] = arrays[f.name]
        elif family == "cfc" and f.name not in ("w_x", "b_x", "w_h"):
            kwargs[f.name] = None  # optional arrays (heads, pure mode, projection) are absent when None
        else:
            need(f.name, arrays)
    if family == "cfc" and kwargs["mode"] == "pure":
        need("w_tau", arrays), need("A", arrays)
    return cls(**kwargs)
