"""A NumPy-backed stand-in for the part of CuPy that ``kernels/cupy_backend.py`` uses.

Only for ``tests/kernels/test_cuda_emulated.py``, which puts this folder first on the
PYTHONPATH of a subprocess; nothing else may import it.  Arrays are NumPy arrays and
the one "device" is the CPU.  ``RawModule`` compiles the CUDA source with g++ against
``cuda_shim.h`` and ``harness.cpp`` (one host thread per CUDA thread, a real barrier
for ``__syncthreads``); a launch runs on guarded copies of its array arguments, so a
kernel that writes outside an argument fails.  What this proves: ../../README.md.

Environment:
    NL_EMU_BUILD_DIR   where compiled objects go (default: a temporary folder,
                       removed at exit)
    NL_EMU_SM_COUNT    the emulated device's multiprocessor count (default 2)
    NL_EMU_LAUNCH_TIMEOUT_S  seconds before a hung launch aborts (default 120)
    CXX                the compiler (default g++; needs C++20 <barrier>)
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import types
from pathlib import Path

import numpy as np


class EmulatorLimit(RuntimeError):
    """A launch the emulator cannot run faithfully (it refuses rather than guess)."""


__version__ = "0.0+emulated"
EMULATED = True  # lets a test tell this module from the real CuPy

ndarray = np.ndarray

_EMU_DIR = Path(__file__).resolve().parents[2]
_SHIM = _EMU_DIR / "cuda_shim.h"
_HARNESS = _EMU_DIR / "harness.cpp"
_CXX = os.environ.get("CXX", "g++")
# No -march: x86-64 baseline has no FMA, and -ffp-contract=off keeps it that way.
_CXXFLAGS = ("-std=c++20", "-O1", "-fPIC", "-pthread", "-ffp-contract=off", "-fno-fast-math")

_GUARD = 64 * 1024  # poisoned bytes on either side of every array argument
_POISON = 0xFF  # NaN as float32/float64, -1 as int
_ENTRY = re.compile(r'extern\s+"C"\s+void\s+(\w+)\s*\(')

_ATTRIBUTES = {
    "MaxThreadsPerBlock": 1024,
    "MaxSharedMemoryPerBlock": 48 * 1024,
    "MaxSharedMemoryPerBlockOptin": 227 * 1024,
    "MultiProcessorCount": int(os.environ.get("NL_EMU_SM_COUNT", "2")),
    "WarpSize": 32,
}


def __getattr__(name: str):
    """Everything not defined here (zeros, stack, float32, ...) is NumPy's."""
    return getattr(np, name)


def empty(shape, dtype=float, order="C") -> np.ndarray:
    """Like ``cupy.empty``, but poisoned (NaN / -1) so an element no kernel wrote shows."""
    a = np.empty(shape, dtype, order)
    a.view(np.uint8)[...] = _POISON
    return a


def asnumpy(a) -> np.ndarray:
    """A copy, as a device-to-host transfer is."""
    return np.array(a, copy=True)


# ----------------------------------------------------------------------------- device
def _check_device(i: int) -> None:
    if i != 0:
        raise RuntimeError(f"cudaErrorInvalidDevice: invalid device ordinal {i} (emulator has 1)")


class Device:
    def __init__(self, device: int = 0) -> None:
        self.id = int(device)

    @property
    def attributes(self) -> dict[str, int]:
        _check_device(self.id)
        return dict(_ATTRIBUTES)

    def synchronize(self) -> None:
        _check_device(self.id)  # launches are synchronous

    def __enter__(self) -> Device:
        _check_device(self.id)
        return self

    def __exit__(self, *exc) -> None:
        return None


def _device_properties(i: int) -> dict:
    _check_device(i)
    return {"name": b"CUDA emulator (host threads)", "major": 9, "minor": 0}


class CompileException(Exception):
    """g++ rejected the source; the text is the compiler log (as NVRTC's is)."""


runtime = types.SimpleNamespace(getDeviceCount=lambda: 1, getDeviceProperties=_device_properties)
compiler = types.SimpleNamespace(CompileException=CompileException)
cuda = types.SimpleNamespace(Device=Device, runtime=runtime, compiler=compiler)


