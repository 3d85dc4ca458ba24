"""Accuracy benchmark: how well the network predicts the recordings' targets, beside the
baselines, with what it costs to train and to run (docs/training.md).

On ``make run``'s demo store (generated when missing) and its test split, in one run:

1. the default fusion network with seeded (untrained) weights through the batch pipeline:
   its scores, the baselines (mean; ridge on the raw current-step inputs) and the
   pipeline's inference sequences/s;
2. ``task=train trainer=ridge``: the readout fitted on Dask (training wall time, the pass
   over the training and validation splits against the batch run's pass over the store);
3. the trained weights through the batch pipeline: scores and inference sequences/s.

4. (``--bptt-seeds N``, default 3; 0 skips) ``trainer=bptt`` against the anchor of issue 12,
   ncps CfC (64 units) trained by the same BPTT on the raw-input baseline's per-step
   features (benchmarks/_bptt.py): N seeds each, every training alone in a fresh process,
   alternating ours, anchor, ours, anchor ...; test-split scores, training wall time
   (reading/encoding against compute), inference sequences/s (bare network, one process)
   and modelled energy per sequence, medians over the seeds; ``--ltc`` adds a ``model=ltc``
   training (seed 0) of the whole epoch budget, measured (``--ltc-epochs N`` fewer: the
   budget's time projected from them, and labelled so).

Verdicts (each can fail): the ridge-trained fusion network reaches the raw-input ridge on
every target (R^2 for speed and yaw rate, accuracy for obstacle ahead); the readout fit
costs at most one pass over the store; BPTT fusion >= anchor - 0.02 R^2 on speed and yaw
rate and >= anchor - 0.01 obstacle accuracy; fusion training <= 5 min and LTC <= 15 min
including reading and encoding; the trained network's inference sequences/s within
+-10 % of the random network's (interleaved in the same process).

    python benchmarks/accuracy.py [--store data/demo.zarr] [--workers 2] [--bptt-seeds 3] [--ltc]

Writes benchmarks/results/accuracy.json (committed: docs/benchmarks.md cites it) and logs
one MLflow run in the ``neuroliquid-bench`` experiment.
"""

from __future__ import annotations

