"""Training data, streamed: the store's blocks read through the same reader and encoded by
the kernels' encoders in a background thread, a bounded queue ahead of the trainer.

Each item is one ``tbptt_steps`` block of one batch of recordings: the encoders' output
``x (B, T, F)`` float32, the targets ``(B, T, 3)`` and the steps that count (valid, not
quarantined, finite targets).  The encoders' state (delta modulation references) carries
across the blocks of a batch exactly as at inference; the queue holds at most ``depth``
blocks, so memory stays bounded whatever the store's size.

The encoders' output depends on each recording alone (not on its batch-mates), so the
first epoch also writes it to a :class:`FeatureCache` on disk (memory-mapped ``.npy`` files,
no pickle: events as int8, which they are exactly, LIDAR and IMU level currents as float32);
later epochs,
and later trainings of the same store and encoder settings, read blocks from there instead
of reading and encoding the store again.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_END = object()


@dataclass
class Block:
    first: bool  # the first block of a batch: the trainer starts from zero state
    x: np.ndarray  # (B, T, F) float32
    targets: np.ndarray  # (B, T, 3) float32 (NaN where unknown)
    use: np.ndarray  # (B, T) bool: the steps that count
    read_s: float
    encode_s: float


def batches(recordings: np.ndarray, size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """``recordings`` in batches of ``size`` (shuffled by ``rng`` when given)."""
    order = recordings if rng is None else rng.permutation(recordings)
    return [order[i:i + size] for i in range(0, len(order), size)]


class FeatureCache:
    """Encoded blocks of ``recordings`` on disk, ``(rows, blocks * steps, ...)`` per part.

    The features ``x = [camera events, LIDAR, IMU events, IMU level]`` (widths ``n_camera,
    n_lidar, n_imu, n_level``) are kept as ``events`` (camera + IMU, int8) and ``dense``
    (LIDAR + level, float32)."""

    def __init__(self, path: Path, recordings: np.ndarray, n_blocks: int, steps: int, n_camera: int, n_lidar: int,
                 n_imu: int, n_level: int = 0) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path, self.steps = path, steps
        c, li, e = n_camera, n_camera + n_lidar, n_camera + n_lidar + n_imu  # where each part of x ends
        self.event_cols = np.r_[0:c, li:e]
        self.dense_cols = np.r_[c:li, e:e + n_level]
        self.order = np.argsort(np.r_[self.event_cols, self.dense_cols])  # [events, dense] -> x
        self.row = {int(r): i for i, r in enumerate(recordings)}
        n, S = len(recordings), n_blocks * steps
        spec = {"events": (np.int8, (n, S, c + n_imu)), "dense": (np.float32, (n, S, n_lidar + n_level)),
                "targets": (np.float32, (n, S, 3)), "use": (np.bool_, (n, S)), "filled": (np.bool_, (n, n_blocks))}
        self.a = {}
        for name, (dtype, shape) in spec.items():
            f = path / f"{name}.npy"
            ok = f.is_file() and np.load(f, mmap_mode="r").shape == shape
            self.a[name] = np.load(f, mmap_mode="r+") if ok else np.lib.format.open_memmap(f, "w+", dtype, shape)

    def has(self, recs: np.ndarray, k: int) -> bool:
        return all(int(r) in self.row for r in recs) and bool(self.a["filled"][[self.row[int(r)] for r in recs], k].all())

    def put(self, recs: np.ndarray, k: int, x: np.ndarray, targets: np.ndarray, use: np.ndarray) -> None:
        rows = [self.row[int(r)] for r in recs]
        t = slice(k * self.steps, (k + 1) * self.steps)
        if x.shape[-1] != len(self.order):
            raise ValueError(f"FeatureCache: x has {x.shape[-1]} features, the cache {len(self.order)}")
        events = x[..., self.event_cols]
        if not np.array_equal(events.astype(np.int8), events):
            raise ValueError("FeatureCache: encoder events are not in {-1, 0, 1}: the int8 cache would change them")
        self.a["events"][rows, t] = events.astype(np.int8)
        self.a["dense"][rows, t], self.a["targets"][rows, t], self.a["use"][rows, t] = (
            x[..., self.dense_cols], targets, use)
        self.a["filled"][rows, k] = True

    def get(self, recs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = [self.row[int(r)] for r in recs]
        t = slice(k * self.steps, (k + 1) * self.steps)
        x = np.concatenate([self.a["events"][rows, t].astype(np.float32), self.a["dense"][rows, t]], -1)
        x = x[..., self.order]
        return x, np.asarray(self.a["targets"][rows, t]), np.asarray(self.a["use"][rows, t])

    def flush(self) -> None:
        for a in self.a.values():
            a.flush()


def stream(store: str, encoder, groups: list[np.ndarray], n_steps: np.ndarray, steps: int, cfg_data,
           depth: int = 2, cache: FeatureCache | None = None) -> Iterator[Block]:
    """Blocks of ``groups`` (batches of recordings) in order, read and encoded (or taken from
    ``cache``) ahead in a thread."""
    from pipeline.data import open_reader, read_windows
    from pipeline.data.reader import SEQUENTIAL_CACHE_BYTES

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            reader = open_reader(store, SEQUENTIAL_CACHE_BYTES)
            for recs in groups:
                state = encoder.zero_state(len(recs))
                for k in range(-(-int(n_steps[recs].max()) // steps)):
                    if stop.is_set():
                        return
                    t0 = time.perf_counter()
                    if cache is not None and cache.has(recs, k):
                        x, tg, use = cache.get(recs, k)
                        q.put(Block(k == 0, x, tg, use, time.perf_counter() - t0, 0.0))
                        continue
                    b = read_windows(store, recs, np.full(len(recs), k * steps), steps, cfg_data.policy,
                                     imu_window=cfg_data.imu_window, reader=reader, max_age=cfg_data.max_age)
                    t1 = time.perf_counter()
                    ok = ~b.quarantined[:, None]
                    x, state = encoder.encode(b.camera, b.lidar, b.imu, state, camera_valid=b.camera_valid & ok,
                                              lidar_valid=b.lidar_valid & ok, imu_valid=b.imu_valid & ok[..., None])
                    use = np.asarray(b.valid, bool) & ok & np.isfinite(b.targets).all(axis=-1)
                    x, tg = np.asarray(x, np.float32), np.asarray(b.targets, np.float32)
                    if cache is not None:
                        cache.put(recs, k, x, tg, use)
                    q.put(Block(k == 0, x, tg, use, t1 - t0, time.perf_counter() - t1))
            if cache is not None:
                cache.flush()
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(exc)
        finally:
            q.put(_END)

    thread = threading.Thread(target=produce, daemon=True, name="bptt-stream")
    thread.start()
    try:
        while (item := q.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
