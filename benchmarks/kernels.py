"""Kernel benchmark: our NumPy (and, with a GPU, CuPy) layers against the peers, each side alone.

A report, not a test.  Each peer row runs ours (A) and the peer (B) each ALONE in its own
freshly spawned process, alternating A B A B ... (``--rounds`` processes per side), one
warm-up then ``--calls`` timed calls per process; a side's figure is the median of its
processes' medians and the ratio is peer median / our median.  Timing both in one
process slowed the peer (our BLAS threads still spinning; issue 13).  Both sides get the
same thread budget: torch.set_num_threads(T), BLAS limited to T threads by threadpoolctl,
OMP_WAIT_POLICY=PASSIVE, and NumpyBackend(threads=T) -- except the main CfC row, which
uses NumpyBackend(threads=1): its scan is BLAS-bound, and T Python threads each running
T-threaded GEMMs oversubscribe the cores.  The event-path rows compare two of our own
paths and stay in one process.

    python benchmarks/kernels.py [--batch 256 --steps 10 --features 1444 --units 128 --rounds 3 --calls 5]

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
    """Time ``ours()`` and ``peer()`` alternately in this process (our own two paths only)."""
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


def _side(kind: str, side: str, c: dict):
    """In a fresh process: ``(fn, sync, layer)`` for one side of one row.  Both sides build
    the same seeded torch model (ours converts its weights), so inputs and weights match."""
    import ncps.torch as ncps  # noqa: PLC0415  (peers: the "compare" extra)
    import torch  # noqa: PLC0415

    torch.set_num_threads(c["threads"])
    device = c.get("device", "cpu")
    sync = lambda: None  # noqa: E731
    if device == "cuda":
        backend = get_backend("cupy")
        sync = lambda: (backend.synchronize(), torch.cuda.synchronize())  # noqa: E731
        torch.backends.cuda.matmul.allow_tf32 = False  # exact float32 on both sides
        torch.backends.cudnn.allow_tf32 = False
    else:
        backend = get_backend("numpy", threads=c["backend_threads"])
    torch.manual_seed(0)
    B, T, F, H = c["batch"], c["steps"], c["features"], c["units"]
    if kind in ("cfc", "ltc"):
        model = (ncps.CfC(F, H) if kind == "cfc" else ncps.LTC(F, H)).eval().to(device)
        x = torch.randn(B, T, F, device=device)
        if side == "peer":
            return (lambda: model(x)), sync, None
        conv = cfc_from_ncps if kind == "cfc" else ltc_from_ncps
        layer = (CfC if kind == "cfc" else LTC)(conv(model.state_dict()), backend)
        xo = backend.asarray(x.cpu().numpy())
        return (lambda: layer.forward(xo)), sync, layer
    import snntorch as snn  # noqa: PLC0415

    from kernels.lif import LIF  # noqa: PLC0415
    from kernels.synapse import Linear  # noqa: PLC0415

    fc, leaky = torch.nn.Linear(F, H), snn.Leaky(beta=0.9)
    x = torch.randn(B, T, F)
    if side == "peer":
        def peer():
            cur, mem, spikes = fc(x), leaky.init_leaky(), []
            for t in range(T):
                spk, mem = leaky(cur[:, t], mem)
                spikes.append(spk)
            return torch.stack(spikes, 1)
        return peer, sync, None
    lin = Linear(fc.weight.detach().numpy().T, fc.bias.detach().numpy(), backend, event_threshold=0.0)
    lif = LIF(lif_from_snntorch(0.9, units=H), backend)
    xo = x.numpy()
    return (lambda: lif.forward(lin.forward(xo, binary=False))), sync, None


def time_side(kind: str, side: str, c: dict) -> dict:
    """Runs alone in a fresh process: one warm-up, then ``c["calls"]`` timed calls."""
    import torch  # noqa: PLC0415

    with threadpool_limits(c["threads"]), torch.inference_mode():
        fn, sync, layer = _side(kind, side, c)
        fn()
        sync()
        times = []
        for _ in range(c["calls"]):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
    out = {"median_s": statistics.median(times), "times_s": times}
    if layer is not None and hasattr(layer, "flops_per_sequence"):
        out["flops_per_sequence"] = int(layer.flops_per_sequence(c["steps"]))
    return out


def check_agreement(kind: str, c: dict) -> dict:
    """Untimed, in its own process: both sides' outputs on the same input."""
    import torch  # noqa: PLC0415

    with threadpool_limits(c["threads"]), torch.inference_mode():
        ours, _, _ = _side(kind, "ours", c)
        peer, _, _ = _side(kind, "peer", c)
        a, b = ours(), peer()
        if kind == "lif":
            return {"spike_agreement": float((np.asarray(a[0][0]) == b.cpu().numpy()).mean())}
        backend_out = a[0]
        a0 = backend_out.get() if hasattr(backend_out, "get") else np.asarray(backend_out)
        return {"max_abs_diff": float(np.abs(a0 - b[0].cpu().numpy()).max())}


