"""The synthetic world: unicycle vehicles among circular obstacles in a walled square.

Dynamics, simulated at ``SIM_HZ`` with controls held over each step (so yaw rate and
longitudinal acceleration are piecewise constant and heading is piecewise linear, which
makes interpolation to any sensor timestamp exact)::

    x' = v cos(theta),  y' = v sin(theta),  theta' = omega,  v' = a

A wander-and-avoid controller (20 Hz) steers toward the side with more free space and
slows down before obstacles; a step that would enter an obstacle or leave the arena is
not taken (v = 0).  All lengths in metres, angles in radians, times in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.config import SyntheticConfig

SIM_HZ = 200
CONTROL_EVERY = 10  # sim steps per controller update (20 Hz)
WALL_ALBEDO = 0.35
_PROBE = np.array([-0.6, -0.3, 0.0, 0.3, 0.6])  # controller clearance rays, rad from heading


def raycast(px, py, ang, obstacles, arena_m: float):
    """Distance along rays to the first obstacle or wall.

    Parameters
    ----------
    px, py : array, shape S
        Ray origins (m).
    ang : array, shape S + (B,)
        Ray directions (rad, world frame).
    obstacles : array, shape S' + (N, 3)
        Circles ``(cx, cy, radius)`` (m); ``S'`` broadcasts against ``S``.
    arena_m : float
        Side of the square arena ``[0, arena_m]^2`` bounded by walls.

    Returns
    -------
    dist : float64, shape S + (B,)
        Range to the first surface (m).
    hit : int64, shape S + (B,)
        Obstacle index, or ``N`` for a wall.
    """
    ux, uy = np.cos(ang), np.sin(ang)
    ox, oy = px[..., None], py[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        tx = np.where(ux > 1e-12, (arena_m - ox) / ux, np.where(ux < -1e-12, -ox / ux, np.inf))
        ty = np.where(uy > 1e-12, (arena_m - oy) / uy, np.where(uy < -1e-12, -oy / uy, np.inf))
    t_wall = np.minimum(tx, ty)
    n = obstacles.shape[-2]
    if n == 0:
        return t_wall, np.zeros(t_wall.shape, np.int64)
    cx = obstacles[..., 0][..., None, :] - ox[..., None]
    cy = obstacles[..., 1][..., None, :] - oy[..., None]
    r = obstacles[..., 2][..., None, :]
    b = cx * ux[..., None] + cy * uy[..., None]
    disc = b * b - (cx * cx + cy * cy - r * r)
    with np.errstate(invalid="ignore"):
        t = b - np.sqrt(disc)
    t = np.where((disc >= 0) & (t > 1e-9), t, np.inf)
    k = np.argmin(t, axis=-1)
    t_obs = np.take_along_axis(t, k[..., None], axis=-1)[..., 0]
    wall = t_wall <= t_obs
    return np.where(wall, t_wall, t_obs), np.where(wall, n, k)


@dataclass(frozen=True)
class Trajectories:
    """Simulated motion of R recordings on the sim grid ``t = k / SIM_HZ`` (seconds).

    ``x, y, theta, v`` have shape (K + 1, R); ``omega, accel`` (K, R) are the yaw rate
    (rad/s) and longitudinal acceleration (m/s^2) held over step k.
    """

    x: np.ndarray
    y: np.ndarray
    theta: np.ndarray
    v: np.ndarray
    omega: np.ndarray
    accel: np.ndarray

    def at(self, r: int, t: np.ndarray) -> dict[str, np.ndarray]:
        """State of recording ``r`` at times ``t`` (s, from its start): x, y, theta, v, omega, accel."""
        k_max = self.omega.shape[0] - 1
        s = np.clip(np.asarray(t, np.float64), 0.0, (k_max + 1) / SIM_HZ)
        k = np.minimum((s * SIM_HZ).astype(np.int64), k_max)
        tau = s - k / SIM_HZ
        frac = tau * SIM_HZ
        om, ac = self.omega[k, r], self.accel[k, r]
        return {
            "x": self.x[k, r] + (self.x[k + 1, r] - self.x[k, r]) * frac,
            "y": self.y[k, r] + (self.y[k + 1, r] - self.y[k, r]) * frac,
            "theta": self.theta[k, r] + om * tau,
            "v": self.v[k, r] + ac * tau,
            "omega": om,
            "accel": ac,
        }


def make_scenes(rngs: list[np.random.Generator], cfg: SyntheticConfig):
    """Random obstacles, albedos and start poses, one scene per generator in ``rngs``.

    Returns ``obstacles (R, N, 3)``, ``albedo (R, N + 1)`` (last entry: walls) and
    ``start (R, 3)`` = x, y, heading, with the start at least 1 m clear of every obstacle.
    """
    n, L = cfg.obstacles, cfg.arena_m
    obstacles = np.zeros((len(rngs), n, 3))
    albedo = np.full((len(rngs), n + 1), WALL_ALBEDO)
    start = np.zeros((len(rngs), 3))
    for i, rng in enumerate(rngs):
        start[i] = rng.uniform(0.35 * L, 0.65 * L), rng.uniform(0.35 * L, 0.65 * L), rng.uniform(-np.pi, np.pi)
        j = 0
        while j < n:
            c = rng.uniform(1.0, L - 1.0, 2)
            rad = rng.uniform(0.3, 1.0)
            if np.hypot(*(c - start[i, :2])) > rad + 1.0:
                obstacles[i, j] = c[0], c[1], rad
                j += 1
        albedo[i, :n] = rng.uniform(0.5, 1.0, n)
    return obstacles, albedo, start


def simulate(rngs, obstacles, start, duration_s: float, cfg: SyntheticConfig) -> Trajectories:
    """Drive every recording for ``duration_s`` seconds (vectorised over recordings)."""
    R, L, dt = len(rngs), cfg.arena_m, 1.0 / SIM_HZ
    K = int(np.ceil(duration_s * SIM_HZ)) + 2
    n_ctrl = K // CONTROL_EVERY + 1
    wander = np.stack([rng.normal(0.0, 1.0, (n_ctrl, 2)) for rng in rngs], axis=1)  # (n_ctrl, R, 2)
    x, y, th = (np.empty((K + 1, R)) for _ in range(3))
    v = np.zeros((K + 1, R))
    om_hist, acc_hist = np.empty((K, R)), np.empty((K, R))
    x[0], y[0], th[0] = start[:, 0], start[:, 1], start[:, 2]
    om = np.zeros(R)
    w_om, v_cmd = np.zeros(R), np.full(R, 1.2)
    for k in range(K):
        if k % CONTROL_EVERY == 0:
            c = k // CONTROL_EVERY
            w_om = 0.9 * w_om + 0.25 * wander[c, :, 0]  # Ornstein-Uhlenbeck wander, rad/s
            v_cmd = np.clip(v_cmd + 0.1 * wander[c, :, 1], 0.4, 2.0)
            clear, _ = raycast(x[k], y[k], th[k][:, None] + _PROBE, obstacles, L)
            front = clear[:, 1:4].min(axis=1)
            urgency = np.clip((3.0 - front) / 2.0, 0.0, 1.0)
            side = np.sign(clear[:, 3:].sum(axis=1) - clear[:, :2].sum(axis=1) + 1e-9)
            om_cmd = np.clip((1.0 - urgency) * w_om + 1.2 * urgency * side, -1.2, 1.2)
            v_target = np.minimum(v_cmd, np.maximum(0.0, 0.7 * (front - 0.7)))
        om = om + (om_cmd - om) * min(1.0, dt / 0.15)
        v_new = v[k] + np.clip((v_target - v[k]) / 0.5, -2.0, 1.5) * dt
        nx, ny = x[k] + v[k] * np.cos(th[k]) * dt, y[k] + v[k] * np.sin(th[k]) * dt
        gap = np.hypot(obstacles[..., 0] - nx[:, None], obstacles[..., 1] - ny[:, None]) - obstacles[..., 2]
        blocked = (gap.min(axis=1, initial=np.inf) < 0.15) | (np.minimum(nx, ny) < 0.3) | (np.maximum(nx, ny) > L - 0.3)
        v_new = np.where(blocked, 0.0, v_new)
        x[k + 1], y[k + 1] = np.where(blocked, x[k], nx), np.where(blocked, y[k], ny)
        v[k] = np.where(blocked, 0.0, v[k])  # the step not taken had zero speed
        th[k + 1] = th[k] + om * dt
        v[k + 1] = v_new
        om_hist[k] = om
    acc_hist[:] = np.diff(v, axis=0) * SIM_HZ  # exact: v is linear within each step
    return Trajectories(x, y, th, v, om_hist, acc_hist)
