"""The run's output store: ``data/outputs/<run>.zarr``, written exactly once per region.

The client creates every array, coordinate and attribute once (``create``) before any
task runs.  A region is one (recording group, time block); every output variable's chunk
grid is aligned to that region grid (and no shards span two regions), so no two tasks
ever write the same chunk file and a retried task rewrites the same bytes.  Workers
open the store read-write (``open_region_writer``) and only write chunk data: never
metadata.  The completion marker ``done(group, block)`` (one chunk per region) is written
after the region's data and state, so ``resume`` re-executes exactly the regions whose
marker is missing.

Layout (an xarray Dataset that opens with ``xr.open_zarr``)::

    y(recording, step, output)          float32  readout per model step (NaN where invalid);
                                                 output = speed [m s-1], yaw_rate [rad s-1],
                                                 obstacle_score [1, a logit: > 0 means ahead]
    spikes(recording, step)             float32  spikes of the spiking layer per step
    valid(recording, step)              bool     False: padding past the end, quarantined
    quarantined(recording, block)       bool     the block was masked by the quarantine policy
    restarted(recording, block)         bool     state restarted from zero at this block
    state_<name>(recording, block, ...) final state of each block (neurons and encoders)
    done(group, block)                  bool     completion marker, one chunk per region

Units, long names and the ``run/`` subgroup (the run's config): ``output_meta.py``; the
completion markers: ``markers.py``.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.batch.output_meta import (  # noqa: F401 (re-exported: the output store's API)
    _VAR_ATTRS,
    OUTPUT_LONG_NAMES,
    OUTPUT_UNITS,
    OUTPUTS,
    RUN_GROUP,
    _output_coords,
    _run_attrs,
    add_mlflow_run,
    mlflow_runs,
    stored_config,
)
from pipeline.data.zarr_io import get_many, set_many


class ResumeError(RuntimeError):
    """An existing output store does not belong to the run that tries to resume it."""


@dataclass(frozen=True)
class OutputLayout:
    n_recordings: int
    n_steps: int
    recordings_per_group: int
    steps_per_block: int
    n_outputs: int
    state_specs: tuple[tuple[str, tuple[int, ...], str], ...]  # (name, trailing shape, dtype)

    @property
    def n_groups(self) -> int:
        return -(-self.n_recordings // self.recordings_per_group)

    @property
    def n_blocks(self) -> int:
        return -(-self.n_steps // self.steps_per_block)

    def recordings(self, g: int) -> slice:
        r0 = g * self.recordings_per_group
        return slice(r0, min(r0 + self.recordings_per_group, self.n_recordings))

    def steps(self, k: int) -> slice:
        s0 = k * self.steps_per_block
        return slice(s0, min(s0 + self.steps_per_block, self.n_steps))


def _template(layout: OutputLayout, step_ns: np.ndarray, recording_ids: np.ndarray, attrs: dict):
    import dask.array as da
    import xarray as xr

    R, S, n_out = layout.n_recordings, layout.n_steps, layout.n_outputs
    rg, sb = layout.recordings_per_group, layout.steps_per_block
    G, K = layout.n_groups, layout.n_blocks
    data = {
        "y": (("recording", "step", "output"), da.full((R, S, n_out), np.nan, dtype="f4", chunks=(rg, sb, n_out))),
        "spikes": (("recording", "step"), da.zeros((R, S), dtype="f4", chunks=(rg, sb))),
        "valid": (("recording", "step"), da.zeros((R, S), dtype=bool, chunks=(rg, sb))),
        "quarantined": (("recording", "block"), da.zeros((R, K), dtype=bool, chunks=(rg, 1))),
        "restarted": (("recording", "block"), da.zeros((R, K), dtype=bool, chunks=(rg, 1))),
        "done": (("group", "block"), da.zeros((G, K), dtype=bool, chunks=(1, 1))),
    }
    for name, shape, dtype in layout.state_specs:
        dims = ("recording", "block") + tuple(f"{name}_dim{i}" for i in range(len(shape)))
        data[f"state_{name}"] = (dims, da.zeros((R, K, *shape), dtype=dtype, chunks=(rg, 1, *shape)),
                                 {"long_name": f"final {name} state of each block (carried to the next)",
                                  "units": "1"})
    for name, var_attrs in _VAR_ATTRS.items():
        data[name] = (*data[name], var_attrs)
    coords = {
        "recording": ("recording", recording_ids, {"long_name": "recording index in the input store"}),
        "step": ("step", np.arange(S), {"long_name": "model step index", "units": "1"}),
        "t_step": (("step",), step_ns.astype("i8"), {"units": "ns", "long_name": "step time from recording start"}),
        "block": ("block", np.arange(K), {"long_name": "time block index (data.steps_per_block steps)"}),
        "group": ("group", np.arange(G), {"long_name": "recording group index (data.recordings_per_batch)"}),
        **_output_coords(n_out),
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)


def create(path: Path, layout: OutputLayout, *, step_ns: np.ndarray, recording_ids: np.ndarray,
           fingerprints: dict[str, str], attrs: dict | None = None,
           fingerprinted: dict | None = None, config: dict | None = None) -> None:
    """Client side, once: write every array's metadata and the coordinates; no chunk data.

    ``fingerprinted``: the settings behind the ``config`` fingerprint, flat (``{"model.hidden": 64}``),
    so a refused resume names each differing key; ``config``: the run's whole resolved
    config, flat, which ``resume=<run>`` restores (:func:`stored_config`).  Both go in the
    attrs of the subgroup ``run/`` (``xr.open_zarr`` opens the root only), so the dataset
    itself stays the same for any run name, cluster or tracking settings."""
    ds = _template(layout, step_ns, recording_ids, {
        **(attrs or {}),
        "fingerprints": json.dumps(fingerprints, sort_keys=True),
        "layout": json.dumps({k: v for k, v in layout.__dict__.items() if k != "state_specs"}),
    })
    import zarr

    # zarr's default compressor (zstd level 0), then a crc32c checksum per chunk: changed
    # bytes fail the read instead of decoding to wrong values.
    codecs = [zarr.codecs.ZstdCodec(level=0), zarr.codecs.Crc32cCodec()]
    encoding = {v: {"chunks": ds[v].data.chunksize, "compressors": codecs} for v in ds.data_vars}
    encoding |= {c: {"compressors": codecs} for c in ds.coords}
    with warnings.catch_warnings():
        # Consolidated metadata is a zarr-python extension to v3; it lets xr.open_zarr
        # open the store in one read.  The client writes all metadata once, so it is exact.
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        ds.to_zarr(path, mode="w-", compute=False, zarr_format=3, encoding=encoding,
                   write_empty_chunks=True, consolidated=True)
    zarr.open_group(str(Path(path) / RUN_GROUP), mode="w-", zarr_format=3, attributes={
        "config": json.dumps(config or {}, sort_keys=True, default=str),
        "fingerprinted": json.dumps(fingerprinted or {}, sort_keys=True, default=str)})


_WHAT = {"weights": "the weights file's content", "input": "the input store's files (zarr.json, chunk sizes, mtimes)",
         "backend": "the backend the workers resolve"}


def check_resumable(path: Path, fingerprints: dict[str, str], fingerprinted: dict | None = None) -> None:
    """Refuse a store whose config, weights, input data or backend differ from this run's,
    naming every differing setting with both values (``fingerprinted``: this run's flat
    fingerprinted settings, compared with the ones the store recorded)."""
    import zarr

    if not Path(path).exists():
        raise ResumeError(f"resume: no output store at {path}")
    attrs = zarr.open_group(str(path), mode="r").attrs
    stored = json.loads(attrs.get("fingerprints", "{}"))
    diff = sorted(k for k in set(stored) | set(fingerprints) if stored.get(k) != fingerprints.get(k))
    if not diff:
        return
    details = []
    for k in diff:
        run_attrs = _run_attrs(path)
        if k == "config" and fingerprinted is not None and run_attrs.get("fingerprinted"):
            old = json.loads(run_attrs["fingerprinted"])
            now = json.loads(json.dumps(fingerprinted, default=str))
            keys = sorted(key for key in set(old) | set(now) if key not in old or key not in now
                          or old[key] != now[key])
            details += [f"{key}: stored {_recorded(old, key)}, now {_recorded(now, key)}" for key in keys]
        elif k == "backend":
            details.append(f"backend: stored {stored.get(k)!r}, now {fingerprints.get(k)!r}")
        else:
            details.append(f"{k} ({_WHAT.get(k, 'settings')}): stored fingerprint {stored.get(k)}, "
                           f"now {fingerprints.get(k)}")
    raise ResumeError(
        f"resume: {path} was written by a different run: {', '.join(diff)} differ: " + "; ".join(details)
        + ". Resume restores the run's own settings: leave these overrides out (docs/pipeline.md, Resume)"
    )


def _recorded(settings: dict, key: str) -> str:
    return repr(settings[key]) if key in settings else "not recorded (another code version)"


def code_version_note(path: Path, commit: str) -> str | None:
    """A warning when the store was written by another code version (resume still works)."""
    import zarr

    written = zarr.open_group(str(path), mode="r").attrs.get("code_version")
    if written and written != commit:
        return (f"warning: {path} was written by code version {written}; this is {commit}: "
                "regions run now use this version")
    return None


def stored_layout(path: Path) -> dict:
    """The region grid an existing output store was created with."""
    import zarr

    return json.loads(zarr.open_group(str(path), mode="r").attrs["layout"])


def _dims(arr) -> tuple[str, ...]:
    return tuple(arr.metadata.dimension_names or ())


def store_identity(path: str | Path) -> tuple[int, int]:
    """Which store is at ``path`` now: (inode, mtime ns) of its ``zarr.json``, which only
    the client writes, once, at creation.  A writer cached for an earlier store at the same
    path must not write into a new one (as :func:`pipeline.data.open_reader` keys its readers)."""
    st = (Path(path) / "zarr.json").stat()
    return st.st_ino, st.st_mtime_ns


class RegionWriter:
    """Worker side: reads block state and writes one region's chunks; never metadata."""

    def __init__(self, path: str | Path) -> None:
        import zarr

        self.group = zarr.open_group(str(path), mode="r+")
        # Array handles opened once: each lookup reads and parses metadata from disk.  Every
        # chunk is written, even one equal to the fill value (an all-False ``quarantined``),
        # so a missing chunk file always means lost data (verify_done relies on it).
        self.arrays = {n: a.with_config({"write_empty_chunks": True}) for n, a in self.group.arrays()}
        self.layout = OutputLayout(**json.loads(self.group.attrs["layout"]),
                                   state_specs=self._specs())

    def _specs(self) -> tuple:
        return tuple(
            (name[len("state_"):], arr.shape[2:], str(arr.dtype))
            for name, arr in self.arrays.items() if name.startswith("state_")
        )

    def read_state(self, g: int, k: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Final state of block ``k`` of group ``g`` and that block's quarantine flags."""
        rs = self.layout.recordings(g)
        names = [f"state_{n}" for n, _, _ in self.layout.state_specs] + ["quarantined"]
        values = get_many((self.arrays[n], (rs, k)) for n in names)
        state = {n: np.asarray(v) for (n, _, _), v in zip(self.layout.state_specs, values[:-1], strict=True)}
        return state, np.asarray(values[-1])

    def is_done(self, g: int, k: int) -> bool:
        """Whether region (g, k)'s completion marker is written."""
        return bool(self.arrays["done"][g, k])

    def write(self, g: int, k: int, *, y: np.ndarray, spikes: np.ndarray, valid: np.ndarray,
              quarantined: np.ndarray, restarted: np.ndarray, state: dict[str, np.ndarray]) -> None:
        """Write region (g, k) and then its completion marker.

        The arrays cover the whole region: (rg, sb, ...) for step variables, (rg, ...) for
        block variables; a short last group or block is sliced to the store's extent.
        """
        rs, ss = self.layout.recordings(g), self.layout.steps(k)
        nr, ns = rs.stop - rs.start, ss.stop - ss.start
        a = self.arrays
        writes = [("y", (rs, ss), y[:nr, :ns]), ("spikes", (rs, ss), spikes[:nr, :ns]),
                  ("valid", (rs, ss), valid[:nr, :ns]), ("quarantined", (rs, k), quarantined[:nr]),
                  ("restarted", (rs, k), restarted[:nr])]
        writes += [(f"state_{n}", (rs, k), arr[:nr]) for n, arr in state.items()]
        # Exactly one chunk per variable, all in one round trip to zarr's event loop (one
        # synchronous call per array cost ~1.3 ms each on a loaded 2-core box).
        set_many((a[name], region, data) for name, region, data in writes)
        a["done"][g, k] = True  # last: the region is complete only once everything is on disk
