"""Micro-batch sizing: at least two recording groups per worker, in whole input chunks."""

from __future__ import annotations

import pytest

from pipeline.batch.run import size_groups


@pytest.mark.parametrize(("rpb", "chunk", "recordings", "workers", "expected"), [
    (64, 32, 256, 2, 64),   # 4 groups for 2 workers: kept
    (64, 32, 64, 2, 32),    # 1 group -> 2 groups of one chunk each (cannot go below a chunk)
    (64, 16, 64, 2, 16),    # 1 group -> 4 groups
    (128, 32, 256, 4, 32),  # 8 groups needed
    (32, 32, 16, 2, 32),    # fewer recordings than a chunk: one group, nothing to split
])
def test_groups_per_worker(rpb, chunk, recordings, workers, expected):
    got = size_groups(rpb, chunk, recordings, workers)
    assert got == expected and got % chunk == 0
    groups = -(-recordings // got)
    assert groups >= 2 * workers or got == chunk


def test_misaligned_batches_are_refused():
    with pytest.raises(ValueError, match="multiple of the store's recording chunk"):
        size_groups(100, 32, 256, 2)


def test_default_pool_is_one_worker_per_gpu_or_per_core(monkeypatch):
    import os
    import sys
    import types

    import kernels.backend
    from pipeline.core.cluster import default_workers

    monkeypatch.setattr(kernels.backend, "cuda_probe", lambda: (False, "no GPU"))
    assert default_workers("auto") == default_workers("numpy") == (os.cpu_count() or 1)
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 3)))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(kernels.backend, "cuda_probe", lambda: (True, "3 GPUs"))
    assert default_workers("auto") == default_workers("cupy") == 3  # never a CUDA context per core
    assert default_workers("numpy") == (os.cpu_count() or 1)
