"""The recording-store schema: one xarray Dataset per zarr v3 store.

Every modality carries its own int64 timestamps (nanoseconds since the Unix epoch) per
recording, because real recordings differ in start time, rate jitter and dropped
samples.  Arrays are padded along time to a common capacity; ``n_<x>(recording)`` says
how many leading entries are real, the rest is padding (timestamps ``PAD_TIME``).

====================================  =======  ==============================  ==========
variable (dims)                       dtype    meaning                         units attr
====================================  =======  ==============================  ==========
``t_start (recording)``               int64    model-clock origin              ns
``vision (recording, frame, y, x)``   uint8    grey camera frames              1
``t_cam (recording, frame)``          int64    frame timestamps                ns
``lidar (recording, scan, beam)``     float32  ranges, beam 0 straight ahead   m
``t_lidar (recording, scan)``         int64    scan timestamps                 ns
``imu (recording, sample, channel)``  float32  ax ay az (m/s^2), gx gy gz      list of 6
``t_imu (recording, sample)``         int64    IMU timestamps                  ns
``n_frames/n_scans/n_samples/n_steps``  int32  valid counts per recording      1
``targets (recording, step, target)`` float32  speed, yaw rate, obstacle-ahead  list of 3
====================================  =======  ==============================  ==========

Targets are on the model clock: step ``k`` of recording ``r`` is the instant
``t_start[r] + (k + 1) * 1e9 / targets_rate_hz`` ns.  Optional ground truth written by
the synthetic generator: ``pose (recording, step, pose_axis)`` (x m, y m, heading rad) and
``imu_bias (recording, channel)``.  Optional in imported stores: ``lidar_covered (recording,
beam)`` bool, False where the sensor does not cover the beam, so "not covered" differs from
"no return" (``lidar_max_range_m``); absent, every beam is covered.  Rates, geometry and the
generator's seed are attrs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCHEMA_VERSION = "neuroliquid.recordings/1"
PAD_TIME = np.iinfo(np.int64).max  # timestamp padding past a recording's valid count
NS = 1_000_000_000

IMU_CHANNELS = ("ax", "ay", "az", "gx", "gy", "gz")
IMU_UNITS = ("m s-2", "m s-2", "m s-2", "rad s-1", "rad s-1", "rad s-1")
TARGETS = ("speed", "yaw_rate", "obstacle_ahead")
TARGET_UNITS = ("m s-1", "rad s-1", "1")
POSE = ("x", "y", "heading")
POSE_UNITS = ("m", "m", "rad")


@dataclass(frozen=True)
class Modality:
    """One sensor stream: its data variable, timestamps, valid count and time dim."""

    name: str  # camera | lidar | imu
    var: str
    time: str
    count: str
    dim: str
    rate_attr: str


MODALITIES: dict[str, Modality] = {
    "camera": Modality("camera", "vision", "t_cam", "n_frames", "frame", "camera_rate_hz"),
    "lidar": Modality("lidar", "lidar", "t_lidar", "n_scans", "scan", "lidar_rate_hz"),
    "imu": Modality("imu", "imu", "t_imu", "n_samples", "sample", "imu_rate_hz"),
}


@dataclass(frozen=True)
class VarSpec:
    """Dims, dtype, units and fill value of one schema variable."""

    dims: tuple[str, ...]
    dtype: str
    units: str | tuple[str, ...]
    fill: float | int
    required: bool = True
    generated: bool = True  # created by default (create_store); False: only importers write it


VARIABLES: dict[str, VarSpec] = {
    "t_start": VarSpec(("recording",), "int64", "ns", PAD_TIME),
    "vision": VarSpec(("recording", "frame", "y", "x"), "uint8", "1", 0),
    "t_cam": VarSpec(("recording", "frame"), "int64", "ns", PAD_TIME),
    "lidar": VarSpec(("recording", "scan", "beam"), "float32", "m", np.nan),
    "t_lidar": VarSpec(("recording", "scan"), "int64", "ns", PAD_TIME),
    "imu": VarSpec(("recording", "sample", "channel"), "float32", IMU_UNITS, np.nan),
    "t_imu": VarSpec(("recording", "sample"), "int64", "ns", PAD_TIME),
    "n_frames": VarSpec(("recording",), "int32", "1", -1),
    "n_scans": VarSpec(("recording",), "int32", "1", -1),
    "n_samples": VarSpec(("recording",), "int32", "1", -1),
    "n_steps": VarSpec(("recording",), "int32", "1", -1),
    # Optional: a store of real recordings without odometry has none (evaluation is skipped).
    "targets": VarSpec(("recording", "step", "target"), "float32", TARGET_UNITS, np.nan, required=False),
    "pose": VarSpec(("recording", "step", "pose_axis"), "float32", POSE_UNITS, np.nan, required=False),
    "imu_bias": VarSpec(("recording", "channel"), "float32", IMU_UNITS, np.nan, required=False),
    # Optional, imported stores: False where the LIDAR does not cover the beam (those beams hold
    # lidar_max_range_m as a stand-in, never data); absent means every beam is covered.
    "lidar_covered": VarSpec(("recording", "beam"), "bool", "1", True, required=False, generated=False),
}

# attrs every store must carry (name -> python type); rates in Hz, geometry in SI units
REQUIRED_ATTRS: dict[str, type | tuple[type, ...]] = {
    "schema": str,
    "camera_rate_hz": (int, float),
    "lidar_rate_hz": (int, float),
    "imu_rate_hz": (int, float),
    "targets_rate_hz": (int, float),
    "camera_fov_rad": (int, float),
    "lidar_angle_min_rad": (int, float),
    "lidar_angle_increment_rad": (int, float),
    "lidar_max_range_m": (int, float),
}


def units_attr(units: str | tuple[str, ...]) -> str | list[str]:
    """The JSON form of a units attr (a list for per-channel units)."""
    return units if isinstance(units, str) else list(units)


def var_attrs(name: str) -> dict:
    """The attrs the schema requires on variable ``name``."""
    spec = VARIABLES[name]
    attrs: dict = {"units": units_attr(spec.units)}
    if name == "imu" or name == "imu_bias":
        attrs["channels"] = list(IMU_CHANNELS)
    elif name == "targets":
        attrs["names"] = list(TARGETS)
    elif name == "pose":
        attrs["names"] = list(POSE)
    elif name.startswith("t_"):
        attrs["epoch"] = "unix"
    return attrs
