"""The CUDA sources compile -- with nvcc (sm_80, sm_90) and with NVRTC, CuPy's run-time
compiler, using exactly the loader's source text, options and kernel names -- and the
launch geometry in kernels/launch.py is right.  Needs no GPU.

Without nvcc or libnvrtc the compile tests skip, except under ``CI=true``, where a
missing compiler is a failure (CI must install the nvidia-cuda-nvrtc wheel / nvcc).
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest

from kernels import cuda_sources as cs
from kernels import launch

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("check_cuda", ROOT / "scripts" / "check_cuda.py")
check_cuda = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_cuda)

IN_CI = os.environ.get("CI", "").lower() == "true"


def _missing(why: str):
    if IN_CI:
        pytest.fail(f"CI=true but {why}: install nvcc / the nvidia-cuda-nvrtc wheel")
    pytest.skip(why)


@pytest.fixture(scope="module")
def nvrtc():
    try:
        return check_cuda.Nvrtc()
    except (check_cuda.CompilerMissing, OSError) as exc:
        _missing(str(exc))


@pytest.fixture(scope="module")
def nvcc():
    try:
        return check_cuda.find_nvcc()
    except check_cuda.CompilerMissing as exc:
        _missing(str(exc))


UNITS = cs.compile_units()
UNIT_IDS = [f"{f}-{v}" for f, v, _ in UNITS]


# ----------------------------------------------------------------------------- sources
def test_every_cu_file_is_loaded():
    on_disk = sorted(p.name for p in cs.CUDA_DIR.glob("*.cu"))
    assert on_disk == sorted(cs.DEFINE_VARIANTS) == sorted(cs.KERNEL_BASES)


def test_options_never_fast_math():
    for _, _, options in UNITS:
        assert not any("fast" in o for o in options), options
        assert "--std=c++17" in options


@pytest.mark.parametrize("filename", sorted(cs.DEFINE_VARIANTS))
def test_source_is_self_contained(filename):
    text = cs.source(filename)
    assert '#include "common.cuh"' not in text
    assert "#include <" not in text  # no host headers: NVRTC has none
    assert "namespace nl" in text


@pytest.mark.parametrize("filename", sorted(cs.DEFINE_VARIANTS))
def test_header_comment_lists_every_knob(filename):
    raw = (cs.CUDA_DIR / filename).read_text()
    head = raw.split("#include", 1)[0]
    used = set(re.findall(r"#ifndef\s+(NL_\w+)", raw)) | {"NL_MAX_THREADS"}
    for knob in used:
        assert knob in head, f"{filename}: -D knob {knob} missing from the header comment"
    for _, extra in cs.DEFINE_VARIANTS[filename].items():
        for opt in extra:
            assert opt.split("=")[0][2:] in head


@pytest.mark.parametrize("filename", sorted(cs.DEFINE_VARIANTS))
def test_entry_points_per_dtype(filename):
    raw = (cs.CUDA_DIR / filename).read_text()
    for dtype, names in cs.KERNELS[filename].items():
        for name in names:
            assert re.search(rf"\b{name}\b", raw), f"{filename} lacks entry point {name}"
            assert name.endswith(cs.DTYPE_SUFFIX[dtype])
    assert "__launch_bounds__(NL_MAX_THREADS)" in raw


def test_codes_match_the_cuda_enums():
    cfc = (cs.CUDA_DIR / "cfc.cu").read_text()
    for mode, code in cs.CFC_MODE_CODES.items():
        assert f"MODE_{mode.upper()} = {code}" in cfc
    common = (cs.CUDA_DIR / "common.cuh").read_text()
    for act, code in cs.ACTIVATION_CODES.items():
        assert f"ACT_{act.upper()} = {code}" in common
    lif = (cs.CUDA_DIR / "lif.cu").read_text()
    for reset, code in cs.RESET_CODES.items():
        assert f"RESET_{reset.upper()} = {code}" in lif


# ----------------------------------------------------------------------------- NVRTC
@pytest.mark.parametrize("arch", check_cuda.ARCHS)
@pytest.mark.parametrize(("filename", "variant", "options"), UNITS, ids=UNIT_IDS)
def test_nvrtc_compiles_what_the_loader_compiles(nvrtc, filename, variant, options, arch):
    check_cuda.nvrtc_compile(nvrtc, filename, options, arch)


def test_nvrtc_reports_the_compiler_log(nvrtc):
    broken = cs.source("lif.cu").replace("T m = mem0[idx];", "T m = mem0[idx] +;")
    with pytest.raises(check_cuda.CompileError, match="error"):
        nvrtc.compile(broken, "lif.cu", cs.OPTIONS + ("--gpu-architecture=compute_80",))


def test_missing_kernel_name_is_caught(nvrtc):
    ptx, _ = nvrtc.compile(cs.source("lif.cu"), "lif.cu", cs.OPTIONS + ("--gpu-architecture=compute_80",))
    with pytest.raises(check_cuda.CompileError, match="not found"):
        check_cuda._check_entries(ptx.replace("lif_scan_f64", "lif_scan_xx"), "lif.cu", "test")


# ----------------------------------------------------------------------------- nvcc
@pytest.mark.parametrize("arch", check_cuda.ARCHS)
@pytest.mark.parametrize(("filename", "variant", "options"), UNITS, ids=UNIT_IDS)
def test_nvcc_compiles_without_warnings_or_spills(nvcc, filename, variant, options, arch):
    defines = tuple(o for o in options if o.startswith("-D"))
    log = check_cuda.nvcc_compile(filename, arch, defines)
    assert "spill" not in log.lower() and "warning" not in log.lower(), log


# ----------------------------------------------------------------------------- launch.py
H100 = launch.DeviceAttrs("H100", 1024, 48 * 1024, 227 * 1024, 132, 32)


def test_device_attrs_from_cupy_names():
    attrs = {"MaxThreadsPerBlock": 1024, "MaxSharedMemoryPerBlock": 49152,
             "MaxSharedMemoryPerBlockOptin": 232448, "MultiProcessorCount": 132, "WarpSize": 32}
    d = launch.DeviceAttrs.from_attributes("H100", attrs)
    assert (d.sm_count, d.smem_per_block, d.smem_per_block_optin) == (132, 49152, 232448)
    assert launch.DeviceAttrs.from_attributes("x", {}).smem_per_block_optin == 48 * 1024


@pytest.mark.parametrize(("width", "expected"), [(1, 32), (32, 32), (33, 64), (128, 128), (300, 256)])
def test_threads_are_warp_multiples_capped(width, expected):
    assert launch.threads_for(width, H100) == expected
    small = launch.DeviceAttrs(max_threads_per_block=96)
    assert launch.threads_for(width, small) == min(expected, 96)


def test_spb_only_when_the_grid_still_fills_the_device():
    assert launch.choose_spb(256, H100) == 1
    assert launch.choose_spb(4 * 132, H100) == 4
    assert launch.choose_spb(4 * 131, H100) == 1
    assert launch.choose_spb(1, launch.DeviceAttrs(sm_count=1)) == 4


@pytest.mark.parametrize("layers", [0, 1, 3])
@pytest.mark.parametrize("itemsize", [4, 8])
def test_cfc_launch_geometry(layers, itemsize):
    B, H, U, nh = 1000, 16, 48, 4
    z1 = U if layers else nh * H
    cfg = launch.cfc_launch(B, H, z1, layers, nh, itemsize, H100)
    assert cfg.spb == launch.choose_spb(B, H100) == 4  # 250 blocks of 4 still fill 132 SMs
    assert cfg.grid == (-(-B // cfg.spb), 1, 1)
    assert cfg.block == (launch.threads_for(max(H, z1 if layers else 0), H100), 1, 1)
    base = launch.cfc_smem_elems(cfg.spb, H, z1, layers) * itemsize
    weights = launch.cfc_weight_elems(H, z1, layers, nh) * itemsize
    assert cfg.stage_w == (base + weights <= H100.smem_per_block)
    assert cfg.smem_bytes == base + (weights if cfg.stage_w else 0)


def test_cfc_weight_elems_counts_every_staged_array():
    H, U, nh = 5, 7, 4
    assert launch.cfc_weight_elems(H, nh * H, 0, nh) == H * nh * H
    assert launch.cfc_weight_elems(H, U, 2, nh) == H * U + (U * U + U) + U * nh * H + nh * H


def test_big_layers_read_weights_from_global():
    cfg = launch.cfc_launch(256, 128, 128, 1, 4, 4, H100)
    assert not cfg.stage_w and cfg.block == (128, 1, 1) and cfg.smem_bytes == 4 * 4 * 128
    ltc = launch.ltc_launch(256, 1444, 128, 4, H100)
    assert not ltc.stage_w and ltc.smem_bytes == 4 * (4 * 128 + 1444)
    small = launch.ltc_launch(3, 4, 16, 8, H100)
    assert small.stage_w and small.smem_bytes == 8 * (4 * 16 + 4 + 4 * 16 * 16)


def test_scan_falls_back_to_one_sample_then_refuses():
    tiny = launch.DeviceAttrs(smem_per_block=1024, smem_per_block_optin=2048, sm_count=1)
    cfg = launch.ltc_launch(64, 60, 4, 4, tiny)  # spb 4 needs 4*(16+60)*4 = 1216 B: fits 2048
    assert cfg.spb == 4 and cfg.smem_bytes == 1216
    cfg = launch.ltc_launch(64, 120, 4, 4, tiny)  # spb 4 needs 2176 B: falls back to spb 1
    assert cfg.spb == 1 and cfg.grid == (64, 1, 1)
    with pytest.raises(ValueError, match="shared memory"):
        launch.ltc_launch(1, 4000, 4, 4, tiny)


def test_elementwise_and_event_launches():
    cfg = launch.elementwise_launch(10, H100)
    assert cfg.grid == (1, 1, 1) and cfg.block == (32, 1, 1)
    cfg = launch.elementwise_launch(10**8, H100)
    assert cfg.grid == (132 * 32, 1, 1) and cfg.block == (256, 1, 1)
    with pytest.raises(ValueError):
        launch.elementwise_launch(0, H100)
    # Lanes past 2^31: the kernels index them in 64 bits (B and H each still < 2^31).
    cfg = launch.elementwise_launch(2**31 + 5, H100)
    assert cfg.grid == (132 * 32, 1, 1)


def test_grid_stride_index_check():
    """The launcher's overflow check: with the old 32-bit ``int`` index, n just below 2^31
    passed the old ``n <= INT32_MAX`` check, yet idx + stride overflowed on the last
    iteration; the check catches exactly that, and 64 bits clear it."""
    int_max = 2**31 - 1
    grid, threads = 132 * 32, 256
    n = int_max - 100  # the old launcher accepted this
    assert not launch.grid_stride_fits(n, grid, threads, int_max)
    assert launch.grid_stride_fits(int_max - grid * threads + 1, grid, threads, int_max)
    assert not launch.grid_stride_fits(int_max - grid * threads + 2, grid, threads, int_max)
    assert launch.grid_stride_fits(n, grid, threads)  # 64-bit index
    with pytest.raises(ValueError, match="grid-stride index reaches"):
        launch.elementwise_launch(n, H100, index_max=int_max)
    with pytest.raises(ValueError, match="grid-stride index reaches"):
        launch.elementwise_launch(2**63 - 10, H100)


def test_grid_stride_loops_use_a_64_bit_index():
    for name in ("lif.cu", "encoders.cu"):
        src = (Path(__file__).resolve().parents[2] / "kernels" / "cuda" / name).read_text()
        assert "for (long long idx = " in src and "for (int idx" not in src, name
    cfg = launch.event_matmul_launch(7, 300, H100)
    assert cfg.grid == (7, 2, 1) and cfg.block == (256, 1, 1) and cfg.smem_bytes == 2 * 4 * 256
    with pytest.raises(ValueError):
        launch.event_matmul_launch(0, 3, H100)
