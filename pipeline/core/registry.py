"""Trained weights in MLflow's model registry: register a run's weights file, and resolve
``models:/<name>/<version>``, ``models:/<name>/latest`` or ``models:/<name>@<alias>`` to a
local file every worker can load.

MLflow 3's ``register_model`` wants a logged MLflow model; a weights file is not one, so a
model version is created directly from the run's artifact (``runs:/<run>/weights/<file>``),
and the alias ``current`` moves to the newest version (``latest`` is reserved by MLflow).
"""

from __future__ import annotations

import re
from pathlib import Path

ALIAS = "current"
_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:/(?P<version>\d+|latest)|@(?P<alias>[\w-]+))$")


class RegistryError(ValueError):
    """A ``models:/`` URI that does not resolve (the message names it and why)."""


def register(tracking_uri: str, name: str, run_id: str, artifact_path: str) -> str:
    """Register ``runs:/<run_id>/<artifact_path>`` as a new version of ``name``; returns the version."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    try:
        client.create_registered_model(name, description="neuroliquid weights files (kernels.weights)")
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
            raise
    mv = client.create_model_version(name, source=f"runs:/{run_id}/{artifact_path}", run_id=run_id)
    client.set_registered_model_alias(name, ALIAS, mv.version)
    return str(mv.version)


def is_model_uri(value: str | None) -> bool:
    return bool(value) and str(value).startswith("models:/")


def resolve(uri: str, tracking_uri: str, dest: Path) -> Path:
    """Download the weights file ``uri`` names into ``dest/<name>/<version>/``; returns its path."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    m = _URI.fullmatch(uri)
    if not m:
        raise RegistryError(f"model.weights={uri}: expected models:/<name>/<version>, models:/<name>/latest "
                            "or models:/<name>@<alias>")
    client = MlflowClient(tracking_uri)
    name = m["name"]
    try:
        if m["alias"]:
            mv = client.get_model_version_by_alias(name, m["alias"])
        elif m["version"] == "latest":
            versions = client.search_model_versions(f"name='{name}'")
            if not versions:
                raise RegistryError(f"model.weights={uri}: the registered model {name!r} has no versions")
            mv = max(versions, key=lambda v: int(v.version))
        else:
            mv = client.get_model_version(name, m["version"])
    except MlflowException as exc:
        raise RegistryError(f"model.weights={uri}: not in the registry at {tracking_uri} ({exc.message})") from None
    target = Path(dest) / name / str(mv.version)
    target.mkdir(parents=True, exist_ok=True)
    path = Path(mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=str(target),
                                                    tracking_uri=tracking_uri))
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".npz", ".safetensors"))
        if len(files) != 1:
            raise RegistryError(f"model.weights={uri}: {mv.source} holds {len(files)} weights files, expected one")
        path = files[0]
    return path
