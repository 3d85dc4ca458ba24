"""The camera + LIDAR + IMU fusion network (DESIGN.md, "The network").

Per model step t (default clock 10 Hz), for one recording:

1. Encoders (kernels.encoders, kernels.imu_level), F = H*W + beams + 6*S + 6 features:
   camera   e_cam_t  = ON_t - OFF_t of log intensity per pixel       (H*W, events)
   LIDAR    e_lid_t  = 1 / max(r_t, r_min) per beam, in 1/m          (beams, currents)
   IMU      e_imu_t  = ON - OFF of delta modulation of the S samples  (6*S, events)
            of this step, on the 100 Hz sample stream (sample-major: s*6 + channel)
   level    e_lvl_t  = scaled mean of the step's valid IMU samples    (6, currents;
            only with ``imu_level``: the absolute rates the delta events drop)
2. Liquid layer, CfC: u_t = e_cam_t W_cam + e_lid_t W_lid + b + e_imu_t W_imu + e_lvl_t W_lvl,
   the rows of the CfC's input weight split by modality, so the event parts accumulate
   only the rows of inputs that fired (kernels.synapse); then h_t = CfC(u_t, h_{t-1}, dt_t).
   LTC with ``ltc_sensory`` = S: the same split projection u_t (F -> S, ``ltc_in_w``/``ltc_in_b``)
   feeds its S sensory inputs; without it (older files) LTC takes the F features themselves,
   a per-input sigmoid synapse per feature and unit at every step.
3. Spiking layer: I_t = h_t W_s + b_s (or the split input projection when there is no
   liquid layer), then LIF (snnTorch Leaky): s_t in {0,1}^L.
4. Readout: y_t = [h_t, s_t] W_o + b_o, n_outputs values (speed, yaw rate, obstacle logit).

dt is the elapsed time per step in units of the nominal step (1.0 on the nominal
clock), as ncps' ``timespans``; it enters the liquid layer only.  Invalid inputs are
masked: encoders skip invalid frames/samples (no events, state kept), invalid LIDAR
scans give zero current.  About 370 lines, over 300 lines because building, running,
counting and saving one network are kept in one class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kernels import fusion_state as fs
from kernels import weights
from kernels.cfc import CfC
from kernels.encoders import ContrastEncoder, DeltaEncoder, InverseRange
from kernels.fusion_config import IMU_CHANNELS, FusionConfig
from kernels.fusion_state import FusionState, NetworkOutput
from kernels.imu_level import WindowMean
from kernels.lif import LIF
from kernels.ltc import LTC
from kernels.params import CfCParams, LIFParams, LTCParams, OpCounts
from kernels.synapse import Linear

_CFC_FIELDS = ("w_x", "b_x", "w_h", "w_head", "b_head", "w_tau", "A", "proj_w", "proj_b")
_LTC_FIELDS = LTC._fields


def _init_linear(rng: np.random.Generator, n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch ``nn.Linear`` default init, U(+-1/sqrt(n_in)), in (in, out) layout."""
    bound = 1.0 / np.sqrt(n_in)
    return (rng.uniform(-bound, bound, (n_in, n_out)).astype(np.float32),
            rng.uniform(-bound, bound, n_out).astype(np.float32))


