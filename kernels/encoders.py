"""Spike encoders: delta modulation, event-camera temporal contrast, plain currents.

Delta modulation (send-on-delta), per channel c with threshold theta_c > 0, over the
steps t where the input is valid::

    not primed:  ref <- x_t, primed <- True, no event      (first valid input)
    primed:      ON_t  = [x_t - ref >= theta_c]
                 OFF_t = [ref - x_t >= theta_c]
                 ref <- x_t  where ON_t or OFF_t

Invalid steps emit nothing and leave (ref, primed) unchanged.  The zero state is
"unprimed", so a recording cut into time blocks yields exactly the events of the whole
recording, and a fresh recording starts without a burst of events.

Temporal contrast (an event camera, Lichtsteiner et al., IEEE JSSC 2008,
https://doi.org/10.1109/JSSC.2007.914337) is delta modulation of log intensity per
pixel: ``L = log(frame / 255 + eps)`` for uint8 frames (``log(frame + eps)`` for float
frames in [0, 1]); theta is then a contrast in natural-log units (0.15 ~ 16 %).

LIDAR and other analog inputs pass through as currents (``Passthrough``), LIDAR as
inverse range ``1 / max(r, r_min)`` in 1/m (``InverseRange``): near obstacles drive
strongly, no return (r = inf) drives nothing.

A little over 300 lines because the encoders share one delta scan and its event-count
conventions; apart, that one idea would be split across files.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernels.params import EncoderState, OpCounts


def delta_scan_numpy(
    x: np.ndarray, ref0: np.ndarray, primed0: np.ndarray, valid: np.ndarray, threshold: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Delta-modulate T steps (reference implementation of ``Backend.delta_scan``).

    Parameters
    ----------
    x : (B, T, C) float32 or float64
    ref0 : (B, C) x.dtype, reference level before the block
    primed0 : (B, C) bool, whether ``ref0`` holds a real input
    valid : (B, T) bool, steps that carry data (others are skipped entirely)
    threshold : (C,) x.dtype, > 0

    Returns
    -------
    on, off : (B, T, C) x.dtype, 0/1
    ref_T : (B, C) x.dtype
    primed_T : (B, C) bool

    The scan is sequential in T, so its cost is NumPy's per-call overhead times the calls
    per step: steps where every channel is primed and valid (nearly all of them) take a
    short unmasked path; the others (a recording's first input, dropped samples) take the
    general masked one.
    """
    dt = x.dtype
    th = np.asarray(threshold, dtype=dt)
    neg_th = -th  # ref - x >= th  <=>  x - ref <= -th, exactly: IEEE subtraction is antisymmetric
    B, T, C = x.shape
    on = np.zeros((B, T, C), bool)
    off = np.zeros((B, T, C), bool)
    ref = np.array(ref0, dtype=dt, copy=True)
    primed = np.array(primed0, dtype=bool, copy=True)
    d = np.empty((B, C), dt)
    live = np.empty((B, C), bool)
    move = np.empty((B, C), bool)
    # The fast path moves ref <- x bit for bit through an integer view (select by mask);
    # np.copyto(..., where=) is ~5x slower per element.
    it = np.dtype(f"i{dt.itemsize}")
    ref_bits, x_bits = ref.view(it), x.view(it)
    mask, flip = np.empty((B, C), it), np.empty((B, C), it)
    all_valid = valid.all(axis=0).tolist()
    all_primed = bool(primed.all())
    for t in range(T):
        xt, up, down = x[:, t], on[:, t], off[:, t]
        np.subtract(xt, ref, out=d)
        if all_primed and all_valid[t]:
            np.greater_equal(d, th, out=up)
            np.less_equal(d, neg_th, out=down)
            np.logical_or(up, down, out=move)
            np.negative(move.view(np.uint8), out=mask, dtype=it)  # 0 or all ones
            np.bitwise_xor(ref_bits, x_bits[:, t], out=flip)
            np.bitwise_and(flip, mask, out=flip)
            np.bitwise_xor(ref_bits, flip, out=ref_bits)
            continue
        v = valid[:, t, None]
        np.logical_and(primed, v, out=live)
        # NaN/Inf at invalid steps compare False and never reach ref (masked by v).
        np.greater_equal(d, th, out=up)
        up &= live
        np.less_equal(d, neg_th, out=down)
        down &= live
        # ref <- x where the step is valid and (the first valid input, or an event fired)
        np.logical_or(up, down, out=move)
        move |= ~primed
        move &= v
        np.copyto(ref, xt, where=move)
        primed |= v
        all_primed = bool(primed.all())
    return on.astype(dt), off.astype(dt), ref, primed


