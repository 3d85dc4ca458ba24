"""Import a peer library (torch, ncps, snntorch) for a parity test, or skip -- but never
skip in CI: with ``CI=true`` a missing peer is a failure, so parity cannot silently vanish."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require(module_name: str) -> ModuleType:
    """Return the imported module; skip the test if it is missing (fail when ``CI=true``)."""
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        msg = f"{module_name} is needed for this parity test (pip install -e '.[compare]'): {exc}"
        if in_ci():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)


def require_format(suffix: str) -> None:
    """Weights in ``.safetensors`` need the safetensors package: a product dependency,
    but absent on a bare GPU box (numpy + cupy + pytest), where those cases skip."""
    if suffix == ".safetensors":
        require("safetensors")
