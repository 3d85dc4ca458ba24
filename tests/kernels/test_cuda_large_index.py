"""The LIF and delta grid-stride kernels past 2^31 lanes (batch x units), where the old
``int`` lane index overflowed: the first and last rows against the NumPy oracle.  Needs
a GPU with ~40 GB free (an H100/H200 class board); run by scripts/gpu_check.sh
(``pytest -m gpu tests/kernels``)."""

from __future__ import annotations

import numpy as np
import pytest

from kernels.backend import cuda_probe, get_backend
from kernels.params import LIFParams

_OK, _WHY = cuda_probe()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _OK, reason=f"no CuPy GPU: {_WHY}")]

H = 1024
B = 2**21 + 1  # B * H = 2^31 + 1024 lanes
NEED_BYTES = 4 * B * H * 4 + 2**30  # cur, mem0, spk, mem in float32, plus slack


def _free_bytes() -> int:
    import cupy as cp

    mem_info = getattr(cp.cuda.runtime, "memGetInfo", None)  # absent on the CUDA emulator
    return mem_info()[0] if mem_info is not None else 0


def test_lif_scan_past_2_31_lanes_matches_numpy_at_both_ends():
    import cupy as cp

    if _free_bytes() < NEED_BYTES:
        pytest.skip(f"needs {NEED_BYTES / 1e9:.0f} GB free on the GPU, has {_free_bytes() / 1e9:.0f}")
    gpu, ref = get_backend("cupy"), get_backend("numpy")
    rng = np.random.default_rng(0)
    p = LIFParams(rng.uniform(0.5, 0.95, H).astype(np.float32), rng.uniform(0.5, 1.5, H).astype(np.float32))
    cp.random.seed(0)
    cur = cp.random.standard_normal((B, 1, H), dtype=cp.float32)
    mem0 = cp.random.standard_normal((B, H), dtype=cp.float32)
    spk, mem = gpu.lif_scan(cur, mem0, p)
    cp.cuda.Device().synchronize()
    for rows in (slice(0, 2), slice(B - 2, B)):
        want_spk, want_mem = ref.lif_scan(cp.asnumpy(cur[rows]), cp.asnumpy(mem0[rows]), p)
        np.testing.assert_allclose(cp.asnumpy(mem[rows]), want_mem, atol=1e-5)
        np.testing.assert_array_equal(cp.asnumpy(spk[rows]), want_spk)
    # every lane was written: the last lane's membrane is no longer the uninitialised buffer
    assert bool(cp.isfinite(mem[-1, 0, -1]))
    del cur, mem0, spk, mem
    cp.get_default_memory_pool().free_all_blocks()
