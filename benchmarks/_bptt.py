"""The two sides of the BPTT rows of benchmarks/accuracy.py, each run alone in a fresh process.

* :func:`fusion_side`: ``task=train trainer=bptt`` (ours: encoders on the kernels, the
  network in ncps / snnTorch, exported to the kernels), then the exported network and a
  seeded random network of the same config scored on the evaluation split on NumPy,
  interleaved ``rounds`` times: inference sequences/s of each (the bare network's forward,
  one process) and spikes per sequence.
* :func:`anchor_side`: the anchor of issue 12 -- ncps ``CfC`` (64 units) and a linear head
  trained by the same truncated BPTT (same split, targets standardised the same way, same
  loss, Adam, learning rate, batch, block length, epoch budget and early stopping) on the
  per-step raw features of the ``raw_linear`` baseline (``pipeline.core.baselines.raw_features``:
  43 values per step, standardised on the training split).  The features are read once
  (timed as read/encode) and kept in memory.  Its modelled energy per sequence prices the
  operation counts of the same CfC in the kernels (``kernels.cfc.CfC.ops``) plus the head
  with the same energy model as ours.

A *sequence* is one recording-second (10 model steps), as everywhere in neuroliquid.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np

ANCHOR_UNITS = 64
SEQ_STEPS = 10


def fusion_side(store: str, root: str, seed: int, kind: str, workers: int, rounds: int, extra=()) -> dict:
    from benchmarks._common import accuracy_config as config
    from benchmarks._common import quiet
    from kernels import get_backend
    from kernels.network import FusionNetwork
    from pipeline.core.splits import assign_splits, split_members
    from pipeline.data import open_reader
    from pipeline.train.bptt import run as bptt_run
    from pipeline.train.evaluate import evaluate

    cfg = config(Path(store), Path(root), workers, "task=train", "trainer=bptt", f"trainer.seed={seed}",
                 f"model.kind={kind}", f"tracking.run_name=bptt-{kind}-s{seed}", f"trainer.register_as=bench-{kind}", *extra)
    t0 = time.perf_counter()
    res = quiet(bptt_run, cfg)
    task_s = time.perf_counter() - t0
    be = get_backend("numpy")
    trained = FusionNetwork.load(res["weights"], be)
    seeded = FusionNetwork.init(trained.config, be)
    labels = assign_splits(open_reader(store).n_recordings, cfg.eval.fractions, cfg.eval.seed)
    recs = np.flatnonzero(split_members(labels, cfg.eval.split))
    runs = {"random": [], "trained": []}
    for _ in range(rounds):  # interleaved: random, trained, random, trained ...
        for name, net in (("random", seeded), ("trained", trained)):
            runs[name].append(evaluate(net, store, recs, cfg))
    med = {name: {k: float(np.median([r[k] for r in rs])) for k in ("inference.seq_per_s", "spikes_per_sequence")}
           for name, rs in runs.items()}
    f = res["figures"]
    return {"side": kind, "seed": seed, "speed.r2": f["eval.speed.r2"], "yaw_rate.r2": f["eval.yaw_rate.r2"],
            "obstacle.accuracy": f["eval.obstacle.accuracy"], "train_s": res["train_s"],
            "read_encode_s": res["read_encode_s"], "compute_s": res["compute_s"], "task_s": task_s,
            "stats_s": res["stats_s"],
            "epochs_run": res["epochs_run"], "best_epoch": res["best_epoch"],
            "energy_j_per_sequence": f["energy.modelled_j_per_sequence"],
            "inference_seq_per_s": med["trained"]["inference.seq_per_s"],
            "random_inference_seq_per_s": med["random"]["inference.seq_per_s"],
            "inference_runs_seq_per_s": {k: [r["inference.seq_per_s"] for r in v] for k, v in runs.items()},
            "spikes_per_sequence": med["trained"]["spikes_per_sequence"],
            "random_spikes_per_sequence": med["random"]["spikes_per_sequence"]}


def _read_features(store: str, recs: np.ndarray, cfg, reader) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x (R, S, 43) float32, targets (R, S, 3) float32, use (R, S) bool) of ``recs``, whole recordings."""
    from pipeline.core.baselines import raw_features
    from pipeline.data import read_windows

    steps, S = cfg.trainer.tbptt_steps, int(reader.n_steps.max())
    S = -(-S // steps) * steps
    x, tg, use = np.zeros((len(recs), S, 43), np.float32), np.zeros((len(recs), S, 3), np.float32), \
        np.zeros((len(recs), S), bool)
    for i in range(0, len(recs), cfg.trainer.batch_recordings):
        rr = recs[i:i + cfg.trainer.batch_recordings]
        for k in range(-(-int(reader.n_steps[rr].max()) // steps)):
            b = read_windows(store, rr, np.full(len(rr), k * steps), steps, cfg.data.policy,
                             imu_window=cfg.data.imu_window, reader=reader, max_age=cfg.data.max_age)
            ok = ~b.quarantined[:, None]
            t = slice(k * steps, (k + 1) * steps)
            x[i:i + len(rr), t] = np.where(ok[..., None], raw_features(b), 0.0)
            tg[i:i + len(rr), t] = np.nan_to_num(b.targets)
            use[i:i + len(rr), t] = np.asarray(b.valid, bool) & ok & np.isfinite(b.targets).all(-1)
    return x, tg, use


def anchor_side(store: str, root: str, seed: int, workers: int, extra=()) -> dict:
    import ncps.torch as ncps_torch
    import torch

    from benchmarks._common import accuracy_config as config
    from kernels import get_backend
    from kernels.cfc import CfC
    from kernels.params import OpCounts
    from pipeline.core.energy import ModelledEnergy
    from pipeline.core.metrics import EvalParts
    from pipeline.core.splits import assign_splits, split_members
    from pipeline.data import open_reader

    cfg = config(Path(store), Path(root), workers, "task=train", "trainer=bptt", f"trainer.seed={seed}", *extra)
    T = cfg.trainer
    reader = open_reader(store)
    labels = assign_splits(reader.n_recordings, cfg.eval.fractions, cfg.eval.seed)
    tr, va = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    te = np.flatnonzero(split_members(labels, cfg.eval.split))
    t0 = time.perf_counter()
    data = {name: _read_features(store, recs, cfg, reader) for name, recs in (("train", tr), ("val", va), ("test", te))}
    read_s = time.perf_counter() - t0
    xt, tgt, ut = data["train"]
    f_mu, f_sd = xt[ut].mean(0), xt[ut].std(0) + 1e-6
    mu, sd = tgt[ut][:, :2].mean(0), tgt[ut][:, :2].std(0) + 1e-9
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, cfg.backend.threads))
    cell = ncps_torch.CfC(43, ANCHOR_UNITS, return_sequences=True, batch_first=True)
    head = torch.nn.Linear(ANCHOR_UNITS, 3)
    params = list(cell.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=T.lr)
    mu_t, sd_t = torch.tensor(mu), torch.tensor(sd)
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    def epoch(name: str, train: bool, epoch_i: int, forward_s: list | None = None):
        x, tg, use = data[name]
        x = (x - f_mu) / f_sd
        order = np.random.default_rng([T.seed, epoch_i]).permutation(len(x)) if train else np.arange(len(x))
        total, count, parts = 0.0, 0, EvalParts()
        for i in range(0, len(order), T.batch_recordings):
            rows = order[i:i + T.batch_recordings]
            h = None
            for k in range(0, x.shape[1], T.tbptt_steps):
                u = use[rows, k:k + T.tbptt_steps]
                if not use[rows, k:].any():
                    break  # nothing counts from here on (the recordings have ended)
                h = None if h is None else h.detach()
                t1 = time.perf_counter()
                with torch.set_grad_enabled(train):
                    out, h = cell(torch.from_numpy(np.ascontiguousarray(x[rows, k:k + T.tbptt_steps])), h)
                    y = head(out)
                    if forward_s is not None:  # (seconds, row-steps the forward ran)
                        forward_s.append((time.perf_counter() - t1, len(rows) * out.shape[1]))
                    if not u.any():
                        continue
                    g = torch.from_numpy(tg[rows, k:k + T.tbptt_steps])
                    m = torch.from_numpy(u)
                    loss = ((((y[..., :2] - (g[..., :2] - mu_t) / sd_t) ** 2).mean(-1) + bce(y[..., 2], g[..., 2],
                                                                                            reduction="none"))[m].mean())
                    if train:
                        opt.zero_grad()
                        loss.backward()
                        opt.step()
                total, count = total + loss.item() * int(u.sum()), count + int(u.sum())
                if not train:
                    phys = torch.cat([y[..., :2] * sd_t + mu_t, y[..., 2:]], -1).detach().numpy()
                    parts += EvalParts.of(phys.astype(np.float64), tg[rows, k:k + T.tbptt_steps], u)
        return total / max(count, 1), parts.metrics()

    best, best_state, bad, epochs_run = float("inf"), None, 0, 0
    t0 = time.perf_counter()
    for e in range(T.epochs):
        epoch("train", True, e)
        va_loss, _ = epoch("val", False, e)
        epochs_run += 1
        if va_loss < best - 1e-6:
            best, bad, best_state = va_loss, 0, (copy.deepcopy(cell.state_dict()), copy.deepcopy(head.state_dict()))
        else:
            bad += 1
            if bad >= T.patience:
                break
    compute_s = time.perf_counter() - t0
    cell.load_state_dict(best_state[0])
    head.load_state_dict(best_state[1])
    forward_s: list[tuple[float, int]] = []
    _, m = epoch("test", False, 0, forward_s)
    sequences = data["test"][2].sum() / SEQ_STEPS
    per_step = CfC.init(43, ANCHOR_UNITS, backend=get_backend("numpy")).ops(1, 1)
    per_step = per_step + OpCounts(mac=ANCHOR_UNITS * 3, dense_mac=ANCHOR_UNITS * 3)
    ran = sum(n for _, n in forward_s)  # priced as ours: every step the forward ran, per valid sequence
    ops = OpCounts(*(v * ran for v in per_step))
    return {"side": "anchor", "seed": seed, "speed.r2": m["speed.r2"], "yaw_rate.r2": m["yaw_rate.r2"],
            "obstacle.accuracy": m["obstacle.accuracy"], "train_s": read_s + compute_s, "read_encode_s": read_s,
            "compute_s": compute_s, "epochs_run": epochs_run,
            "energy_j_per_sequence": ModelledEnergy(cfg.energy).joules(ops) / sequences,
            "inference_seq_per_s": float(sequences / sum(s for s, _ in forward_s))}
