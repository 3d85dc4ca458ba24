"""Typed configuration: dataclass schemas registered with Hydra's ConfigStore.

Each schema is stored under the same group name as its ``conf/`` folder, and each YAML
file there starts with ``defaults: [<schema>]``.  ``__main__`` turns the composed
config into these dataclasses once (``OmegaConf.to_object``), calls :meth:`Config.validate`
(which also makes every path absolute), and nothing below it sees a ``DictConfig``.
One module per idea: ``data`` (paths, data), ``model`` (backend, model), ``cluster``
(cluster, scaling), ``load`` (load, slo), ``tracking`` (tracking, energy), ``eval`` (eval,
trainer); every schema is
re-exported here, so ``from pipeline.config import DataConfig`` is the import to use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from pipeline.config.cluster import SCALING_KINDS, ClusterConfig, ScalingConfig
from pipeline.config.data import DataConfig, MaxAgeConfig, PathsConfig, StoreLayout, SyntheticConfig
from pipeline.config.eval import EVAL_SPLITS, EvalConfig, TrainerConfig
from pipeline.config.importer import ImportConfig, ImportTopics, add_keyword_field
from pipeline.config.load import LOAD_KINDS, LoadConfig, LoadPhase, SloConfig
from pipeline.config.model import BackendConfig, ModelConfig
from pipeline.config.tracking import EnergyConfig, TrackingConfig
from pipeline.config.validation import ConfigError, no_unknown_keys, require

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# ${project_root:} in YAML: the checkout's absolute root, whatever the working directory.
if not OmegaConf.has_resolver("project_root"):
    OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))

__all__ = [
    "EVAL_SPLITS", "LOAD_KINDS", "PROJECT_ROOT", "SCALING_KINDS", "BackendConfig", "ClusterConfig", "Config",
    "ConfigError", "DataConfig", "EnergyConfig", "EvalConfig", "LoadConfig", "LoadPhase", "MaxAgeConfig",
    "ModelConfig", "PathsConfig", "ScalingConfig", "SloConfig", "StoreLayout", "SyntheticConfig",
    "TrackingConfig", "TrainerConfig", "register_configs", "ImportConfig", "ImportTopics",
]


@dataclass
class Config:
    """The whole app.  ``task`` picks a function from ``pipeline.__main__.TASKS``.

    ``resume``: the run name of an interrupted ``task=run`` to finish (its output store
    must have been written with the same config, weights and input store).
    """

    task: str = "run"
    resume: str | None = None
    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    load: LoadConfig = field(default_factory=LoadConfig)
    slo: SloConfig = field(default_factory=SloConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def validate(self, tasks) -> Config:
        no_unknown_keys(self)
        require(self.task in tasks, "task", f"must be one of {', '.join(sorted(tasks))}", self.task)
        self.paths.validate()
        self.data.validate()
        for group in (self.backend, self.model, self.cluster, self.scaling, self.load, self.slo,
                      self.energy, self.tracking, self.eval, self.trainer):
            group.validate()
        require(not (self.cluster.kind == "address" and self.scaling.kind != "fixed"), "scaling.kind",
                 "adaptive and predictive scaling need a cluster the client can resize; with "
                 "cluster=address the deployment owns the pool (use scaling=fixed)", self.scaling.kind)
        require(self.resume is None or bool(str(self.resume).strip()), "resume", "must name a run", self.resume)
        require(not (self.trainer.pooled and self.model.kind == "ltc" and not self.model.ltc_sensory),
                "model.ltc_sensory", "trainer.pool_* fold into a linear first layer (CfC, LTC's input "
                "projection, LIF synapse), not into LTC's per-input synapses: set model.ltc_sensory or "
                "trainer.pool_camera=1 trainer.pool_lidar=1 trainer.pool_imu=false", self.model.ltc_sensory)
        self.importer.validate(required=self.task == "import")
        return self


add_keyword_field(Config, "import", ImportConfig, alias="importer")  # the `import` group (a Python keyword)


def register_configs() -> None:
    """Store the schemas under their group names (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for group, node in (("paths", PathsConfig), ("data", DataConfig), ("backend", BackendConfig),
                        ("model", ModelConfig), ("cluster", ClusterConfig), ("scaling", ScalingConfig),
                        ("load", LoadConfig), ("slo", SloConfig), ("energy", EnergyConfig),
                        ("tracking", TrackingConfig), ("eval", EvalConfig), ("trainer", TrainerConfig),
                        ("import", ImportConfig)):
        cs.store(group=group, name=f"{group}_schema", node=node)


register_configs()
