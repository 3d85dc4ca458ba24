"""Round trips through writers neuroliquid did not write: a generated store's recordings as a
ROS 2 bag (sqlite3 and MCAP storage), a ROS 1 bag and a lone MCAP file (``mcap`` +
``mcap-ros2-support``), imported with the store's geometry, come back exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("rosbags")
pytest.importorskip("mcap_ros2")

from _bags import Msgs, store_messages, write_mcap, write_ros1, write_rosbag2  # noqa: E402

from pipeline.config import DataConfig, ImportConfig, StoreLayout, SyntheticConfig  # noqa: E402
from pipeline.data import check_store, generate_store  # noqa: E402
from pipeline.data.importer import import_bags  # noqa: E402
from pipeline.data.store import open_dataset  # noqa: E402

RECORDINGS = 2


@pytest.fixture(scope="module")
def small_store(tmp_path_factory) -> str:
    """2 recordings x 3 s; every modality starts at t_start, so the imported model clock
    (first sensor stamp) is the store's."""
    path = tmp_path_factory.mktemp("src") / "src.zarr"
    cfg = DataConfig(path=str(path), recordings=RECORDINGS, duration_s=3.0, seed=3, workers=1,
                     layout=StoreLayout(chunk_recordings=2, shard_recordings=2),
                     synthetic=SyntheticConfig(start_offset_s=0.0, timestamp_jitter=0.0))
    cfg.validate()
    generate_store(cfg, progress=False)
    return str(path)


def _write(kind: str, folder, ds):
    ros1 = kind == "ros1"
    m = Msgs(ros1)
    folder.mkdir()
    for r in range(RECORDINGS):
        msgs = store_messages(ds, r, m, png=kind == "mcap")
        if ros1:
            write_ros1(folder / f"rec{r}.bag", msgs, m)
        elif kind == "mcap":
            write_mcap(folder / f"rec{r}.mcap", msgs, m)
        else:
            write_rosbag2(folder / f"rec{r}", msgs, m, storage=kind.split("-")[1])
    return folder


def _expected_ahead(ds, r, n, half_deg=30.0, dist=2.0):
    """The obstacle rule on the store's own scans: latest scan at or before each step, a beam
    within +-half_deg of ahead closer than dist."""
    step = round(1e9 / float(ds.attrs["targets_rate_hz"]))
    tau = int(ds.t_start.values[r]) + (np.arange(n) + 1) * step
    ts = ds.t_lidar.values[r, : int(ds.n_scans.values[r])]
    beams = ds.sizes["beam"]
    ang = np.degrees(np.arange(beams) * 2 * math.pi / beams)
    fwd = (ang <= half_deg + 1e-6) | (ang >= 360 - half_deg - 1e-6)
    out = np.zeros(n, np.float32)
    for k in range(n):
        j = np.searchsorted(ts, tau[k], side="right") - 1
        if j >= 0:
            out[k] = float((ds.lidar.values[r, j][fwd] < dist).any())
    return out


@pytest.mark.parametrize("kind", ["rosbag2-sqlite3", "rosbag2-mcap", "ros1", "mcap"])
def test_round_trip_exact(kind, small_store, tmp_path):
    src = open_dataset(small_store).load()
    folder = _write(kind, tmp_path / "bags", src)
    out = tmp_path / "out.zarr"
    d = DataConfig(source="zarr", path=str(out))
    d.validate()
    info = import_bags(ImportConfig(source=str(folder), workers=1), d, progress=False)
    assert info["recordings"] == RECORDINGS and info["quarantined"] == 0
    rep = check_store(str(out))
    assert rep.ok, rep.summary()
    ds = open_dataset(out).load()
    assert ds.attrs["camera_fov_rad"] == pytest.approx(src.attrs["camera_fov_rad"])
    assert bool(ds.lidar_covered.values.all())
    for r in range(RECORDINGS):
        assert int(ds.t_start.values[r]) == int(src.t_start.values[r])
        for cnt, var, tvar in (("n_frames", "vision", "t_cam"), ("n_scans", "lidar", "t_lidar"),
                               ("n_samples", "imu", "t_imu")):
            n = int(src[cnt].values[r])
            assert int(ds[cnt].values[r]) == n, (kind, cnt)
            np.testing.assert_array_equal(ds[tvar].values[r, :n], src[tvar].values[r, :n])
            np.testing.assert_array_equal(ds[var].values[r, :n], src[var].values[r, :n])
        n = int(src.n_steps.values[r])
        assert int(ds.n_steps.values[r]) == n
        got, want = ds.targets.values[r, :n], src.targets.values[r, :n]
        np.testing.assert_allclose(got[:, :2], want[:, :2], rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(got[:, 2], _expected_ahead(src, r, n))


def test_cli_import_then_check(small_store, tmp_path):
    from _pipeline_helpers import cli  # noqa: PLC0415

    folder = _write("rosbag2-mcap", tmp_path / "bags", open_dataset(small_store).load())
    out = tmp_path / "cli.zarr"
    res = cli("task=import", f"import.source={folder}", f"data.path={out}", "import.workers=2",
              f"hydra.run.dir={tmp_path / 'hydra'}")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "rec0" in res.stdout and "kept" in res.stdout and "task=check" in res.stdout
    res = cli("task=check", "data=zarr", f"data.path={out}", f"hydra.run.dir={tmp_path / 'hydra'}")
    assert res.returncode == 0, res.stdout + res.stderr
    res = cli("task=import", f"import.source={tmp_path / 'nothing'}", f"data.path={tmp_path / 'x.zarr'}",
              f"hydra.run.dir={tmp_path / 'hydra'}")
    assert res.returncode == 1 and "not-a-bag" in res.stdout


def test_imported_store_runs_through_the_batch_run(small_store, tmp_path, mlflow_uri):
    """The imported store goes through task=run unchanged (evaluation on its odometry
    targets; MLflow keys as pinned in tests/golden/mlflow_keys.json)."""
    from _pipeline_helpers import base_overrides, compose_config, mlflow_runs  # noqa: PLC0415

    from pipeline.__main__ import run_task  # noqa: PLC0415

    folder = _write("rosbag2-sqlite3", tmp_path / "bags", open_dataset(small_store).load())
    out = tmp_path / "imported.zarr"
    cfg = compose_config(base_overrides(str(out), tmp_path) + [
        "task=import", f"import.source={folder}", "import.workers=1", "data=zarr"])
    run_task(cfg)
    cfg = compose_config(base_overrides(str(out), tmp_path) + ["data=zarr", "data.recordings_per_batch=2"])
    run_task(cfg)
    (run,) = mlflow_runs(mlflow_uri)
    assert run.info.status == "FINISHED" and "eval.skipped" not in run.data.tags
