"""From ``conf/model`` to a :class:`kernels.network.FusionNetwork` and its weights file.

The run's weights always live in a file that every worker loads itself (the worker
plugin), so they are never shipped with tasks: either the user's ``model.weights`` or,
for a seeded init, ``<output_dir>/weights/<content digest>.npz``, written by the driver
once the run's checks have passed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
        imu_level=model.imu_level, ltc_sensory=model.ltc_sensory,
    )


def weights_digest(net) -> str:
    """SHA-256 of what the network computes with: its config and every named array (name,
    dtype, shape, bytes).  Independent of the file format and of zip timestamps."""
    h = hashlib.sha256(net.config.to_json().encode())
    for name, a in sorted(net.named_arrays().items()):
        a = np.ascontiguousarray(np.asarray(a))
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class WeightsError(ValueError):
    """A weights file does not hold the weights its name or the run's config says."""


@dataclass
class Weights:
    """The run's network and the file every worker loads it from.

    Seeded weights are content-addressed, ``<weights_dir>/<digest[:16]>.npz``, and written
    only by :meth:`commit` (after every check of the run has passed), so a run name reused
    with another seed or model never picks up a file another config wrote."""

    path: Path
    digest: str
    net: object  # kernels.network.FusionNetwork on NumPy
    pending: bool  # seeded and not yet on disk

    def commit(self) -> Path:
        """Write a pending file (atomically), or verify the one already there; returns the path."""
        from kernels import get_backend
        from kernels.network import FusionNetwork

        if self.pending:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.tmp.npz")
                self.net.save(tmp)
                os.replace(tmp, self.path)
            self.pending = False
        loaded = FusionNetwork.load(self.path, get_backend("numpy"))
        if weights_digest(loaded) != self.digest:
            raise WeightsError(f"{self.path} does not hold the weights this run expects (content digest "
                               f"{weights_digest(loaded)[:16]}, expected {self.digest[:16]}): it was changed "
                               "after it was written; delete it to have it written again")
        self.net = loaded
        return self.path


def prepare_weights(model: ModelConfig, geometry: Geometry, weights_dir: Path) -> Weights:
    """The run's :class:`Weights`; nothing is written here.

    A user file (``model.weights``) is loaded and checked against the store's geometry;
    otherwise the seeded init is built in memory, named by its content digest under
    ``weights_dir`` and written by :meth:`Weights.commit`.
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
        return Weights(Path(model.weights), weights_digest(net), net, pending=False)
    net = FusionNetwork.init(fusion_config(model, geometry), backend)
    digest = weights_digest(net)
    return Weights(Path(weights_dir) / f"{digest[:16]}.npz", digest, net, pending=True)
