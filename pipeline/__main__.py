"""Entry point of the Hydra app ``neuroliquid``: ``neuroliquid task=<name> [overrides]``.

Thin on purpose (Dask workers re-import it): compose the config, convert it to the
typed dataclasses once, validate it (paths become absolute), and call the task.
Tasks are named ``"module:function"`` and imported only when chosen; ``task=run`` is the
batch application, or the load test under ``load=seed_phases`` (``experiment=seed_load``).

``resume=<run>`` restores the interrupted run's own configuration from its output store
(:func:`resume_config`): only what is given on the command line is taken from it.
SIGTERM is handled like Ctrl-C (KeyboardInterrupt: the run stops, says how to resume, and
its MLflow run is marked KILLED), and neither is lost (:mod:`pipeline.core.interrupts`).  A configuration, resume, tracking or connection error
is one line on stderr (exit status 2); ``HYDRA_FULL_ERROR=1`` shows the traceback.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from pipeline.config import PROJECT_ROOT, Config
from pipeline.core import interrupts

TASKS: dict[str, str] = {
    "run": "pipeline.batch.run:run",
    "train": "pipeline.train.run:run",
    "generate": "pipeline.data.cli:generate",
    "check": "pipeline.data.cli:check",
    "import": "pipeline.data.importer.run:run",
}
# task=run with a load kind other than batch runs that application instead.
LOAD_TASKS: dict[str, str] = {"seed_phases": "pipeline.loadtest.run:run"}
# task=train: one function per trainer (ridge is TASKS["train"]).
TRAIN_TASKS: dict[str, str] = {"bptt": "pipeline.train.bptt:run"}


def task_target(cfg: Config) -> str:
    """The ``"module:function"`` that runs ``cfg``."""
    if cfg.task == "run" and cfg.load.kind in LOAD_TASKS:
        return LOAD_TASKS[cfg.load.kind]
    if cfg.task == "train" and cfg.trainer.kind in TRAIN_TASKS:
        return TRAIN_TASKS[cfg.trainer.kind]
    return TASKS[cfg.task]


def run_task(cfg: Config):
    """Validate ``cfg`` and run its task; returns what the task returns."""
    cfg.validate(TASKS)
    module, func = task_target(cfg).split(":")
    return getattr(importlib.import_module(module), func)(cfg)


def _leaves(d, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def explicit_keys(now: dict, defaults: dict, overrides: list[str]) -> set[str]:
    """Config leaves the command line set: those that differ from the defaults, and those
    under a ``key=value`` override (a value given equal to its default still counts)."""
    a, b = _leaves(now), _leaves(defaults)
    keys = {k for k in a if a.get(k) != b.get(k)}
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        keys |= {k for k in a if k == key or k.startswith(key + ".")}
    return keys


def resume_config(cfg: Config, dcfg: DictConfig, defaults: dict, overrides: list[str]) -> Config:
    """The interrupted run's stored config, with what the command line set on top.

    ``dcfg``/``defaults``: the composed config with and without the command line's overrides.
    Returns ``cfg`` unchanged for an output store that holds no config (none at all: the
    task says so; or one written before configs were stored)."""
    from pipeline.batch.outputs import stored_config

    out_dir = Path(cfg.paths.output_dir).expanduser().resolve()
    source = out_dir / f"{cfg.resume}.zarr"
    stored = stored_config(source)
    if stored is None:  # a training run keeps its config beside its checkpoints
        source = out_dir / "checkpoints" / cfg.resume / "config.json"
        stored = json.loads(source.read_text()) if source.is_file() else None
    if stored is None:
        return cfg
    now = OmegaConf.to_container(dcfg, resolve=True)
    explicit = explicit_keys(now, defaults, overrides)
    merged = dcfg.copy()
    OmegaConf.resolve(merged)
    flat_now = _leaves(now)
    for key, value in _leaves(stored).items():
        if key not in explicit and key in flat_now:  # keys this version no longer has: dropped
            OmegaConf.update(merged, key, value, merge=False)
    restored = OmegaConf.to_object(merged)
    assert isinstance(restored, Config)
    restored.resume = cfg.resume
    kept = sorted(k for k in explicit if k != "resume")
    print(f"resume: {cfg.resume} with its own settings from {source}"
          + (f"; from the command line: {', '.join(kept)}" if kept else ""))
    return restored


# Errors a user fixes by changing the command line or the environment: one line each.
def _user_errors() -> tuple[type[BaseException], ...]:
    from pipeline.batch.outputs import ResumeError
    from pipeline.config import ConfigError
    from pipeline.core.cluster import ClusterError
    from pipeline.core.network import WeightsError
    from pipeline.core.tracking import TrackingError

    return ConfigError, ClusterError, ResumeError, TrackingError, WeightsError, FileExistsError


@hydra.main(version_base="1.3", config_path=str(PROJECT_ROOT / "conf"), config_name="config")
def main(dcfg: DictConfig) -> None:
    """Hydra entry: ``DictConfig`` -> :class:`pipeline.config.Config` -> task."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    interrupts.install()
    full = os.environ.get("HYDRA_FULL_ERROR") == "1"
    try:
        cfg = OmegaConf.to_object(dcfg)
        assert isinstance(cfg, Config)
        hc = HydraConfig.get()
        if cfg.resume:
            from hydra import compose

            defaults = compose(config_name="config", overrides=[])
            cfg = resume_config(cfg, dcfg, OmegaConf.to_container(defaults, resolve=True),
                                list(hc.overrides.task))
        if hc.mode == RunMode.MULTIRUN and not cfg.tracking.parent_run_id:
            from pipeline.core.sweep import read_parent_run_id

            cfg.tracking.parent_run_id = read_parent_run_id(hc.sweep.dir)
        run_task(cfg)
    except KeyboardInterrupt:
        interrupts.handled()
        sys.exit(130)  # the task said what was done and how to resume
    except _user_errors() as exc:
        if full:
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"neuroliquid: {msg} (HYDRA_FULL_ERROR=1 for the traceback)", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