def _check_valid(layer: str, valid: Any, shape: tuple[int, ...], xp: Any) -> Any:
    if valid is None:
        return xp.ones(shape, dtype=bool)
    if valid.shape != shape or valid.dtype != bool:
        raise ValueError(f"{layer}: valid must be {shape} bool, got {valid.shape} {valid.dtype}")
    return valid


class DeltaEncoder:
    """Per-channel delta modulation of a (B, T, C) stream into ON/OFF events.

    Parameters
    ----------
    channels : int
    threshold : float or (channels,) array, > 0, in the input's units
    backend : kernels.backend.Backend
    dtype : np.float32 or np.float64
    """

    name = "DeltaEncoder"

    def __init__(self, channels: int, threshold: Any, backend: Any, dtype: Any = np.float32) -> None:
        if not isinstance(channels, (int, np.integer)) or channels < 1:
            raise ValueError(f"{self.name}: channels must be a positive int, got {channels!r}")
        th = np.asarray(threshold, dtype=np.float64)
        if th.ndim == 0:
            th = np.full(channels, th)
        if th.shape != (channels,):
            raise ValueError(
                f"{self.name}: threshold must be a scalar or ({channels},), got shape {th.shape}"
            )
        if not np.all(np.isfinite(th) & (th > 0)):
            raise ValueError(f"{self.name}: threshold must be finite and > 0, got {threshold!r}")
        self.channels = int(channels)
        self.backend = backend
        self.dtype = np.dtype(dtype)
        self.threshold = th.astype(self.dtype)
        self._threshold_dev = backend.asarray(self.threshold, dtype=self.dtype)
        self.last_ops = OpCounts()
        self.last_events = 0

    def zero_state(self, batch: int) -> EncoderState:
        xp = self.backend.xp
        return EncoderState(
            ref=xp.zeros((batch, self.channels), dtype=self.dtype),
            primed=xp.zeros((batch, self.channels), dtype=bool),
        )

    def _scan(self, x: Any, state: EncoderState | None, valid: Any) -> tuple[tuple[Any, Any], EncoderState]:
        b, t, c = x.shape
        if c != self.channels:
            raise ValueError(f"{self.name}: expected {self.channels} channels, got {c}")
        valid = _check_valid(self.name, valid, (b, t), self.backend.xp)
        if state is None:
            state = self.zero_state(b)
        if state.ref.shape != (b, c) or state.primed.shape != (b, c):
            raise ValueError(
                f"{self.name}: state must be ({b}, {c}), got ref {state.ref.shape}, "
                f"primed {state.primed.shape}"
            )
        on, off, ref, primed = self.backend.delta_scan(
            x, state.ref, state.primed, self._threshold_dev, valid
        )
        # Comparisons only: no MACs, no transcendentals for the energy model.
        self.last_ops = OpCounts()
        self.last_events = int(on.sum() + off.sum())
        return (on, off), EncoderState(ref=ref, primed=primed)

    def forward(
        self, x: Any, state: EncoderState | None = None, valid: Any = None
    ) -> tuple[tuple[Any, Any], EncoderState]:
        """Encode a block.

        Parameters
        ----------
        x : (B, T, channels) backend array, ``dtype``
        state : EncoderState (ref (B, channels), primed (B, channels) bool) or None (zero)
        valid : (B, T) bool or None (all valid)

        Returns
        -------
        (on, off) : (B, T, channels) ``dtype``, 0/1
        state : EncoderState after the block
        """
        if x.ndim != 3:
            raise ValueError(f"{self.name}: x must be (B, T, C), got shape {x.shape}")
        x = self.backend.asarray(x, dtype=self.dtype)
        return self._scan(x, state, valid)


