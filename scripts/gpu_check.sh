#!/usr/bin/env bash
# GPU box check: CuPy kernels vs the NumPy oracle (pytest -m gpu tests/kernels) and the
# GPU benchmark rows.  Needs only python3, numpy, cupy, pytest (and torch for the peers).
# Carried wheels of ncps / snntorch in ./.whl are installed into /tmp/site (no network).
# Results land in ${OUT:-./gpu_results}/ as JSON / JUnit XML; exit status = pytest's.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-./gpu_results}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"

if compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

# Device facts first, so a failing run still says what it ran on.
timeout 120 "$PY" - > "$OUT/device.json" <<'PYEOF'
import json, cupy
from kernels.backend import cuda_probe
ok, why = cuda_probe()
info = {"usable": ok, "why": why, "cupy": cupy.__version__}
if ok:
    p = cupy.cuda.runtime.getDeviceProperties(0)
    info.update(name=p["name"].decode(), cc=f"{p['major']}.{p['minor']}",
                runtime=cupy.cuda.runtime.runtimeGetVersion(), driver=cupy.cuda.runtime.driverGetVersion())
print(json.dumps(info, indent=1))
PYEOF
cat "$OUT/device.json"

rc=0
# Includes tests/kernels/test_cuda_large_index.py: the LIF grid-stride kernel past 2^31
# lanes (64-bit lane index; skipped with less than ~36 GB free on the GPU).
timeout 420 "$PY" -m pytest -m gpu tests/kernels -q -p no:cacheprovider \
    --junitxml="$OUT/pytest_gpu.xml" 2>&1 | tee "$OUT/pytest_gpu.txt" || rc=$?

if [ -f benchmarks/kernels.py ]; then
    # Use whichever flags this version of the benchmark understands.
    help="$(timeout 60 "$PY" benchmarks/kernels.py --help 2>/dev/null || true)"
    args=()
    if grep -q -- "--gpu-only" <<<"$help"; then args+=(--gpu-only); else args+=(--rows gpu); fi
    if grep -q -- "--out" <<<"$help"; then args+=(--out "$OUT/bench_kernels.json"); fi
    timeout 300 "$PY" benchmarks/kernels.py "${args[@]}" 2>&1 | tee "$OUT/bench_kernels.txt" \
        || echo "benchmarks/kernels.py ${args[*]} failed" | tee -a "$OUT/bench_kernels.txt"
fi

"$PY" - "$OUT" "$rc" <<'PYEOF'
import json, sys, xml.etree.ElementTree as ET
out, rc = sys.argv[1], int(sys.argv[2])
summary = {"pytest_rc": rc}
try:
    s = ET.parse(f"{out}/pytest_gpu.xml").getroot()
    s = s if s.tag == "testsuite" else s[0]
    summary.update({k: int(s.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")})
except Exception as exc:  # no XML: pytest never started
    summary["error"] = repr(exc)
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
print(json.dumps(summary))
PYEOF
exit "$rc"
