"""The state record of the fusion network (``kernels.network``) between time blocks.

The state of a recording is everything the network remembers: the encoders' reference
levels (camera log intensity per pixel, IMU per channel), the liquid layer's hidden
state and the LIF membranes (:class:`FusionState`).  ``state_to_arrays`` flattens it
into named host arrays (the pipeline stores them in zarr between blocks),
``state_from_arrays`` checks and restores it, and ``reset_rows`` zeroes the rows of
recordings that start again.  :class:`NetworkOutput` is what a forward returns beside it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from kernels.params import EncoderState, LIFState


class FusionState(NamedTuple):
    """Carried between time blocks; ``liquid``/``lif`` are None when the layer is absent."""

    camera: EncoderState  # ref, primed (B, H*W)
    imu: EncoderState  # ref, primed (B, 6)
    liquid: Any  # CfCState(h (B, hidden)) | LTCState(v (B, hidden)) | None
    lif: LIFState | None  # mem (B, lif_units)


class NetworkOutput(NamedTuple):
    y: Any  # (B, T, n_outputs) readout
    spike_counts: Any  # (B, T) int64: LIF spikes per step, summed over units (0 without LIF)
    event_counts: Any  # (B, T) int64: camera + IMU input events per step
    features: Any = None  # (B, T, n_readout) the readout's inputs [h, s] (forward(features=True))


def _state_items(state: FusionState) -> dict[str, Any]:
    items = {
        "camera.ref": state.camera.ref,
        "camera.primed": state.camera.primed,
        "imu.ref": state.imu.ref,
        "imu.primed": state.imu.primed,
    }
    if state.liquid is not None:
        items[f"liquid.{state.liquid._fields[0]}"] = state.liquid[0]
    if state.lif is not None:
        items["lif.mem"] = state.lif.mem
    return items


def state_to_arrays(state: FusionState, backend: Any) -> dict[str, np.ndarray]:
    """Named host arrays: camera.ref/primed, imu.ref/primed, liquid.h|v, lif.mem."""
    return {k: backend.to_numpy(v) for k, v in _state_items(state).items()}


def state_from_arrays(arrays: dict[str, Any], template: FusionState, backend: Any) -> FusionState:
    """Inverse of :func:`state_to_arrays`; ``template`` (a zero state of any batch size)
    fixes the expected names, widths and dtypes."""
    want = _state_items(template)
    missing, extra = set(want) - set(arrays), set(arrays) - set(want)
    if missing or extra:
        raise KeyError(f"state_from_arrays: missing {sorted(missing)}, unexpected {sorted(extra)}")
    batch = np.shape(arrays["camera.ref"])[0]
    out = {}
    for key, ref in want.items():
        a = np.asarray(arrays[key])
        shape = (batch,) + tuple(ref.shape[1:])
        if a.shape != shape or a.dtype != ref.dtype:
            raise ValueError(f"state_from_arrays: {key} must be {shape} {ref.dtype}, got {a.shape} {a.dtype}")
        out[key] = backend.asarray(a, dtype=ref.dtype)
    liquid = None
    if template.liquid is not None:
        liquid = type(template.liquid)(out[f"liquid.{template.liquid._fields[0]}"])
    return FusionState(
        camera=EncoderState(out["camera.ref"], out["camera.primed"]),
        imu=EncoderState(out["imu.ref"], out["imu.primed"]),
        liquid=liquid,
        lif=None if template.lif is None else LIFState(out["lif.mem"]),
    )


def reset_rows(state: FusionState, mask: Any, backend: Any) -> FusionState:
    """Zero state for the rows where ``mask`` (B,) bool is True; others unchanged."""
    xp = backend.xp
    mask = backend.asarray(mask, dtype=bool)
    if mask.shape != (state.camera.ref.shape[0],):
        raise ValueError(f"reset_rows: mask must be ({state.camera.ref.shape[0]},) bool, got {mask.shape}")

    def zero(a: Any) -> Any:
        return xp.where(mask[:, None], xp.zeros((), dtype=a.dtype), a)

    def enc(e: EncoderState) -> EncoderState:
        return EncoderState(zero(e.ref), zero(e.primed))

    liquid = None if state.liquid is None else type(state.liquid)(zero(state.liquid[0]))
    lif = None if state.lif is None else LIFState(zero(state.lif.mem))
    return FusionState(enc(state.camera), enc(state.imu), liquid, lif)
