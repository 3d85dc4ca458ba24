"""A trained network scored where a sweep compares it: the evaluation split, on the kernels
(NumPy, one process), with what it costs: inference sequences/s of the bare network and
modelled energy per sequence (the energy model of :mod:`pipeline.core.energy`).

A *sequence* is one recording-second (10 model steps at 10 Hz), as in the batch summary.
Recordings run block by block from zero state, state carried, so the scores equal what the
batch pipeline computes for the same weights on the same split.
"""

from __future__ import annotations

import time

import numpy as np

from kernels.params import OpCounts

SEQ_STEPS = 10


def evaluate(net, store: str, recordings: np.ndarray, cfg) -> dict[str, float]:
    """``eval.*`` metrics, ``inference.seq_per_s``, ``energy.modelled_j_per_sequence`` and
    ``spikes_per_sequence`` of ``net`` over ``recordings``."""
    from pipeline.core.energy import ModelledEnergy
    from pipeline.core.metrics import EvalParts
    from pipeline.data import open_reader, read_windows
    from pipeline.train.stream import batches

    reader = open_reader(store)
    steps = cfg.trainer.tbptt_steps
    parts, ops, forward_s, valid_steps, spikes = EvalParts(), OpCounts(), 0.0, 0, 0.0
    for recs in batches(np.asarray(recordings), cfg.trainer.batch_recordings, None):
        state = None
        for k in range(-(-int(reader.n_steps[recs].max()) // steps)):
            b = read_windows(store, recs, np.full(len(recs), k * steps), steps, cfg.data.policy,
                             imu_window=cfg.data.imu_window, reader=reader, max_age=cfg.data.max_age)
            ok = ~b.quarantined[:, None]
            t0 = time.perf_counter()
            out, state = net.forward(b.camera, b.lidar, b.imu, state, camera_valid=b.camera_valid & ok,
                                     lidar_valid=b.lidar_valid & ok, imu_valid=b.imu_valid & ok[..., None])
            net.backend.synchronize()
            forward_s += time.perf_counter() - t0
            ops = ops + net.last_ops
            valid = np.asarray(b.valid, bool) & ok
            valid_steps += int(valid.sum())
            spikes += float(np.asarray(out.spike_counts)[valid].sum())
            use = valid & np.isfinite(b.targets).all(-1)
            parts += EvalParts.of(np.asarray(out.y, np.float64), b.targets, use)
    sequences = max(valid_steps / SEQ_STEPS, 1e-9)
    out = {f"eval.{k}": v for k, v in parts.metrics().items()}
    out.update({"inference.seq_per_s": sequences / max(forward_s, 1e-9),
                "energy.modelled_j_per_sequence": ModelledEnergy(cfg.energy).joules(ops) / sequences,
                "spikes_per_sequence": spikes / sequences})
    return out