# ----------------------------------------------------------------------------- building
def _build_dir() -> Path:
    global _BUILD_DIR
    if _BUILD_DIR is None:
        given = os.environ.get("NL_EMU_BUILD_DIR")
        if given:
            _BUILD_DIR = Path(given)
            _BUILD_DIR.mkdir(parents=True, exist_ok=True)
        else:
            _BUILD_DIR = Path(tempfile.mkdtemp(prefix="nl_cuda_emu_"))
            atexit.register(shutil.rmtree, _BUILD_DIR, ignore_errors=True)
    return _BUILD_DIR


_BUILD_DIR: Path | None = None
_HARNESS_OBJ: Path | None = None
_LIBS: dict[str, tuple[ctypes.CDLL, frozenset[str]]] = {}


def _cxx(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([_CXX, *_CXXFLAGS, *args], capture_output=True, text=True)
    if r.returncode:
        raise CompileException(f"{_CXX} failed ({r.returncode}):\n{r.stderr[-6000:]}")
    return r


def _harness_obj() -> Path:
    global _HARNESS_OBJ
    if _HARNESS_OBJ is None:
        obj = _build_dir() / "harness.o"
        _cxx("-c", str(_HARNESS), "-o", str(obj))
        _HARNESS_OBJ = obj
    return _HARNESS_OBJ


def _load(code: str, defines: tuple[str, ...]) -> tuple[ctypes.CDLL, frozenset[str]]:
    key = hashlib.sha1("\0".join((code, *defines)).encode()).hexdigest()[:16]
    if key not in _LIBS:
        out = _build_dir()
        src, lib = out / f"{key}.cu", out / f"{key}.so"
        src.write_text(code)
        shim = ("-include", str(_SHIM), *defines)
        # Entry points after macro expansion: `extern "C" __global__ void ... name(`.
        pre = _cxx("-E", "-P", *shim, "-x", "c++", str(src)).stdout
        names = frozenset(_ENTRY.findall(pre))
        src.write_text(code + "\n" + "".join(f"NL_EMU_EXPORT({n})\n" for n in sorted(names)))
        _cxx("-shared", "-Wl,-Bsymbolic", *shim, "-x", "c++", str(src), "-x", "none",
             str(_harness_obj()), "-o", str(lib))
        _LIBS[key] = (ctypes.CDLL(str(lib)), names)
    return _LIBS[key]


class RawModule:
    """``cupy.RawModule(code=..., options=...)``: compiles at construction."""

    def __init__(self, code: str, options: tuple[str, ...] = ()) -> None:
        defines = []
        for o in options:
            if o.startswith("-D"):
                defines.append(o)
            elif not o.startswith(("--std=", "-std=")):  # the emulator always uses C++20
                raise CompileException(f"the CUDA emulator does not know option {o!r}")
        self._lib, self._names = _load(code, tuple(defines))

    def get_function(self, name: str) -> RawKernel:
        if name not in self._names:
            raise RuntimeError(f"CUDA_ERROR_NOT_FOUND: no kernel {name!r} in the module")
        return RawKernel(self._lib, name)


# ----------------------------------------------------------------------------- launching
def _dim3(v) -> tuple[int, int, int]:
    v = (v,) if isinstance(v, int) else tuple(int(x) for x in v)
    return (*v, *(1,) * (3 - len(v)))


class RawKernel:
    """One kernel; ``kern(grid, block, args, shared_mem=n)`` runs it to completion."""

    def __init__(self, lib: ctypes.CDLL, name: str) -> None:
        self.name = name
        self._fn = getattr(lib, f"nl_emu_launch_{name}")
        self._fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_longlong,
                             ctypes.POINTER(ctypes.c_void_p)]
        self._fn.restype = ctypes.c_int
        sig = getattr(lib, f"nl_emu_signature_{name}")
        sig.restype = ctypes.c_char_p
        self._signature = sig().decode()
        self.max_dynamic_shared_size_bytes = 0

    def __call__(self, grid, block, args, *, shared_mem: int = 0) -> None:
        grid, block = _dim3(grid), _dim3(block)
        if grid[2] != 1 or block[1:] != (1, 1):
            raise EmulatorLimit(f"{self.name}: the emulator runs 1-D blocks on a 2-D grid, "
                                      f"got grid {grid} block {block}")
        if block[0] > _ATTRIBUTES["MaxThreadsPerBlock"]:
            raise ValueError(f"{self.name}: block {block} exceeds MaxThreadsPerBlock")
        limit = max(_ATTRIBUTES["MaxSharedMemoryPerBlock"],
                    min(self.max_dynamic_shared_size_bytes, _ATTRIBUTES["MaxSharedMemoryPerBlockOptin"]))
        if shared_mem > limit:
            raise ValueError(f"{self.name}: {shared_mem} B of dynamic shared memory > {limit} B "
                             "(above 48 KiB needs max_dynamic_shared_size_bytes)")
        values, guarded, codes = _marshal(self.name, args)
        if codes != self._signature or "?" in codes:
            raise TypeError(f"{self.name}: arguments {codes!r} do not match the kernel's "
                            f"parameters {self._signature!r} (see nl_emu::type_code)")
        argv = (ctypes.c_void_p * max(len(values), 1))(*(ctypes.addressof(v) for v in values))
        rc = self._fn(grid[0], grid[1], block[0], shared_mem, argv)
        _unmarshal(self.name, guarded)
        if rc:
            raise RuntimeError(f"{self.name}: emulated launch failed ({rc}); see stderr")


