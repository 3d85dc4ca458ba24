"""Shared fixtures.  ``backend`` runs a test on NumPy and, where a GPU exists, on CuPy."""

from __future__ import annotations

import pytest

from kernels.backend import cuda_probe, get_backend

# The CUDA emulator (a fake ``cupy`` package and C++ sources) is not a test folder;
# tests/kernels/test_cuda_emulated.py runs it in a subprocess.
collect_ignore = ["cuda_emulator"]

_HAS_GPU, _GPU_WHY = cuda_probe()

BACKENDS = [pytest.param("numpy", id="numpy")]
if _HAS_GPU:
    BACKENDS.append(pytest.param("cupy", id="cupy", marks=pytest.mark.gpu))


@pytest.fixture(params=BACKENDS, scope="session")
def backend(request):
    """A ready Backend: always NumPy; CuPy too (marked ``gpu``) when a device is visible."""
    return get_backend(request.param)
