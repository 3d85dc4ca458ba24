"""Staged recordings to one store: sizes and attrs once, then one Dask task per shard group.

The store is created once from the staged counts (every recording's exact frame, scan,
sample and step counts).  Each task owns one group of ``shard_recordings`` rows and writes
its whole shards, one modality at a time, as many whole time shards per write as fit in
16 MiB (``WRITE_BYTES``; at least one), so no two tasks write the same shard and a task
holds at most the larger of one shard and 16 MiB of data (plus the staged stamps of its rows).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np

from pipeline.config import DataConfig, ImportConfig
from pipeline.data.schema import MODALITIES, PAD_TIME, SCHEMA_VERSION, VARIABLES
from pipeline.data.store import plan_encoding, write_region

IMPORTER = "neuroliquid.import/1"
WRITE_BYTES = 16 * 2**20  # one write: as many whole time shards as fit (at least one: fewer, larger writes)


def _nominal(rate: float) -> float:
    """A measured rate rounded to 3 significant digits (the store's nominal rate attr)."""
    return float(f"{rate:.3g}") if math.isfinite(rate) and rate > 0 else 1.0


def layout(results: list[dict], icfg: ImportConfig, d: DataConfig, extra_attrs: dict):
    """``(sizes, rates, attrs, names)`` of the store holding ``results`` (staged recordings)."""
    rates_m = np.array([r["rates"] for r in results], float)
    cam_hz, lid_hz = (_nominal(float(np.nanmedian(rates_m[:, i]))) for i in (0, 1))
    rates = {"frame": cam_hz, "scan": lid_hz, "sample": icfg.imu_rate_hz, "step": d.model_rate_hz}
    sizes = {"recording": len(results), "y": icfg.camera_height, "x": icfg.camera_width, "beam": icfg.lidar_beams,
             "channel": 6, "target": 3, "pose_axis": 3}
    for m in MODALITIES.values():
        sizes[m.dim] = max(1, max(r[m.count] for r in results))
    sizes["step"] = max(1, max(r["n_steps"] for r in results))
    fovs = [r["fov"] for r in results if r["fov"] is not None]
    max_range = max(r["max_range"] for r in results)
    attrs = {
        "schema": SCHEMA_VERSION, "camera_rate_hz": cam_hz, "lidar_rate_hz": lid_hz,
        "imu_rate_hz": float(icfg.imu_rate_hz), "targets_rate_hz": float(d.model_rate_hz),
        "camera_fov_rad": float(fovs[0] if fovs else math.radians(icfg.camera_fov_deg)),
        "lidar_angle_min_rad": 0.0, "lidar_angle_increment_rad": 2 * math.pi / icfg.lidar_beams,
        "lidar_max_range_m": float(max_range), "imu_frame": "body: x forward, y left, z up",
        "lidar_no_return": f"lidar_max_range_m ({max_range:g} m); beams not covered hold it too and are False "
                           "in lidar_covered",
        "obstacle_ahead": f"latest scan: a covered beam within {icfg.ahead_distance_m} m, "
                          f"+-{icfg.ahead_half_angle_deg} deg of ahead",
        "importer": IMPORTER, "import_config": json.dumps(asdict(icfg), sort_keys=True),
        "import_recordings": json.dumps([r["report"] for r in results]), **extra_attrs,
    }
    names = [n for n, s in VARIABLES.items() if s.required] + ["lidar_covered"]
    if all(r["targets"] for r in results):
        names.append("targets")
    return sizes, rates, attrs, names


def _staged(r: dict, name: str, icfg: ImportConfig):
    """(stamps, rows) of modality ``name`` of staged recording ``r`` (rows lazily, from disk)."""
    p = Path(r["dir"])
    t = np.load(p / f"{MODALITIES[name].time}.npy")
    if name == "imu":
        return t, np.load(p / "imu.npy", mmap_mode="r")
    shape = (icfg.camera_height, icfg.camera_width) if name == "camera" else (icfg.lidar_beams,)
    dtype = np.uint8 if name == "camera" else np.float32
    idx = np.load(p / ("i_cam.npy" if name == "camera" else "i_lid.npy"))
    b = Path(r["bins"]) / f"{name}.bin"  # the bag's converted rows, shared by its parts
    n = b.stat().st_size // (int(np.prod(shape)) * np.dtype(dtype).itemsize)
    rows = np.memmap(b, dtype, "r", shape=(n, *shape)) if n else np.zeros((0, *shape), dtype)
    return t, _Indexed(rows, idx)


class _Indexed:
    """``rows[idx[a:b]]`` on demand: staged rows in arrival order, read in stamp order."""

    def __init__(self, rows, idx) -> None:
        self.rows, self.idx = rows, idx

    def __getitem__(self, sl: slice) -> np.ndarray:
        return np.asarray(self.rows[self.idx[sl]])


def write_group(path: str, results: list[dict], r0: int, r1: int, sizes: dict, enc: dict, icfg: ImportConfig,
                names: list[str]) -> int:
    """Write rows ``[r0, r1)`` (whole shards: one time shard at a time, or as many as fit in
    ``WRITE_BYTES``); returns bytes written."""
    group, written = results[r0:r1], 0
    for name, m in MODALITIES.items():
        staged = [_staged(r, name, icfg) for r in group]
        spec, cap, shard_t = VARIABLES[m.var], sizes[m.dim], enc[m.var]["shards"][1]
        row = int(np.prod([sizes[x] for x in spec.dims[2:]])) * np.dtype(spec.dtype).itemsize + 8  # + its stamp
        step = shard_t * max(1, WRITE_BYTES // (len(group) * shard_t * row))  # whole shards, <= WRITE_BYTES
        for i0 in range(0, cap, step):
            i1 = min(i0 + step, cap)
            data = np.full((len(group), i1 - i0) + tuple(sizes[x] for x in spec.dims[2:]), spec.fill, spec.dtype)
            times = np.full((len(group), i1 - i0), PAD_TIME, np.int64)
            for i, (t, rows) in enumerate(staged):
                n = max(0, min(i1, t.size) - i0)
                if n:
                    times[i, :n] = t[i0:i0 + n]
                    data[i, :n] = rows[i0:i0 + n]
            write_region(path, {m.var: data, m.time: times}, {"recording": slice(r0, r1), m.dim: slice(i0, i1)})
            written += data.nbytes + times.nbytes
    meta = {"t_start": np.array([r["t_start"] for r in group], np.int64),
            "n_steps": np.array([r["n_steps"] for r in group], np.int32),
            "lidar_covered": np.stack([r["covered"] for r in group])}
    for m in MODALITIES.values():
        meta[m.count] = np.array([r[m.count] for r in group], np.int32)
    if "targets" in names:
        tg = np.full((len(group), sizes["step"], 3), np.nan, np.float32)
        for i, r in enumerate(group):
            tg[i, : r["n_steps"]] = np.load(Path(r["dir"]) / "targets.npy")
        meta["targets"] = tg
    write_region(path, meta, {"recording": slice(r0, r1)})
    return written + sum(a.nbytes for a in meta.values())


def plan(sizes: dict, rates: dict, d: DataConfig) -> dict:
    """The store's encoding (the standard chunks and shards, crc32c checksums)."""
    return plan_encoding(sizes, rates, d.layout)

