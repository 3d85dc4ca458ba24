"""Bad config values fail before anything runs, with a message that names the key --
programmatically (compose + ``Config.validate``) and through the command line."""

from __future__ import annotations

import re

import pytest
from _pipeline_helpers import cli, compose_config

from pipeline.config import ConfigError

# (override, what the message must say).  Values out of range: our ConfigError.
BAD_VALUES = [
    ("data.recordings=0", "config data.recordings=0: must be > 0"),
    ("backend.name=tpu", "config backend.name='tpu': must be auto, numpy or cupy"),
    ("model.kind=x", "config model.kind='x': must be fusion, cfc, ltc or lif"),
    ("model.ltc_sensory=8", "config model.ltc_sensory=8: must be null, or an int >= 1 with model.kind=ltc"),
    ("slo.availability_pct=300", "config slo.availability_pct=300.0: is a percentage of requests and cannot exceed 100"),
    ("data.steps_per_block=-5", "config data.steps_per_block=-5: must be > 0"),
    ("cluster=address", "config cluster.address=None: cluster=address needs cluster.address=tcp://host:port"),
    ("scaling.n_workers=-1", "config scaling.n_workers=-1"),
    ("cluster.malloc_mmap_threshold_mib=64", "config cluster.malloc_mmap_threshold_mib=64: must be 0 (leave alone) to 32"),
    # Hydra's `+` adds a key the schema lacks (a typo would be silently ignored): refused.
    ("trainer.pool_camera=0", "config trainer.pool_camera=0: must be an integer >= 1"),
    ("trainer.pool_imu=true", "config trainer.kind='ridge': input pooling (trainer.pool_*) is for trainer=bptt only"),
    ("+model.hiden=3", "config model.hiden=3: no such key in ModelConfig"),
]
# Keys or types the schema does not have: Hydra refuses to compose, naming the key.
BAD_KEYS = [
    ("data.recordingz=3", "Key 'recordingz' not in 'DataConfig'"),
    ("data.recordings=abc", "Value 'abc' of type 'str' could not be converted to Integer"),
    ("cluster=nope", "Could not find 'cluster/nope'"),
]


@pytest.mark.parametrize(("override", "message"), BAD_VALUES, ids=[o for o, _ in BAD_VALUES])
def test_bad_value_names_the_key(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        compose_config([override])


@pytest.mark.parametrize(("override", "message"), BAD_KEYS, ids=[o for o, _ in BAD_KEYS])
def test_unknown_key_or_type_is_a_hydra_error(override, message):
    with pytest.raises(Exception) as info:  # noqa: PT011 (Hydra raises several exception types)
        compose_config([override])
    text = f"{info.value} {info.value.__cause__}"
    assert message in text and not isinstance(info.value, ConfigError), text


CLI_CASES = BAD_VALUES[:4] + BAD_VALUES[-1:] + BAD_KEYS[:1]


@pytest.mark.parametrize(("override", "message"), CLI_CASES, ids=[o for o, _ in CLI_CASES])
def test_cli_rejects_bad_config_with_the_key_named(override, message, tmp_path):
    res = cli(override, f"hydra.run.dir={tmp_path / 'hydra'}", f"paths.output_dir={tmp_path / 'out'}", timeout=60)
    assert res.returncode != 0
    assert message in res.stderr + res.stdout, res.stderr
    assert not (tmp_path / "out").exists()  # nothing ran


def test_model_ltc_reads_a_projection_and_the_other_kinds_do_not():
    """conf/model/ltc.yaml: Linear(features, 32) feeds the LTC (training time); elsewhere null."""
    assert compose_config(["model=ltc"]).model.ltc_sensory == 32
    assert compose_config(["model=ltc", "model.ltc_sensory=null"]).model.ltc_sensory is None
    for kind in ("fusion", "cfc", "lif"):
        assert compose_config([f"model={kind}"]).model.ltc_sensory is None
    with pytest.raises(ConfigError, match=re.escape("config model.ltc_sensory=0: must be null, or an int >= 1")):
        compose_config(["model=ltc", "model.ltc_sensory=0"])
