"""Entry point of the Hydra app ``neuroliquid``: ``neuroliquid task=<name> [overrides]``.

Thin on purpose (Dask workers re-import it): compose the config, convert it to the
typed dataclasses once, validate it (paths become absolute), and call the task.
Tasks are named ``"module:function"`` and imported only when chosen; ``task=run`` is the
batch application, or the load test under ``load=seed_phases`` (``experiment=seed_load``).
"""

from __future__ import annotations

import importlib

import hydra
from omegaconf import DictConfig, OmegaConf

from pipeline.config import PROJECT_ROOT, Config

TASKS: dict[str, str] = {
    "run": "pipeline.batch.run:run",
    "train": "pipeline.train.run:run",
    "generate": "pipeline.data.cli:generate",
    "check": "pipeline.data.cli:check",
}
# task=run with a load kind other than batch runs that application instead.
LOAD_TASKS: dict[str, str] = {"seed_phases": "pipeline.loadtest.run:run"}


def task_target(cfg: Config) -> str:
    """The ``"module:function"`` that runs ``cfg``."""
    if cfg.task == "run" and cfg.load.kind in LOAD_TASKS:
        return LOAD_TASKS[cfg.load.kind]
    return TASKS[cfg.task]


def run_task(cfg: Config):
    """Validate ``cfg`` and run its task; returns what the task returns."""
    cfg.validate(TASKS)
    module, func = task_target(cfg).split(":")
    return getattr(importlib.import_module(module), func)(cfg)


@hydra.main(version_base="1.3", config_path=str(PROJECT_ROOT / "conf"), config_name="config")
def main(dcfg: DictConfig) -> None:
    """Hydra entry: ``DictConfig`` -> :class:`pipeline.config.Config` -> task."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    cfg = OmegaConf.to_object(dcfg)
    assert isinstance(cfg, Config)
    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN and not cfg.tracking.parent_run_id:
        from pipeline.core.sweep import read_parent_run_id

        cfg.tracking.parent_run_id = read_parent_run_id(hc.sweep.dir)
    run_task(cfg)


if __name__ == "__main__":
    main()
