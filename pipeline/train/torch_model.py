"""The trainable part of the fusion network in PyTorch, and its export to the kernels.

The encoders stay fixed preprocessing computed by ``kernels`` exactly as at inference
(:meth:`kernels.network.FusionNetwork.encode`); what trains is the rest, built from the
peers users train with, so that :mod:`kernels.interop` exports it without translation:

    x (B, T, F) [-> x P] -> (x - shift) / scale [-> Linear(., ltc_sensory) for LTC with ltc_sensory]
                -> ncps CfC / LTC (constant timespan 1.0) -> h (B, T, hidden)
                -> Linear(hidden, lif_units) -> snnTorch Leaky (surrogate gradient) -> s
    y = Linear([h, s]) (B, T, 3)    (the readout; without a liquid layer the LIF current is
                                     Linear(x), without LIF the readout reads h alone)

ncps squeezes per-sample timespans so that they broadcast over units, which is wrong for a
batch (mlech26l/ncps#83): no timespans are passed (1.0 per step, as the kernels default).
Training sees standardised inputs (``shift``, ``scale``: fixed buffers, the training split's
per-feature mean and std) and standardised speed and yaw rate and the obstacle logit;
:func:`export` folds the input standardisation into the first layer (CfC ``w_x``/``b_x``,
LTC's input projection or, without one, its affine input map, or the LIF synapse) and the
target scaling into the readout, so the kernels run on the encoders' own features and
their ``y`` is in physical units.
Optionally (``trainer.pool_*``, :func:`pool_matrix`) the first layer reads fixed pooled inputs
``x P`` (camera pixels in blocks, LIDAR beams in sectors, IMU events per channel: fewer, less
noisy inputs, i.e. weight tying); the export folds ``P`` too (``W = P W'``), so the kernels'
network and its event-driven split synapse are the same as without pooling.
Only this module and :mod:`pipeline.train.bptt` import torch (the ``train`` extra).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

EXTRA_HINT = "trainer=bptt needs the train extra: pip install -e '.[train]' (torch, ncps, snntorch)"


class MissingExtra(ImportError):
    """The optional ``train`` extra is not installed (the message names it)."""


def import_torch():
    """``(torch, ncps.torch, snntorch)``, or :class:`MissingExtra` naming what is missing."""
    try:
        import ncps.torch as ncps_torch
        import snntorch
        import torch
    except ImportError as exc:
        raise MissingExtra(f"{EXTRA_HINT}; missing: {exc.name or exc}") from None
    return torch, ncps_torch, snntorch


def pool_matrix(config, camera: int = 1, lidar: int = 1, imu: bool = False) -> np.ndarray | None:
    """The fixed pooling ``P (n_features, n_pooled)`` of ``trainer.pool_*``, or None (no pooling).

    Each pooled input is the mean of one group of features (the scale is immaterial: the
    pooled inputs are standardised), in the features' order: camera pixels in ``camera`` x
    ``camera`` blocks (the last row / column of blocks smaller when ``camera`` does not divide
    the image), LIDAR beams in sectors of ``lidar`` adjacent beams (the last one smaller),
    with ``imu`` the IMU delta events of each channel over the step's samples (else each
    kept), the IMU level channels kept.  ``x @ P`` is what the model reads."""
    c = config
    if camera == 1 and lidar == 1 and not imu:
        return None
    from kernels.fusion_config import IMU_CHANNELS

    rows, cols = np.divmod(np.arange(c.n_camera), c.camera[1])
    cam = (rows // camera) * -(-c.camera[1] // camera) + cols // camera  # row-major blocks
    lid = np.arange(c.beams) // lidar
    imu_g = np.tile(np.arange(IMU_CHANNELS), c.imu_per_step) if imu else np.arange(c.n_imu)  # sample-major
    group, start = [], 0
    for g in (cam, lid, imu_g, np.arange(c.n_level)):
        group.append(g + start)
        start += int(g.max(initial=-1)) + 1
    group = np.concatenate(group)
    P = np.zeros((c.n_features, start))
    P[np.arange(c.n_features), group] = 1.0
    return P / P.sum(0)


def build(config, seed: int, dtype: str = "float32", pool: np.ndarray | None = None):
    """A ``torch.nn.Module`` for ``config`` (a kernels FusionConfig), seeded; ``pool``: the
    fixed input pooling of :func:`pool_matrix` (None: the first layer reads the features)."""
    torch, ncps_torch, snn = import_torch()
    from snntorch import surrogate

    torch.manual_seed(seed)
    if pool is not None and ((config.liquid == "ltc" and not config.ltc_sensory)
                             or np.shape(pool)[0] != config.n_features):
        raise ValueError(f"input pooling needs a linear first layer (CfC, LTC's input projection, or the LIF "
                         f"synapse) and {config.n_features} rows, got liquid={config.liquid!r}, "
                         f"ltc_sensory={config.ltc_sensory}, {np.shape(pool)}")
    n_in = config.n_features if pool is None else np.shape(pool)[1]

    class Fusion(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            c = config
            self.pool = None if pool is None else np.asarray(pool, np.float64)  # read by export
            if pool is not None:  # x P as a scatter-add: feature i adds x_i P[i, j] to the one input j
                self.register_buffer("pool_group", torch.from_numpy(self.pool.argmax(1)), persistent=False)
                self.register_buffer("pool_weight", torch.from_numpy(self.pool.max(1)), persistent=False)
            self.liquid = None
            if c.liquid == "cfc":
                self.liquid = ncps_torch.CfC(n_in, c.hidden, mode=c.cfc_mode, activation=c.activation,
                                             backbone_units=c.backbone_units, backbone_layers=c.backbone_layers,
                                             return_sequences=True, batch_first=True)
            self.ltc_in = torch.nn.Linear(n_in, c.ltc_sensory) if c.ltc_sensory else None
            if c.liquid == "ltc":
                self.liquid = ncps_torch.LTC(c.ltc_sensory or n_in, c.hidden, ode_unfolds=c.ode_unfolds,
                                             return_sequences=True, batch_first=True)
            n_liquid = c.hidden if self.liquid is not None else 0
            self.syn = self.lif = None
            n_read = n_liquid
            if c.spiking:
                self.syn = torch.nn.Linear(n_liquid or n_in, c.lif_units)
                self.lif = snn.Leaky(beta=c.beta, threshold=c.threshold, reset_mechanism=c.reset,
                                     spike_grad=surrogate.fast_sigmoid())
                n_read += c.lif_units
            self.readout = torch.nn.Linear(n_read, c.n_outputs)
            self.register_buffer("in_shift", torch.zeros(n_in))
            self.register_buffer("in_scale", torch.ones(n_in))

        def forward(self, x, state):
            """``x (B, T, F)``, ``state = (h0 | None, mem0 | None)`` -> ``(y, spikes, state)``."""
            h0, mem = state
            if self.pool is not None:
                x = x.new_zeros(*x.shape[:-1], len(self.in_shift)).index_add_(x.dim() - 1, self.pool_group,
                                                                               x * self.pool_weight)
            x = (x - self.in_shift) / self.in_scale
            h, hT = None, None
            if self.liquid is not None:
                h, hT = self.liquid(x if self.ltc_in is None else self.ltc_in(x), h0)
            parts = [] if h is None else [h]
            spikes = None
            if self.lif is not None:
                cur = self.syn(x if h is None else h)
                mem = torch.zeros_like(cur[:, 0]) if mem is None else mem
                out = []
                for t in range(cur.shape[1]):
                    s, mem = self.lif(cur[:, t], mem)
                    out.append(s)
                spikes = torch.stack(out, dim=1).to(cur.dtype)
                parts.append(spikes)
            y = self.readout(torch.cat(parts, dim=-1))
            return y, spikes, (hT, mem)

    model = Fusion()
    return model.double() if dtype == "float64" else model.float()


def export(model, config, backend, scale: np.ndarray | None = None, shift: np.ndarray | None = None):
    """The trained ``model`` as a :class:`kernels.network.FusionNetwork` on ``backend``.

    ``y_physical = y_trained * scale + shift`` per output (None: 1 and 0) is folded into
    the readout, so the kernels compute targets in physical units; the input standardisation
    and the model's input pooling ``P`` fold into the first layer (``W = P W' / s``)."""
    from kernels.interop import cfc_from_ncps, lif_from_snntorch, ltc_from_ncps, to_numpy
    from kernels.network import FusionNetwork

    c = config
    m = to_numpy(model.in_shift).astype(np.float64)
    s = to_numpy(model.in_scale).astype(np.float64)
    pool = getattr(model, "pool", None)

    def fold(w, b):  # a first layer over the standardised (pooled) inputs, over the features
        w, b = _fold(w, b, m, s)
        return (w if pool is None else pool @ w), b

    liquid = None
    if c.liquid == "cfc":
        liquid = cfc_from_ncps(model.liquid.state_dict(), mode=c.cfc_mode, activation=c.activation,
                               backbone_layers=c.backbone_layers)
        w, b = fold(liquid.w_x, liquid.b_x)
        liquid = dataclasses.replace(liquid, w_x=w.astype(liquid.w_x.dtype), b_x=b.astype(liquid.b_x.dtype))
    elif c.liquid == "ltc":
        liquid = ltc_from_ncps(model.liquid.state_dict(), ode_unfolds=c.ode_unfolds)
        iw = np.asarray(liquid.input_w, np.float64)  # x' * iw + ib, x' = (x - m) / s
        if not c.ltc_sensory:
            liquid = dataclasses.replace(liquid, input_w=(iw / s).astype(liquid.input_w.dtype),
                                         input_b=(liquid.input_b - m * iw / s).astype(liquid.input_b.dtype))
    ltc_in_w, ltc_in_b = (None, None) if model.ltc_in is None else (  # it reads the features; LTC's input map stays
        fold(to_numpy(model.ltc_in.weight).T, to_numpy(model.ltc_in.bias)))
    lif = lif_w = lif_b = None
    if c.spiking:
        lif = lif_from_snntorch(model.lif.beta, model.lif.threshold, c.reset, units=c.lif_units)
        lif_w, lif_b = to_numpy(model.syn.weight).T.copy(), to_numpy(model.syn.bias).copy()
        if c.liquid is None:  # the synapse reads the features themselves
            lif_w, lif_b = fold(lif_w, lif_b)
    w, b = to_numpy(model.readout.weight).T.astype(np.float64), to_numpy(model.readout.bias).astype(np.float64)
    k = w.shape[1]
    scale = np.ones(k) if scale is None else np.asarray(scale, np.float64)
    shift = np.zeros(k) if shift is None else np.asarray(shift, np.float64)
    dt = np.dtype(c.dtype)
    return FusionNetwork.from_parts(c, backend, liquid=liquid, lif=lif, lif_w=_cast(lif_w, dt),
                                    lif_b=_cast(lif_b, dt), readout_w=(w * scale).astype(dt),
                                    readout_b=(b * scale + shift).astype(dt), ltc_in_w=_cast(ltc_in_w, dt),
                                    ltc_in_b=_cast(ltc_in_b, dt))


def _fold(w: np.ndarray, b: np.ndarray, m: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``((x - m) / s) W + b == x W' + b'`` with ``W' = W / s`` (per row) and ``b' = b - (m / s) W``, float64."""
    w64 = np.asarray(w, np.float64)
    return w64 / s[:, None], np.asarray(b, np.float64) - (m / s) @ w64


def _cast(a: Any, dt: np.dtype):
    return None if a is None else np.asarray(a).astype(dt)