_POINTER_CODES = {np.dtype(np.int32): "I", np.dtype(np.float32): "F", np.dtype(np.float64): "D",
                  np.dtype(np.bool_): "B", np.dtype(np.uint8): "B"}
_VALUE_TYPES = {np.int32: ("i", ctypes.c_int32), np.float32: ("f", ctypes.c_float),
                np.float64: ("d", ctypes.c_double)}


def _marshal(name: str, args) -> tuple[list, list, str]:
    """ctypes values for ``args``, arrays as pointers into guarded copies, and the
    arguments' type codes (cuda_shim.h: nl_emu::type_code)."""
    values, guarded, spans, codes = [], [], {}, []
    for i, a in enumerate(args):
        if isinstance(a, np.ndarray):
            if not a.flags.c_contiguous:
                raise ValueError(f"{name}: argument {i} is not C-contiguous")
            span = (a.__array_interface__["data"][0], a.nbytes)
            if span not in spans:
                for lo, n in spans:
                    if a.nbytes and n and lo < span[0] + a.nbytes and span[0] < lo + n:
                        raise EmulatorLimit(f"{name}: argument {i} partly overlaps another")
                buf = np.full(a.nbytes + 2 * _GUARD, _POISON, np.uint8)
                buf[_GUARD:_GUARD + a.nbytes] = a.reshape(-1).view(np.uint8)
                spans[span] = buf
                guarded.append((i, a, buf))
            values.append(ctypes.c_void_p(spans[span].ctypes.data + _GUARD))
            codes.append(_POINTER_CODES.get(a.dtype, "?"))
        elif type(a) in _VALUE_TYPES:
            code, ctype = _VALUE_TYPES[type(a)]
            values.append(ctype(a.item()))
            codes.append(code)
        else:
            raise TypeError(f"{name}: argument {i} of type {type(a).__name__}; pass numpy "
                            "arrays, int32, float32 or float64")
    return values, guarded, "".join(codes)


def _unmarshal(name: str, guarded: list) -> None:
    """Check the guards, then copy every argument's bytes back."""
    for i, a, buf in guarded:
        n = a.nbytes
        outside = np.count_nonzero(buf[:_GUARD] != _POISON) + np.count_nonzero(buf[_GUARD + n:] != _POISON)
        if outside:
            raise RuntimeError(f"{name}: wrote {outside} byte(s) outside argument {i} "
                               f"({a.dtype}{a.shape})")
        inside = buf[_GUARD:_GUARD + n]
        flat = a.reshape(-1).view(np.uint8)
        if a.flags.writeable:
            flat[...] = inside
        elif not np.array_equal(flat, inside):
            raise RuntimeError(f"{name}: wrote to read-only argument {i}")
