"""Configuration, state and weight files of the fusion network (``kernels.network``).

The state of a recording between time blocks is everything the network remembers:
the encoders' reference levels (camera log intensity per pixel, IMU per channel), the
liquid layer's hidden state and the LIF membranes.  ``state_to_arrays`` flattens it
into named host arrays (the pipeline stores them in zarr between blocks) and
``state_from_arrays`` checks and restores it.

Weight files hold named arrays plus the config as JSON metadata, in ``.npz`` (loaded
with ``allow_pickle=False``) or ``.safetensors``, through ``kernels.weights``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from kernels import weights
from kernels.params import ACTIVATIONS, CFC_MODES, RESET_MECHANISMS, EncoderState, LIFState
from kernels.synapse import DEFAULT_EVENT_THRESHOLD

FORMAT = "neuroliquid-fusion/1"
IMU_CHANNELS = 6  # ax ay az (m/s^2), gx gy gz (rad/s)


@dataclass(frozen=True)
class FusionConfig:
    """Shape and hyper-parameters of a fusion network variant.

    ``liquid`` "cfc" | "ltc" | None and ``spiking`` select the variant: the default
    fusion network is CfC + LIF; model=cfc is ``spiking=False``, model=ltc is
    ``liquid="ltc", spiking=False``, model=lif is ``liquid=None``.
    Thresholds: camera in natural-log contrast, IMU per channel in m/s^2 and rad/s.
    """

    liquid: str | None = "cfc"
    spiking: bool = True
    hidden: int = 128
    lif_units: int = 128
    camera: tuple[int, int] = (32, 32)
    beams: int = 360
    imu_per_step: int = 10
    n_outputs: int = 3
    camera_threshold: float = 0.15
    camera_eps: float = 1e-3
    imu_thresholds: tuple[float, ...] = (0.2, 0.2, 0.2, 0.05, 0.05, 0.05)
    lidar_r_min: float = 0.1
    cfc_mode: str = "default"
    activation: str = "lecun_tanh"
    backbone_units: int = 128
    backbone_layers: int = 1
    ode_unfolds: int = 6
    beta: float = 0.9
    threshold: float = 1.0
    reset: str = "subtract"
    event_threshold: float = DEFAULT_EVENT_THRESHOLD
    seed: int = 0
    dtype: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "camera", tuple(int(v) for v in self.camera))
        object.__setattr__(self, "imu_thresholds", tuple(float(v) for v in self.imu_thresholds))
        checks = [
            (self.liquid in ("cfc", "ltc", None), "liquid", "'cfc', 'ltc' or None"),
            (self.liquid is not None or self.spiking, "liquid/spiking", "at least one layer"),
            (self.cfc_mode in CFC_MODES, "cfc_mode", f"one of {CFC_MODES}"),
            (self.activation in ACTIVATIONS, "activation", f"one of {ACTIVATIONS}"),
            (self.reset in RESET_MECHANISMS, "reset", f"one of {RESET_MECHANISMS}"),
            (len(self.imu_thresholds) == IMU_CHANNELS, "imu_thresholds", f"{IMU_CHANNELS} values"),
            (len(self.camera) == 2, "camera", "(height, width)"),
            (self.dtype in ("float32", "float64"), "dtype", "'float32' or 'float64'"),
        ]
        for name in ("hidden", "lif_units", "beams", "imu_per_step", "n_outputs"):
            checks.append((int(getattr(self, name)) >= 1, name, "an int >= 1"))
        for ok, name, want in checks:
            if not ok:
                raise ValueError(f"FusionConfig: {name} must be {want}, got {getattr(self, name.split('/')[0])!r}")

    @property
    def n_camera(self) -> int:
        return self.camera[0] * self.camera[1]

    @property
    def n_imu(self) -> int:
        return self.imu_per_step * IMU_CHANNELS

    @property
    def n_features(self) -> int:
        """Encoded features per step: camera pixels, LIDAR beams, IMU samples x channels."""
        return self.n_camera + self.beams + self.n_imu

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FusionConfig:
        return cls(**json.loads(text))


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


def save_arrays(path: str | Path, arrays: dict[str, np.ndarray], config_json: str) -> None:
    """Write named arrays and the config to ``.npz`` or ``.safetensors`` (by suffix)."""
    weights.save_arrays(path, arrays, {"format": FORMAT, "config": config_json})


def load_arrays(path: str | Path) -> tuple[dict[str, np.ndarray], str]:
    """Read what :func:`save_arrays` wrote: (named arrays, config JSON)."""
    arrays, meta = weights.load_arrays(path)
    if meta.get("format") != FORMAT or "config" not in meta:
        raise ValueError(f"load: {str(path)!r} is not a {FORMAT} file (metadata: {sorted(meta)})")
    return arrays, meta["config"]
