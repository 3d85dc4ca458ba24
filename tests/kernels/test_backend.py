"""get_backend: names, the no-silent-fallback rule, and the batch-parallel NumPy backend."""

from __future__ import annotations

import numpy as np
import pytest

from kernels import BackendError, cuda_probe, get_backend
from kernels.cfc import CfC
from kernels.ltc import LTC
from kernels.numpy_backend import NumpyBackend

HAS_GPU, WHY = cuda_probe()


def test_unknown_backend_names_the_choices():
    with pytest.raises(BackendError, match=r"unknown backend 'tpu'.*'auto'.*'numpy'.*'cupy'"):
        get_backend("tpu")


@pytest.mark.skipif(HAS_GPU, reason="a GPU is visible: 'cupy' is available here")
def test_cupy_without_gpu_raises_clear_error():
    with pytest.raises(BackendError) as info:
        get_backend("cupy")
    msg = str(info.value)
    assert "cupy" in msg and "'numpy'" in msg and WHY in msg


@pytest.mark.skipif(HAS_GPU, reason="a GPU is visible: 'auto' picks cupy")
def test_auto_picks_numpy_and_says_why():
    b = get_backend("auto")
    assert b.name == "numpy" and b.xp is np
    assert b.reason.startswith("auto:") and WHY in b.reason


def test_numpy_requested():
    b = get_backend("numpy", threads=2)
    assert (b.name, b.reason, b.threads) == ("numpy", "requested", 2)


@pytest.mark.parametrize("threads", [0, -1, 1.5])
def test_numpy_threads_validated(threads):
    with pytest.raises(ValueError, match="threads"):
        NumpyBackend(threads=threads)


def test_threaded_scans_equal_single_threaded():
    """Splitting the batch over threads gives the same result (up to BLAS blocking order)."""
    rng = np.random.default_rng(3)
    one, two = NumpyBackend(threads=1), NumpyBackend(threads=2)
    x = rng.standard_normal((7, 5, 9)).astype(np.float32)
    ts = rng.uniform(0.2, 2.0, (7, 5)).astype(np.float32)
    for layer_cls, kw in ((CfC, {"backbone_units": 12}), (LTC, {})):
        a, b = layer_cls.init(9, 6, backend=one, **kw), layer_cls.init(9, 6, backend=two, **kw)
        (y1, s1), (y2, s2) = a.forward(x, timespans=ts), b.forward(x, timespans=ts)
        np.testing.assert_allclose(y1, y2, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(s1[0], s2[0], rtol=1e-6, atol=1e-7)
