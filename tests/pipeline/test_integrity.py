"""Nothing silently wrong, nothing lost (issue 10): no stale weights, unique run names,
resume that verifies what its markers claim, fingerprints over the data, the resolved
backend and the code version, and writers that follow a store recreated at their path.

Runs go to a module LocalCluster through ``cluster=address`` (no cluster start per run).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from _pipeline_helpers import base_overrides, compose_config, mlflow_runs, tracking_uri

from pipeline.batch.markers import done_regions
from pipeline.batch.outputs import ResumeError
from pipeline.batch.run import run
from pipeline.core.cluster import WORKER_ENV
from pipeline.core.experiment import run_name


@pytest.fixture(scope="module")
def address():
    import logging

    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR, env=WORKER_ENV) as lc:
        yield lc.scheduler_address


@pytest.fixture
def cfg(store, tmp_path, mlflow_uri, address):
    def make(*extra: str):
        return compose_config(base_overrides(store, tmp_path) + ["cluster=address", f"cluster.address={address}",
                                                                 *extra])

    return make


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_a_refused_run_writes_nothing_and_a_reused_name_never_runs_stale_weights(cfg, tmp_path):
    from kernels import get_backend
    from kernels.network import FusionNetwork
    from pipeline.core.network import fusion_config, weights_digest

    with pytest.raises(ValueError, match="data.model_rate_hz"):
        run(cfg("tracking.run_name=w", "data.model_rate_hz=5"))
    assert _files(tmp_path / "out") == []  # no weights, no output store
    assert not _has_experiment(tmp_path)  # and no MLflow run

    c = cfg("tracking.run_name=w", "model.seed=7")
    summary = run(c)
    be = get_backend("numpy")
    ran = FusionNetwork.load(summary["weights"], be)
    from pipeline.core.network import Geometry
    from pipeline.data import open_reader

    expect = FusionNetwork.init(fusion_config(c.model, Geometry.of_store(open_reader(c.data.path), 10)), be)
    assert weights_digest(ran) == weights_digest(expect)
    assert Path(summary["weights"]).name.startswith(weights_digest(expect)[:16])
    (r,) = mlflow_runs(tracking_uri(tmp_path))
    assert r.data.params["model.seed"] == "7"
    with pytest.raises(FileExistsError, match=str(tmp_path / "out" / "w.zarr")):
        run(cfg("tracking.run_name=w"))


def _has_experiment(root: Path) -> bool:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri(root)).get_experiment_by_name("test") is not None


def test_default_run_names_differ_within_one_second(cfg):
    c = cfg()
    names = {run_name(c, "run") for _ in range(20)}  # a random 24-bit suffix: 1 in 90,000 that two collide
    # Descriptive: model, hidden size, backend and input store tell runs apart in MLflow's lists.
    assert len(names) == 20 and all(re.fullmatch(rf"{c.model.kind}-h{c.model.hidden}-numpy-rec-\d{{8}}-\d{{6}}-[0-9a-f]{{6}}", n)
                                    for n in names), names
    c.tracking.run_name = "{task}-{model}-x{hidden}"
    assert run_name(c, "load") == f"load-{c.model.kind}-x{c.model.hidden}"


def test_resume_reruns_regions_whose_chunks_are_lost_or_corrupt(cfg, tmp_path, capsys):
    summary = run(cfg("tracking.run_name=v"))
    out = Path(summary["output_store"])
    reference = xr.open_zarr(out).load()
    key = zarr.open_array(str(out / "y"), mode="r").metadata.encode_chunk_key((1, 2, 0))
    (out / "y" / key).unlink()  # a deleted output chunk of a finished region
    state = next(n for n in reference.data_vars if n.startswith("state_"))
    skey = zarr.open_array(str(out / state), mode="r").metadata.encode_chunk_key((2, 0) + (0,) * (reference[state].ndim - 2))
    (out / state / skey).unlink()  # a deleted final state: the next block would start from zero
    vkey = zarr.open_array(str(out / "spikes"), mode="r").metadata.encode_chunk_key((3, 1))
    f = out / "spikes" / vkey
    f.write_bytes(b"\xff" * 7 + f.read_bytes()[7:])  # a corrupt chunk
    assert done_regions(out).all()
    capsys.readouterr()

    resumed = run(cfg("tracking.run_name=v", "resume=v"))
    said = capsys.readouterr().out
    for g, k in ((1, 2), (2, 0), (3, 1)):
        assert f"region g{g} b{k} is marked done but" in said, said
    assert resumed["regions_executed"] == 3
    xr.testing.assert_identical(xr.open_zarr(out).load(), reference)


def test_resume_refuses_changed_sensor_data_and_backend_and_warns_on_code_version(cfg, store, tmp_path, capsys):
    src = shutil.copytree(store, tmp_path / "in.zarr")
    summary = run(cfg("tracking.run_name=f", f"data.path={src}"))
    out = Path(summary["output_store"])

    # Sensor values rewritten in place (same size, same metadata).
    shard = next(p for p in sorted((src / "lidar").rglob("*")) if p.is_file() and p.stat().st_size > 4096)
    saved = shard.read_bytes()
    shard.write_bytes(saved[:100] + bytes(b ^ 1 for b in saved[100:200]) + saved[200:])
    with pytest.raises(ResumeError, match="input differ"):
        run(cfg("tracking.run_name=f", "resume=f", f"data.path={src}"))
    shard.write_bytes(saved)
    st = shard.stat()

    g = zarr.open_group(str(out), mode="r+")
    prints = json.loads(g.attrs["fingerprints"])
    # The restored bytes got a new mtime: the fingerprint counts it as changed (a stat, never a read).
    with pytest.raises(ResumeError, match="input differ"):
        run(cfg("tracking.run_name=f", "resume=f", f"data.path={src}"))
    from pipeline.data.fingerprint import input_fingerprint

    g.attrs["fingerprints"] = json.dumps({**prints, "input": input_fingerprint(src), "backend": "cupy"})
    with pytest.raises(ResumeError, match=r"backend differ: backend: stored 'cupy', now 'numpy'"):
        run(cfg("tracking.run_name=f", "resume=f", f"data.path={src}"))
    g.attrs["fingerprints"] = json.dumps({**prints, "input": input_fingerprint(src)})
    g.attrs["code_version"] = "0123abc"
    capsys.readouterr()
    again = run(cfg("tracking.run_name=f", "resume=f", f"data.path={src}"))
    assert again["regions_executed"] == 0
    assert "written by code version 0123abc" in capsys.readouterr().out
    assert shard.stat().st_mtime_ns == st.st_mtime_ns


def test_resume_refuses_a_user_weights_file_changed_in_place(cfg, tmp_path):
    import dataclasses

    from kernels import get_backend
    from kernels.network import FusionNetwork

    first = run(cfg("tracking.run_name=seeded"))
    mine = tmp_path / "mine.npz"
    shutil.copyfile(first["weights"], mine)
    run(cfg("tracking.run_name=u", f"model.weights={mine}"))
    be = get_backend("numpy")
    net = FusionNetwork.load(mine, be)
    FusionNetwork.init(dataclasses.replace(net.config, seed=net.config.seed + 1), be).save(mine)
    with pytest.raises(ResumeError, match="weights differ"):
        run(cfg("tracking.run_name=u", "resume=u", f"model.weights={mine}"))


def test_a_cached_writer_follows_a_store_recreated_at_its_path(tmp_path):
    from pipeline.batch import outputs
    from pipeline.batch.region import _writer

    path = tmp_path / "o.zarr"

    def make(n_recordings: int) -> None:
        layout = outputs.OutputLayout(n_recordings, 20, 4, 10, 3, (("h", (2,), "float32"),))
        outputs.create(path, layout, step_ns=np.arange(20) * 100, recording_ids=np.arange(n_recordings),
                       fingerprints={})

    make(8)
    first = _writer(str(path))
    assert _writer(str(path)) is first
    shutil.rmtree(path)
    make(12)
    second = _writer(str(path))
    assert second is not first and second.layout.n_recordings == 12
