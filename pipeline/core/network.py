"""From ``conf/model`` to a :class:`kernels.network.FusionNetwork` and its weights file.

The run's weights always live in a file that every worker loads itself (the worker
plugin), so they are never shipped with tasks: either the user's ``model.weights`` or,
for a seeded init, ``<output_dir>/<run>.weights.npz`` written once by the driver.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import ModelConfig

# model.kind -> (liquid layer, spiking layer) of kernels.fusion_config.FusionConfig
VARIANTS: dict[str, tuple[str | None, bool]] = {
    "fusion": ("cfc", True),
    "cfc": ("cfc", False),
    "ltc": ("ltc", False),
    "lif": (None, True),
}


@dataclass(frozen=True)
class Geometry:
    """What the store fixes about the network's inputs."""

    camera: tuple[int, int]
    beams: int
    imu_per_step: int

    @classmethod
    def of_store(cls, reader, imu_window: int) -> Geometry:
        s = reader.sizes
        return cls((int(s["y"]), int(s["x"])), int(s["beam"]), int(imu_window))


def fusion_config(model: ModelConfig, geometry: Geometry):
    """The one place a ``ModelConfig`` becomes a frozen ``kernels`` FusionConfig."""
    from kernels.fusion_config import FusionConfig

    liquid, spiking = VARIANTS[model.kind]
    return FusionConfig(
        liquid=liquid, spiking=spiking, hidden=model.hidden, lif_units=model.lif_units,
        camera=geometry.camera, beams=geometry.beams, imu_per_step=geometry.imu_per_step,
        cfc_mode=model.mode, activation=model.activation, backbone_units=model.backbone_units,
        backbone_layers=model.backbone_layers, ode_unfolds=model.ode_unfolds, beta=model.beta,
        threshold=model.threshold, reset=model.reset_mechanism, seed=model.seed, dtype=model.dtype,
    )


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def prepare_weights(model: ModelConfig, geometry: Geometry, out_file: Path):
    """Return ``(weights_path, network on NumPy)`` for this run.

    A user file is loaded and checked against the store's geometry; otherwise the seeded
    init is written to ``out_file`` (unchanged if it already holds the same weights, so a
    resumed run keeps its fingerprint).
    """
    from kernels import get_backend
    from kernels.network import FusionNetwork

    backend = get_backend("numpy")
    if model.weights:
        net = FusionNetwork.load(model.weights, backend)
        c = net.config
        if (tuple(c.camera), c.beams, c.imu_per_step) != (geometry.camera, geometry.beams, geometry.imu_per_step):
            raise ValueError(
                f"model.weights={model.weights} was built for camera {tuple(c.camera)}, {c.beams} beams, "
                f"{c.imu_per_step} IMU samples per step; the store has camera {geometry.camera}, "
                f"{geometry.beams} beams and data.imu_window={geometry.imu_per_step}"
            )
        return Path(model.weights), net
    net = FusionNetwork.init(fusion_config(model, geometry), backend)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    if not out_file.exists():
        net.save(out_file)
    return out_file, FusionNetwork.load(out_file, backend)
