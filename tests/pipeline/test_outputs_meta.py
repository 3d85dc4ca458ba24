"""The output store's metadata without a cluster: units, long names and labelled outputs; the
run's config kept for resume outside the dataset; refusals that name settings, not hashes;
which command-line keys a resume takes over the stored config."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from pipeline.__main__ import explicit_keys
from pipeline.batch import outputs


def _create(path, **kw):
    layout = outputs.OutputLayout(4, 6, 2, 3, 3, (("h", (5,), "float32"),))
    outputs.create(path, layout, step_ns=(np.arange(6) + 1) * 100_000_000, recording_ids=np.arange(4),
                   fingerprints={"config": "aaa", "input": "in", "weights": "w", "backend": "numpy"}, **kw)


def test_outputs_carry_units_long_names_and_labelled_outputs(tmp_path):
    _create(tmp_path / "o.zarr", fingerprinted={"model.hidden": 64}, config={"model": {"hidden": 64}})
    ds = xr.open_zarr(tmp_path / "o.zarr")
    assert list(ds.output.values) == ["speed", "yaw_rate", "obstacle_score"]
    assert list(ds.output_units.values) == ["m s-1", "rad s-1", "1"]
    for name, var in ds.variables.items():
        assert "long_name" in var.attrs, name
    for name in ("y", "spikes", "valid", "quarantined", "restarted", "done", "state_h", "t_step"):
        assert "units" in ds[name].attrs, name
    # The run's config is kept for resume in the `run/` subgroup: not part of the dataset.
    assert "config" not in ds.attrs and outputs.stored_config(tmp_path / "o.zarr") == {"model": {"hidden": 64}}


def test_refusal_names_each_differing_setting_with_both_values(tmp_path):
    path = tmp_path / "o.zarr"
    _create(path, fingerprinted={"model.hidden": 64, "data.policy": "fail"}, config={})
    now = {"config": "bbb", "input": "in", "weights": "w", "backend": "numpy"}
    with pytest.raises(outputs.ResumeError) as info:
        outputs.check_resumable(path, now, {"model.hidden": 128, "data.policy": "fail"})
    msg = str(info.value)
    assert "config differ: model.hidden: stored 64, now 128" in msg and "data.policy" not in msg
    outputs.check_resumable(path, {"config": "aaa", "input": "in", "weights": "w", "backend": "numpy"})
    # A setting a newer code version fingerprints (and the store never recorded) is named too.
    with pytest.raises(outputs.ResumeError, match="model.ltc_sensory: stored not recorded .another code version., "
                                                  "now None"):
        outputs.check_resumable(path, now, {"model.hidden": 64, "data.policy": "fail", "model.ltc_sensory": None})


def test_explicit_keys_are_what_the_command_line_set():
    defaults = {"model": {"kind": "fusion", "hidden": 128}, "cluster": {"dashboard_address": "127.0.0.1:8787"},
                "resume": None}
    now = {"model": {"kind": "ltc", "hidden": 128}, "cluster": {"dashboard_address": "127.0.0.1:9999"},
           "resume": "r"}
    # A group choice shows up as the leaves it changed; a key given equal to its default counts too.
    assert explicit_keys(now, defaults, ["model=ltc", "resume=r", "model.hidden=128",
                                         "cluster.dashboard_address=127.0.0.1:9999"]) == {
        "model.kind", "model.hidden", "cluster.dashboard_address", "resume"}
    assert explicit_keys(defaults | {"resume": "r"}, defaults, ["resume=r"]) == {"resume"}


def test_run_name_template_fields_are_checked():
    from _pipeline_helpers import compose_config

    from pipeline.config import ConfigError

    assert compose_config(['tracking.run_name="{model}-x"']).tracking.run_name == "{model}-x"
    with pytest.raises(ConfigError, match=r"tracking.run_name='\{modle\}-x': a name, or a template of \{task\}"):
        compose_config(['tracking.run_name="{modle}-x"'])


def test_experiments_new_and_existing_are_tagged_model_training(mlflow_uri, tmp_path):
    from mlflow.tracking import MlflowClient

    from pipeline.core.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, Tracker

    client = MlflowClient(mlflow_uri)
    old = client.create_experiment("older", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    for name in ("older", "fresh"):
        t = Tracker(mlflow_uri, name, "r", tmp_path / "artifacts")
        t.end()
        assert client.get_experiment(t.experiment_id).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    assert client.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == "custom_model_development"