def gemm_gflops(threads: int, n: int = 1024, calls: int = 5) -> float:
    """Runs alone in a fresh process: float32 GEMM GFLOP/s at this thread budget (the
    measured roofline a BLAS-bound layer is held against)."""
    with threadpool_limits(threads):
        a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
        a @ a
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            a @ a
            times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def fresh_paired(kind: str, c: dict, rounds: int) -> dict:
    """Ours and the peer, each alone in a fresh process, alternating A B A B (``rounds``
    processes per side); medians of the per-process medians and their ratio."""
    from benchmarks._common import in_fresh_process  # noqa: PLC0415

    ours, peer = [], []
    for _ in range(rounds):
        ours.append(in_fresh_process(time_side, kind, "ours", c))
        peer.append(in_fresh_process(time_side, kind, "peer", c))
    o = statistics.median(r["median_s"] for r in ours)
    q = statistics.median(r["median_s"] for r in peer)
    return {"ours_s": o, "peer_s": q, "ratio": q / o, "ours_runs_s": [r["median_s"] for r in ours],
            "peer_runs_s": [r["median_s"] for r in peer], "flops_per_sequence": ours[0].get("flops_per_sequence")}


def row(name, batch, res, peer_name, target=None, extra=None) -> dict:
    out = {"row": name, "batch": batch, "ours_seq_s": batch / res["ours_s"], "peer": peer_name,
           "peer_seq_s": batch / res["peer_s"], "ratio": res["ratio"], "target": target,
           **{k: v for k, v in res.items() if k.endswith("runs_s")}, **(extra or {})}
    out["verdict"] = None if target is None else ("meets" if res["ratio"] >= target else "BELOW")
    verdict = "" if target is None else f"  {out['verdict']} target {target}x"
    if out.get("roofline_fraction") is not None:
        verdict += f" ({out['gflops']:.1f} GFLOP/s = {out['roofline_fraction']:.0%} of this budget's GEMM)"
    print(f"{name:<34} B={batch:<4} ours {out['ours_seq_s']:>10.0f} seq/s   {peer_name:<22} "
          f"{out['peer_seq_s']:>10.0f} seq/s   ratio {res['ratio']:5.2f}x{verdict}", flush=True)
    return out


def _cfg(a, **kw) -> dict:
    c = {k: getattr(a, k) for k in ("batch", "steps", "features", "units", "threads", "calls")}
    c["backend_threads"] = a.backend_threads or a.threads
    return {**c, **kw}


def bench_cfc(a, backend_threads: int, gemm: float | None, device: str = "cpu") -> dict:
    from benchmarks._common import in_fresh_process  # noqa: PLC0415

    c = _cfg(a, backend_threads=backend_threads, device=device)
    res = fresh_paired("cfc", c, a.rounds)
    extra = {"max_abs_diff": in_fresh_process(check_agreement, "cfc", c)["max_abs_diff"] if a.check else None}
    if res["flops_per_sequence"] and device == "cpu" and gemm:
        extra["gflops"] = res["flops_per_sequence"] * a.batch / res["ours_s"] / 1e9
        extra["gemm_gflops"] = gemm
        extra["roofline_fraction"] = extra["gflops"] / gemm
    name = f"CfC numpy ({backend_threads} thr)" if device == "cpu" else "CfC cupy"
    return row(name, a.batch, res, f"ncps CfC ({device})", 1.5 if device == "cpu" else None, extra)


