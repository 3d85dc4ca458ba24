"""``conf/backend`` and ``conf/model``: which array backend runs which network."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.config.validation import require


@dataclass
class BackendConfig:
    """``auto`` picks CuPy when it imports and a GPU is visible, else NumPy, and says why."""

    name: str = "auto"  # auto | numpy | cupy
    threads: int = 1  # NumPy threads per worker; the pool, not BLAS, uses the cores

    def validate(self) -> None:
        require(self.name in ("auto", "numpy", "cupy"), "backend.name", "must be auto, numpy or cupy", self.name)
        require(self.threads >= 1, "backend.threads", "must be >= 1", self.threads)
        require(self.name != "cupy" or self.threads == 1, "backend.threads",
                 "sets NumPy's threads per worker and does not apply to backend=cupy (leave it at 1)", self.threads)


@dataclass
class ModelConfig:
    """The network (DESIGN.md): encoders -> liquid layer -> LIF -> readout.

    ``kind``: fusion (CfC + LIF), cfc, ltc (LTC + LIF-free), lif (spiking only).
    ``weights``: a .npz / .safetensors file to load instead of the seeded init, or a
    registered model: ``models:/<name>/<version>``, ``models:/<name>/latest``, ``models:/<name>@<alias>``.
    """

    kind: str = "fusion"  # fusion | cfc | ltc | lif
    hidden: int = 128
    lif_units: int = 128
    backbone_units: int = 128
    backbone_layers: int = 1
    mode: str = "default"  # CfC: default | pure | no_gate
    activation: str = "lecun_tanh"
    ode_unfolds: int = 6
    ltc_sensory: int | None = None  # ltc: a learned Linear(features, ltc_sensory) in front of the LTC; null: none
    beta: float = 0.9
    threshold: float = 1.0
    reset_mechanism: str = "subtract"
    seed: int = 0
    weights: str | None = None
    dtype: str = "float32"
    imu_level: bool = True  # the IMU level channel beside the delta events (docs/kernels.md, "Encoders")

    def validate(self) -> None:
        require(self.kind in ("fusion", "cfc", "ltc", "lif"), "model.kind", "must be fusion, cfc, ltc or lif", self.kind)
        for key in ("hidden", "lif_units", "backbone_units", "ode_unfolds"):
            require(getattr(self, key) > 0, f"model.{key}", "must be > 0", getattr(self, key))
        require(self.ltc_sensory is None or (self.kind == "ltc" and self.ltc_sensory >= 1), "model.ltc_sensory",
                 "must be null, or an int >= 1 with model.kind=ltc (the LTC's sensory inputs)", self.ltc_sensory)
        require(self.backbone_layers >= 0, "model.backbone_layers", "must be >= 0", self.backbone_layers)
        require(self.mode in ("default", "pure", "no_gate"), "model.mode", "must be default, pure or no_gate", self.mode)
        require(self.activation in ("lecun_tanh", "tanh", "relu", "silu", "gelu"), "model.activation",
                 "must be lecun_tanh, tanh, relu, silu or gelu", self.activation)
        require(0.0 <= self.beta <= 1.0, "model.beta", "must be in [0, 1]", self.beta)
        require(self.threshold > 0, "model.threshold", "must be > 0", self.threshold)
        require(self.reset_mechanism in ("subtract", "zero", "none"), "model.reset_mechanism",
                 "must be subtract, zero or none", self.reset_mechanism)
        require(self.dtype in ("float32", "float64"), "model.dtype", "must be float32 or float64", self.dtype)
        require(isinstance(self.imu_level, bool), "model.imu_level", "must be true or false", self.imu_level)
        if self.weights and str(self.weights).startswith("models:/"):
            pass  # a registered model: resolved against tracking.uri when the run starts
        elif self.weights:
            p = Path(self.weights).expanduser().resolve()
            require(p.suffix in (".npz", ".safetensors"), "model.weights", "must be a .npz or .safetensors file", self.weights)
            require(p.is_file(), "model.weights", "file not found", str(p))
            self.weights = str(p)
