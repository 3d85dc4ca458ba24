"""The IMU level channel: each step's mean IMU reading, as a current beside the delta events.

Delta modulation (``kernels.encoders.DeltaEncoder``) emits only *changes* of the IMU
signals: a robot turning at a steady yaw rate produces no gyro events at all, so the
absolute rate -- the very quantity a yaw-rate or speed target needs -- is lost unless the
network integrates every event since the recording began (measured on the demo store: a
random fusion network + ridge readout reaches yaw-rate R^2 0.12 where a linear model on
the raw gyro reaches 0.92; docs/training.md).  This channel keeps it, per model step t and
IMU channel c::

    level_t,c = scale_c * mean of x_s,c over the step's valid samples s   (0 when none is valid)

``scale`` puts accelerations and rates on comparable footing (default 0.1 per m/s^2 and
1 per rad/s, so gravity is ~1).  It is stateless: a recording cut into time blocks gives
the same levels, and dropped samples only shorten the mean.  Six dense inputs per step:
its cost is ``S + 1`` adds/multiplies per channel and step (counted as dense MACs).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels.params import OpCounts


class WindowMean:
    """``forward(x (B, T, S, C), valid (B, T, S) bool) -> (B, T, C)`` level currents.

    Parameters
    ----------
    channels : int
    scale : (channels,) finite floats, multiplies each channel's mean
    backend : kernels.backend.Backend
    dtype : np.float32 or np.float64
    """

    name = "WindowMean"

    def __init__(self, channels: int, scale: Any, backend: Any, dtype: Any = np.float32) -> None:
        sc = np.asarray(scale, dtype=np.float64)
        if sc.shape != (int(channels),) or not np.all(np.isfinite(sc)):
            raise ValueError(f"{self.name}: scale must be {int(channels)} finite values, got {scale!r}")
        self.channels, self.backend, self.dtype = int(channels), backend, np.dtype(dtype)
        self.scale = sc.astype(self.dtype)
        self._scale_dev = backend.asarray(self.scale, dtype=self.dtype)
        self.last_ops = OpCounts()

    def forward(self, x: Any, valid: Any) -> Any:
        xp = self.backend.xp
        if x.ndim != 4 or x.shape[3] != self.channels or tuple(valid.shape) != tuple(x.shape[:3]):
            raise ValueError(f"{self.name}: x must be (B, T, S, {self.channels}) with valid (B, T, S), "
                             f"got {tuple(x.shape)} and {tuple(valid.shape)}")
        x = self.backend.asarray(x, dtype=self.dtype)
        v = valid[..., None]
        # where, not multiply: invalid samples may hold NaN.
        total = xp.where(v, x, self.dtype.type(0)).sum(axis=2)
        count = xp.maximum(v.sum(axis=2), 1).astype(self.dtype)
        B, T, S, C = x.shape
        n = B * T * C * (S + 1)
        self.last_ops = OpCounts(mac=n, dense_mac=n)
        return total / count * self._scale_dev
