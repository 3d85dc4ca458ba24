"""What the CuPy loader compiles: kernel sources, entry-point names and options.

Kept apart from :mod:`kernels.cupy_backend` so ``scripts/check_cuda.py`` (and the
compile tests) check exactly what the loader uses -- the same source text, the same
kernel names, the same option sets -- on machines without CuPy or a GPU.

Each ``.cu`` in ``kernels/cuda`` includes ``common.cuh``; :func:`source` inlines the
header, so NVRTC gets one self-contained translation unit and CuPy's on-disk kernel
cache (keyed by source text and options, not by included files) sees header edits.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

CUDA_DIR = Path(__file__).parent / "cuda"
HEADER = "common.cuh"
_INCLUDE_LINE = f'#include "{HEADER}"'

#: Upper bound of threads per block; also the ``__launch_bounds__`` of every kernel.
MAX_THREADS = 256

#: Options for every compile.  Never ``--use_fast_math``: parity is 1e-5 / 1e-10.
OPTIONS: tuple[str, ...] = ("--std=c++17", f"-DNL_MAX_THREADS={MAX_THREADS}")

#: Samples per block compiled for the recurrent scans (the ``NL_SPB`` knob).
SPB_VARIANTS: tuple[int, ...] = (1, 4)

#: Per file: variant name -> extra ``-D`` options.  The loader compiles every one.
DEFINE_VARIANTS: dict[str, dict[str, tuple[str, ...]]] = {
    "cfc.cu": {f"spb{s}": (f"-DNL_SPB={s}",) for s in SPB_VARIANTS},
    "ltc.cu": {f"spb{s}": (f"-DNL_SPB={s}",) for s in SPB_VARIANTS},
    "lif.cu": {"default": ()},
    "encoders.cu": {"default": ()},
    "synapse.cu": {"default": ()},
}

#: NumPy dtype name -> kernel-name suffix.
DTYPE_SUFFIX: dict[str, str] = {"float32": "_f32", "float64": "_f64"}

#: Per file: kernel base names; the loader asks for ``base + DTYPE_SUFFIX[dtype]``.
KERNEL_BASES: dict[str, tuple[str, ...]] = {
    "cfc.cu": ("cfc_scan",),
    "ltc.cu": ("ltc_scan",),
    "lif.cu": ("lif_scan",),
    "encoders.cu": ("delta_scan",),
    "synapse.cu": ("event_matmul",),
}

#: Per file and dtype: every kernel name the loader asks for.
KERNELS: dict[str, dict[str, tuple[str, ...]]] = {
    f: {dt: tuple(b + sfx for b in bases) for dt, sfx in DTYPE_SUFFIX.items()}
    for f, bases in KERNEL_BASES.items()
}

# Integer codes passed to the kernels; must match the enums in the .cu files.
CFC_MODE_CODES = {"default": 0, "pure": 1, "no_gate": 2}
ACTIVATION_CODES = {"lecun_tanh": 0, "tanh": 1, "relu": 2, "silu": 3, "gelu": 4}
RESET_CODES = {"subtract": 0, "zero": 1, "none": 2}


@cache
def source(filename: str) -> str:
    """The compilable text of ``kernels/cuda/<filename>`` with ``common.cuh`` inlined.

    Raises
    ------
    FileNotFoundError
        The file is not part of the package.
    ValueError
        The file does not include the header exactly once.
    """
    text = (CUDA_DIR / filename).read_text()
    if text.count(_INCLUDE_LINE) != 1:
        raise ValueError(f"{filename} must contain the line {_INCLUDE_LINE!r} exactly once")
    header = (CUDA_DIR / HEADER).read_text()
    return text.replace(_INCLUDE_LINE, f'// ---- begin {HEADER} ----\n{header}\n// ---- end {HEADER} ----')


def compile_units() -> list[tuple[str, str, tuple[str, ...]]]:
    """Every (file, variant, options) the loader compiles, in a stable order."""
    return [
        (f, v, OPTIONS + extra)
        for f in sorted(DEFINE_VARIANTS)
        for v, extra in DEFINE_VARIANTS[f].items()
    ]
