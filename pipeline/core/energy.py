"""Energy per phase: measured counters where they exist, else a model of compute energy.

Measured (source ``nvml`` and/or ``rapl``), per phase window [t0, t1] on every worker host:

    E = sum over hosts and counters of (e(t1) - e(t0))      J
    RAPL wraps at max_energy_range_uj:  de = e1 - e0 + (max_range if e1 < e0 else 0)
    NVML nvmlDeviceGetTotalEnergyConsumption: mJ since driver load, per GPU (Volta+)
    mean power  P = E / (t1 - t0)                          W  (measured counters only)

A host with several workers is counted once (RAPL per host and package, NVML per GPU
UUID); with both counters the source is ``nvml+rapl`` and E is their sum (GPU boards and
CPU packages are disjoint).  Modelled (source ``model``), from ``kernels.params.OpCounts``:

    E = (mac * e_mac + acc * e_acc + nonlin * e_nonlin) * 1e-12   J   (e_* in pJ, config)

an estimate of arithmetic energy only at 45 nm per-operation costs (Horowitz 2014): it
leaves out memory traffic, idle and host power, but a newer process node costs less per
operation, so it is not a bound on any real device either way; no watts are derived.  The neuromorphic estimate prices the same
network's synaptic accumulates as spike events against its dense-equivalent MACs:

    E_event = mac * e_mac + acc * e_acc      E_dense = dense_mac * e_mac      ratio = E_dense / E_event
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from kernels.params import OpCounts
from pipeline.config import EnergyConfig

MODEL_NOTE = ("estimate of arithmetic energy only at the configured per-op costs (45 nm by default): no memory "
              "traffic, idle or host power, and not a bound on any real device")
_PACKAGE_ZONE = re.compile(r"intel-rapl:\d+$")


class MeterUnavailable(RuntimeError):
    """No readable counter of this kind on this host; the message says why."""


class EnergyMeter(Protocol):
    source: str

    def read(self) -> float:
        """Energy in J since the meter was made (monotonic, wraparound handled)."""
        ...


def _rapl_snapshot(root: str | Path) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """``{zone: (energy_uj, max_energy_range_uj)}`` of the readable package zones."""
    root, out, why = Path(root), {}, []
    if not root.is_dir():
        return out, [f"rapl: {root} does not exist"]
    for zone in sorted(root.iterdir()):
        if not _PACKAGE_ZONE.match(zone.name):
            continue
        try:
            if not (zone / "name").read_text().strip().startswith("package"):
                continue  # psys overlaps the packages
            out[zone.name] = (int((zone / "energy_uj").read_text()), int((zone / "max_energy_range_uj").read_text()))
        except (OSError, ValueError) as exc:  # energy_uj is root-only on many kernels (CVE-2020-8694)
            why.append(f"rapl: {zone} unreadable ({type(exc).__name__}: {exc})")
    if not out and not why:
        why.append(f"rapl: no package zone under {root}")
    return out, why


def _rapl_delta_j(e0: tuple[int, int], e1: tuple[int, int]) -> float:
    de = e1[0] - e0[0]
    if de < 0:  # one wrap; reads are per phase, far shorter than a wrap period
        de += e1[1]
    return de * 1e-6


def _nvml_snapshot() -> tuple[dict[str, float], list[str]]:
    """``{gpu_uuid: total_energy_mJ}`` of every GPU whose counter is supported."""
    try:
        import pynvml
    except ImportError as exc:
        return {}, [f"nvml: nvidia-ml-py not installed ({exc})"]
    err = getattr(pynvml, "NVMLError", Exception)
    try:
        pynvml.nvmlInit()
    except err as exc:
        return {}, [f"nvml: nvmlInit failed ({exc})"]
    out, why = {}, []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            uuid = pynvml.nvmlDeviceGetUUID(h)
            uuid = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
            try:
                out[uuid] = float(pynvml.nvmlDeviceGetTotalEnergyConsumption(h))
            except err as exc:  # pre-Volta GPUs have no energy counter
                why.append(f"nvml: GPU {i} has no total-energy counter ({exc})")
        if not out and not why:
            why.append("nvml: no GPU")
    finally:
        pynvml.nvmlShutdown()
    return out, why


class RaplMeter:
    """Sum of the package zones' ``energy_uj`` under ``root``, accumulated across wraps.
    Read it more often than the counter wraps (minutes to hours at package power)."""

    source = "rapl"

    def __init__(self, root: str | Path = "/sys/class/powercap") -> None:
        self.root = Path(root)
        self._last, why = _rapl_snapshot(self.root)
        if not self._last:
            raise MeterUnavailable("; ".join(why))
        self._total = 0.0

    def read(self) -> float:
        now, why = _rapl_snapshot(self.root)
        if set(now) != set(self._last):
            raise MeterUnavailable(f"rapl zones changed under {self.root}: {'; '.join(why)}")
        self._total += sum(_rapl_delta_j(self._last[z], now[z]) for z in now)
        self._last = now
        return self._total


class NvmlMeter:
    """Sum over GPUs of NVML's total energy counter, J since the meter was made."""

    source = "nvml"

    def __init__(self) -> None:
        self._zero, why = _nvml_snapshot()
        if not self._zero:
            raise MeterUnavailable("; ".join(why))

    def read(self) -> float:
        now, why = _nvml_snapshot()
        if set(now) != set(self._zero):
            raise MeterUnavailable(f"nvml GPUs changed: {'; '.join(why)}")
        return sum(now[g] - self._zero[g] for g in now) * 1e-3


