"""Pipeline benchmark: end-to-end efficiency of ``task=run`` against the bare network.

    efficiency(n) = pipeline seq/s with n workers / (n x bare network seq/s)

The bare network is the same model (weights file of the run) on the same micro-batches
(``recordings_per_batch`` x ``steps_per_block``, state carried across blocks), in this one
process with one BLAS thread, inputs already in memory.  Each pipeline run is the real
``pipeline.batch.run.run`` on a LocalCluster of n single-threaded workers (one BLAS thread
each); its seq/s is counted from the first task's submission to the last result, so
cluster start and worker set-up are excluded, as the pipeline reports them.  A sequence
is one recording x 10 model steps (1 s at 10 Hz).  Targets on 2 cores: efficiency >= 0.85
with 2 workers, and 2 workers >= 1.8x one worker.

Per-task overhead is what a worker slot spends per task beyond the bare forward: the
in-task read + align + validate and write, the forward's slowdown next to other
processes, and the gap between tasks (Dask round trip, scheduling, idle at chain ends).
From it the script derives the micro-batch (sequences per task) that 0.85 needs (see
:func:`per_task`), and measures the bare Dask round trip (a no-op task) in the same run.

    python benchmarks/pipeline.py [--recordings 256 --duration-s 60 --rpb 64 --spb 100]

Prints a table, writes benchmarks/results/pipeline.json and logs one MLflow run to
sqlite:///<repo>/mlruns/mlflow.db, experiment "neuroliquid-bench" (log_batch).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # the bare network: one BLAS thread (numpy loads later)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
os.environ.setdefault("DO_NOT_TRACK", "true")
REPO = Path(__file__).resolve().parents[1]
# `python benchmarks/pipeline.py` puts benchmarks/ first on sys.path, where kernels.py
# would shadow the kernels package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO))

TARGET_EFFICIENCY = 0.85
TARGET_SPEEDUP = 1.8


def make_store(path: Path, recordings: int, duration_s: float) -> None:
    """A synthetic store in make run's default layout (chunks 32 recordings x 1 s in
    64 x 10 s shards), whose recordings all last ``duration_s`` (no padded steps to count
    against the pipeline); timestamps still jitter and frames still drop."""
    from pipeline.config import DataConfig
    from pipeline.data import generate_store

    cfg = DataConfig(path=str(path), recordings=recordings, duration_s=duration_s, seed=0)
    cfg.synthetic.length_jitter = 0.0
    cfg.validate()
    generate_store(cfg, progress=False)


def config(store: Path, root: Path, n_workers: int, a, name: str):
    """The run's typed config, composed from conf/ exactly as the CLI does."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from pipeline.__main__ import TASKS
    from pipeline.config import PROJECT_ROOT

    overrides = [
        "backend=numpy", f"model={a.model}", f"data.path={store}", f"data.recordings_per_batch={a.rpb}",
        f"data.steps_per_block={a.spb}", f"scaling.n_workers={n_workers}", "cluster.dashboard_address=127.0.0.1:0",
        f"paths.output_dir={root / 'out'}", f"tracking.uri=sqlite:///{root / 'mlflow.db'}",
        f"tracking.artifact_dir={root / 'artifacts'}", "tracking.experiment=bench-pipeline",
        f"tracking.run_name={name}",
    ]
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = OmegaConf.to_object(compose("config", overrides=overrides))
    return cfg.validate(TASKS)


def pipeline_run(store: Path, root: Path, n_workers: int, a, name: str) -> dict:
    from pipeline.batch.run import run

    cfg = config(store, root, n_workers, a, name)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        summary = run(cfg)
    return summary


