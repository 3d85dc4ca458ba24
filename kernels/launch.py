"""Launch geometry for the CUDA kernels: grid, block and dynamic shared memory.

Pure functions of (problem shape, :class:`DeviceAttrs`), so they are unit-tested
without a GPU; :mod:`kernels.cupy_backend` fills ``DeviceAttrs`` from the device
once and calls these per launch.  The shared-memory layouts mirror the comments at
the top of each ``kernels/cuda/*.cu`` file.

Policy, in short:

* recurrent scans (CfC, LTC): one block per ``spb`` samples, threads over units
  (a warp multiple, at most ``MAX_THREADS``); ``spb`` > 1 only when the batch still
  fills every SM with blocks, since it trades parallelism for weight reuse;
* weights are staged in shared memory only when everything fits the default 48 KiB
  per-block window -- a larger, opt-in allocation would cap residency at one block
  per SM, which costs more than the L2 reads it saves;
* elementwise scans (LIF, delta): one thread per (sample, unit), grid-stride;
* event_matmul: one block per spike row and column tile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kernels.cuda_sources import MAX_THREADS, SPB_VARIANTS

_INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class DeviceAttrs:
    """The device attributes launch geometry depends on (CUDA defaults for an sm_80+)."""

    name: str = "unknown"
    max_threads_per_block: int = 1024
    smem_per_block: int = 48 * 1024  # without opt-in
    smem_per_block_optin: int = 48 * 1024  # with cudaFuncAttributeMaxDynamicSharedMemorySize
    sm_count: int = 1
    warp_size: int = 32

    @classmethod
    def from_attributes(cls, name: str, attrs: Mapping[str, Any]) -> DeviceAttrs:
        """Build from ``cupy.cuda.Device(i).attributes`` (CUDA attribute names, no prefix)."""
        smem = int(attrs.get("MaxSharedMemoryPerBlock", cls.smem_per_block))
        return cls(
            name=name,
            max_threads_per_block=int(attrs.get("MaxThreadsPerBlock", cls.max_threads_per_block)),
            smem_per_block=smem,
            smem_per_block_optin=max(smem, int(attrs.get("MaxSharedMemoryPerBlockOptin", smem))),
            sm_count=int(attrs.get("MultiProcessorCount", cls.sm_count)),
            warp_size=int(attrs.get("WarpSize", cls.warp_size)),
        )


@dataclass(frozen=True)
class LaunchConfig:
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    smem_bytes: int = 0
    spb: int = 1  # samples per block (selects the NL_SPB compile variant)
    stage_w: bool = False  # weights copied into shared memory


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def threads_for(width: int, dev: DeviceAttrs) -> int:
    """Threads per block for ``width`` columns: a warp multiple, capped by the device."""
    cap = min(MAX_THREADS, dev.max_threads_per_block)
    cap -= cap % dev.warp_size
    return max(dev.warp_size, min(cap, _ceil_div(max(width, 1), dev.warp_size) * dev.warp_size))


def choose_spb(batch: int, dev: DeviceAttrs, variants: tuple[int, ...] = SPB_VARIANTS) -> int:
    """Largest samples-per-block variant that still gives every SM a block."""
    for spb in sorted(variants, reverse=True):
        if spb == 1 or _ceil_div(batch, spb) >= dev.sm_count:
            return spb
    return 1


def _scan_config(batch: int, threads: int, itemsize: int, base_elems, weight_elems: int,
                 dev: DeviceAttrs, what: str) -> LaunchConfig:
    """Pick spb and staging for a recurrent scan given its shared-memory needs."""
    if batch < 1:
        raise ValueError(f"{what}: batch must be >= 1, got {batch}")
    first = choose_spb(batch, dev)
    for spb in dict.fromkeys((first, 1)):  # preferred variant, then the leanest
        base = base_elems(spb) * itemsize
        if base > dev.smem_per_block_optin:
            continue
        stage = base + weight_elems * itemsize <= dev.smem_per_block
        smem = base + (weight_elems * itemsize if stage else 0)
        return LaunchConfig((_ceil_div(batch, spb), 1, 1), (threads, 1, 1), smem, spb, stage)
    raise ValueError(
        f"{what}: needs {base_elems(1) * itemsize} bytes of shared memory per block even with "
        f"one sample per block; {dev.name} allows {dev.smem_per_block_optin}"
    )


def cfc_smem_elems(spb: int, units: int, z1: int, layers: int) -> int:
    """Shared memory (elements) of cfc.cu without staged weights: h twice, z twice."""
    return 2 * spb * units + (2 * spb * z1 if layers > 0 else 0)


def cfc_weight_elems(units: int, z1: int, layers: int, n_heads: int) -> int:
    """Elements cfc.cu stages when stage_w: w_h, backbone layers 2..L, heads."""
    n = units * z1
    if layers > 0:
        n += (layers - 1) * (z1 * z1 + z1) + z1 * n_heads * units + n_heads * units
    return n


def cfc_launch(batch: int, units: int, z1: int, layers: int, n_heads: int, itemsize: int,
               dev: DeviceAttrs) -> LaunchConfig:
    """Launch of ``cfc_scan``: z1 is the first-stage width (U, or n_heads*H without backbone)."""
    threads = threads_for(max(units, z1 if layers > 0 else 0), dev)
    return _scan_config(
        batch, threads, itemsize, lambda spb: cfc_smem_elems(spb, units, z1, layers),
        cfc_weight_elems(units, z1, layers, n_heads), dev, "cfc_scan",
    )


def ltc_smem_elems(spb: int, n_in: int, units: int) -> int:
    """Shared memory (elements) of ltc.cu without staged weights: v twice, x row, num/den."""
    return spb * (4 * units + n_in)


def ltc_launch(batch: int, n_in: int, units: int, itemsize: int, dev: DeviceAttrs) -> LaunchConfig:
    """Launch of ``ltc_scan``; stages the four (N, N) recurrent synapse arrays when they fit."""
    return _scan_config(
        batch, threads_for(units, dev), itemsize, lambda spb: ltc_smem_elems(spb, n_in, units),
        4 * units * units, dev, "ltc_scan",
    )


# The grid-stride loops of lif.cu and encoders.cu index lanes with a signed 64-bit integer.
GRID_STRIDE_INDEX_MAX = 2**63 - 1


def grid_stride_fits(n: int, grid: int, threads: int, index_max: int = GRID_STRIDE_INDEX_MAX) -> bool:
    """Whether a grid-stride loop over ``n`` lanes never overflows its index: the largest
    value it computes is the last lane below ``n`` plus one stride, ``n - 1 + grid * threads``
    (an ``int`` index, ``index_max = 2**31 - 1``, overflowed for n near 2^31 minus the grid)."""
    return n - 1 + grid * threads <= index_max


def elementwise_launch(n: int, dev: DeviceAttrs, blocks_per_sm: int = 32,
                       index_max: int = GRID_STRIDE_INDEX_MAX) -> LaunchConfig:
    """Grid-stride launch over ``n`` independent (sample, unit) time loops (LIF, delta).

    The kernels take batch and units as ``int`` (each < 2^31, checked where they are
    passed) and index lanes in 64 bits, so ``n = batch * units`` may exceed 2^31; the
    launch is refused when ``n - 1 + grid * threads`` would overflow ``index_max``."""
    if n < 1:
        raise ValueError(f"elementwise scan over {n} lanes: need batch*units >= 1")
    threads = threads_for(min(n, _INT32_MAX), dev)
    grid = max(1, min(_ceil_div(n, threads), dev.sm_count * blocks_per_sm))
    if grid * threads > _INT32_MAX:  # the kernels keep the stride and the first lane in int
        raise ValueError(f"elementwise scan: grid {grid} x {threads} threads exceeds 2**31 - 1")
    if not grid_stride_fits(n, grid, threads, index_max):
        raise ValueError(f"elementwise scan over {n} lanes: the grid-stride index reaches "
                         f"{n - 1 + grid * threads} > {index_max} (grid {grid} x {threads} threads)")
    return LaunchConfig((grid, 1, 1), (threads, 1, 1), 0)


def event_matmul_launch(rows: int, n_out: int, dev: DeviceAttrs) -> LaunchConfig:
    """Launch of ``event_matmul``: block per (row, column tile); two int scan buffers in shared memory."""
    if rows < 1 or n_out < 1:
        raise ValueError(f"event_matmul: rows and outputs must be >= 1, got {rows}, {n_out}")
    threads = threads_for(n_out, dev)
    tiles = _ceil_div(n_out, threads)
    if rows > _INT32_MAX or tiles > 65535:
        raise ValueError(f"event_matmul: grid ({rows}, {tiles}) exceeds CUDA limits")
    return LaunchConfig((rows, tiles, 1), (threads, 1, 1), 2 * 4 * threads)
