"""Accuracy benchmark: how well the network predicts the recordings' targets, beside the
baselines, with what it costs to train and to run (docs/training.md).

On ``make run``'s demo store (generated when missing) and its test split, in one run:

1. the default fusion network with seeded (untrained) weights through the batch pipeline:
   its scores, the baselines (mean; ridge on the raw current-step inputs) and the
   pipeline's inference sequences/s;
2. ``task=train trainer=ridge``: the readout fitted on Dask (training wall time, the pass
   over the training and validation splits against the batch run's pass over the store);
3. the trained weights through the batch pipeline: scores and inference sequences/s.

Verdicts (each can fail): the ridge-trained fusion network reaches the raw-input ridge on
every target (R^2 for speed and yaw rate, accuracy for obstacle ahead); the readout fit
costs at most one pass over the store.

    python benchmarks/accuracy.py [--store data/demo.zarr] [--workers 2]

Writes benchmarks/results/accuracy.json (committed: docs/benchmarks.md cites it) and logs
one MLflow run in the ``neuroliquid-bench`` experiment.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
os.environ.setdefault("DO_NOT_TRACK", "true")
REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO))

TARGETS = (("speed", "r2"), ("yaw_rate", "r2"), ("obstacle", "accuracy"))


def config(store: Path, root: Path, workers: int, *extra: str):
    """The typed config, composed from conf/ as the CLI does."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from pipeline.__main__ import TASKS
    from pipeline.config import PROJECT_ROOT

    overrides = ["backend=numpy", f"data.path={store}", f"scaling.n_workers={workers}",
                 "cluster.dashboard_address=127.0.0.1:0", f"paths.output_dir={root / 'out'}",
                 f"tracking.uri=sqlite:///{root / 'mlflow.db'}", f"tracking.artifact_dir={root / 'artifacts'}",
                 "tracking.experiment=bench-accuracy", *extra]
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = OmegaConf.to_object(compose("config", overrides=overrides))
    return cfg.validate(TASKS)


def quiet(fn, *args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        return fn(*args)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=REPO / "data" / "demo.zarr")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "accuracy.json")
    a = ap.parse_args(argv)

    from pipeline.batch.run import run as batch_run
    from pipeline.core.experiment import ensure_store
    from pipeline.core.tracking import log_benchmark
    from pipeline.train.run import run as train_run

    root = Path(tempfile.mkdtemp(prefix="nl-accuracy-"))
    try:
        store = ensure_store(config(a.store.resolve(), root, a.workers))
        print(f"store {store}; {a.workers} workers; load average {os.getloadavg()[0]:.2f}", flush=True)
        untrained = quiet(batch_run, config(store, root, a.workers, "tracking.run_name=untrained"))
        print(f"  untrained run: {untrained['wall_s']:.1f} s, {untrained['throughput_seq_per_s']:.0f} seq/s",
              flush=True)
        t0 = time.perf_counter()
        fit = quiet(train_run, config(store, root, a.workers, "task=train", "tracking.run_name=ridge"))
        train_wall = time.perf_counter() - t0
        print(f"  ridge fit: {train_wall:.1f} s wall (pass {fit['pass_s']:.1f} s), penalty {fit['lambda']:g}",
              flush=True)
        trained = quiet(batch_run, config(store, root, a.workers, f"model.weights={fit['weights']}",
                                          "tracking.run_name=trained"))
        print(f"  trained run: {trained['wall_s']:.1f} s, {trained['throughput_seq_per_s']:.0f} seq/s", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    ev_u, ev_t = untrained["evaluation"], trained["evaluation"]
    base = ev_t["baselines"]
    rows = {
        "mean": {f"{t}.{m}": base.get(f"mean.{t}.{m}") for t, m in TARGETS},
        "raw_linear": {f"{t}.{m}": base.get(f"raw_linear.{t}.{m}") for t, m in TARGETS},
        "fusion_untrained": {f"{t}.{m}": ev_u["model"].get(f"{t}.{m}") for t, m in TARGETS},
        "fusion_ridge": {f"{t}.{m}": ev_t["model"].get(f"{t}.{m}") for t, m in TARGETS},
    }
    verdicts = {}
    for t, m in TARGETS:
        ours, raw = rows["fusion_ridge"][f"{t}.{m}"], rows["raw_linear"][f"{t}.{m}"]
        verdicts[f"fusion_ridge >= raw_linear on {t} {m}"] = "PASS" if ours >= raw else "BELOW"
    pass_ratio = fit["pass_s"] / untrained["wall_s"]
    verdicts["ridge fit <= one pass over the store"] = "PASS" if pass_ratio <= 1.0 else "FAIL"
    result = {
        "store": str(store), "split": ev_t["split"], "test_recordings": ev_t["recordings"], "workers": a.workers,
        "rows": rows, "verdicts": verdicts, "lambda": fit["lambda"],
        "train_wall_s": train_wall, "train_pass_s": fit["pass_s"], "batch_wall_s": untrained["wall_s"],
        "train_pass_vs_batch_pass": pass_ratio,
        "inference_seq_per_s": {"untrained": untrained["throughput_seq_per_s"],
                                "trained": trained["throughput_seq_per_s"]},
        "spikes_per_sequence": {"untrained": untrained["spikes_per_sequence"],
                                "trained": trained["spikes_per_sequence"]},
        "command": "python benchmarks/accuracy.py", "date": time.strftime("%Y-%m-%d"),
        "load_average_end": os.getloadavg()[0],
    }
    print(f"\n{ev_t['split']} split, {ev_t['recordings']} recordings (valid steps):")
    print("| model | " + " | ".join(f"{t} {m}" for t, m in TARGETS) + " |")
    print("|---|" + "---|" * len(TARGETS))
    for name, vals in rows.items():
        print(f"| {name} | " + " | ".join("n/a" if v is None else f"{v:.3f}" for v in vals.values()) + " |")
    print(f"\ntraining: {train_wall:.1f} s wall, one pass {fit['pass_s']:.1f} s = {pass_ratio:.2f} x the batch "
          f"run's {untrained['wall_s']:.1f} s; inference {untrained['throughput_seq_per_s']:.0f} seq/s untrained, "
          f"{trained['throughput_seq_per_s']:.0f} seq/s trained")
    for k, v in verdicts.items():
        print(f"  {v:5s} {k}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    flat = {f"{name}.{k}": v for name, vals in rows.items() for k, v in vals.items() if v is not None}
    flat.update({"train_wall_s": train_wall, "train_pass_vs_batch_pass": pass_ratio,
                 "inference_seq_per_s.trained": trained["throughput_seq_per_s"]})
    run_id = log_benchmark("accuracy", {"store": str(store), "workers": a.workers}, flat, a.out)
    print(f"wrote {a.out}; mlflow run {run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
