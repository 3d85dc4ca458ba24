"""The task a worker runs for one region (recording group x time block).

Read the micro-batch from zarr, align, validate (policy ``fail`` raises
:class:`pipeline.data.SensorDataError`; ``quarantine`` masks the bad rows), start from
block k-1's final state as written to the output store (zero for k = 0, and for
recordings whose previous block was quarantined), run the network, write the region
and its completion marker, and return only small metrics.
"""

from __future__ import annotations

import time
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=8)
def _writer(out: str):
    from pipeline.batch.outputs import RegionWriter

    return RegionWriter(out)


# A batch run reads each shard set once (region grid = shard grid), so its reader keeps a
# few shard sets, not the default 512 MiB: slots are reused while their pages are warm.
# With every shard in a fresh slot, each region's 17.5 MB faulted in page by page (~4,300
# faults; a page fault costs ~14 us on the dev VM).
BATCH_READER_CACHE = 64 << 20


def run_region(mb, out: str, policy: str, imu_window: int, group: int) -> dict:
    """Execute one region; see the module docstring.  Deterministic: a retry writes the
    same bytes."""
    from distributed import get_worker

    from pipeline.core.worker_setup import worker_network
    from pipeline.data import open_reader, read_batch

    t0 = time.perf_counter()
    net = worker_network()
    writer = _writer(out)
    k = mb.block
    if k > 0:
        prev_state, prev_quarantined = writer.read_state(group, k - 1)
    else:
        prev_state, prev_quarantined = None, None
    batch = read_batch(mb, policy, imu_window=imu_window, needs_restart=prev_quarantined,
                       reader=open_reader(mb.store, BATCH_READER_CACHE))
    t1 = time.perf_counter()

    B = len(batch.recordings)
    if prev_state is None:
        state, restarted = net.zero_state(B), np.zeros(B, bool)
    else:
        restarted = np.asarray(batch.restart, bool)
        names = {safe_name(n): n for n in net.state_to_arrays(net.zero_state(1))}
        state = net.state_from_arrays({names[n]: a for n, a in prev_state.items()})
        state = net.reset_rows(state, restarted)
    # Quarantined rows get no input at all: masked, never computed on as if real.
    ok = ~batch.quarantined[:, None]
    tf = time.perf_counter()
    out_net, state = net.forward(
        batch.camera, batch.lidar, batch.imu, state,
        camera_valid=batch.camera_valid & ok, lidar_valid=batch.lidar_valid & ok,
        imu_valid=batch.imu_valid & ok[..., None],
    )
    be = net.backend
    be.synchronize()
    forward_s = time.perf_counter() - tf
    y = be.to_numpy(out_net.y).astype(np.float32, copy=True)
    spikes = be.to_numpy(out_net.spike_counts).astype(np.float32)
    valid = np.asarray(batch.valid, bool)
    y[~valid] = np.nan
    spikes[~valid] = 0.0
    state_arrays = net.state_to_arrays(net.reset_rows(state, batch.quarantined))
    be.synchronize()
    t2 = time.perf_counter()

    writer.write(group, k, y=y, spikes=spikes, valid=valid, quarantined=np.asarray(batch.quarantined, bool),
                 restarted=restarted, state={safe_name(n): a for n, a in state_arrays.items()})
    t3 = time.perf_counter()
    ops = net.last_ops
    return {
        "worker": get_worker().address,  # the chain's next block asks for this worker (pipeline.batch.chains.stream_chains)
        "group": group, "block": k, "recordings": B, "steps": len(batch.steps),
        "valid_steps": int(valid.sum()), "read_s": t1 - t0, "compute_s": t2 - t1, "write_s": t3 - t2,
        "forward_s": forward_s,
        "bytes_read": int(batch.camera.nbytes + batch.lidar.nbytes + batch.imu.nbytes),
        "ops": {k: int(v) for k, v in ops._asdict().items()},
        "spikes": float(spikes.sum()), "quarantined": [int(r) for r in batch.recordings[batch.quarantined]],
        "problems": [str(p) for p in batch.problems][:5], "restarted": int(restarted.sum()),
    }


def safe_name(name: str) -> str:
    """State names like ``camera.ref`` become zarr array names ``camera_ref``."""
    return name.replace(".", "_")


def state_specs(net, batch: int = 1) -> tuple[tuple[str, tuple[int, ...], str], ...]:
    """(name, trailing shape, dtype) of every state array, for the output store's layout."""
    arrays = net.state_to_arrays(net.zero_state(batch))
    return tuple((safe_name(n), tuple(a.shape[1:]), str(a.dtype)) for n, a in sorted(arrays.items()))
