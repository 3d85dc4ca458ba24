"""``task=train trainer=ridge``: fit the readout on Dask, write a weights file, log it.

One task per recording group of the training and validation splits runs the network
over the whole group (:mod:`pipeline.train.features`) and returns ridge sums; the client
adds them, chooses the penalty on the validation split from the sums alone and solves
once (:mod:`pipeline.core.ridge`).  The new readout replaces the old one in the same
network, whose file carries the split, the penalty and the training store's fingerprint.
``neuroliquid model.weights=<file>`` then runs and scores it on the test split.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pipeline.config import Config
from pipeline.core import interrupts


def run(cfg: Config) -> dict:
    """Fit, save and log; returns a summary with the weights path."""
    from distributed import as_completed

    from pipeline.core.experiment import cluster_session, prepare, run_name, tracked
    from pipeline.core.ridge import RidgeSums, fit
    from pipeline.core.splits import SPLITS, assign_splits, split_record
    from pipeline.data.fingerprint import input_fingerprint
    from pipeline.data.reader import SEQUENTIAL_CACHE_BYTES
    from pipeline.train.features import group_sums

    name = run_name(cfg, "train")
    exp = prepare(cfg, "train", name)
    reader, net = exp.reader, exp.net
    out_file = Path(cfg.trainer.output or Path(cfg.paths.output_dir) / "trained" / f"{name}.npz").resolve()
    if out_file.exists():
        raise FileExistsError(f"{out_file} exists: pick another trainer.output or tracking.run_name")
    if "targets" not in reader.arrays:
        raise ValueError(f"data.path={exp.store} holds no targets: there is nothing to train the readout on")
    labels = assign_splits(reader.n_recordings, cfg.eval.fractions, cfg.eval.seed)
    split = split_record(labels, cfg.eval.fractions, cfg.eval.seed)
    spb = cfg.data.steps_per_block
    n_blocks = -(-int(reader.n_steps.max(initial=0)) // spb)
    chunk = reader.recording_chunk
    groups = [(r0, min(r0 + chunk, reader.n_recordings)) for r0 in range(0, reader.n_recordings, chunk)]
    groups = [g for g in groups if (labels[g[0]:g[1]] <= 1).any()]  # the test split never runs here
    fingerprint = input_fingerprint(exp.store)
    exp.weights.commit()

    d, k = net.readout_h.n_in + net.readout_s.n_in, net.config.n_outputs
    train, val = RidgeSums.zeros(d, k), RidgeSums.zeros(d, k)
    read_s = compute_s = 0.0
    with tracked(exp, {"trainer": cfg.trainer.kind, "eval.split_digest": split["digest"]}) as tracker:
        with cluster_session(exp, tracker, shared_paths=[exp.store.parent],
                             reader_cache_bytes=SEQUENTIAL_CACHE_BYTES) as session:
            print(f"fitting the readout ({d} inputs -> {k} outputs) on {int((labels == 0).sum())} training and "
                  f"{int((labels == 1).sum())} validation recordings, {len(groups)} group tasks")
            t0 = time.perf_counter()
            futs = [session.client.submit(group_sums, str(exp.store), g, n_blocks, spb, cfg.data.policy,
                                          cfg.data.imu_window, labels[g[0]:g[1]], cfg.data.max_age,
                                          key=f"train-{name}-g{i}",
                                          pure=False)
                    for i, g in enumerate(groups)]
            for n_done, fut in enumerate(as_completed(futs), 1):
                r = fut.result()
                fut.release()
                interrupts.check()
                train, val = train + RidgeSums(**r[0]), val + RidgeSums(**r[1])
                read_s, compute_s = read_s + r["read_s"], compute_s + r["compute_s"]
                print(f"\r  {n_done}/{len(groups)} groups, {time.perf_counter() - t0:.1f} s", end="", flush=True)
            print()
            pass_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        result = fit(train, val, cfg.trainer.lambdas)
        solve_s = time.perf_counter() - t1
        trained = net.with_readout(result.w.astype(net.dtype), result.b.astype(net.dtype))
        info = {"trainer": "ridge", "lambda": result.lam, "split": split,
                "training_store": {"path": str(exp.store), "input_fingerprint": fingerprint},
                "fitted_targets": "speed m/s, yaw rate rad/s, 2 * obstacle - 1 (score: > 0 is an obstacle)",
                "base_weights_digest": exp.weights.digest}
        out_file.parent.mkdir(parents=True, exist_ok=True)
        trained.save(out_file, info)
        val_r2 = _validation_r2(val, result.w, result.b)
        metrics = {"train.lambda": result.lam, "train.samples": train.n, "validation.samples": val.n,
                   "train.pass_s": pass_s, "train.read_s": read_s, "train.compute_s": compute_s,
                   "train.solve_s": solve_s, **{f"validation.{t}.r2": v for t, v in val_r2.items()}}
        tracker.log_metrics(metrics)
        tracker.log_series([("train.validation_loss", loss, i) for i, (lam, loss)
                            in enumerate(sorted(result.validation_loss.items()))])
        tracker.set_tags({"model.trained": "true", "train.output": str(out_file)})
        tracker.log_artifact(out_file, "weights")
    print(f"penalty {result.lam:g} (validation loss " + ", ".join(
        f"{lam:g}: {loss:.4f}" for lam, loss in sorted(result.validation_loss.items())) + ")")
    print("validation R^2: " + ", ".join(f"{t} {v:.3f}" for t, v in val_r2.items()))
    print(f"one pass over {len(groups)} groups in {pass_s:.1f} s (read {read_s:.1f} s, compute {compute_s:.1f} s "
          f"summed over workers); solve {solve_s * 1e3:.0f} ms")
    print(f"trained weights: {out_file}\nrun them: neuroliquid model.weights={out_file}  "
          f"(scores the {SPLITS[2]} split)")
    return {"weights": str(out_file), "lambda": result.lam, "validation_r2": val_r2, "run_id": tracker.run_id,
            "pass_s": pass_s, "split": split}


def _validation_r2(val, w: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """R^2 per fitted target on the validation split, from its sums."""
    if val.n == 0:
        return {}
    sse = val.sse(w, b)
    sst = np.diag(val.yty) - val.sy ** 2 / val.n
    names = ("speed", "yaw_rate", "obstacle_score")
    return {n: float(1 - e / t) if t > 0 else float("nan") for n, e, t in zip(names, sse, sst, strict=True)}