def bench_ltc(a) -> dict:
    from benchmarks._common import in_fresh_process  # noqa: PLC0415

    c = _cfg(a, batch=a.ltc_batch)
    res = fresh_paired("ltc", c, a.rounds)
    return row("LTC numpy", a.ltc_batch, res, "ncps LTC", 5.0,
               {"max_abs_diff": in_fresh_process(check_agreement, "ltc", c)["max_abs_diff"] if a.check else None,
                "ode_unfolds": 6})


def bench_lif(a) -> dict:
    from benchmarks._common import in_fresh_process  # noqa: PLC0415

    c = _cfg(a)
    res = fresh_paired("lif", c, a.rounds)
    return row("Linear+LIF numpy", a.batch, res, "nn.Linear+snn.Leaky", 1.2,
               in_fresh_process(check_agreement, "lif", c) if a.check else {})


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
    ap.add_argument("--repeats", type=int, default=9, help="pairs of the in-process event-path rows")
    ap.add_argument("--rounds", type=int, default=3, help="fresh processes per side, alternating A B A B")
    ap.add_argument("--calls", type=int, default=5, help="timed calls per process (after one warm-up)")
    ap.add_argument("--no-check", dest="check", action="store_false", help="skip the output agreement checks")
    ap.add_argument("--rows", default="cfc,ltc,lif,events,gpu")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "kernels.json")
    ap.add_argument("--no-mlflow", action="store_true", help="do not log (smoke runs)")
    a = ap.parse_args(argv)
    a.ltc_batch = a.ltc_batch or a.batch
    wanted = set(a.rows.split(","))
    from benchmarks._common import in_fresh_process  # noqa: PLC0415

    backend = get_backend("numpy", threads=a.backend_threads or a.threads)
    load_before = os.getloadavg()
    workload = {k: getattr(a, k) for k in ("batch", "ltc_batch", "steps", "features", "units", "threads", "rounds",
                                           "calls", "repeats")}
    workload.update(backend_threads=backend.threads, cfc_backend_threads=a.cfc_backend_threads,
                    method="each side alone in a fresh process, alternating A B A B; ratio of medians")
    workload.update(dtype="float32", numpy=np.__version__, cpu_count=os.cpu_count())
    print(f"workload {workload}\nload average before: {load_before[0]:.2f}", flush=True)
    rows = []
    gemm = in_fresh_process(gemm_gflops, a.threads) if "cfc" in wanted else None
    if gemm:
        print(f"float32 GEMM, {a.threads} BLAS thread(s), alone: {gemm:.1f} GFLOP/s", flush=True)
    if "cfc" in wanted:
        rows.append(bench_cfc(a, a.cfc_backend_threads, gemm))
        if backend.threads != a.cfc_backend_threads:
            rows.append(bench_cfc(a, backend.threads, gemm))
    if "ltc" in wanted:
        rows.append(bench_ltc(a))
    if "lif" in wanted:
        rows.append(bench_lif(a))
    if "events" in wanted:
        with threadpool_limits(a.threads):
            rows += bench_events(backend, a)
    gpu_ok, why = cuda_probe()
    if "gpu" in wanted and gpu_ok:
        rows.append(bench_cfc(a, 1, None, "cuda"))
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
                                     "note": note, "unix_time": time.time(),
                                     "command": "python benchmarks/kernels.py " + " ".join(argv or sys.argv[1:])},
                                    indent=2))
    run_id = None if a.no_mlflow else log_mlflow(workload, rows, json_path)
    print(f"wrote {json_path}" + (f"; mlflow run {run_id}" if run_id else "; not logged to mlflow"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