class ContrastEncoder(DeltaEncoder):
    """Event-camera temporal contrast: delta modulation of per-pixel log intensity.

    Parameters
    ----------
    height, width : int, frame size in pixels
    threshold : float, contrast threshold in natural-log units (> 0)
    eps : float, added to the [0, 1] intensity before the log so black pixels are finite
    """

    name = "ContrastEncoder"

    def __init__(
        self,
        height: int,
        width: int,
        threshold: float = 0.15,
        eps: float = 1e-3,
        *,
        backend: Any,
        dtype: Any = np.float32,
    ) -> None:
        if not (eps > 0):
            raise ValueError(f"{self.name}: eps must be > 0, got {eps!r}")
        super().__init__(int(height) * int(width), threshold, backend, dtype)
        self.height, self.width, self.eps = int(height), int(width), float(eps)

    def log_intensity(self, frames: Any, valid: Any) -> Any:
        """(B, T, H, W) uint8 or float in [0, 1] -> (B, T, H*W) log intensity."""
        xp = self.backend.xp
        b, t, h, w = frames.shape
        if (h, w) != (self.height, self.width):
            raise ValueError(f"{self.name}: frames must be (B, T, {self.height}, {self.width}), got {frames.shape}")
        f = frames.reshape(b, t, h * w)
        if frames.dtype == np.uint8:
            inten = f.astype(self.dtype) / self.dtype.type(255)
        elif frames.dtype.kind == "f":
            inten = f.astype(self.dtype, copy=False)
            bad = ~((inten >= 0) & (inten <= 1)) & valid[:, :, None]
            if bool(bad.any()):
                raise ValueError(f"{self.name}: float frames must lie in [0, 1] at valid steps")
        else:
            raise ValueError(f"{self.name}: frames must be uint8 or float in [0, 1], got {frames.dtype}")
        # Invalid frames may hold garbage; the log of it is computed but never used.
        with np.errstate(invalid="ignore", divide="ignore"):
            return xp.log(inten + self.dtype.type(self.eps))

    def forward(
        self, frames: Any, state: EncoderState | None = None, valid: Any = None
    ) -> tuple[tuple[Any, Any], EncoderState]:
        """Encode frames.

        Parameters
        ----------
        frames : (B, T, height, width) uint8, or float in [0, 1]
        state : EncoderState over height*width pixels, or None (zero state)
        valid : (B, T) bool or None

        Returns
        -------
        (on, off) : (B, T, height*width) ``dtype``, 0/1, pixels row-major
        state : EncoderState after the block
        """
        if frames.ndim != 4:
            raise ValueError(f"{self.name}: frames must be (B, T, H, W), got shape {frames.shape}")
        b, t = frames.shape[:2]
        valid = _check_valid(self.name, valid, (b, t), self.backend.xp)
        out = self._scan(self.log_intensity(frames, valid), state, valid)
        self.last_ops = OpCounts(nonlin=b * t * self.channels)  # one log per pixel and frame
        return out


class Passthrough:
    """Analog input used directly as current; invalid steps give zero current. No state.

    ``forward(x (B, T, C), state=None, valid=(B, T) bool | None) -> (cur (B, T, C), None)``
    """

    name = "Passthrough"

    def __init__(self, channels: int, backend: Any, dtype: Any = np.float32) -> None:
        self.channels, self.backend, self.dtype = int(channels), backend, np.dtype(dtype)
        self.last_ops = OpCounts()

    def _transform(self, x: Any) -> Any:
        return x

    def forward(self, x: Any, state: None = None, valid: Any = None) -> tuple[Any, None]:
        if x.ndim != 3 or x.shape[2] != self.channels:
            raise ValueError(f"{self.name}: x must be (B, T, {self.channels}), got {x.shape}")
        b, t = x.shape[:2]
        valid = _check_valid(self.name, valid, (b, t), self.backend.xp)
        x = self.backend.asarray(x, dtype=self.dtype)
        with np.errstate(invalid="ignore", divide="ignore"):
            cur = self._transform(x)
        # where, not multiply: NaN * 0 is NaN, and invalid rows may hold NaN.
        return self.backend.xp.where(valid[:, :, None], cur, self.dtype.type(0)), None


class InverseRange(Passthrough):
    """LIDAR beams as currents ``1 / max(r, r_min)`` in 1/m; r = inf (no return) gives 0."""

    name = "InverseRange"

    def __init__(self, beams: int, r_min: float = 0.1, *, backend: Any, dtype: Any = np.float32) -> None:
        if not (r_min > 0):
            raise ValueError(f"{self.name}: r_min must be > 0 metres, got {r_min!r}")
        super().__init__(beams, backend, dtype)
        self.r_min = float(r_min)

    def _transform(self, x: Any) -> Any:
        return self.dtype.type(1) / self.backend.xp.maximum(x, self.dtype.type(self.r_min))
