"""Time resampling of imported streams, in integer ns (pure numpy).

* IMU: an IMU within ``keep_tolerance`` of the store's rate keeps its samples and stamps as
  they are.  Otherwise samples are averaged over windows ``(t_start + k P, t_start + (k+1) P]``
  (``P = round(1e9 / rate)`` ns), stamped at the window's end: a 400 Hz IMU becomes
  100 Hz means, so the model's per-step window loses nothing; a window without samples
  gives no sample (a gap, never an invented value).
* Targets on the model clock, step ``k`` at ``tau_k = t_start + (k + 1) step``: speed and
  yaw rate interpolated linearly between odometry messages (held at the first / last value
  outside them: those steps are counted); obstacle-ahead from the latest scan at or
  before ``tau_k``: 1 when a covered beam within +-half-angle of straight ahead returns
  closer than the distance (0, counted, before the first scan).
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.data.schema import NS


def imu_to_rate(t: np.ndarray, x: np.ndarray, t_start: int, rate_hz: float, keep_tolerance: float):
    """``(stamps (n,) int64, samples (n, 6) float64, how)`` at ``rate_hz`` (see module doc)."""
    src = rates_hz(t)[0]
    if t.size < 2 or abs(src / rate_hz - 1) <= keep_tolerance:
        return t, x, f"kept as recorded ({src:.6g} Hz, within {keep_tolerance:.0%} of {rate_hz:g} Hz)"
    period = int(round(NS / rate_hz))
    k = -((t_start - t) // period) - 1  # ceil((t - t_start) / P) - 1, exact in integers
    starts = np.flatnonzero(np.concatenate([[True], k[1:] != k[:-1]]))
    sums = np.add.reduceat(x, starts, axis=0)
    n = np.diff(np.append(starts, k.size))
    out_t = t_start + (k[starts] + 1) * period
    return out_t.astype(np.int64), sums / n[:, None], (
        f"window means from {src:.6g} Hz to {rate_hz:g} Hz (windows (t - P, t], P = {period} ns; "
        f"{int(k[-1] - k[0] + 1 - starts.size)} empty window(s) left as gaps)")


def rates_hz(*stamps: np.ndarray) -> list[float]:
    """Median rate (Hz) of each stamp array (NaN with fewer than 2 stamps)."""
    out = []
    for t in stamps:
        d = np.diff(t)
        out.append(float(NS / np.median(d)) if d.size and np.median(d) > 0 else float("nan"))
    return out


def forward_beams(beams: int, half_angle_deg: float) -> np.ndarray:
    """(beams,) bool: beams within +-half_angle of straight ahead (beam 0)."""
    ang = np.arange(beams) * (2 * math.pi / beams)
    ang = np.where(ang > math.pi, ang - 2 * math.pi, ang)
    return np.abs(ang) <= math.radians(half_angle_deg) + 1e-9


def targets_on_clock(t_start: int, step_ns: int, n_steps: int, odo_t, odo_v, t_lid, lid_rows, i_lid,
                     covered: np.ndarray, half_angle_deg: float, distance_m: float):
    """``(targets (n_steps, 3) float32 or None, info)``: speed, yaw rate, obstacle-ahead."""
    if odo_t is None or odo_t.size == 0:
        return None, {"source": "none (no odometry topic): the store has no targets"}
    tau = t_start + (np.arange(n_steps, dtype=np.int64) + 1) * step_ns
    rel, ot = (tau - t_start).astype(np.float64), (odo_t - t_start).astype(np.float64)
    speed = np.interp(rel, ot, odo_v[:, 0])
    yaw = np.interp(rel, ot, odo_v[:, 1])
    held = int(((tau < odo_t[0]) | (tau > odo_t[-1])).sum())
    j = np.searchsorted(t_lid, tau, side="right") - 1
    fwd = np.flatnonzero(forward_beams(covered.size, half_angle_deg) & covered)
    ahead = np.zeros(n_steps)
    has = j >= 0
    for k0 in range(0, n_steps, 4096) if fwd.size else ():  # bounded memory on long recordings
        sl = np.flatnonzero(has[k0:k0 + 4096]) + k0
        if sl.size:
            ahead[sl] = (np.asarray(lid_rows[i_lid[j[sl]]])[:, fwd] < distance_m).any(axis=1)
    targets = np.stack([speed, yaw, ahead], axis=1).astype(np.float32)
    return targets, {"source": "odometry twist.linear.x, twist.angular.z, linear interpolation on the model clock",
                     "steps": n_steps, "steps_held_outside_odometry": held,
                     "obstacle_rule": f"latest scan at or before the step: a covered beam within +-{half_angle_deg:g}"
                                      f" deg of ahead closer than {distance_m:g} m",
                     "obstacle_steps_before_first_scan": int((~has).sum())}
