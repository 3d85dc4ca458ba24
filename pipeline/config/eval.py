"""``conf/eval`` and ``conf/trainer``: how predictions are scored, and how the readout is fitted."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pipeline.config.validation import require

EVAL_SPLITS = ("test", "validation", "train", "all")
TRAINER_KINDS = ("ridge", "bptt")


@dataclass
class EvalConfig:
    """Splits by recording (seeded, fractions train / validation / test) and the split a
    run scores: ``test`` (the recordings a model trained on this store never saw), or
    ``all`` for a store the model never saw at all."""

    split: str = "test"
    seed: int = 0
    train: float = 0.6
    validation: float = 0.2
    test: float = 0.2
    baselines: bool = True  # mean and raw-input ridge beside every evaluation

    @property
    def fractions(self) -> tuple[float, float, float]:
        return self.train, self.validation, self.test

    def validate(self, prefix: str = "eval") -> None:
        require(self.split in EVAL_SPLITS, f"{prefix}.split", f"must be one of {', '.join(EVAL_SPLITS)}", self.split)
        require(self.seed >= 0, f"{prefix}.seed", "must be >= 0", self.seed)
        for key in ("train", "validation", "test"):
            v = getattr(self, key)
            require(isinstance(v, int | float) and 0 <= v <= 1, f"{prefix}.{key}", "must be a fraction in [0, 1]", v)
        require(abs(sum(self.fractions) - 1.0) < 1e-9, f"{prefix}.train",
                "eval.train + eval.validation + eval.test must be 1", self.fractions)
        require(self.train > 0, f"{prefix}.train", "must be > 0 (a model needs recordings to learn from)",
                self.train)


@dataclass
class TrainerConfig:
    """``ridge``: the readout alone, fitted on Dask from per-region sufficient statistics
    with the penalty chosen from ``lambdas`` on the validation split.  ``bptt``: the whole
    network (liquid, spiking, readout) in PyTorch by truncated backpropagation through time
    over ``tbptt_steps``-step blocks of ``batch_recordings`` recordings, Adam at ``lr``,
    at most ``epochs`` epochs, stopping after ``patience`` epochs without a better
    validation loss; registered in MLflow's model registry as ``register_as``.  ``bptt`` with
    ``pool_camera`` k > 1 / ``pool_lidar`` k > 1 / ``pool_imu``: the first layer reads fixed
    pooled inputs (the mean of each k x k camera block, of each k adjacent LIDAR beams, of
    each IMU channel's delta events over the step), folded into the exported weights."""

    kind: str = "ridge"
    lambdas: list[float] = field(default_factory=lambda: [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0])
    output: str | None = None  # the trained weights file; default <output_dir>/trained/<run>.npz
    epochs: int = 12
    batch_recordings: int = 32
    tbptt_steps: int = 100
    lr: float = 3e-3
    patience: int = 3
    seed: int = 0
    register_as: str | None = None  # bptt: the registered model's name (None: neuroliquid-<model.kind>)
    pool_camera: int = 1  # bptt: camera pixels averaged in k x k blocks (1: none)
    pool_lidar: int = 1  # bptt: LIDAR beams averaged in sectors of k (1: none)
    pool_imu: bool = False  # bptt: IMU delta events averaged over the step's samples per channel

    def validate(self, prefix: str = "trainer") -> None:
        require(self.kind in TRAINER_KINDS, f"{prefix}.kind", f"must be one of {', '.join(TRAINER_KINDS)}",
                self.kind)
        require(len(self.lambdas) > 0 and all(isinstance(v, int | float) and math.isfinite(v) and v > 0
                                              for v in self.lambdas),
                f"{prefix}.lambdas", "must be a non-empty list of penalties > 0", self.lambdas)
        require(self.output is None or str(self.output).endswith((".npz", ".safetensors")), f"{prefix}.output",
                "must be a .npz or .safetensors path", self.output)
        for key in ("epochs", "batch_recordings", "tbptt_steps", "patience", "pool_camera", "pool_lidar"):
            require(isinstance(getattr(self, key), int) and getattr(self, key) >= 1, f"{prefix}.{key}",
                    "must be an integer >= 1", getattr(self, key))
        require(math.isfinite(self.lr) and self.lr > 0, f"{prefix}.lr", "must be a learning rate > 0", self.lr)
        require(self.seed >= 0, f"{prefix}.seed", "must be >= 0", self.seed)
        require(self.register_as is None or bool(str(self.register_as).strip()), f"{prefix}.register_as",
                "must name a registered model, or be null", self.register_as)
        require(isinstance(self.pool_imu, bool), f"{prefix}.pool_imu", "must be true or false", self.pool_imu)
        require(self.kind == "bptt" or not self.pooled, f"{prefix}.kind",
                "input pooling (trainer.pool_*) is for trainer=bptt only", self.kind)

    @property
    def pooled(self) -> bool:
        """Whether ``pool_*`` pool any input."""
        return self.pool_camera > 1 or self.pool_lidar > 1 or self.pool_imu