def bare_network(store: Path, weights: str, out_store: str, a) -> dict:
    """The same network on the same micro-batches, one process, one BLAS thread, inputs in
    memory: median forward time per micro-batch over ``a.repeats`` sweeps of one recording
    group.  Alongside, the task's other costs with no other process running: read + align
    + validate (a fresh reader per sweep) and the region write (rewriting group 0 of a
    finished run's output store)."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from kernels import get_backend
    from kernels.network import FusionNetwork
    from pipeline.batch.outputs import RegionWriter
    from pipeline.batch.region import safe_name
    from pipeline.config import ClusterConfig
    from pipeline.core.malloc import tune_malloc
    from pipeline.data import MicroBatch, StoreReader, read_batch
    from pipeline.data.reader import SEQUENTIAL_CACHE_BYTES

    malloc = tune_malloc(*ClusterConfig().malloc)  # as the pipeline's workers (pipeline.core.worker_setup)
    net = FusionNetwork.load(weights, get_backend("numpy", threads=1))
    writer = RegionWriter(out_store)
    n_steps = int(StoreReader(store).meta["n_steps"].max())
    plan = [MicroBatch(str(store), (0, a.rpb), (s, s + a.spb), s // a.spb) for s in range(0, n_steps, a.spb)]
    t = {"read": [], "forward": [], "write": []}
    with threadpool_limits(1):
        for sweep in range(a.repeats + 1):
            reader = StoreReader(store, SEQUENTIAL_CACHE_BYTES)  # as a worker's: opened once, not timed
            state = net.zero_state(a.rpb)
            for mb in plan:
                t0 = time.perf_counter()
                b = read_batch(mb, imu_window=10, reader=reader)
                t1 = time.perf_counter()
                out, state = net.forward(b.camera, b.lidar, b.imu, state, camera_valid=b.camera_valid,
                                         lidar_valid=b.lidar_valid, imu_valid=b.imu_valid)
                t2 = time.perf_counter()
                if mb.block > 0:
                    writer.read_state(0, mb.block - 1)
                writer.write(0, mb.block, y=np.asarray(out.y, np.float32),
                             spikes=np.asarray(out.spike_counts, np.float32), valid=b.valid,
                             quarantined=b.quarantined, restarted=b.restart,
                             state={safe_name(n): v for n, v in net.state_to_arrays(state).items()})
                t3 = time.perf_counter()
                if sweep:  # the first sweep warms up
                    for k, v in zip(t, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                        t[k].append(v)
    ms = {f"{k}_ms": statistics.median(v) * 1e3 for k, v in t.items()}
    return {"malloc": malloc, "batch_ms": ms["forward_ms"], "seq_s": a.rpb * a.spb / 10 / (ms["forward_ms"] / 1e3), **ms,
            "efficiency_bound": ms["forward_ms"] / (ms["read_ms"] + ms["forward_ms"] + ms["write_ms"])}


def dask_round_trip(n: int = 30) -> dict:
    """Median submit-to-result time of a no-op task on a 1-worker LocalCluster."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0",
                      silence_logs=logging.ERROR) as lc, Client(lc) as client:
        client.submit(abs, -1, pure=False).result()
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            client.submit(abs, -i, pure=False).result()
            times.append(time.perf_counter() - t0)
    return {"round_trip_ms": statistics.median(times) * 1e3}


def per_task(s: dict, n_workers: int, bare_seq_s: float, seqs_per_task: float) -> dict:
    """Where a worker slot's time goes per task, and the micro-batch 0.85 needs.

    Per task and slot, with S sequences per task: the bare forward c_b*S; in the pipeline
    the forward c_p*S and the read + align + validate r*S (both grow with S), the write w
    (a dozen small zarr writes: about fixed) and the gap g between tasks (round trip,
    scheduling, idle at chain ends).  Efficiency is c_b*S / (c_p*S + r*S + w + g) >= E
    <=>  S >= E*(w + g) / (c_b - E*(c_p + r)); no S is enough when c_p + r > c_b / E.
    """
    n = max(s["regions_executed"], 1)
    busy = s["time_read_s"] + s["time_compute_s"] + s["time_write_s"]
    gap = max(0.0, n_workers * s["wall_s"] - busy) / n
    c_b = 1.0 / bare_seq_s
    c_p = s["time_compute_s"] / n / seqs_per_task
    r = s["time_read_s"] / n / seqs_per_task
    w = s["time_write_s"] / n
    denom = c_b - TARGET_EFFICIENCY * (c_p + r)
    need = TARGET_EFFICIENCY * (w + gap) / denom if denom > 0 else None  # None: no batch size is enough
    return {
        "tasks": n, "seqs_per_task": seqs_per_task, "bare_forward_ms": c_b * seqs_per_task * 1e3,
        "compute_ms": c_p * seqs_per_task * 1e3, "forward_ms": s["time_forward_s"] / n * 1e3, "read_ms": r * seqs_per_task * 1e3, "write_ms": w * 1e3,
        "gap_ms": gap * 1e3, "overhead_ms": ((c_p - c_b + r) * seqs_per_task + w + gap) * 1e3,
        "compute_slowdown": c_p / c_b, "read_per_seq_vs_forward": r / c_b, "seqs_per_task_needed": need,
    }


def log_mlflow(workload: dict, flat: dict, json_path: Path) -> str | None:
    from pipeline.core.tracking import log_benchmark

    return log_benchmark("pipeline", workload, flat, json_path)