import argparse
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=REPO / "data" / "demo.zarr")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "accuracy.json")
    ap.add_argument("--bptt-seeds", type=int, default=3, help="seeds per side of the BPTT rows (0: skip them)")
    ap.add_argument("--ltc", action="store_true", help="also time a model=ltc BPTT training (--ltc-epochs epochs)")
    ap.add_argument("--ltc-epochs", type=int, default=None,
                    help="epochs of the LTC training (default: the trainer's budget, all measured); fewer: "
                         "its time for the budget is projected from them")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved inference timings, trained vs random")
    ap.add_argument("--bptt-set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for both BPTT sides (e.g. trainer.epochs=1 for a smoke run)")
    a = ap.parse_args(argv)

    from benchmarks._common import accuracy_config as config
    from benchmarks._common import quiet
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
        bptt = bptt_rows(a, store, root) if a.bptt_seeds > 0 else None
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
    if bptt is not None:
        rows["fusion_bptt"] = {f"{t}.{m}": bptt["medians"]["fusion"][f"{t}.{m}"] for t, m in TARGETS}
        rows["anchor_ncps_cfc64_raw"] = {f"{t}.{m}": bptt["medians"]["anchor"][f"{t}.{m}"] for t, m in TARGETS}
        verdicts.update(bptt["verdicts"])
    result = {
        "store": str(store), "split": ev_t["split"], "test_recordings": ev_t["recordings"], "workers": a.workers,
        "rows": rows, "verdicts": verdicts, "lambda": fit["lambda"],
        "train_wall_s": train_wall, "train_pass_s": fit["pass_s"], "batch_wall_s": untrained["wall_s"],
        "train_pass_vs_batch_pass": pass_ratio,
        "inference_seq_per_s": {"untrained": untrained["throughput_seq_per_s"],
                                "trained": trained["throughput_seq_per_s"]},
        "spikes_per_sequence": {"untrained": untrained["spikes_per_sequence"],
                                "trained": trained["spikes_per_sequence"]},
        "bptt": bptt, "command": " ".join(["python benchmarks/accuracy.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d"),
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
    if bptt is not None:
        print_bptt(bptt)
    for k, v in verdicts.items():
        print(f"  {v:5s} {k}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    flat = {f"{name}.{k}": v for name, vals in rows.items() for k, v in vals.items() if v is not None}
    flat.update({"train_wall_s": train_wall, "train_pass_vs_batch_pass": pass_ratio,
                 "inference_seq_per_s.trained": trained["throughput_seq_per_s"]})
    if bptt is not None:
        flat.update({f"bptt.{side}.{k}": v for side, med in bptt["medians"].items() for k, v in med.items()})
    run_id = log_benchmark("accuracy", {"store": str(store), "workers": a.workers}, flat, a.out)
    print(f"wrote {a.out}; mlflow run {run_id}")
    return 0


COSTS = ("train_s", "read_encode_s", "compute_s", "energy_j_per_sequence", "inference_seq_per_s")


def bptt_rows(a, store: Path, root: Path) -> dict:
    """Ours and the anchor, each training alone in a fresh process, alternating; medians and verdicts."""
    import statistics

    from benchmarks._bptt import anchor_side, fusion_side
    from benchmarks._common import in_fresh_process

    runs: dict[str, list] = {"fusion": [], "anchor": []}
    for seed in range(a.bptt_seeds):
        for side in ("fusion", "anchor"):
            sub = str(root / f"{side}-{seed}")
            r = (in_fresh_process(fusion_side, str(store), sub, seed, "fusion", a.workers, a.rounds, a.bptt_set)
                 if side == "fusion" else in_fresh_process(anchor_side, str(store), sub, seed, a.workers, a.bptt_set))
            runs[side].append(r)
            print(f"  {side} seed {seed}: " + ", ".join(f"{t} {m} {r[f'{t}.{m}']:.3f}" for t, m in TARGETS)
                  + f"; training {r['train_s']:.0f} s (read/encode {r['read_encode_s']:.0f} s, compute "
                  f"{r['compute_s']:.0f} s), {r['epochs_run']} epochs; load average {os.getloadavg()[0]:.2f}",
                  flush=True)
    keys = [f"{t}.{m}" for t, m in TARGETS] + list(COSTS)
    med = {side: {k: statistics.median(r[k] for r in rs) for k in keys} for side, rs in runs.items()}
    fus = runs["fusion"]
    ratio = statistics.median(r["inference_seq_per_s"] / r["random_inference_seq_per_s"] for r in fus)
    med["fusion"].update({"random_inference_seq_per_s": statistics.median(r["random_inference_seq_per_s"] for r in fus),
                          "spikes_per_sequence": statistics.median(r["spikes_per_sequence"] for r in fus),
                          "random_spikes_per_sequence": statistics.median(r["random_spikes_per_sequence"] for r in fus),
                          "trained_vs_random_inference": ratio})
    verdicts = {}
    for (t, m), margin in zip(TARGETS, (0.02, 0.02, 0.01), strict=True):
        ok = med["fusion"][f"{t}.{m}"] >= med["anchor"][f"{t}.{m}"] - margin
        verdicts[f"fusion_bptt >= anchor - {margin} on {t} {m}"] = "PASS" if ok else "BELOW"
    verdicts["fusion BPTT training <= 5 min incl. reading and encoding"] = (
        "PASS" if med["fusion"]["train_s"] <= 300 else "BELOW")
    verdicts["trained inference seq/s within 10 % of random"] = "PASS" if abs(ratio - 1) <= 0.10 else "BELOW"
    ltc = None
    if a.ltc:
        from benchmarks._common import accuracy_config

        budget = accuracy_config(store, root, a.workers, "task=train", "trainer=bptt", *a.bptt_set).trainer.epochs
        epochs = a.ltc_epochs or budget
        ltc = in_fresh_process(fusion_side, str(store), str(root / "ltc-0"), 0, "ltc", a.workers, 1,
                               ["model=ltc", *a.bptt_set, f"trainer.epochs={epochs}"])  # conf/model/ltc.yaml
        per_epoch = (ltc["train_s"] - ltc["stats_s"]) / ltc["epochs_run"]
        if epochs >= budget:  # the whole training (early stopping included) measured
            ltc.update({"epoch_budget": budget, "per_epoch_s": per_epoch, "projected_train_s": None})
            total, how = ltc["train_s"], f"measured, {ltc['epochs_run']} of {budget} epochs run"
        else:  # measured: the input-statistics pass (read/encode) and `epochs` epochs; projected: the budget
            ltc.update({"epoch_budget": budget, "per_epoch_s": per_epoch,
                        "projected_train_s": ltc["stats_s"] + per_epoch * budget})
            total, how = ltc["projected_train_s"], f"{budget} epochs projected from {ltc['epochs_run']} measured"
        print(f"  ltc seed 0: {ltc['epochs_run']} epoch(s) in {ltc['train_s']:.0f} s ({per_epoch:.0f} s per epoch, "
              f"input statistics pass {ltc['stats_s']:.0f} s): {total / 60:.1f} min ({how}); speed R² "
              f"{ltc['speed.r2']:.3f}, yaw R² {ltc['yaw_rate.r2']:.3f}, obstacle {ltc['obstacle.accuracy']:.3f}",
              flush=True)
        verdicts[f"LTC BPTT training <= 15 min incl. reading and encoding ({how})"] = (
            "PASS" if total <= 900 else "BELOW")
    return {"seeds": a.bptt_seeds, "runs": runs, "medians": med, "ltc": ltc, "verdicts": verdicts,
            "method": "each training alone in a fresh process, alternating fusion, anchor per seed; medians over seeds"}


def print_bptt(b: dict) -> None:
    m = b["medians"]
    print(f"\nBPTT, medians of {b['seeds']} seeds (fresh process each, alternating):")
    print("| side | training s | read/encode s | compute s | inference seq/s | energy J/seq |")
    print("|---|---|---|---|---|---|")
    for side in ("fusion", "anchor"):
        r = m[side]
        print(f"| {side} | {r['train_s']:.0f} | {r['read_encode_s']:.0f} | {r['compute_s']:.0f} | "
              f"{r['inference_seq_per_s']:.0f} | {r['energy_j_per_sequence']:.3g} |")
    f = m["fusion"]
    print(f"trained vs random inference: {f['trained_vs_random_inference']:.2f}x ({f['inference_seq_per_s']:.0f} vs "
          f"{f['random_inference_seq_per_s']:.0f} seq/s; spikes/sequence {f['spikes_per_sequence']:.0f} vs "
          f"{f['random_spikes_per_sequence']:.0f})")


if __name__ == "__main__":
    sys.exit(main())
