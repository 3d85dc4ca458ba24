"""The task a worker runs for one recording group when fitting the readout: the whole
group, block by block, state carried in memory, returning only the ridge sums of the
readout's inputs ``x = [h, s]`` against the targets, per split.

Targets are fitted as :func:`pipeline.core.ridge.readout_targets` gives them (the obstacle
output becomes a score whose sign is the class).  Steps count
when they are valid, not quarantined and their targets are finite.
"""

from __future__ import annotations

import time

import numpy as np

from pipeline.core.ridge import RidgeSums, readout_targets


def group_sums(store: str, recordings: tuple[int, int], n_blocks: int, steps_per_block: int, policy: str,
               imu_window: int, split: np.ndarray, max_age=None) -> dict:
    """Ridge sums of recordings ``[r0, r1)`` per split label in ``split (r1 - r0,)`` (0 train,
    1 validation; other labels are not run)."""
    from pipeline.core.worker_setup import worker_network
    from pipeline.data import MicroBatch, open_reader, read_batch
    from pipeline.data.reader import SEQUENTIAL_CACHE_BYTES

    t0 = time.perf_counter()
    net = worker_network()
    reader = open_reader(store, SEQUENTIAL_CACHE_BYTES)
    d, k_out = net.readout_h.n_in + net.readout_s.n_in, net.config.n_outputs
    sums = {0: RidgeSums.zeros(d, k_out), 1: RidgeSums.zeros(d, k_out)}
    state, restart = None, None
    read_s = compute_s = 0.0
    for k in range(n_blocks):
        t1 = time.perf_counter()
        mb = MicroBatch(store, recordings, (k * steps_per_block, (k + 1) * steps_per_block), k)
        batch = read_batch(mb, policy, imu_window=imu_window, needs_restart=restart, reader=reader,
                           max_age=max_age)
        t2 = time.perf_counter()
        if state is None:
            state = net.zero_state(len(batch.recordings))
        state = net.reset_rows(state, np.asarray(batch.restart, bool))
        ok = ~batch.quarantined[:, None]
        out, state = net.forward(batch.camera, batch.lidar, batch.imu, state, camera_valid=batch.camera_valid & ok,
                                 lidar_valid=batch.lidar_valid & ok, imu_valid=batch.imu_valid & ok[..., None],
                                 features=True)
        x = net.backend.to_numpy(out.features)
        state = net.reset_rows(state, batch.quarantined)
        restart = batch.carry_restart()
        use = np.asarray(batch.valid, bool) & ok & np.isfinite(batch.targets).all(axis=-1)
        y = readout_targets(batch.targets)
        for label in (0, 1):
            rows = use & (split == label)[:, None]
            if rows.any():
                sums[label] = sums[label] + RidgeSums.of(x[rows], y[rows])
        compute_s += time.perf_counter() - t2
        read_s += t2 - t1
    return {label: vars(s) for label, s in sums.items()} | {
        "read_s": read_s, "compute_s": compute_s, "wall_s": time.perf_counter() - t0}
