"""Every load-test config group composes into its schema and validates; bad values fail
with the key named."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pipeline.config import (
    PROJECT_ROOT,
    ConfigError,
    EnergyConfig,
    LoadConfig,
    LoadPhase,
    ScalingConfig,
    SloConfig,
    register_configs,
)

GROUPS = [("scaling", "fixed", ScalingConfig), ("scaling", "adaptive", ScalingConfig),
          ("scaling", "predictive", ScalingConfig), ("slo", "default", SloConfig),
          ("load", "batch", LoadConfig), ("load", "seed_phases", LoadConfig), ("energy", "default", EnergyConfig)]


@pytest.mark.parametrize(("group", "name", "schema"), GROUPS, ids=[f"{g}={n}" for g, n, _ in GROUPS])
def test_group_composes_and_validates(group, name, schema):
    register_configs()
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base=None):
        cfg = OmegaConf.to_object(compose(overrides=[f"+{group}={name}"])[group])
    assert isinstance(cfg, schema)
    cfg.validate()
    if group == "scaling":
        assert cfg.kind == name


def test_seed_phases_are_the_reports_six_in_order_and_scale():
    register_configs()
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base=None):
        cfg = OmegaConf.to_object(compose(overrides=["+load=seed_phases", "load.scale=0.1"])["load"])
    assert [(p.name, p.requests) for p in cfg.phases] == [
        ("baseline", 100), ("moderate", 500), ("high", 1000), ("peak", 2000), ("hyperscale", 5000),
        ("sustained", 3000)]
    assert cfg.phases[4].rate_rps is None and all(p.rate_rps for i, p in enumerate(cfg.phases) if i != 4)
    assert [p.requests for p in cfg.scaled_phases()] == [10, 50, 100, 200, 500, 300]


def test_bad_load_values_name_the_key():
    with pytest.raises(ConfigError, match=r"load.phases\[0\].rate_rps"):
        LoadConfig(kind="seed_phases", phases=[LoadPhase("a", 10, -1.0)]).validate()
    with pytest.raises(ConfigError, match="load.phases.*unique"):
        LoadConfig(kind="seed_phases", phases=[LoadPhase("a"), LoadPhase("a")]).validate()
    with pytest.raises(ConfigError, match="load.phases.*at least one"):
        LoadConfig(kind="seed_phases").validate()
    with pytest.raises(ConfigError, match="slo.availability_pct"):
        SloConfig(availability_pct=100.01).validate()
