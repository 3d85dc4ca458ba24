"""Deterministic synthetic recording stores, generated shard by shard in parallel.

One task per group of ``layout.shard_recordings`` recordings: it simulates the group's
trajectories, draws every sensor's timestamps, then renders and writes one time shard
of one modality at a time, so a task holds at most one shard of sensor data (plus the
trajectories, ~5 kB per recording-second) whatever the store's size.  Every random draw
comes from ``default_rng([seed, recording, stream, ...])``, so the bytes depend only on the
seed and the config -- not on the number of workers or the order tasks run in.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from pipeline.config import DataConfig
from pipeline.data import sensors, world
from pipeline.data.schema import MODALITIES, NS, PAD_TIME, SCHEMA_VERSION, VARIABLES
from pipeline.data.store import create_store, plan_encoding, write_region

EPOCH0_NS = 1_700_000_000 * NS  # recordings start within a day after 2023-11-14
_STREAM = {"scene": 0, "time": 1, "noise": 2, "bias": 3, "camera": 10, "lidar": 11, "imu": 12}


def _rng(seed: int, rec: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, rec, *stream])


def store_sizes(cfg: DataConfig) -> tuple[dict[str, int], dict[str, float]]:
    """Dim lengths and nominal rates (Hz) of the time dims for a synthetic store."""
    s = cfg.synthetic
    rates = {"frame": s.camera_rate_hz, "scan": s.lidar_rate_hz, "sample": s.imu_rate_hz, "step": cfg.model_rate_hz}
    sizes = {d: int(math.ceil(cfg.duration_s * r * (1 + 1e-4))) + 1 for d, r in rates.items()}
    sizes["step"] = int(math.floor(cfg.duration_s * cfg.model_rate_hz + 1e-9))
    sizes.update(recording=cfg.recordings, y=s.camera_size, x=s.camera_size, beam=s.lidar_beams,
                 channel=6, target=3, pose_axis=3)
    return sizes, rates


def store_attrs(cfg: DataConfig) -> dict:
    """Dataset attrs: schema version, rates (Hz), sensor geometry (SI), generator provenance."""
    s = cfg.synthetic
    return {
        "schema": SCHEMA_VERSION,
        "camera_rate_hz": s.camera_rate_hz, "lidar_rate_hz": s.lidar_rate_hz, "imu_rate_hz": s.imu_rate_hz,
        "targets_rate_hz": cfg.model_rate_hz,
        "camera_fov_rad": float(np.deg2rad(s.camera_fov_deg)), "camera_height_m": sensors.CAM_HEIGHT,
        "object_height_m": sensors.OBJ_HEIGHT,
        "lidar_angle_min_rad": 0.0, "lidar_angle_increment_rad": 2 * np.pi / s.lidar_beams,
        "lidar_max_range_m": s.lidar_max_range_m, "imu_frame": "body: x forward, y left, z up",
        "obstacle_ahead": f"surface within {s.ahead_distance_m} m, +-{s.ahead_half_angle_deg} deg of heading",
        "generator": "neuroliquid.synthetic/1", "seed": cfg.seed, "duration_s": cfg.duration_s,
        "generator_config": json.dumps(asdict(s), sort_keys=True),
    }


def generate_group(cfg: DataConfig, r0: int, r1: int) -> int:
    """Simulate, render and write recordings ``[r0, r1)`` (whole shards); returns bytes written."""
    s, path = cfg.synthetic, cfg.path
    sizes, rates = store_sizes(cfg)
    enc = plan_encoding(sizes, rates, cfg.layout)
    recs = range(r0, r1)
    obstacles, albedo, start = world.make_scenes([_rng(cfg.seed, r, _STREAM["scene"]) for r in recs], s)
    tr = [_rng(cfg.seed, r, _STREAM["time"]) for r in recs]
    lengths = np.array([cfg.duration_s * g.uniform(1 - s.length_jitter, 1.0) for g in tr])
    t_start = np.array([EPOCH0_NS + int(g.uniform(0, 86400) * NS) for g in tr], np.int64)
    traj = world.simulate([_rng(cfg.seed, r, _STREAM["scene"], 1) for r in recs], obstacles, start, lengths.max(), s)
    bias = np.stack([_rng(cfg.seed, r, _STREAM["bias"]).normal(0, 1, 6) for r in recs])
    bias *= np.array([s.imu_accel_bias] * 3 + [s.imu_gyro_bias] * 3)
    written = 0

    def put(arrays: dict, region: dict) -> None:
        nonlocal written
        write_region(path, arrays, region)
        written += sum(a.nbytes for a in arrays.values())

    n_steps = np.floor(lengths * cfg.model_rate_hz + 1e-9).astype(np.int32).clip(max=sizes["step"])
    step_s = (np.arange(sizes["step"]) + 1) / cfg.model_rate_hz
    targets = np.full((len(recs), sizes["step"], 3), np.nan, np.float32)
    pose = np.full_like(targets, np.nan)
    for i in range(len(recs)):
        k = n_steps[i]
        targets[i, :k], pose[i, :k] = sensors.truth(traj, i, step_s[:k], obstacles[i], s)
    meta = {"t_start": t_start, "n_steps": n_steps, "targets": targets, "pose": pose,
            "imu_bias": bias.astype(np.float32)}
    drop = {"camera": s.drop_prob, "lidar": s.drop_prob, "imu": s.imu_drop_prob}
    for name, mod in MODALITIES.items():
        cap = sizes[mod.dim]
        rel = [sensors.sample_times(_rng(cfg.seed, r, _STREAM["time"], _STREAM[name]), rates[mod.dim], cap,
                                    lengths[i], s, drop[name]) for i, r in enumerate(recs)]
        meta[mod.count] = np.array([len(t) for t in rel], np.int32)
        shard_t = enc[mod.var]["shards"][1]
        for b, i0 in enumerate(range(0, cap, shard_t)):
            i1 = min(i0 + shard_t, cap)
            shape = (len(recs), i1 - i0) + tuple(sizes[d] for d in VARIABLES[mod.var].dims[2:])
            data = np.full(shape, VARIABLES[mod.var].fill, VARIABLES[mod.var].dtype)
            times = np.full((len(recs), i1 - i0), PAD_TIME, np.int64)
            for i, r in enumerate(recs):
                t_rel = rel[i][i0:i1]
                if len(t_rel) == 0:
                    continue
                rng, t_s = _rng(cfg.seed, r, _STREAM["noise"], _STREAM[name], b), t_rel / 1e9
                times[i, : len(t_rel)] = t_start[i] + t_rel
                if name == "camera":
                    data[i, : len(t_rel)] = sensors.render_camera(traj, i, t_s, obstacles[i], albedo[i], rng, s)
                elif name == "lidar":
                    data[i, : len(t_rel)] = sensors.render_lidar(traj, i, t_s, obstacles[i], rng, s)
                else:
                    data[i, : len(t_rel)] = sensors.render_imu(traj, i, t_s, bias[i], rng, s)
            put({mod.var: data, mod.time: times}, {"recording": slice(r0, r1), mod.dim: slice(i0, i1)})
    put(meta, {"recording": slice(r0, r1)})
    return written


def _group_lines_class():
    from dask.callbacks import Callback  # noqa: PLC0415

    class GroupLines(Callback):
        """Progress for logs that are not a terminal: ``generated k/n recording groups`` lines."""

        def __init__(self, n: int) -> None:
            super().__init__()
            self.n, self.k = n, 0

        def _posttask(self, key, result, dsk, state, id):  # noqa: A002 (dask's signature)
            if isinstance(key, tuple) and str(key[0]).startswith("generate_group") or \
                    str(key).startswith("generate_group"):
                self.k += 1
                print(f"generated {self.k}/{self.n} recording groups", file=sys.stderr, flush=True)

    return GroupLines


def _GroupLines(n: int):  # noqa: N802 (a class made on first use: dask imports lazily here)
    return _group_lines_class()(n)


def generate_store(cfg: DataConfig, progress: bool = True, checksums: bool = True) -> dict:
    """Write the synthetic store ``cfg.path``; returns a summary (bytes, seconds, MB/s).

    Groups run in parallel in ``cfg.workers`` processes (0: all cores) with a Dask
    progress bar; one group runs in-process.  ``cfg.overwrite`` replaces only an existing
    neuroliquid store (:func:`pipeline.data.store_path.prepare_path`).  Every chunk carries a
    crc32c checksum; ``checksums=False`` writes the encoding from before checksums (tests,
    cost measurements).
    """
    import time

    import dask  # noqa: PLC0415  (heavy; only the generate task needs it)
    from dask.diagnostics import ProgressBar  # noqa: PLC0415

    t0 = time.perf_counter()
    sizes, rates = store_sizes(cfg)
    enc = plan_encoding(sizes, rates, cfg.layout, checksums)
    create_store(cfg.path, sizes, store_attrs(cfg), enc, overwrite=cfg.overwrite)
    step = enc["t_start"]["chunks"][0]
    groups = [(r, min(r + step, cfg.recordings)) for r in range(0, cfg.recordings, step)]
    tasks = [dask.delayed(generate_group)(cfg, a, b) for a, b in groups]
    workers = cfg.workers or os.cpu_count() or 1
    scheduler = "processes" if len(groups) > 1 and workers > 1 else "synchronous"
    # chunksize=1: the process pool gets one group at a time (dask's default hands out 6), so
    # the bar moves per group instead of sitting at 0 % and jumping.
    run = dict(scheduler=scheduler, num_workers=min(workers, len(groups)), chunksize=1)
    if progress and sys.stderr.isatty():
        with ProgressBar(minimum=1.0):
            sizes_written = dask.compute(*tasks, **run)
    elif progress:  # a log file or CI: one plain line per group, never a repainted bar
        with _GroupLines(len(groups)):
            sizes_written = dask.compute(*tasks, **run)
    else:
        sizes_written = dask.compute(*tasks, **run)
    seconds = time.perf_counter() - t0
    nbytes = int(sum(sizes_written))
    on_disk = sum(f.stat().st_size for f in Path(cfg.path).rglob("*") if f.is_file())
    return {"path": cfg.path, "recordings": cfg.recordings, "groups": len(groups), "bytes": nbytes,
            "bytes_on_disk": on_disk, "seconds": seconds, "mb_per_s": nbytes / 1e6 / seconds}
