"""The CUDA kernels' logic on the CPU: every gpu-marked test in tests/kernels, run in a
subprocess against ``tests/cuda_emulator`` -- a NumPy stand-in for ``cupy`` that
compiles ``kernels/cuda/*.cu`` with g++ and runs each CUDA thread of a block as a fiber
with a real ``__syncthreads`` barrier.  What that proves and what it cannot:
tests/cuda_emulator/README.md.

The stand-in is on the PYTHONPATH of the subprocess only; this process never imports
it, so the ``backend`` fixture here still sees only the real CuPy (or none).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKE_CUPY_DIR = ROOT / "tests" / "cuda_emulator" / "fake"
# The run takes ~15-20 s on 2 cores; the limit only catches a kernel that never ends.
TIMEOUT_S = 300
_SUMMARY = re.compile(r"^=*\s*(\d+ \w+(?:, \d+ \w+)*) in [\d.]+s")


def _summary_counts(output: str) -> dict[str, int]:
    """{"passed": n, "failed": n, ...} from pytest's last summary line; {} if there is none."""
    lines = [m.group(1) for line in output.splitlines() if (m := _SUMMARY.match(line.strip()))]
    if not lines:
        return {}
    counts = {}
    for part in lines[-1].split(", "):
        n, what = part.split(" ", 1)
        counts[{"error": "errors", "warning": "warnings"}.get(what, what)] = int(n)
    return counts


def test_gpu_kernel_tests_pass_on_the_cuda_emulator(tmp_path):
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but the C++ compiler {cxx!r} is missing: the CUDA emulator needs it")
        pytest.skip(f"no C++ compiler {cxx!r}: cannot emulate the CUDA kernels")

    pythonpath = [str(FAKE_CUPY_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(pythonpath),
           "NL_EMU_BUILD_DIR": str(tmp_path / "build")}
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests/kernels"]
    try:
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout
        pytest.fail(f"the emulated gpu tests did not finish in {TIMEOUT_S} s (a kernel that never "
                    f"ends?):\n{(out or '')[-4000:]}")
    output = r.stdout + r.stderr
    counts = _summary_counts(r.stdout)
    print(f"emulated gpu tests: {counts}")

    assert r.returncode == 0 and counts and not counts.get("failed") and not counts.get("errors"), (
        f"gpu-marked kernel tests fail on the CUDA emulator (exit {r.returncode}; "
        f"{' '.join(cmd[1:])} with PYTHONPATH={FAKE_CUPY_DIR}):\n{output[-8000:]}")
    assert counts.get("passed", 0) > 0, (
        f"no gpu-marked test ran on the emulator (all skipped or deselected: did the fake "
        f"cupy import?):\n{output[-4000:]}")
