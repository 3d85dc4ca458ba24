"""Metadata of the run's output store (``pipeline/batch/outputs.py``): units and long
names of every variable, the labelled ``output`` coordinate, and the ``run/`` subgroup whose
attrs keep what the dataset itself must not (it stays the same for any run name, cluster or
tracking settings): the run's resolved config, its fingerprinted settings, and the MLflow
runs that wrote into the store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# The readout's outputs (kernels/network.py), in order, with units (UDUNITS strings).
OUTPUTS = ("speed", "yaw_rate", "obstacle_score")
OUTPUT_UNITS = ("m s-1", "rad s-1", "1")
OUTPUT_LONG_NAMES = ("forward speed", "yaw rate (counter-clockwise positive)",
                     "obstacle-ahead score (logit: > 0 means an obstacle ahead)")
_VAR_ATTRS = {
    "y": {"long_name": "network readout per model step (NaN where not valid)",
          "units": "m s-1, rad s-1, 1 (per output: see the output coordinate)",
          "output_units": ", ".join(OUTPUT_UNITS)},
    "spikes": {"long_name": "spikes of the spiking layer per model step", "units": "1"},
    "valid": {"long_name": "step holds a computed output (not padding, not quarantined)", "units": "1"},
    "quarantined": {"long_name": "time block masked by data.policy=quarantine", "units": "1"},
    "restarted": {"long_name": "state restarted from zero at this block", "units": "1"},
    "done": {"long_name": "region completion marker (written last)", "units": "1"},
}


def _strings(values) -> np.ndarray:
    # Object dtype: zarr v3's variable-length "string" type (fixed-width numpy strings have
    # no v3 specification and warn on every write).
    return np.array(list(values), dtype=object)


def _output_coords(n_out: int) -> dict:
    if n_out != len(OUTPUTS):  # a network with another readout width: index-labelled outputs
        return {"output": ("output", _strings(f"output_{i}" for i in range(n_out)), {"long_name": "readout output"})}
    return {"output": ("output", _strings(OUTPUTS), {"long_name": "readout output"}),
            "output_units": ("output", _strings(OUTPUT_UNITS), {"long_name": "units of each readout output"}),
            "output_long_name": ("output", _strings(OUTPUT_LONG_NAMES),
                                 {"long_name": "meaning of each readout output"})}


RUN_GROUP = "run"  # subgroup whose attrs hold the run's resolved config (create's docstring)


def _run_attrs(path: Path) -> dict:
    import zarr

    if not (Path(path) / RUN_GROUP / "zarr.json").exists():
        return {}
    return dict(zarr.open_group(str(Path(path) / RUN_GROUP), mode="r").attrs)


def mlflow_runs(path: Path) -> list[str]:
    """MLflow run ids that have written into the output store, oldest first."""
    return json.loads(_run_attrs(path).get("mlflow_runs", "[]"))


def add_mlflow_run(path: Path, run_id: str) -> None:
    """Record that MLflow run ``run_id`` writes into ``path`` (a resumed run links to it)."""
    import zarr

    group = zarr.open_group(str(Path(path) / RUN_GROUP), mode="a", zarr_format=3)
    group.attrs["mlflow_runs"] = json.dumps([*json.loads(group.attrs.get("mlflow_runs", "[]")), run_id])


def stored_config(path: Path) -> dict | None:
    """The flat resolved config the run that created ``path`` ran with (None: an older store)."""
    raw = _run_attrs(path).get("config")
    return json.loads(raw) if raw and raw != "{}" else None
