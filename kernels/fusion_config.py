"""``FusionConfig``: the frozen shape and hyper-parameters of the fusion network.

One immutable record per network variant (``kernels.network.FusionNetwork``): it is
checked on construction, and round-trips through JSON (the metadata of the network's
weight files, see ``kernels.weights.save_network``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from kernels.params import ACTIVATIONS, CFC_MODES, RESET_MECHANISMS
from kernels.synapse import DEFAULT_EVENT_THRESHOLD

IMU_CHANNELS = 6  # ax ay az (m/s^2), gx gy gz (rad/s)


@dataclass(frozen=True)
class FusionConfig:
    """Shape and hyper-parameters of a fusion network variant.

    ``liquid`` "cfc" | "ltc" | None and ``spiking`` select the variant: the default
    fusion network is CfC + LIF; model=cfc is ``spiking=False``, model=ltc is
    ``liquid="ltc", spiking=False``, model=lif is ``liquid=None``.
    Thresholds: camera in natural-log contrast, IMU per channel in m/s^2 and rad/s.
    ``imu_level`` adds each step's mean IMU reading, scaled by ``imu_level_scale``, as six
    dense inputs (``kernels.imu_level``: what the delta events drop).
    ``ltc_sensory`` (LTC only): a learned linear projection of the F features to this many
    LTC sensory inputs; None (the default, and files written before it) feeds the features.
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
    imu_level: bool = True  # the IMU level channel (kernels.imu_level) beside the delta events
    imu_level_scale: tuple[float, ...] = (0.1, 0.1, 0.1, 1.0, 1.0, 1.0)  # per m/s^2, per rad/s
    lidar_r_min: float = 0.1
    cfc_mode: str = "default"
    activation: str = "lecun_tanh"
    backbone_units: int = 128
    backbone_layers: int = 1
    ode_unfolds: int = 6
    ltc_sensory: int | None = None
    beta: float = 0.9
    threshold: float = 1.0
    reset: str = "subtract"
    event_threshold: float = DEFAULT_EVENT_THRESHOLD
    seed: int = 0
    dtype: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "camera", tuple(int(v) for v in self.camera))
        object.__setattr__(self, "imu_thresholds", tuple(float(v) for v in self.imu_thresholds))
        object.__setattr__(self, "imu_level_scale", tuple(float(v) for v in self.imu_level_scale))
        checks = [
            (self.liquid in ("cfc", "ltc", None), "liquid", "'cfc', 'ltc' or None"),
            (self.liquid is not None or self.spiking, "liquid/spiking", "at least one layer"),
            (self.cfc_mode in CFC_MODES, "cfc_mode", f"one of {CFC_MODES}"),
            (self.activation in ACTIVATIONS, "activation", f"one of {ACTIVATIONS}"),
            (self.reset in RESET_MECHANISMS, "reset", f"one of {RESET_MECHANISMS}"),
            (len(self.imu_thresholds) == IMU_CHANNELS, "imu_thresholds", f"{IMU_CHANNELS} values"),
            (isinstance(self.imu_level, bool), "imu_level", "True or False"),
            (len(self.imu_level_scale) == IMU_CHANNELS and all(map(math.isfinite, self.imu_level_scale)),
             "imu_level_scale", f"{IMU_CHANNELS} finite values"),
            (len(self.camera) == 2, "camera", "(height, width)"),
            (self.dtype in ("float32", "float64"), "dtype", "'float32' or 'float64'"),
            (self.ltc_sensory is None or (isinstance(self.ltc_sensory, int) and not isinstance(self.ltc_sensory, bool)
                                          and self.ltc_sensory >= 1 and self.liquid == "ltc"),
             "ltc_sensory", "None, or an int >= 1 with liquid='ltc'"),
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
    def n_level(self) -> int:
        """IMU level inputs per step: one per channel with ``imu_level``, else none."""
        return IMU_CHANNELS if self.imu_level else 0

    @property
    def n_features(self) -> int:
        """Encoded features per step: camera pixels, LIDAR beams, IMU samples x channels,
        then the IMU level channels (in this order, the rows of the first layer's input weight)."""
        return self.n_camera + self.beams + self.n_imu + self.n_level

    def to_json(self) -> str:
        """Sorted JSON; ``ltc_sensory`` only when set, so a config without it reads as before."""
        d = dataclasses.asdict(self)
        if d["ltc_sensory"] is None:
            del d["ltc_sensory"]
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FusionConfig:
        return cls(**json.loads(text))
