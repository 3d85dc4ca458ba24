"""``task=train trainer=bptt``: the whole network trained end to end in PyTorch (docs/training.md).

Truncated BPTT: each batch of ``trainer.batch_recordings`` training recordings runs block
by block (``trainer.tbptt_steps`` steps), the liquid and LIF state carried across blocks and
detached between them.  Loss on the steps that count: MSE on speed and yaw rate
standardised by the training split's mean and std, plus BCE on the obstacle logit.  Adam;
after every epoch the validation split is scored (physical units) and a checkpoint written;
training stops after ``trainer.patience`` epochs without a better validation loss and keeps
the best epoch.  ``trainer.pool_*``: the first layer reads fixed pooled inputs (camera blocks,
LIDAR sectors, IMU events per channel; :func:`pipeline.train.torch_model.pool_matrix`),
standardised with the pooled inputs' own mean and std.  The result is exported to the
kernels (:func:`pipeline.train.torch_model.export`, target scaling folded into the readout,
input pooling into the first layer), saved with its provenance, logged as an MLflow
artifact and registered in the model registry.  Seeded and reproducible on the CPU.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import numpy as np

from pipeline.config import Config

FORMAT = "neuroliquid-bptt/1"


def run(cfg: Config) -> dict:
    from pipeline.train.torch_model import import_torch

    torch, _, _ = import_torch()  # first: a missing extra is a one-line error before anything starts
    from kernels import get_backend
    from pipeline.core.experiment import prepare, run_name, tracked
    from pipeline.core.network import Geometry, fusion_config
    from pipeline.core.registry import register
    from pipeline.core.splits import assign_splits, split_record
    from pipeline.data.fingerprint import input_fingerprint
    from pipeline.train import checkpoint
    from pipeline.train.torch_model import build, export, pool_matrix

    T = cfg.trainer
    name = run_name(cfg, "bptt")
    exp = prepare(cfg, "train", name)
    reader = exp.reader
    out_file = Path(T.output or Path(cfg.paths.output_dir) / "trained" / f"{name}.npz").resolve()
    ckpt_dir = Path(cfg.paths.output_dir) / "checkpoints" / name
    if out_file.exists():
        raise FileExistsError(f"{out_file} exists: pick another trainer.output or tracking.run_name")
    if "targets" not in reader.arrays:
        raise ValueError(f"data.path={exp.store} holds no targets: there is nothing to train on")
    if cfg.resume and not (ckpt_dir / "last.safetensors").is_file():
        raise FileNotFoundError(f"resume={cfg.resume}: no checkpoint at {ckpt_dir / 'last.safetensors'}")
    labels = assign_splits(reader.n_recordings, cfg.eval.fractions, cfg.eval.seed)
    split = split_record(labels, cfg.eval.fractions, cfg.eval.seed)
    train_recs, val_recs = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    fc = fusion_config(cfg.model, Geometry.of_store(reader, cfg.data.imu_window))
    targets, _ = reader.read("targets", slice(0, reader.n_recordings))
    used = (np.arange(targets.shape[1]) < reader.n_steps[:, None]) & np.isfinite(targets).all(-1)
    tr = targets[train_recs][used[train_recs]]
    mu, sd = tr[:, :2].mean(0), tr[:, :2].std(0) + 1e-9
    torch.manual_seed(T.seed)
    torch.set_num_threads(max(1, cfg.backend.threads))
    pool = pool_matrix(fc, T.pool_camera, T.pool_lidar, T.pool_imu)
    model = build(fc, T.seed, "float32", pool)
    opt = torch.optim.Adam(model.parameters(), lr=T.lr)
    encoder = exp.net  # the kernels' encoders, as at inference (NumPy)
    start, best, best_epoch, bad = 0, float("inf"), -1, 0
    best_state = None
    if cfg.resume:
        meta = checkpoint.load(ckpt_dir / "last.safetensors", model, opt)
        start, best, best_epoch, bad = meta["epoch"] + 1, meta["best"], meta["best_epoch"], meta["bad"]
        if (ckpt_dir / "best.safetensors").is_file():
            best_model = build(fc, T.seed, "float32", pool)
            checkpoint.load(ckpt_dir / "best.safetensors", best_model)
            best_state = copy.deepcopy(best_model.state_dict())
        print(f"resume: from epoch {start} (checkpoint {ckpt_dir / 'last.safetensors'})")
    fingerprint = input_fingerprint(exp.store)
    exp.weights.commit()
    cache = _feature_cache(cfg, fc, fingerprint, np.sort(np.r_[train_recs, val_recs]), reader)
    if not cfg.resume:  # resume=<run> alone restores this (pipeline.__main__.resume_config)
        import dataclasses
        import json

        ckpt_dir.mkdir(parents=True, exist_ok=True)
        (ckpt_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), default=str, sort_keys=True))
    stats = _Stats(torch, mu, sd)
    with tracked(exp, {"trainer": "bptt", "eval.split_digest": split["digest"], "resumed_from": cfg.resume or ""}) as tracker:
        n_in = fc.n_features if pool is None else pool.shape[1]
        tracker.log_params({"train.format": FORMAT, "train.features": fc.n_features, "train.inputs": n_in})
        epochs_run, io_total, comp_total, t_train, stats_s = 0, 0.0, 0.0, time.perf_counter(), 0.0
        if not cfg.resume:  # (a resumed model has them in its checkpoint)
            shift, scale, stats_s = _input_stats(encoder, exp, cfg, train_recs, cache, pool)
            io_total = stats_s
            model.in_shift.copy_(torch.from_numpy(shift))
            model.in_scale.copy_(torch.from_numpy(scale))
            print(f"input standardisation: the training split's per-feature mean and std ({stats_s:.1f} s, one "
                  f"read+encode pass that also fills the feature cache)"
                  + ("" if pool is None else f"; {fc.n_features} features pooled into {n_in} inputs"), flush=True)
        for epoch in range(start, T.epochs):
            t0 = time.perf_counter()
            tr_loss, io_s, comp_s = _epoch(torch, model, opt, stats, encoder, exp, cfg, train_recs, epoch, True, cache)
            va_loss, va_metrics, va_io, va_comp = _epoch(torch, model, None, stats, encoder, exp, cfg, val_recs, epoch, False,
                                               cache)
            wall = time.perf_counter() - t0
            epochs_run += 1
            io_total, comp_total = io_total + io_s + va_io, comp_total + comp_s + va_comp
            improved = va_loss < best - 1e-6
            if improved:
                best, best_epoch, bad, best_state = va_loss, epoch, 0, copy.deepcopy(model.state_dict())
                checkpoint.save(ckpt_dir / "best.safetensors", model, opt, {"epoch": epoch})
            else:
                bad += 1
            checkpoint.save(ckpt_dir / "last.safetensors", model, opt,
                            {"epoch": epoch, "best": best, "best_epoch": best_epoch, "bad": bad})
            row = {"train.loss": tr_loss, "validation.loss": va_loss, "train.epoch_s": wall,
                   "train.read_encode_s": io_s, "train.compute_s": comp_s, **{f"validation.{k}": v for k, v in va_metrics.items()}}
            tracker.log_metrics({k: v for k, v in row.items() if np.isfinite(v)}, step=epoch)
            print(f"epoch {epoch + 1}/{T.epochs}: loss {tr_loss:.4f}, validation {va_loss:.4f} "
                  f"(speed R² {va_metrics.get('speed.r2', float('nan')):.3f}, yaw R² "
                  f"{va_metrics.get('yaw_rate.r2', float('nan')):.3f}, obstacle acc "
                  f"{va_metrics.get('obstacle.accuracy', float('nan')):.3f}) {wall:.1f} s "
                  f"(read+encode {io_s:.1f} s in the background, compute {comp_s:.1f} s)"
                  + ("" if improved else f"; no better for {bad}"), flush=True)
            if bad >= T.patience:
                print(f"early stop: validation loss not better for {T.patience} epochs (best: epoch {best_epoch + 1})")
                break
        train_s = time.perf_counter() - t_train
        if best_state is not None:
            model.load_state_dict(best_state)
        net = export(model, fc, get_backend("numpy"), scale=np.r_[sd, 1.0], shift=np.r_[mu, 0.0])
        info = {"trainer": "bptt", "format": FORMAT, "split": split, "best_epoch": best_epoch,
                "validation_loss": best, "epochs_run": epochs_run, "target_scaling": {
                    "speed": [float(mu[0]), float(sd[0])], "yaw_rate": [float(mu[1]), float(sd[1])],
                    "folded": "y = y_standardised * std + mean; obstacle output is a logit"},
                "training_store": {"path": str(exp.store), "input_fingerprint": fingerprint},
                "input_pooling": {"camera": T.pool_camera, "lidar": T.pool_lidar, "imu": T.pool_imu, "inputs": n_in},
                "network_config": fc.to_json()}
        out_file.parent.mkdir(parents=True, exist_ok=True)
        net.save(out_file, info)
        tracker.log_metrics({"train.best_epoch": best_epoch, "train.best_validation_loss": best})
        tracker.set_tags({"model.trained": "true", "train.output": str(out_file)})
        tracker.log_artifact(out_file, "weights")
        from pipeline.core.splits import split_members
        from pipeline.train.evaluate import evaluate

        scored = np.flatnonzero(split_members(labels, cfg.eval.split))
        figures = evaluate(net, str(exp.store), scored, cfg)  # what a sweep compares: accuracy and cost
        tracker.log_metrics({k: v for k, v in figures.items() if np.isfinite(v)})
        model_name = T.register_as or f"neuroliquid-{cfg.model.kind}"
        version = register(cfg.tracking.uri, model_name, tracker.run_id, f"weights/{out_file.name}")
    print(f"{cfg.eval.split} split: " + ", ".join(f"{k.removeprefix('eval.')} {v:.3f}" for k, v in figures.items()
                                                if k.startswith("eval.")))
    print(f"inference {figures['inference.seq_per_s']:.0f} seq/s (NumPy, 1 process), modelled energy "
          f"{figures['energy.modelled_j_per_sequence']:.3g} J/sequence")
    print(f"trained weights: {out_file}\nregistered: models:/{model_name}/{version} (alias current)\n"
          f"run them: neuroliquid model.weights=models:/{model_name}/{version}")
    return {"weights": str(out_file), "best_epoch": best_epoch, "validation_loss": best, "run_id": tracker.run_id,
            "model_uri": f"models:/{model_name}/{version}", "epochs_run": epochs_run, "figures": figures,
            "train_s": train_s, "read_encode_s": io_total, "compute_s": comp_total, "stats_s": stats_s}


class _Stats:
    """Standardisation of speed and yaw rate (the training split's), on tensors."""

    def __init__(self, torch, mu: np.ndarray, sd: np.ndarray) -> None:
        self.mu, self.sd = torch.tensor(mu, dtype=torch.float32), torch.tensor(sd, dtype=torch.float32)


def _feature_cache(cfg, fc, fingerprint: str, recs: np.ndarray, reader):
    """The encoded-features cache of this store, split and encoder setting (docs/training.md)."""
    import hashlib
    import json

    from pipeline.train.stream import FeatureCache

    key = json.dumps({"store": fingerprint, "recordings": recs.tolist(), "steps": cfg.trainer.tbptt_steps,
                      "policy": cfg.data.policy, "imu_window": cfg.data.imu_window, "max_age": str(cfg.data.max_age),
                      "encoders": {k: getattr(fc, k) for k in ("camera", "beams", "imu_per_step", "camera_threshold",
                                                                 "camera_eps", "lidar_r_min", "imu_thresholds",
                                                                 "imu_level", "imu_level_scale")}},
                     sort_keys=True, default=str)
    path = Path(cfg.paths.output_dir) / "cache" / "bptt-features" / hashlib.sha256(key.encode()).hexdigest()[:16]
    n_blocks = -(-int(reader.n_steps.max(initial=0)) // cfg.trainer.tbptt_steps)
    return FeatureCache(path, recs, n_blocks, cfg.trainer.tbptt_steps, fc.n_camera, fc.beams, fc.n_imu, fc.n_level)


def _input_stats(encoder, exp, cfg, recs: np.ndarray, cache, pool=None) -> tuple[np.ndarray, np.ndarray, float]:
    """The training split's per-input mean and std over the steps that count (std 1 where an
    input never varies; the inputs: the features, or ``features @ pool``), and the seconds it
    took: one pass that also fills ``cache``."""
    from pipeline.train.stream import batches, stream

    T = cfg.trainer
    t0 = time.perf_counter()
    n, total, sq = 0, None, None
    for blk in stream(str(exp.store), encoder, batches(recs, T.batch_recordings, None), exp.reader.n_steps,
                      T.tbptt_steps, cfg.data, cache=cache):
        x = blk.x[blk.use].astype(np.float64)
        x = x if pool is None else x @ pool
        total = x.sum(0) if total is None else total + x.sum(0)
        sq = (x * x).sum(0) if sq is None else sq + (x * x).sum(0)
        n += len(x)
    if not n:
        raise ValueError(f"data.path={exp.store}: the training split has no step with valid inputs and targets")
    mean = total / n
    std = np.sqrt(np.maximum(sq / n - mean * mean, 0.0))
    return mean.astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32), time.perf_counter() - t0


def _epoch(torch, model, opt, stats: _Stats, encoder, exp, cfg, recs: np.ndarray, epoch: int, train: bool,
           cache=None):
    """One pass over ``recs``: (mean loss, read+encode s, compute s); scoring also returns metrics."""
    from pipeline.core.metrics import EvalParts
    from pipeline.train.stream import batches, stream

    T = cfg.trainer
    rng = np.random.default_rng([T.seed, epoch]) if train else None
    groups = batches(recs, T.batch_recordings, rng)
    model.train(train)
    total, count, io_s, comp_s = 0.0, 0, 0.0, 0.0
    parts = EvalParts()
    state = (None, None)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    n = len(groups)
    blocks = stream(str(exp.store), encoder, groups, exp.reader.n_steps, T.tbptt_steps, cfg.data, cache=cache)
    for i, blk in enumerate(blocks):
        io_s += blk.read_s + blk.encode_s
        t0 = time.perf_counter()
        if blk.first:
            state = (None, None)
        state = tuple(None if s is None else s.detach() for s in state)
        x = torch.from_numpy(blk.x)
        with torch.set_grad_enabled(train):
            y, _, state = model(x, state)
            use = torch.from_numpy(blk.use)
            if use.any():
                tgt = torch.from_numpy(np.nan_to_num(blk.targets))
                reg = ((y[..., :2] - (tgt[..., :2] - stats.mu) / stats.sd) ** 2).mean(-1)
                cls = bce(y[..., 2], tgt[..., 2], reduction="none")
                loss = (reg + cls)[use].mean()
                if train:
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                k = int(use.sum())
                total, count = total + loss.item() * k, count + k
                if not train:
                    phys = torch.cat([y[..., :2] * stats.sd + stats.mu, y[..., 2:]], -1).detach().numpy()
                    parts += EvalParts.of(phys, blk.targets, blk.use)
        comp_s += time.perf_counter() - t0
        if sys.stderr.isatty():
            sys.stderr.write(f"\r  {'train' if train else 'validate'} block {i + 1} ({n} batches)")
    if sys.stderr.isatty():
        sys.stderr.write("\r" + " " * 60 + "\r")
    mean = total / max(count, 1)
    return (mean, io_s, comp_s) if train else (mean, parts.metrics(), io_s, comp_s)
