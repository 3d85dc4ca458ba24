"""Fixtures for the pipeline tests: one small synthetic store per session, and tmp
MLflow stores, output folders and validated :class:`pipeline.config.Config` objects.

The store is 32 recordings x 20 s (up to 199 model steps at 10 Hz) chunked by 8
recordings, so ``data.recordings_per_batch=8`` gives 4 recording groups (chains) and
``data.steps_per_block=50`` 4 blocks per chain.  Everything a run writes (outputs,
weights, MLflow database and artifacts, Hydra's own logs) goes under ``tmp_path``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _pipeline_helpers import STORE, base_overrides, compose_config, tracking_uri

from pipeline.config import Config, DataConfig, StoreLayout


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> str:
    """The session's input store (generated once, in-process, ~2 s)."""
    from pipeline.data import generate_store

    path = tmp_path_factory.mktemp("store") / "rec.zarr"
    cfg = DataConfig(path=str(path), recordings=STORE["recordings"], duration_s=STORE["duration_s"],
                     seed=STORE["seed"], workers=1,
                     layout=StoreLayout(chunk_recordings=STORE["chunk_recordings"],
                                        shard_recordings=STORE["chunk_recordings"]))
    cfg.validate()
    generate_store(cfg, progress=False)
    return str(path)


@pytest.fixture(scope="session")
def _empty_mlflow_db(tmp_path_factory) -> Path:
    """An MLflow sqlite store with its tables created (that costs ~2 s; a copy ~0.05 s)."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "empty.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_uri(_empty_mlflow_db, tmp_path) -> str:
    """A fresh MLflow store for this test, at the URI the configs below point to."""
    shutil.copyfile(_empty_mlflow_db, tmp_path / "mlflow.db")
    return tracking_uri(tmp_path)


@pytest.fixture
def make_config(store, tmp_path, mlflow_uri):
    """``make_config(*overrides)``: a validated Config for a small run under ``tmp_path``."""

    def make(*overrides: str, root: Path | None = None) -> Config:
        return compose_config(base_overrides(store, root or tmp_path) + list(overrides))

    return make