class FusionNetwork:
    """Encoders -> CfC | LTC (optional) -> LIF (optional) -> linear readout.

    Build with :meth:`init` (random, seeded) or :meth:`from_parts` (trained weights,
    e.g. ``kernels.interop.cfc_from_ncps`` / ``lif_from_snntorch``); parts not given
    are initialised from ``config.seed``.
    """

    def __init__(self, config: FusionConfig, backend: Any, parts: dict[str, Any]) -> None:
        c, self.config, self.backend = config, config, backend
        self.dtype = dt = np.dtype(config.dtype)
        self.camera_enc = ContrastEncoder(*c.camera, c.camera_threshold, c.camera_eps, backend=backend, dtype=dt)
        self.lidar_enc = InverseRange(c.beams, c.lidar_r_min, backend=backend, dtype=dt)
        self.imu_enc = DeltaEncoder(IMU_CHANNELS, c.imu_thresholds, backend, dt)
        self.level_enc = WindowMean(IMU_CHANNELS, c.imu_level_scale, backend, dt) if c.imu_level else None
        self.parts = parts
        self.liquid = None
        if c.liquid == "cfc":
            self.liquid = CfC(parts["liquid"], backend, dt)
        elif c.liquid == "ltc":
            self.liquid = LTC(parts["liquid"], backend, dt)
        self.lif = LIF(parts["lif"], backend, dt) if c.spiking else None
        self.lif_syn = None
        if c.spiking and c.liquid is not None:
            self.lif_syn = Linear(parts["lif_w"], parts["lif_b"], backend, dt, c.event_threshold, "FusionNetwork.lif_syn")
        # The first layer fed by the encoders through a split linear projection.
        w_in, b_in = (None, None)
        if c.liquid == "cfc":
            w_in, b_in = parts["liquid"].w_x, parts["liquid"].b_x
        elif c.liquid == "ltc" and c.ltc_sensory:
            w_in, b_in = parts["ltc_in_w"], parts["ltc_in_b"]
        elif c.liquid is None:
            w_in, b_in = parts["lif_w"], parts["lif_b"]
        self.inputs = None
        if w_in is not None:
            i, j = c.n_camera, c.n_camera + c.beams
            k = j + c.n_imu
            self.inputs = tuple(Linear(w, b, backend, dt, c.event_threshold, f"FusionNetwork.{name}") if w.shape[0]
                                else None
                                for w, b, name in ((w_in[:i], None, "camera_in"), (w_in[i:j], b_in, "lidar_in"),
                                                   (w_in[j:k], None, "imu_in"), (w_in[k:], None, "level_in")))
        self.n_liquid = 0 if c.liquid is None else parts["liquid"].units
        self.readout_h = Linear(parts["readout_w"][: self.n_liquid], None, backend, dt, 0.0, "readout_h")
        self.readout_s = Linear(parts["readout_w"][self.n_liquid :], None, backend, dt, c.event_threshold, "readout_s")
        self.readout_b = backend.asarray(parts["readout_b"], dtype=dt)
        self.last_ops = OpCounts()

    @classmethod
    def init(cls, config: FusionConfig, backend: Any) -> FusionNetwork:
        return cls.from_parts(config, backend)

    @classmethod
    def from_parts(cls, config: FusionConfig, backend: Any, *, liquid: CfCParams | LTCParams | None = None,
                   lif: LIFParams | None = None, lif_w: Any = None, lif_b: Any = None,
                   readout_w: Any = None, readout_b: Any = None, ltc_in_w: Any = None,
                   ltc_in_b: Any = None) -> FusionNetwork:
        """Assemble a network; ``liquid`` is CfCParams (F -> hidden, no projection) or LTCParams
        (n_in = ``ltc_sensory`` or F), ``ltc_in_w`` (F, ltc_sensory) and ``ltc_in_b`` (ltc_sensory,)
        LTC's input projection, ``lif_w`` (hidden or F, lif_units), ``readout_w`` (hidden + lif_units, n_outputs)."""
        c, rng = config, np.random.default_rng(config.seed)
        dt = np.dtype(c.dtype)
        n_in = c.ltc_sensory or c.n_features  # the liquid layer's inputs
        if c.liquid is not None and liquid is None:
            kw = dict(seed=c.seed, backend=backend, dtype=dt)
            liquid = (CfC.init(c.n_features, c.hidden, mode=c.cfc_mode, activation=c.activation,
                               backbone_units=c.backbone_units, backbone_layers=c.backbone_layers, **kw)
                      if c.liquid == "cfc" else LTC.init(n_in, c.hidden, ode_unfolds=c.ode_unfolds, **kw)).params
        if liquid is not None:
            want = CfCParams if c.liquid == "cfc" else LTCParams
            if not isinstance(liquid, want) or liquid.n_in != n_in or getattr(liquid, "proj_w", None) is not None:
                raise ValueError(f"FusionNetwork: liquid must be {want.__name__} with n_in={n_in} "
                                 f"and no projection for liquid={c.liquid!r}, got {type(liquid).__name__}")
        if c.ltc_sensory and ltc_in_w is None:
            ltc_in_w, ltc_in_b = _init_linear(rng, c.n_features, c.ltc_sensory)
        want = [(c.n_features, c.ltc_sensory), (c.ltc_sensory,)] if c.ltc_sensory else [None, None]
        got = [None if a is None else np.shape(a) for a in (ltc_in_w, ltc_in_b)]
        if want != got:
            raise ValueError(f"FusionNetwork: ltc_in_w, ltc_in_b must be {want[0]}, {want[1]} for liquid={c.liquid!r}, "
                             f"ltc_sensory={c.ltc_sensory}, got {got[0]}, {got[1]}")
        n_liquid = 0 if liquid is None else liquid.units
        if c.spiking:
            lif = lif or LIF.init(c.lif_units, beta=c.beta, threshold=c.threshold, reset_mechanism=c.reset,
                                  backend=backend, dtype=dt).params
            n_syn_in = n_liquid or c.n_features
            if lif_w is None:
                lif_w, lif_b = _init_linear(rng, n_syn_in, len(lif.beta))
            if np.shape(lif_w) != (n_syn_in, len(lif.beta)):
                raise ValueError(f"FusionNetwork: lif_w must be ({n_syn_in}, {len(lif.beta)}), got {np.shape(lif_w)}")
        n_read = n_liquid + (len(lif.beta) if c.spiking else 0)
        if readout_w is None:
            readout_w, readout_b = _init_linear(rng, n_read, c.n_outputs)
        if np.shape(readout_w) != (n_read, c.n_outputs):
            raise ValueError(f"FusionNetwork: readout_w must be ({n_read}, {c.n_outputs}), got {np.shape(readout_w)}")
        parts = dict(liquid=liquid, lif=lif, lif_w=lif_w, lif_b=lif_b, readout_w=readout_w, readout_b=readout_b,
                     ltc_in_w=ltc_in_w, ltc_in_b=ltc_in_b)
        return cls(config, backend, parts)

    # ---- state ---------------------------------------------------------------------
    def zero_state(self, batch: int) -> FusionState:
        liquid = None
        if self.liquid is not None:
            liquid = self.liquid.state_type(self.backend.xp.zeros((batch, self.n_liquid), self.dtype))
        return FusionState(self.camera_enc.zero_state(batch), self.imu_enc.zero_state(batch), liquid,
                           None if self.lif is None else self.lif.zero_state(batch))

    def state_to_arrays(self, state: FusionState) -> dict[str, np.ndarray]:
        return fs.state_to_arrays(state, self.backend)

    def state_from_arrays(self, arrays: dict[str, Any]) -> FusionState:
        return fs.state_from_arrays(arrays, self.zero_state(1), self.backend)

    def reset_rows(self, state: FusionState, mask: Any) -> FusionState:
        return fs.reset_rows(state, mask, self.backend)

    # ---- forward -------------------------------------------------------------------
    def _check(self, name: str, x: Any, shape: tuple, kinds: str) -> Any:
        if tuple(x.shape) != shape or np.dtype(x.dtype).kind not in kinds:
            raise ValueError(f"FusionNetwork.forward: {name} must be {shape} ({kinds!r} dtype kind), "
                             f"got {tuple(x.shape)} {x.dtype}")
        return self.backend.asarray(x)

    def encode(self, camera: Any, lidar: Any, imu: Any, state: FusionState | None = None,
               camera_valid: Any = None, lidar_valid: Any = None, imu_valid: Any = None) -> tuple[Any, FusionState]:
        """The encoders alone, as :meth:`forward` runs them: the liquid (or LIF) layer's input
        ``x (B, T, n_features)`` = [camera ON - OFF per pixel, LIDAR inverse range per beam,
        IMU ON - OFF per sample and channel, IMU level per channel (with ``imu_level``)], and
        the state with the encoders advanced (the liquid and spiking parts are passed
        through).  What a trainer feeds to ncps / snnTorch."""
        state = self.zero_state(camera.shape[0]) if state is None else state
        (cam_on, cam_off, lid, imu_on, imu_off, level), cam_state, imu_state = self._encode(
            camera, lidar, imu, state, camera_valid, lidar_valid, imu_valid)
        x = self._features(cam_on, cam_off, lid, imu_on, imu_off, level).astype(self.dtype, copy=False)
        return x, FusionState(cam_state, imu_state, state.liquid, state.lif)

    def _features(self, cam_on, cam_off, lid, imu_on, imu_off, level):
        parts = [cam_on - cam_off, lid, imu_on - imu_off] + ([] if level is None else [level])
        return self.backend.xp.concatenate(parts, axis=2)

    def _encode(self, camera, lidar, imu, state, camera_valid, lidar_valid, imu_valid):
        """Checked inputs through the encoders: ((cam_on, cam_off, lid, imu_on, imu_off, level | None),
        camera state, imu state)."""
        c, xp = self.config, self.backend.xp
        B, T = camera.shape[:2]
        camera = self._check("camera", camera, (B, T, *c.camera), "uf")
        lidar = self._check("lidar", lidar, (B, T, c.beams), "f")
        imu = self._check("imu", imu, (B, T, c.imu_per_step, IMU_CHANNELS), "f")
        valid = [xp.ones(s, bool) if v is None else self._check(n, v, s, "b") for n, v, s in (
            ("camera_valid", camera_valid, (B, T)), ("lidar_valid", lidar_valid, (B, T)),
            ("imu_valid", imu_valid, (B, T, c.imu_per_step)))]
        for name, x, v in (("lidar", lidar, valid[1][..., None]), ("imu", imu, valid[2][..., None])):
            if bool(xp.any(xp.isnan(x) & v)):
                raise ValueError(f"FusionNetwork.forward: {name} has NaN at steps marked valid")
        if bool(xp.any(xp.isinf(imu) & valid[2][..., None])):
            raise ValueError("FusionNetwork.forward: imu has Inf at samples marked valid")

        (cam_on, cam_off), cam_state = self.camera_enc.forward(camera, state.camera, valid[0])
        lid, _ = self.lidar_enc.forward(lidar, None, valid[1])
        S = c.imu_per_step
        (imu_on, imu_off), imu_state = self.imu_enc.forward(
            imu.reshape(B, T * S, IMU_CHANNELS).astype(self.dtype), state.imu, valid[2].reshape(B, T * S))
        imu_on, imu_off = imu_on.reshape(B, T, c.n_imu), imu_off.reshape(B, T, c.n_imu)
        level = None if self.level_enc is None else self.level_enc.forward(imu, valid[2])
        return (cam_on, cam_off, lid, imu_on, imu_off, level), cam_state, imu_state

    def forward(self, camera: Any, lidar: Any, imu: Any, state: FusionState | None = None, dt: Any = None,
                camera_valid: Any = None, lidar_valid: Any = None, imu_valid: Any = None,
                features: bool = False) -> tuple[NetworkOutput, FusionState]:
        """Run one time block of B recordings.

        Parameters
        ----------
        camera : (B, T, H, W) uint8 (or float in [0, 1])
        lidar : (B, T, beams) float, metres (inf = no return)
        imu : (B, T, imu_per_step, 6) float, m/s^2 and rad/s
        state : FusionState or None (zero state: fresh recordings)
        dt : None (1.0), or elapsed time per step in nominal steps, (B, T) or as CfC.scan
        camera_valid, lidar_valid : (B, T) bool or None (all valid)
        imu_valid : (B, T, imu_per_step) bool or None
        features : also return the readout's inputs ``[h, s]`` (for fitting the readout)

        Returns
        -------
        NetworkOutput(y (B, T, n_outputs) dtype, spike_counts (B, T) int64, event_counts (B, T) int64,
        features (B, T, hidden + lif_units) dtype or None)
        FusionState after the block
        """
        xp = self.backend.xp
        state = self.zero_state(camera.shape[0]) if state is None else state
        (cam_on, cam_off, lid, imu_on, imu_off, level), cam_state, imu_state = self._encode(
            camera, lidar, imu, state, camera_valid, lidar_valid, imu_valid)
        B, T = cam_on.shape[:2]
        ops = self.camera_enc.last_ops + (OpCounts() if level is None else self.level_enc.last_ops)

        first = None  # the split projection's output: CfC's or LTC's u, or the LIF current
        if self.inputs is not None:
            cam_in, lid_in, imu_in, level_in = self.inputs
            first = cam_in.forward_signed(cam_on, cam_off) + lid_in.forward(lid, binary=False)
            first += imu_in.forward_signed(imu_on, imu_off)
            ops = ops + cam_in.last_ops + lid_in.last_ops + imu_in.last_ops
            if level is not None:
                first += level_in.forward(level, binary=False)
                ops = ops + level_in.last_ops

        h, liquid_state = None, None
        if isinstance(self.liquid, CfC):
            h, liquid_state = self.liquid.scan(first, state.liquid, dt)
            # CfC.ops counts its input projection as dense MACs; it ran above instead.
            full, proj = self.liquid.ops(B, T), B * T * self.liquid.params.w_x.size
            ops = ops + full._replace(mac=full.mac - proj, dense_mac=full.dense_mac - proj)
        elif isinstance(self.liquid, LTC):
            x = self._features(cam_on, cam_off, lid, imu_on, imu_off, level) if first is None else first
            h, liquid_state = self.liquid.forward(x, state.liquid, dt)
            ops = ops + self.liquid.last_ops

        spk, lif_state = None, None
        if self.lif is not None:
            cur = first if self.lif_syn is None else self.lif_syn.forward(h, binary=False)
            ops = ops if self.lif_syn is None else ops + self.lif_syn.last_ops
            (spk, _), lif_state = self.lif.forward(cur, state.lif)

        y = self.readout_b
        if h is not None:
            y = y + self.readout_h.forward(h, binary=False)
            ops = ops + self.readout_h.last_ops
        if spk is not None:
            y = y + self.readout_s.forward(spk, binary=True)
            ops = ops + self.readout_s.last_ops
        self.last_ops = ops
        counts = xp.zeros((B, T), np.int64) if spk is None else spk.sum(axis=2).astype(np.int64)
        events = (cam_on.sum(2) + cam_off.sum(2) + imu_on.sum(2) + imu_off.sum(2)).astype(np.int64)
        new_state = FusionState(cam_state, imu_state, liquid_state, lif_state)
        feats = None
        if features:  # the rows of readout_w, in order
            feats = xp.concatenate([a.astype(self.dtype, copy=False) for a in (h, spk) if a is not None], axis=2)
        return NetworkOutput(y, counts, events, feats), new_state

    def with_readout(self, readout_w: Any, readout_b: Any) -> FusionNetwork:
        """The same network with another readout, ``readout_w (hidden + lif_units, n_outputs)``."""
        p = self.parts
        return FusionNetwork.from_parts(self.config, self.backend, liquid=p["liquid"], lif=p["lif"],
                                        lif_w=p["lif_w"], lif_b=p["lif_b"], readout_w=np.asarray(readout_w),
                                        readout_b=np.asarray(readout_b), ltc_in_w=p["ltc_in_w"], ltc_in_b=p["ltc_in_b"])

    # ---- accounting and weights ------------------------------------------------------
    @property
    def n_params(self) -> int:
        n = (0 if self.liquid is None else self.liquid.n_params) + self.readout_h.n_params + self.readout_s.n_params
        n += int(self.readout_b.size)
        if self.lif is not None:
            n += self.lif.n_params + (self.lif_syn.n_params if self.lif_syn is not None else 0)
        if self.inputs is not None and not isinstance(self.liquid, CfC):  # LIF synapses or LTC's input projection
            n += sum(lin.n_params for lin in self.inputs if lin is not None)
        return n

    def dense_ops_per_step(self) -> OpCounts:
        """Dense-equivalent MACs and transcendentals of one sample-step (B = T = 1)."""
        c = self.config
        ops = OpCounts(nonlin=c.n_camera)  # the log per pixel
        if c.imu_level:  # the level channel's mean: S adds and a scale per channel
            n = IMU_CHANNELS * (c.imu_per_step + 1)
            ops = ops + OpCounts(mac=n, dense_mac=n)
        if self.liquid is not None:  # CfC.ops counts its input projection
            ops = ops + self.liquid.ops(1, 1)
        linears = [self.lif_syn, self.readout_h, self.readout_s]
        if not isinstance(self.liquid, CfC):  # the LIF synapses or LTC's input projection
            linears += list(self.inputs or ())
        n = sum(lin.n_in * lin.n_out for lin in linears if lin is not None and lin.n_in)
        return ops + OpCounts(mac=n, dense_mac=n)

    def mflop_per_sequence(self, steps: int) -> float:
        """MFLOP of one recording of ``steps`` steps run densely: 2 per MAC + 1 per transcendental."""
        per = self.dense_ops_per_step()
        return steps * (2 * per.dense_mac + per.nonlin) / 1e6

    def named_arrays(self) -> dict[str, np.ndarray]:
        p = self.parts
        out = {"readout.w": p["readout_w"], "readout.b": p["readout_b"]}
        if isinstance(p["liquid"], CfCParams):
            out.update({f"cfc.{k}": getattr(p["liquid"], k) for k in _CFC_FIELDS if getattr(p["liquid"], k) is not None})
            for i, (w, b) in enumerate(p["liquid"].backbone):
                out[f"cfc.backbone.{i}.w"], out[f"cfc.backbone.{i}.b"] = w, b
        elif isinstance(p["liquid"], LTCParams):
            out.update({f"ltc.{k}": getattr(p["liquid"], k) for k in _LTC_FIELDS})
            out.update({"ltc.ode_unfolds": np.array([p["liquid"].ode_unfolds], np.int64),
                        "ltc.epsilon": np.array([p["liquid"].epsilon], np.float64)})
            if p["ltc_in_w"] is not None:
                out.update({"ltc_in.w": p["ltc_in_w"], "ltc_in.b": p["ltc_in_b"]})
        if p["lif"] is not None:
            out.update({"lif.beta": p["lif"].beta, "lif.threshold": p["lif"].threshold,
                        "lif.syn_w": p["lif_w"], "lif.syn_b": p["lif_b"]})
        return {k: np.asarray(v) for k, v in out.items()}

    def save(self, path: str | Path, info: dict | None = None) -> None:
        """Weights and config to ``.npz`` or ``.safetensors`` (names: :meth:`named_arrays`);
        ``info``: training provenance (:func:`kernels.weights.network_info` reads it)."""
        weights.save_network(path, self.named_arrays(), self.config.to_json(), info)

    @classmethod
    def load(cls, path: str | Path, backend: Any) -> FusionNetwork:
        a, text = weights.load_network(path)
        c = FusionConfig.from_json(text)
        liquid = None
        if c.liquid == "cfc":
            n_bb = sum(1 for k in a if k.startswith("cfc.backbone.") and k.endswith(".w"))
            bb = tuple((a[f"cfc.backbone.{i}.w"], a[f"cfc.backbone.{i}.b"]) for i in range(n_bb))
            liquid = CfCParams(mode=c.cfc_mode, activation=c.activation, backbone=bb,
                               **{k: a.get(f"cfc.{k}") for k in _CFC_FIELDS})
        elif c.liquid == "ltc":
            liquid = LTCParams(**{k: a[f"ltc.{k}"] for k in _LTC_FIELDS}, ode_unfolds=int(a["ltc.ode_unfolds"][0]),
                               epsilon=float(a["ltc.epsilon"][0]))
        lif = LIFParams(a["lif.beta"], a["lif.threshold"], c.reset) if c.spiking else None
        return cls.from_parts(c, backend, liquid=liquid, lif=lif, lif_w=a.get("lif.syn_w"), lif_b=a.get("lif.syn_b"),
                              readout_w=a["readout.w"], readout_b=a["readout.b"], ltc_in_w=a.get("ltc_in.w"),
                              ltc_in_b=a.get("ltc_in.b"))