def detect_meters(cfg: EnergyConfig, why: list[str] | None = None) -> list[EnergyMeter]:
    """The counters readable on this host (NVML first); reasons for the rest go to ``why``."""
    meters: list[EnergyMeter] = []
    kinds = ([NvmlMeter] if cfg.use_nvml else []) + ([lambda: RaplMeter(cfg.rapl_root)] if cfg.use_rapl else [])
    for make in kinds:
        try:
            meters.append(make())
        except MeterUnavailable as exc:
            if why is not None:
                why.append(str(exc))
    return meters


def read_host_energy(rapl_root: str = "/sys/class/powercap", use_nvml: bool = True,
                     use_rapl: bool = True) -> dict:
    """A stateless snapshot of this host's counters, for ``client.run`` on every worker:
    ``{"host", "pid", "rapl": {zone: [uj, max_uj]}, "nvml": {uuid: mJ}, "why": [...]}``.
    Diff two snapshots with :func:`measured_between`."""
    rapl, why = _rapl_snapshot(rapl_root) if use_rapl else ({}, [])
    nvml, why_n = _nvml_snapshot() if use_nvml else ({}, [])
    return {"host": socket.gethostname(), "pid": os.getpid(), "rapl": {z: list(v) for z, v in rapl.items()},
            "nvml": nvml, "why": why + why_n}


def measured_between(before: Mapping[str, dict], after: Mapping[str, dict]) -> dict[str, float]:
    """Joules per source between two ``{worker: read_host_energy()}`` maps, each host's
    RAPL zone and each GPU counted once; a source is present only if measured in both."""
    rapl0, rapl1, nvml0, nvml1 = {}, {}, {}, {}
    for snaps, rapl, nvml in ((before, rapl0, nvml0), (after, rapl1, nvml1)):
        for s in snaps.values():
            rapl.update({(s["host"], z): tuple(v) for z, v in s["rapl"].items()})
            nvml.update(s["nvml"])
    out = {}
    if rapl_keys := rapl0.keys() & rapl1.keys():
        out["rapl"] = sum(_rapl_delta_j(rapl0[k], rapl1[k]) for k in rapl_keys)
    if nvml_keys := nvml0.keys() & nvml1.keys():
        out["nvml"] = sum(nvml1[k] - nvml0[k] for k in nvml_keys) * 1e-3
    return out


class ModelledEnergy:
    """Compute energy from operation counts, J (module docstring); an estimate, not a bound."""

    def __init__(self, cfg: EnergyConfig) -> None:
        cfg.validate()
        self.cfg = cfg

    def joules(self, ops: OpCounts) -> float:
        c = self.cfg
        return (ops.mac * c.pj_per_mac + ops.acc * c.pj_per_acc + ops.nonlin * c.pj_per_nonlin) * 1e-12


def neuromorphic_estimate(ops: OpCounts, cfg: EnergyConfig) -> dict:
    """Event-priced vs dense-equivalent compute energy of the same forward, J, and
    ``ratio = dense_j / event_j`` (> 1: the event-driven network is cheaper)."""
    event_j = ((ops.dense_mac - ops.syn_dense_mac) * cfg.pj_per_mac + ops.syn_events * cfg.pj_per_acc) * 1e-12
    dense_j = ops.dense_mac * cfg.pj_per_mac * 1e-12
    assumptions = (
        f"Estimate of arithmetic energy only. Dense MAC {cfg.pj_per_mac:g} pJ ({cfg.mac_source}); "
        f"synaptic event = one accumulate per input spike per fan-out synapse, {cfg.pj_per_acc:g} pJ "
        f"({cfg.acc_source}). Both sides run the same 32-bit float arithmetic on the same process node; "
        "memory reads of weights and state (which dominate on real hardware), spike routing, "
        "transcendentals, idle and host power are excluded. Measured counters, where present, are the "
        "figures to trust.")
    return {"event_j": event_j, "dense_j": dense_j, "ratio": dense_j / event_j if event_j > 0 else None,
            "mac": ops.dense_mac - ops.syn_dense_mac, "acc": ops.syn_events, "dense_mac": ops.dense_mac,
            "assumptions": assumptions}


@dataclass
class PhaseEnergy:
    """Energy of one phase.  ``requests``: completed requests it is divided over."""

    source: str  # "nvml" | "rapl" | "nvml+rapl" | "model"
    joules: float
    requests: int
    duration_s: float
    mean_power_w: float | None = None  # measured sources only
    by_source: dict[str, float] = field(default_factory=dict)
    note: str = ""

    @property
    def joules_per_request(self) -> float | None:
        return self.joules / self.requests if self.requests > 0 else None


def phase_energy(requests: int, duration_s: float, cfg: EnergyConfig, ops: OpCounts | None = None,
                 before: Mapping[str, dict] | None = None, after: Mapping[str, dict] | None = None) -> PhaseEnergy:
    """Measured energy between the ``before``/``after`` host snapshots when any counter
    was read in both, else the model priced on ``ops`` (the phase's total op counts)."""
    if duration_s <= 0:
        raise ValueError(f"phase duration must be > 0 s, got {duration_s}")
    measured = measured_between(before, after) if before is not None and after is not None else {}
    if measured:
        j = sum(measured.values())
        return PhaseEnergy("+".join(sorted(measured)), j, requests, duration_s, j / duration_s, measured,
                           "measured counters, whole host(s) during the phase")
    if ops is None:
        raise ValueError("no energy counter was readable and no op counts were given for the model")
    j = ModelledEnergy(cfg).joules(ops)
    return PhaseEnergy("model", j, requests, duration_s, None, {"model": j}, MODEL_NOTE)
