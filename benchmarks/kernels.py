"""Kernel benchmark: our NumPy (and, with a GPU, CuPy) layers against the peers, in one process.

A report, not a test.  Each row times ours (A) and the peer (B) interleaved A B A B ...
after one warm-up each, and reports the median of the paired ratios peer_time / our_time,
so slow drifts of a shared machine hit both sides alike.  Both sides get the same thread
budget: torch.set_num_threads(T), BLAS limited to T threads by threadpoolctl,
OMP_WAIT_POLICY=PASSIVE, and NumpyBackend(threads=T) (batch slices on T Python threads) --
except the main CfC row, which uses NumpyBackend(threads=1): its scan is BLAS-bound, and
T Python threads each running T-threaded GEMMs oversubscribe the cores (measured on the
2-core dev box: 14-16 ms per forward instead of 10.9 ms).  That configuration is still
reported, as its own row.

    python benchmarks/kernels.py [--batch 256 --steps 10 --features 1444 --units 128 ...]

Writes benchmarks/results/kernels.json and, when mlflow imports, logs one run to
sqlite:///<repo>/mlruns/mlflow.db, experiment "neuroliquid-bench".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before numpy/torch load OpenMP
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
os.environ.setdefault("DO_NOT_TRACK", "true")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

try:  # installed with mlflow (via scikit-learn); only the benchmark uses it
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - then BLAS keeps its own default thread count
    import contextlib

    def threadpool_limits(_n):
        print("threadpoolctl missing: BLAS threads not limited (set OPENBLAS_NUM_THREADS)")
        return contextlib.nullcontext()

from kernels import cuda_probe, get_backend  # noqa: E402
from kernels.cfc import CfC  # noqa: E402
from kernels.interop import cfc_from_ncps, lif_from_snntorch, ltc_from_ncps  # noqa: E402
from kernels.ltc import LTC  # noqa: E402


def paired(ours, peer, repeats: int, sync=lambda: None) -> dict:
    """Time ``ours()`` and ``peer()`` alternately; medians and the median paired ratio."""
    ours(), peer()  # warm-up: allocations, first-touch, lazy compilation
    ta, tb = [], []
    for _ in range(repeats):
        for fn, acc in ((ours, ta), (peer, tb)):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            acc.append(time.perf_counter() - t0)
    return {"ours_s": statistics.median(ta), "peer_s": statistics.median(tb),
            "ratio": statistics.median(b / a for a, b in zip(ta, tb, strict=True))}


def row(name, batch, res, peer_name, target=None, extra=None) -> dict:
    out = {"row": name, "batch": batch, "ours_seq_s": batch / res["ours_s"], "peer": peer_name,
           "peer_seq_s": batch / res["peer_s"], "ratio": res["ratio"], "target": target, **(extra or {})}
    verdict = "" if target is None else ("  meets" if res["ratio"] >= target else "  BELOW") + f" target {target}x"
    print(f"{name:<34} B={batch:<4} ours {out['ours_seq_s']:>10.0f} seq/s   {peer_name:<22} "
          f"{out['peer_seq_s']:>10.0f} seq/s   ratio {res['ratio']:5.2f}x{verdict}", flush=True)
    return out


def bench_cfc(torch, ncps, backend, a, device="cpu", sync=lambda: None) -> dict:
    torch.manual_seed(0)
    model = ncps.CfC(a.features, a.units).eval().to(device)
    x = torch.randn(a.batch, a.steps, a.features, device=device)
    layer = CfC(cfc_from_ncps(model.state_dict()), backend)
    xo = backend.asarray(x.cpu().numpy())
    with torch.no_grad():
        err = float(np.abs(backend.to_numpy(layer.forward(xo)[0]) - model(x)[0].cpu().numpy()).max())
        res = paired(lambda: layer.forward(xo), lambda: model(x), a.repeats, sync)
    name = f"CfC numpy ({backend.threads} thr)" if device == "cpu" else f"CfC {backend.name} ({backend.device})"
    return row(name, a.batch, res, f"ncps CfC ({device})", 1.5 if device == "cpu" else None, {"max_abs_diff": err})


def bench_ltc(torch, ncps, backend, a) -> dict:
    torch.manual_seed(0)
    model = ncps.LTC(a.features, a.units).eval()
    x = torch.randn(a.ltc_batch, a.steps, a.features)
    layer = LTC(ltc_from_ncps(model.state_dict()), backend)
    with torch.no_grad():
        err = float(np.abs(layer.forward(x.numpy())[0] - model(x)[0].numpy()).max())
        res = paired(lambda: layer.forward(x.numpy()), lambda: model(x), max(3, a.repeats // 2))
    return row("LTC numpy", a.ltc_batch, res, "ncps LTC", 5.0, {"max_abs_diff": err, "ode_unfolds": 6})


def bench_lif(torch, snn, backend, a) -> dict:
    from kernels.lif import LIF  # noqa: PLC0415  (a colleague's module)
    from kernels.synapse import Linear  # noqa: PLC0415

    torch.manual_seed(0)
    fc, leaky = torch.nn.Linear(a.features, a.units), snn.Leaky(beta=0.9)
    x = torch.randn(a.batch, a.steps, a.features)
    lin = Linear(fc.weight.detach().numpy().T, fc.bias.detach().numpy(), backend, event_threshold=0.0)
    lif = LIF(lif_from_snntorch(0.9, units=a.units), backend)
    xo = x.numpy()

    def ours():
        return lif.forward(lin.forward(xo, binary=False))

    def peer():
        cur, mem, spikes = fc(x), leaky.init_leaky(), []
        for t in range(a.steps):
            spk, mem = leaky(cur[:, t], mem)
            spikes.append(spk)
        return torch.stack(spikes, 1)

    with torch.no_grad():
        agree = float((ours()[0][0] == peer().numpy()).mean())
        res = paired(ours, peer, a.repeats)
    return row("Linear+LIF numpy", a.batch, res, "nn.Linear+snn.Leaky", 1.2, {"spike_agreement": agree})


def bench_events(backend, a) -> list[dict]:
    from kernels.synapse import event_matmul_numpy  # noqa: PLC0415

    rng = np.random.default_rng(0)
    w = rng.standard_normal((a.features, a.units)).astype(np.float32)
    rows = []
    for density in (0.02, 0.10):
        s = (rng.random((a.batch * a.steps, a.features)) < density).astype(np.float32)
        res = paired(lambda s=s: event_matmul_numpy(s, w), lambda s=s: s @ w, a.repeats)
        rows.append(row(f"event matmul @ {density:.0%} activity", a.batch, res, "dense matmul (ours)",
                        extra={"density": density, "rows": a.batch * a.steps}))
    return rows


def log_mlflow(workload: dict, rows: list[dict], json_path: Path) -> str | None:
    from pipeline.core.tracking import log_benchmark

    metrics = {}
    for r in rows:
        key = re.sub(r"[^A-Za-z0-9_.-]+", "_", r["row"].replace("%", "pct")).strip("_")
        metrics.update({f"{key}.ours_seq_s": r["ours_seq_s"], f"{key}.ratio": r["ratio"],
                        f"{key}.peer_seq_s": r["peer_seq_s"]})
    return log_benchmark("kernels", workload, metrics, json_path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--ltc-batch", type=int, default=None,
                    help="LTC batch, default --batch (ncps LTC: ~45 seq/s, ~6 s per call at B=256)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--features", type=int, default=1444)
    ap.add_argument("--units", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2, help="torch threads = BLAS threads")
    ap.add_argument("--backend-threads", type=int, default=None, help="NumpyBackend threads (default: --threads)")
    ap.add_argument("--cfc-backend-threads", type=int, default=1, help="NumpyBackend threads of the main CfC row")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--rows", default="cfc,ltc,lif,events,gpu")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "kernels.json")
    ap.add_argument("--no-mlflow", action="store_true", help="do not log (smoke runs)")
    a = ap.parse_args(argv)
    a.ltc_batch = a.ltc_batch or a.batch
    wanted = set(a.rows.split(","))
    import ncps.torch as ncps  # noqa: PLC0415  (peers: the "compare" extra)
    import snntorch as snn  # noqa: PLC0415
    import torch  # noqa: PLC0415

    torch.set_num_threads(a.threads)
    backend = get_backend("numpy", threads=a.backend_threads or a.threads)
    load_before = os.getloadavg()
    workload = {k: getattr(a, k) for k in ("batch", "ltc_batch", "steps", "features", "units", "threads", "repeats")}
    workload.update(backend_threads=backend.threads, cfc_backend_threads=a.cfc_backend_threads)
    workload.update(dtype="float32", torch=torch.__version__, numpy=np.__version__, cpu_count=os.cpu_count())
    print(f"workload {workload}\nload average before: {load_before[0]:.2f}", flush=True)
    rows = []
    with threadpool_limits(a.threads), torch.inference_mode():
        if "cfc" in wanted:
            rows.append(bench_cfc(torch, ncps, get_backend("numpy", threads=a.cfc_backend_threads), a))
            if backend.threads != a.cfc_backend_threads:
                rows.append(bench_cfc(torch, ncps, backend, a))
        if "ltc" in wanted:
            rows.append(bench_ltc(torch, ncps, backend, a))
        if "lif" in wanted:
            rows.append(bench_lif(torch, snn, backend, a))
        if "events" in wanted:
            rows += bench_events(backend, a)
        gpu_ok, why = cuda_probe()
        if "gpu" in wanted and gpu_ok and torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = False  # exact float32 on both sides
            torch.backends.cudnn.allow_tf32 = False
            gpu = get_backend("cupy")
            rows.append(bench_cfc(torch, ncps, gpu, a, "cuda", lambda: (gpu.synchronize(), torch.cuda.synchronize())))
        elif "gpu" in wanted:
            print(f"GPU rows skipped: {why}")
    load_after = os.getloadavg()
    busy = max(load_before[0], load_after[0]) > 0.5
    note = (f"other load on the machine (load average {load_before[0]:.2f} -> {load_after[0]:.2f} on "
            f"{os.cpu_count()} cores): absolute seq/s are pessimistic; the interleaved ratios less so") if busy else ""
    if note:
        print("NOTE:", note)
    json_path = a.out
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"workload": workload, "rows": rows, "load_average": [load_before, load_after],
                                     "note": note, "unix_time": time.time()}, indent=2))
    run_id = None if a.no_mlflow else log_mlflow(workload, rows, json_path)
    print(f"wrote {json_path}" + (f"; mlflow run {run_id}" if run_id else "; not logged to mlflow"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
