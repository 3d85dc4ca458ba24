"""Synthetic sensors rendered from the world of :mod:`pipeline.data.world`.

* LIDAR: ``beams`` rays at ``angle_min + i * increment`` (beam 0 straight ahead,
  counter-clockwise), range + N(0, noise) m; rays past ``max_range`` return exactly
  ``max_range`` (a max-range return).
* Camera: a pinhole camera of horizontal field of view ``fov`` at ``CAM_HEIGHT`` m,
  looking along the heading.  Column c looks ``atan((W/2 - c - 0.5) / f)`` rad left of the
  heading (``f = W / 2 / tan(fov / 2)`` px); every obstacle and wall is ``OBJ_HEIGHT`` m
  tall, so an object at depth ``d`` spans ``f * OBJ_HEIGHT / d`` rows -- the same ray
  caster as the LIDAR, so camera and LIDAR agree.  Grey levels: sky 250, floor a 1 m
  checkerboard of 15/40, objects 70 + 160 * albedo * exp(-d / 30 m), plus N(0, 2) noise.
* IMU (body frame, x forward, y left, z up): ax = dv/dt, ay = v * omega (centripetal),
  az = g, gx = gy = 0, gz = omega; plus a per-recording bias and white noise.
"""

from __future__ import annotations

import numpy as np

from pipeline.config import SyntheticConfig
from pipeline.data.world import Trajectories, raycast

G = 9.80665  # m/s^2
CAM_HEIGHT = 0.5  # m
OBJ_HEIGHT = 1.0  # m
SKY, FLOOR_DARK, FLOOR_LIGHT = 250.0, 15.0, 40.0


def focal_px(size: int, fov_rad: float) -> float:
    """Pinhole focal length in pixels for an image ``size`` px wide."""
    return size / 2.0 / np.tan(fov_rad / 2.0)


def sample_times(rng: np.random.Generator, rate_hz: float, capacity: int, length_s: float,
                 cfg: SyntheticConfig, drop_prob: float) -> np.ndarray:
    """Timestamps (int64 ns from the recording's start) of one sensor in one recording.

    Starts ``U[0, start_offset_s]`` s in, runs at ``rate_hz`` with a clock drift of up to
    100 ppm, Gaussian jitter (clipped to +-0.4 periods, so order is kept) and i.i.d.
    drops, and ends before ``length_s``.  At most ``capacity`` samples.
    """
    period = 1.0 / rate_hz
    offset = rng.uniform(0.0, cfg.start_offset_s)
    drift = rng.uniform(-1e-4, 1e-4)
    i = np.arange(capacity)
    jitter = np.clip(rng.normal(0.0, cfg.timestamp_jitter * period, capacity), -0.4 * period, 0.4 * period)
    t = offset + i * period * (1.0 + drift) + jitter
    keep = (rng.random(capacity) >= drop_prob) & (t < length_s)
    return np.round(t[keep] * 1e9).astype(np.int64)


def render_lidar(traj: Trajectories, r: int, t_s: np.ndarray, obstacles, rng, cfg: SyntheticConfig):
    """Scans (n, beams) float32 m at times ``t_s`` (s) of recording ``r``."""
    p = traj.at(r, t_s)
    ang = p["theta"][:, None] + np.arange(cfg.lidar_beams) * (2 * np.pi / cfg.lidar_beams)
    dist, _ = raycast(p["x"], p["y"], ang, obstacles, cfg.arena_m)
    dist = np.maximum(dist + rng.normal(0.0, cfg.lidar_noise_m, dist.shape), 0.0)
    return np.where(dist >= cfg.lidar_max_range_m, cfg.lidar_max_range_m, dist).astype(np.float32)


def render_camera(traj: Trajectories, r: int, t_s: np.ndarray, obstacles, albedo, rng, cfg: SyntheticConfig):
    """Frames (n, size, size) uint8 at times ``t_s`` (s) of recording ``r``."""
    w = cfg.camera_size
    f = focal_px(w, np.deg2rad(cfg.camera_fov_deg))
    p = traj.at(r, t_s)
    alpha = np.arctan((w / 2.0 - np.arange(w) - 0.5) / f)  # (W,) left of heading
    ang = p["theta"][:, None] + alpha  # (n, W)
    dist, hit = raycast(p["x"], p["y"], ang, obstacles, cfg.arena_m)
    depth = dist * np.cos(alpha)  # pinhole projection uses depth along the optical axis
    vrow = np.arange(w) + 0.5 - w / 2.0  # (H,) row offset from the horizon, down positive
    h = CAM_HEIGHT - vrow[None, :, None] * depth[:, None, :] / f  # height hit on the object plane
    obj = (h >= 0.0) & (h <= OBJ_HEIGHT)
    shade = 70.0 + 160.0 * albedo[hit] * np.exp(-dist / 30.0)  # (n, W)
    with np.errstate(divide="ignore"):
        ground = np.where(vrow > 0, CAM_HEIGHT * f / vrow, np.inf)  # (H,) depth of the floor seen
    gdist = ground[None, :, None] / np.cos(alpha)[None, None, :]
    gx = p["x"][:, None, None] + gdist * np.cos(ang)[:, None, :]
    gy = p["y"][:, None, None] + gdist * np.sin(ang)[:, None, :]
    with np.errstate(invalid="ignore"):
        checker = (np.floor(gx) + np.floor(gy)) % 2 == 0
    floor = np.where(checker, FLOOR_LIGHT, FLOOR_DARK)
    img = np.where(obj, shade[:, None, :], np.where(h < 0.0, floor, SKY))
    img = img + rng.normal(0.0, 2.0, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def render_imu(traj: Trajectories, r: int, t_s: np.ndarray, bias: np.ndarray, rng, cfg: SyntheticConfig):
    """Samples (n, 6) float32 (ax ay az m/s^2, gx gy gz rad/s) at times ``t_s`` of recording ``r``."""
    p = traj.at(r, t_s)
    zero = np.zeros_like(p["v"])
    clean = np.stack([p["accel"], p["v"] * p["omega"], zero + G, zero, zero, p["omega"]], axis=-1)
    sigma = np.array([cfg.imu_accel_noise] * 3 + [cfg.imu_gyro_noise] * 3)
    return (clean + bias + rng.normal(0.0, 1.0, clean.shape) * sigma).astype(np.float32)


def truth(traj: Trajectories, r: int, t_s: np.ndarray, obstacles, cfg: SyntheticConfig):
    """Targets (n, 3) = speed m/s, yaw rate rad/s, obstacle-ahead 0/1, and pose (n, 3) at ``t_s``.

    Obstacle-ahead: a surface (obstacle or wall) closer than ``ahead_distance_m`` on
    any of 31 rays spanning +-``ahead_half_angle_deg`` around the heading.
    """
    p = traj.at(r, t_s)
    half = np.deg2rad(cfg.ahead_half_angle_deg)
    dist, _ = raycast(p["x"], p["y"], p["theta"][:, None] + np.linspace(-half, half, 31), obstacles, cfg.arena_m)
    ahead = (dist.min(axis=1) < cfg.ahead_distance_m).astype(np.float64)
    targets = np.stack([p["v"], p["omega"], ahead], axis=-1).astype(np.float32)
    pose = np.stack([p["x"], p["y"], p["theta"]], axis=-1).astype(np.float32)
    return targets, pose
