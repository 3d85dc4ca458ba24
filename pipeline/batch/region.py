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


def _writer(out: str):
    """This worker's writer for the output store at ``out``, keyed by path and identity: a
    long-lived worker (``cluster=address``) must not keep handles to a store since recreated
    at the same path."""
    from pipeline.batch.outputs import store_identity

    return _cached_writer(out, store_identity(out))


@lru_cache(maxsize=8)
def _cached_writer(out: str, identity: tuple[int, int]):
    from pipeline.batch.outputs import RegionWriter

    return RegionWriter(out)


def run_region(mb, out: str, policy: str, imu_window: int, group: int, scoring: dict | None = None,
               max_age=None, force: bool = False) -> dict:
    """Execute one region; see the module docstring.  Deterministic: a retry writes the
    same bytes.  A region whose completion marker is written returns ``{"skipped": True}``
    at once unless ``force``: Dask runs finished regions again after a worker loss only to
    rebuild a chain's dependencies (:mod:`pipeline.batch.chains`).

    ``scoring`` (None: not scored): ``score (B,)`` bool, the rows of the evaluation split;
    ``labels (B,)`` int8, every row's split; ``baseline`` bool, also return this region's
    share of the baselines (:mod:`pipeline.core.baselines`).  ``max_age``: ``data.max_age``
    (stale camera/LIDAR samples are invalid input, counted in ``stale``).  Scores go back as small
    mergeable parts (:mod:`pipeline.core.metrics`), never as tensors."""
    from pipeline.core.worker_setup import worker_network
    from pipeline.data import open_reader, read_batch
    from pipeline.data.reader import SEQUENTIAL_CACHE_BYTES

    started_at, t0 = time.time(), time.perf_counter()
    writer = _writer(out)
    k = mb.block
    if not force and writer.is_done(group, k):
        return {"skipped": True}
    net = worker_network()
    if k > 0:
        prev_state, prev_quarantined = writer.read_state(group, k - 1)
    else:
        prev_state, prev_quarantined = None, None
    batch = read_batch(mb, policy, imu_window=imu_window, needs_restart=prev_quarantined,
                       reader=open_reader(mb.store, SEQUENTIAL_CACHE_BYTES), max_age=max_age)
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
    scored = _score(batch, y, scoring) if scoring is not None else {}
    return {**scored,
        "started_at": started_at,  # wall clock, for the driver's latency
        "group": group, "block": k, "recordings": B, "steps": len(batch.steps),
        "valid_steps": int(valid.sum()), "read_s": t1 - t0, "compute_s": t2 - t1, "write_s": t3 - t2,
        "forward_s": forward_s,
        "bytes_read": int(batch.camera.nbytes + batch.lidar.nbytes + batch.imu.nbytes),
        "ops": {k: int(v) for k, v in ops._asdict().items()},
        "spikes": float(spikes.sum()), "quarantined": [int(r) for r in batch.recordings[batch.quarantined]],
        "problems": [str(p) for p in batch.problems][:5], "restarted": int(restarted.sum()),
        "stale": batch.stale_counts(),
    }


def _score(batch, y: np.ndarray, scoring: dict) -> dict:
    """This region's evaluation parts (and baseline parts) on its valid, finite-target steps."""
    from pipeline.core.baselines import baseline_parts
    from pipeline.core.metrics import EvalParts

    if batch.targets is None:
        return {}
    use = np.asarray(batch.valid, bool) & ~batch.quarantined[:, None] & np.isfinite(batch.targets).all(axis=-1)
    score = np.asarray(scoring["score"], bool)
    out = {"eval": EvalParts.of(y, batch.targets, use & score[:, None]).to_dict()}
    if scoring.get("baseline"):
        out["baseline"] = baseline_parts(batch, np.asarray(scoring["labels"]), score, use)
    return out


def score_done_region(store: str, out: str, recordings: tuple[int, int], steps: tuple[int, int],
                      score: np.ndarray) -> dict:
    """Evaluation parts of a region a resumed run does not execute again: its ``y`` and
    ``valid`` from the output store, the targets from the input store (small reads)."""
    import zarr

    from pipeline.core.metrics import EvalParts
    from pipeline.data import open_reader

    rs, ss = slice(*recordings), slice(*steps)
    g = zarr.open_group(out, mode="r")
    y, valid = np.asarray(g["y"][rs, ss]), np.asarray(g["valid"][rs, ss], bool)
    targets, _ = open_reader(store).read("targets", rs, slice(ss.start, ss.start + y.shape[1]))
    targets = np.asarray(targets, np.float32)
    use = valid & np.isfinite(targets).all(axis=-1) & np.asarray(score, bool)[:, None]
    return {"eval": EvalParts.of(y, targets, use).to_dict()}


def safe_name(name: str) -> str:
    """State names like ``camera.ref`` become zarr array names ``camera_ref``."""
    return name.replace(".", "_")


def state_specs(net, batch: int = 1) -> tuple[tuple[str, tuple[int, ...], str], ...]:
    """(name, trailing shape, dtype) of every state array, for the output store's layout."""
    arrays = net.state_to_arrays(net.zero_state(batch))
    return tuple((safe_name(n), tuple(a.shape[1:]), str(a.dtype)) for n, a in sorted(arrays.items()))
