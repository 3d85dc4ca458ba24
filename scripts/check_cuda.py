#!/usr/bin/env python3
"""Compile every kernels/cuda/*.cu without a GPU, the way the CuPy loader does.

Two compilers, because they disagree in practice:

1. ``nvcc -std=c++17 -cubin`` for sm_80 and sm_90, with the full ptxas pass
   (catches register spills and launch-bound violations NVRTC's PTX would hide);
2. NVRTC -- the compiler CuPy uses at run time -- loaded with ctypes from the
   ``nvidia-cuda-nvrtc`` wheel (or the system CUDA), fed exactly the source text
   (``kernels.cuda_sources.source``) and option sets (``OPTIONS`` + ``DEFINE_VARIANTS``)
   the loader uses, for compute_80 and compute_90; every kernel name the loader asks
   for (``KERNELS``) must appear as an ``.entry`` in the PTX.

Usage: ``python scripts/check_cuda.py [--only nvcc|nvrtc]``.  Exits 1 with the
compiler log on the first failure, 2 when a compiler is missing.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kernels.cuda_sources import (  # noqa: E402  (after the path tweak)
    CUDA_DIR,
    DEFINE_VARIANTS,
    KERNELS,
    compile_units,
    source,
)

ARCHS = (80, 90)


class CompileError(RuntimeError):
    """A kernel source failed to compile or lacks a kernel the loader asks for."""


class CompilerMissing(RuntimeError):
    """nvcc or libnvrtc is not installed here."""


def expected_kernels(filename: str) -> list[str]:
    return [k for names in KERNELS[filename].values() for k in names]


def _check_entries(ptx: str, filename: str, what: str) -> None:
    entries = set(re.findall(r"\.entry\s+([A-Za-z_]\w*)", ptx))
    missing = [k for k in expected_kernels(filename) if k not in entries]
    if missing:
        raise CompileError(f"{what}: kernels {missing} not found (PTX has {sorted(entries)})")


# --------------------------------------------------------------------------- nvcc
def find_nvcc() -> str:
    nvcc = shutil.which("nvcc") or next(
        (p for p in ("/usr/local/cuda/bin/nvcc",) if os.access(p, os.X_OK)), None
    )
    if nvcc is None:
        raise CompilerMissing("nvcc not found on PATH or in /usr/local/cuda/bin")
    return nvcc


def nvcc_compile(filename: str, arch: int, defines: tuple[str, ...] = ()) -> str:
    """Compile one file to cubin (and PTX for the name check) with nvcc; return warnings."""
    nvcc = find_nvcc()
    with tempfile.TemporaryDirectory() as tmp:
        src = CUDA_DIR / filename
        base = [nvcc, "-std=c++17", f"-arch=sm_{arch}", "-Werror", "all-warnings",
                "-Xptxas", "-warn-spills", *defines, str(src)]
        for kind in ("-ptx", "-cubin"):
            out = Path(tmp) / f"out{kind}"
            proc = subprocess.run([*base, kind, "-o", str(out)], capture_output=True, text=True,
                                  timeout=300)
            if proc.returncode != 0:
                raise CompileError(f"nvcc {kind} sm_{arch} {filename} {' '.join(defines)} failed:\n"
                                   f"{proc.stdout}{proc.stderr}")
            if kind == "-ptx":
                _check_entries(out.read_text(), filename, f"nvcc sm_{arch} {filename}")
        return proc.stderr


# -------------------------------------------------------------------------- NVRTC
def find_nvrtc() -> Path:
    """libnvrtc.so from the nvidia-cuda-nvrtc wheel, else from a CUDA toolkit."""
    roots = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *sys.path}
    patterns = [f"{r}/nvidia/*/lib/libnvrtc.so*" for r in roots if r]
    patterns += [f"{r}/nvidia/cuda_nvrtc/lib/libnvrtc.so*" for r in roots if r]
    patterns += ["/usr/local/cuda/lib64/libnvrtc.so*", "/usr/local/cuda/targets/*/lib/libnvrtc.so*"]
    for pat in patterns:
        hits = sorted(p for p in glob.glob(pat) if "builtins" not in p and "alt" not in p)
        if hits:
            return Path(hits[0])
    raise CompilerMissing("libnvrtc.so not found (pip install nvidia-cuda-nvrtc, or a CUDA toolkit)")


class Nvrtc:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or find_nvrtc()
        self.lib = ctypes.CDLL(str(self.path))
        self.lib.nvrtcGetErrorString.restype = ctypes.c_char_p

    def version(self) -> tuple[int, int]:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._ok(self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        return major.value, minor.value

    def _ok(self, rc: int, what: str, log: str = "") -> None:
        if rc != 0:
            msg = self.lib.nvrtcGetErrorString(rc).decode()
            raise CompileError(f"{what}: {msg}\n{log}")

    def compile(self, code: str, name: str, options: tuple[str, ...]) -> tuple[str, str]:
        """Compile ``code`` to PTX; return (ptx, log).  Raises CompileError with the log."""
        prog = ctypes.c_void_p()
        self._ok(self.lib.nvrtcCreateProgram(ctypes.byref(prog), code.encode(), name.encode(),
                                             0, None, None), "nvrtcCreateProgram")
        try:
            opts = (ctypes.c_char_p * len(options))(*(o.encode() for o in options))
            rc = self.lib.nvrtcCompileProgram(prog, len(options), opts)
            size = ctypes.c_size_t()
            self.lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            buf = ctypes.create_string_buffer(size.value)
            self.lib.nvrtcGetProgramLog(prog, buf)
            log = buf.value.decode(errors="replace")
            self._ok(rc, f"NVRTC {name} {' '.join(options)}", log)
            self._ok(self.lib.nvrtcGetPTXSize(prog, ctypes.byref(size)), "nvrtcGetPTXSize")
            ptx = ctypes.create_string_buffer(size.value)
            self._ok(self.lib.nvrtcGetPTX(prog, ptx), "nvrtcGetPTX")
            return ptx.value.decode(), log
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(prog))


def nvrtc_compile(nvrtc: Nvrtc, filename: str, options: tuple[str, ...], arch: int) -> str:
    """Compile one loader unit through NVRTC; check kernel names; return the log."""
    full = (*options, f"--gpu-architecture=compute_{arch}")
    ptx, log = nvrtc.compile(source(filename), filename, full)
    _check_entries(ptx, filename, f"NVRTC compute_{arch} {filename} {' '.join(options)}")
    if "warning" in log:
        raise CompileError(f"NVRTC compute_{arch} {filename} {' '.join(options)} warned:\n{log}")
    return log


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("nvcc", "nvrtc"))
    args = ap.parse_args(argv)
    on_disk = sorted(p.name for p in CUDA_DIR.glob("*.cu"))
    if on_disk != sorted(DEFINE_VARIANTS):
        print(f"kernels/cuda has {on_disk}, the loader compiles {sorted(DEFINE_VARIANTS)}",
              file=sys.stderr)
        return 1
    try:
        if args.only in (None, "nvcc"):
            for filename, variant, options in compile_units():
                defines = tuple(o for o in options if o.startswith("-D"))
                for arch in ARCHS:
                    nvcc_compile(filename, arch, defines)
                    print(f"ok  nvcc  sm_{arch}       {filename:12s} {variant}")
        if args.only in (None, "nvrtc"):
            nvrtc = Nvrtc()
            print(f"NVRTC {'.'.join(map(str, nvrtc.version()))} from {nvrtc.path}")
            for filename, variant, options in compile_units():
                for arch in ARCHS:
                    nvrtc_compile(nvrtc, filename, options, arch)
                    print(f"ok  nvrtc compute_{arch} {filename:12s} {variant}")
    except CompilerMissing as exc:
        print(f"missing compiler: {exc}", file=sys.stderr)
        return 2
    except CompileError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