def main(argv=None) -> int:
    from benchmarks._common import in_fresh_process

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recordings", type=int, default=256)
    ap.add_argument("--duration-s", type=float, default=60.0)
    ap.add_argument("--rpb", type=int, default=64, help="data.recordings_per_batch (micro-batch recordings)")
    ap.add_argument("--spb", type=int, default=100, help="data.steps_per_block (micro-batch steps)")
    ap.add_argument("--model", default="fusion", help="conf/model option")
    ap.add_argument("--workers", default="1,2", help="pool sizes to run, comma-separated")
    ap.add_argument("--repeats", type=int, default=5, help="bare-network sweeps")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "pipeline.json")
    ap.add_argument("--no-mlflow", action="store_true")
    a = ap.parse_args(argv)
    pools = [int(w) for w in a.workers.split(",")]
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="neuroliquid-bench-pipeline-"))
    try:
        store = tmp / "bench.zarr"
        make_store(store, a.recordings, a.duration_s)
        runs = {n: pipeline_run(store, tmp, n, a, f"w{n}") for n in pools}
        first = runs[pools[0]]
        bare = in_fresh_process(bare_network, store, first["weights"], first["output_store"], a)
        rt = dask_round_trip()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()

    seqs_per_task = a.rpb * a.spb / 10
    rows = []
    for n, s in runs.items():
        eff = s["throughput_seq_per_s"] / (n * bare["seq_s"])
        rows.append({"workers": n, "seq_s": s["throughput_seq_per_s"], "efficiency": eff, "wall_s": s["wall_s"],
                     "sequences": s["sequences"], **per_task(s, n, bare["seq_s"], seqs_per_task)})
    by = {r["workers"]: r for r in rows}
    speedup = by[2]["seq_s"] / by[1]["seq_s"] if 1 in by and 2 in by else None

    print(f"workload: {a.recordings} recordings x {a.duration_s:g} s, model={a.model}, micro-batch {a.rpb} recordings "
          f"x {a.spb} steps = {seqs_per_task:g} sequences; {os.cpu_count()} cores; load average "
          f"{load_before[0]:.2f} -> {load_after[0]:.2f}")
    print(f"bare network (1 process, 1 BLAS thread): {bare['seq_s']:.0f} seq/s, {bare['batch_ms']:.1f} ms per "
          f"micro-batch;  Dask round trip (no-op task): {rt['round_trip_ms']:.1f} ms")
    print(f"one task alone in one process: read+align+validate {bare['read_ms']:.1f} ms, forward "
          f"{bare['forward_ms']:.1f} ms, write {bare['write_ms']:.1f} ms -> efficiency bound with no scheduling "
          f"and no contention {bare['efficiency_bound']:.2f}")
    head = (f"{'workers':>7} {'seq/s':>8} {'efficiency':>10} {'forward ms':>10} {'read ms':>8} {'write ms':>8} "
            f"{'gap ms':>7} {'overhead ms':>11} {'seq/task needed':>15}")
    print(head + "\n" + "-" * len(head))
    for r in rows:
        verdict = "" if r["workers"] != 2 else ("  meets" if r["efficiency"] >= TARGET_EFFICIENCY else "  BELOW") + \
            f" {TARGET_EFFICIENCY}"
        print(f"{r['workers']:>7} {r['seq_s']:>8.0f} {r['efficiency']:>10.3f} {r['compute_ms']:>10.1f} "
              f"{r['read_ms']:>8.1f} {r['write_ms']:>8.1f} {r['gap_ms']:>7.1f} {r['overhead_ms']:>11.1f} "
              f"{'unreachable' if r['seqs_per_task_needed'] is None else round(r['seqs_per_task_needed']):>15}"
              f"{verdict}")
    if speedup is not None:
        print(f"2 workers / 1 worker: {speedup:.2f}x ({'meets' if speedup >= TARGET_SPEEDUP else 'BELOW'} "
              f"{TARGET_SPEEDUP}x)")
    print("overhead = in-pipeline forward - bare forward + read + write + gap, per task and worker slot; "
          f"'needed' = sequences per task for efficiency {TARGET_EFFICIENCY} at these per-task costs")
    busy = max(load_before[0], load_after[0]) > 0.5 * (os.cpu_count() or 1)
    note = (f"other load on the machine (load average {load_before[0]:.2f} -> {load_after[0]:.2f} on "
            f"{os.cpu_count()} cores): the efficiencies are pessimistic") if busy else ""
    if note:
        print("NOTE:", note)

    workload = {"recordings": a.recordings, "duration_s": a.duration_s, "rpb": a.rpb, "spb": a.spb,
                "model": a.model, "workers": a.workers, "repeats": a.repeats, "cores": os.cpu_count(),
                "target_efficiency": TARGET_EFFICIENCY, "target_speedup": TARGET_SPEEDUP}
    result = {"workload": workload, "bare": bare, "dask": rt, "rows": rows, "speedup_2_vs_1": speedup,
              "load_average": [load_before, load_after], "note": note, "unix_time": time.time()}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2))
    flat = {f"bare_{k}": v for k, v in bare.items()} | {"dask_round_trip_ms": rt["round_trip_ms"]}
    for r in rows:
        flat.update({f"w{r['workers']}.{k}": v for k, v in r.items() if k != "workers"})
    if speedup is not None:
        flat["speedup_2_vs_1"] = speedup
    run_id = None if a.no_mlflow else log_mlflow(workload, flat, a.out)
    print(f"wrote {a.out}" + (f"; mlflow run {run_id}" if run_id else "; not logged to mlflow"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
