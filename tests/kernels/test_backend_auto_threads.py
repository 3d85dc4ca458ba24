"""``backend=auto`` honours ``backend.threads`` when it picks NumPy and says so when it
picks CuPy (issue 13: auto dropped it silently); ``backend=cupy`` with threads is refused."""

from __future__ import annotations

import pytest

from kernels.backend import cuda_probe, get_backend


def test_auto_passes_threads_on():
    b = get_backend("auto", threads=2)
    if cuda_probe()[0]:
        assert b.name == "cupy" and "threads=2 not used by cupy" in b.reason
    else:
        assert b.name == "numpy" and "2 thread" in b.device


def test_cupy_with_threads_is_a_config_error():
    from pipeline.config import ConfigError
    from pipeline.config.model import BackendConfig

    with pytest.raises(ConfigError, match="backend.threads=4: sets NumPy's threads"):
        BackendConfig(name="cupy", threads=4).validate()
