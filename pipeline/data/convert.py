"""Build schema-conforming stores from your own recordings (ragged per-recording arrays).

Use this to bring real logs (e.g. decoded from MCAP or rosbag with ``rosbags``) into the
schema: one :class:`Recording` per log, each modality with its own int64-ns timestamps,
then :func:`to_dataset` pads them into one Dataset and :func:`write_dataset` writes it
with the standard chunking.  The tests use it to build small hand-checked stores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from pipeline.config import StoreLayout
from pipeline.data.schema import MODALITIES, PAD_TIME, SCHEMA_VERSION, VARIABLES, var_attrs
from pipeline.data.store import plan_encoding
from pipeline.data.store_path import prepare_path


@dataclass
class Recording:
    """One recording.  Timestamps int64 ns (Unix epoch); data as in the schema.

    vision (F, H, W) uint8 with t_cam (F,); lidar (S, beams) float32 m with t_lidar (S,);
    imu (N, 6) float32 with t_imu (N,); targets (K, 3) float32 on the model clock,
    step k at ``t_start + (k + 1) / targets_rate_hz``.
    """

    t_start: int
    t_cam: np.ndarray
    vision: np.ndarray
    t_lidar: np.ndarray
    lidar: np.ndarray
    t_imu: np.ndarray
    imu: np.ndarray
    targets: np.ndarray


def _pad(rows: list[np.ndarray], fill, dtype) -> np.ndarray:
    n = max((len(r) for r in rows), default=0)
    shape = (len(rows), max(n, 1)) + (rows[0].shape[1:] if rows else ())
    out = np.full(shape, fill, dtype)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def to_dataset(recordings: list[Recording], *, camera_rate_hz: float, lidar_rate_hz: float, imu_rate_hz: float,
               targets_rate_hz: float, camera_fov_rad: float, lidar_max_range_m: float, **attrs) -> xr.Dataset:
    """Pad ``recordings`` into one schema Dataset; ``attrs`` are added to the dataset attrs."""
    data = {"t_start": np.array([r.t_start for r in recordings], np.int64)}
    for m in MODALITIES.values():
        data[m.time] = _pad([getattr(r, m.time) for r in recordings], PAD_TIME, np.int64)
        data[m.var] = _pad([getattr(r, m.var) for r in recordings], VARIABLES[m.var].fill, VARIABLES[m.var].dtype)
        data[m.count] = np.array([len(getattr(r, m.time)) for r in recordings], np.int32)
    data["targets"] = _pad([r.targets for r in recordings], np.nan, np.float32)
    data["n_steps"] = np.array([len(r.targets) for r in recordings], np.int32)
    beams = data["lidar"].shape[-1]
    ds_attrs = {"schema": SCHEMA_VERSION, "camera_rate_hz": camera_rate_hz, "lidar_rate_hz": lidar_rate_hz,
                "imu_rate_hz": imu_rate_hz, "targets_rate_hz": targets_rate_hz, "camera_fov_rad": camera_fov_rad,
                "lidar_angle_min_rad": 0.0, "lidar_angle_increment_rad": 2 * math.pi / beams,
                "lidar_max_range_m": lidar_max_range_m, **attrs}
    return xr.Dataset({n: (VARIABLES[n].dims, a, var_attrs(n)) for n, a in data.items()}, attrs=ds_attrs)


def write_dataset(ds: xr.Dataset, path: str | Path, layout: StoreLayout | None = None, overwrite: bool = False,
                  checksums: bool = True) -> None:
    """Write a schema Dataset as a zarr v3 store with the standard chunks and shards.

    Every chunk carries a crc32c checksum (``checksums=False``: none, as before checksums).
    ``overwrite`` replaces an existing neuroliquid store only; anything else at ``path``
    is refused (:func:`pipeline.data.store_path.prepare_path`)."""
    layout = layout or StoreLayout()
    rates = {"frame": ds.attrs["camera_rate_hz"], "scan": ds.attrs["lidar_rate_hz"],
             "sample": ds.attrs["imu_rate_hz"], "step": ds.attrs["targets_rate_hz"]}
    sizes = dict(ds.sizes) | {d: 3 for d in ("pose_axis",) if d not in ds.sizes}
    enc = {n: e for n, e in plan_encoding(sizes, rates, layout, checksums).items() if n in ds.variables}
    prepare_path(path, overwrite)
    ds.to_zarr(str(path), mode="w-", encoding=enc, zarr_format=3, consolidated=False,
               write_empty_chunks=True)
