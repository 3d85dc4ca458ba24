"""Energy meters on a fake sysfs tree and a fake NVML; the model and the neuromorphic estimate."""

from __future__ import annotations

import sys
import types

import pytest

from kernels.params import OpCounts
from pipeline.config import ConfigError, EnergyConfig
from pipeline.core.energy import (
    MODEL_NOTE,
    MeterUnavailable,
    ModelledEnergy,
    NvmlMeter,
    RaplMeter,
    detect_meters,
    measured_between,
    neuromorphic_estimate,
    phase_energy,
    read_host_energy,
)

MAX_UJ = 262_143_328_850


def _zone(root, name, label, uj, max_uj=MAX_UJ):
    z = root / name
    z.mkdir(parents=True, exist_ok=True)
    (z / "name").write_text(label + "\n")
    (z / "energy_uj").write_text(f"{uj}\n")
    (z / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return z


@pytest.fixture
def sysfs(tmp_path):
    root = tmp_path / "powercap"
    _zone(root, "intel-rapl:0", "package-0", 1_000_000)
    _zone(root, "intel-rapl:1", "package-1", MAX_UJ - 2_000_000)  # about to wrap
    _zone(root, "intel-rapl:0:0", "core", 5)  # a sub-zone of package 0: not counted again
    _zone(root, "intel-rapl:2", "psys", 7)  # platform zone overlaps the packages
    return root


def _set(root, zone, uj):
    (root / zone / "energy_uj").write_text(f"{uj}\n")


def test_rapl_sums_packages_and_handles_wraparound(sysfs):
    m = RaplMeter(sysfs)
    assert m.read() == 0.0
    _set(sysfs, "intel-rapl:0", 4_000_000)  # +3 J
    _set(sysfs, "intel-rapl:1", 3_000_000)  # wrapped: +2 J to the top, +3 J after
    assert m.read() == pytest.approx(3.0 + 5.0)
    _set(sysfs, "intel-rapl:0", 5_500_000)
    assert m.read() == pytest.approx(9.5)  # a monotonic total


def test_rapl_unreadable_or_absent_is_reported(tmp_path, sysfs, monkeypatch):
    with pytest.raises(MeterUnavailable, match="does not exist"):
        RaplMeter(tmp_path / "nowhere")
    real_read = type(sysfs).read_text

    def denied(self, *a, **k):
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied")
        return real_read(self, *a, **k)

    monkeypatch.setattr(type(sysfs), "read_text", denied)
    with pytest.raises(MeterUnavailable, match="unreadable.*PermissionError"):
        RaplMeter(sysfs)


class _NVMLError(Exception):
    pass


def _fake_pynvml(energies_mj: dict[str, float], unsupported=()):
    mod = types.ModuleType("pynvml")
    mod.NVMLError = _NVMLError
    mod.calls = []
    uuids = list(energies_mj)
    mod.nvmlInit = lambda: mod.calls.append("init")
    mod.nvmlShutdown = lambda: mod.calls.append("shutdown")
    mod.nvmlDeviceGetCount = lambda: len(uuids)
    mod.nvmlDeviceGetHandleByIndex = lambda i: uuids[i]
    mod.nvmlDeviceGetUUID = lambda h: h.encode()

    def energy(h):
        if h in unsupported:
            raise _NVMLError("Not Supported")
        return energies_mj[h]

    mod.nvmlDeviceGetTotalEnergyConsumption = energy
    return mod


def test_nvml_meter_sums_gpus_in_joules(monkeypatch):
    counters = {"GPU-a": 1_000_000.0, "GPU-b": 50.0, "GPU-old": 0.0}
    fake = _fake_pynvml(counters, unsupported={"GPU-old"})
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    m = NvmlMeter()
    counters["GPU-a"] += 2500.0  # mJ
    counters["GPU-b"] += 500.0
    assert m.read() == pytest.approx(3.0)
    assert fake.calls.count("init") == fake.calls.count("shutdown") == 2


def test_nvml_absent_or_failing_is_reported(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    with pytest.raises(MeterUnavailable, match="not installed"):
        NvmlMeter()
    broken = _fake_pynvml({})
    broken.nvmlInit = lambda: (_ for _ in ()).throw(_NVMLError("Driver Not Loaded"))
    monkeypatch.setitem(sys.modules, "pynvml", broken)
    with pytest.raises(MeterUnavailable, match="Driver Not Loaded"):
        NvmlMeter()


def test_detect_meters_and_host_snapshots(sysfs, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    why: list[str] = []
    meters = detect_meters(EnergyConfig(rapl_root=str(sysfs)), why)
    assert [m.source for m in meters] == ["rapl"] and "nvml" in why[0]
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml({"GPU-a": 10_000.0}))
    s0 = read_host_energy(str(sysfs))
    _set(sysfs, "intel-rapl:0", 2_000_000)
    s1 = read_host_energy(str(sysfs))
    s1["nvml"]["GPU-a"] = 14_000.0
    # two workers on one host read the same counters: counted once
    got = measured_between({"w1": s0, "w2": s0}, {"w1": s1, "w2": s1})
    assert got == {"rapl": pytest.approx(1.0), "nvml": pytest.approx(4.0)}
    pe = phase_energy(10, 2.0, EnergyConfig(), before={"w1": s0}, after={"w1": s1})
    assert (pe.source, pe.joules, pe.joules_per_request, pe.mean_power_w) == (
        "nvml+rapl", pytest.approx(5.0), pytest.approx(0.5), pytest.approx(2.5))


def test_model_prices_op_counts_and_derives_no_watts():
    cfg = EnergyConfig()
    ops = OpCounts(mac=1_000_000, acc=2_000_000, nonlin=10, dense_mac=9_000_000)
    assert ModelledEnergy(cfg).joules(ops) == pytest.approx((1e6 * 4.6 + 2e6 * 0.9) * 1e-12)
    pe = phase_energy(4, 1.0, cfg, ops=ops, before={}, after={})
    assert pe.source == "model" and pe.mean_power_w is None and pe.note == MODEL_NOTE
    assert pe.joules_per_request == pytest.approx(pe.joules / 4)
    with pytest.raises(ValueError, match="no op counts"):
        phase_energy(4, 1.0, cfg)


def test_neuromorphic_estimate_ratio_and_assumptions():
    cfg = EnergyConfig()
    # 100 MACs of real-valued layers + spike layers worth 5000 dense MACs that carried
    # 1000 synaptic events; whichever path executed them (here: dense, mac=5100).
    ops = OpCounts(mac=5100, acc=0, dense_mac=5100, syn_events=1000, syn_dense_mac=5000)
    est = neuromorphic_estimate(ops, cfg)
    assert est["event_j"] == pytest.approx((100 * 4.6 + 1000 * 0.9) * 1e-12)
    assert est["dense_j"] == pytest.approx(5100 * 4.6e-12)
    assert est["ratio"] == pytest.approx(5100 * 4.6 / (460 + 900))
    assert (est["mac"], est["acc"]) == (100, 1000)
    assert "Horowitz" in est["assumptions"] and "excluded" in est["assumptions"]
    # dense activity: the events cost more than the dense product, and it says so
    busy = OpCounts(mac=1000, dense_mac=1000, syn_events=10_000, syn_dense_mac=1000)
    assert neuromorphic_estimate(busy, cfg)["ratio"] < 1


def test_energy_config_needs_sources_and_nonnegative_energies():
    with pytest.raises(ConfigError, match="energy.pj_per_mac"):
        EnergyConfig(pj_per_mac=-1.0).validate()
    with pytest.raises(ConfigError, match="energy.acc_source"):
        EnergyConfig(acc_source=" ").validate()
