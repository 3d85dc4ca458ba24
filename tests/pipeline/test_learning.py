"""Learning, part 1: splits by recording, task metrics equal scikit-learn's, the Dask ridge
readout equal to a float64 solve on the gathered features, and a trained weights file that
runs through the batch pipeline with y in physical units."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from _pipeline_helpers import base_overrides, compose_config, mlflow_runs, tracking_uri
from threadpoolctl import threadpool_limits

from pipeline.core.metrics import ClassificationParts, EvalParts, RegressionSums, roc_auc
from pipeline.core.ridge import RidgeSums, fit, readout_targets
from pipeline.core.splits import assign_splits, split_members, split_record


def test_splits_are_disjoint_cover_every_recording_and_are_stable():
    for n in (1, 7, 64, 257):
        labels = assign_splits(n, (0.6, 0.2, 0.2), seed=3)
        assert labels.shape == (n,) and set(np.unique(labels)) <= {0, 1, 2}
        members = [split_members(labels, s) for s in ("train", "validation", "test")]
        assert (sum(m.astype(int) for m in members) == 1).all()  # disjoint and covering
        np.testing.assert_array_equal(labels, assign_splits(n, (0.6, 0.2, 0.2), seed=3))
    labels = assign_splits(100, (0.6, 0.2, 0.2), seed=3)
    assert [int((labels == i).sum()) for i in range(3)] == [60, 20, 20]
    assert not np.array_equal(labels, assign_splits(100, (0.6, 0.2, 0.2), seed=4))
    rec = split_record(labels, (0.6, 0.2, 0.2), 3)
    assert sorted(rec["train"] + rec["validation"] + rec["test"]) == list(range(100))
    with pytest.raises(ValueError, match="sum to 1"):
        assign_splits(10, (0.5, 0.2, 0.2), 0)


def test_metrics_equal_scikit_learn_and_merge_in_any_order():
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        mean_absolute_error,
        mean_squared_error,
        r2_score,
        roc_auc_score,
    )

    rng = np.random.default_rng(0)
    y = rng.normal(size=500)
    yhat = y + rng.normal(scale=0.5, size=500)
    labels = rng.random(500) < 0.4
    scores = np.round(rng.normal(size=500) + labels, 1)  # rounded: tied scores too
    parts = [(slice(0, 100), 0), (slice(100, 333), 1), (slice(333, 500), 2)]
    sums = [RegressionSums.of(y[s], yhat[s]) for s, _ in parts]
    cls = []
    for s, _ in parts:
        c = ClassificationParts()
        c.add(scores[s], labels[s])
        cls.append(c)
    for order in itertools.permutations(range(3)):
        r = sum((sums[i] for i in order), RegressionSums()).metrics()
        np.testing.assert_allclose(r["r2"], r2_score(y, yhat), rtol=1e-12)
        np.testing.assert_allclose(r["rmse"], np.sqrt(mean_squared_error(y, yhat)), rtol=1e-12)
        np.testing.assert_allclose(r["mae"], mean_absolute_error(y, yhat), rtol=1e-12)
        c = sum((cls[i] for i in order), ClassificationParts()).metrics()
        assert c["accuracy"] == pytest.approx(accuracy_score(labels, scores > 0), abs=1e-15)
        assert c["f1"] == pytest.approx(f1_score(labels, scores > 0), abs=1e-15)
        assert c["roc_auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert np.isnan(roc_auc(scores, np.ones(500, bool)))  # one class: undefined, not 0.5
    parts3 = EvalParts.of(np.stack([yhat, yhat, scores], -1)[None], np.stack([y, y, labels], -1)[None],
                          np.ones((1, 500), bool))
    round_trip = EvalParts.from_dict(parts3.to_dict())
    assert round_trip.metrics() == pytest.approx(parts3.metrics(), nan_ok=True)


def test_ridge_from_sums_equals_a_float64_solve_with_an_unpenalised_intercept():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 12)) * rng.uniform(0.1, 3, 12)
    y = x @ rng.normal(size=(12, 3)) + [2.0, -1.0, 0.5] + rng.normal(scale=0.3, size=(400, 3))
    chunks = [RidgeSums.of(x[i:i + 50], y[i:i + 50]) for i in range(0, 300, 50)]
    train = sum(chunks[1:], chunks[0])
    f = fit(train, RidgeSums.of(x[300:], y[300:]), [1e-3, 1.0, 30.0, 1e4])
    xa = np.c_[x[:300], np.ones(300)]
    pen = np.eye(13) * f.lam
    pen[-1, -1] = 0.0
    ref = np.linalg.solve(xa.T @ xa + pen, xa.T @ y[:300])
    np.testing.assert_allclose(f.w, ref[:-1], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(f.b, ref[-1], rtol=1e-9)
    err = y[300:] - (x[300:] @ f.w + f.b)
    loss = np.mean((err ** 2).sum(0) / 100 / y[:300].var(0))
    assert f.validation_loss[f.lam] == pytest.approx(loss, rel=1e-9)
    assert f.lam == min(f.validation_loss, key=f.validation_loss.get)


@pytest.fixture
def cfg(store, tmp_path, mlflow_uri):
    def make(*extra: str):
        return compose_config(base_overrides(store, tmp_path) + list(extra))

    return make


def _features(cfg, net, labels):
    """Every training-split step's readout inputs and fitted targets, one process."""
    from pipeline.data import MicroBatch, open_reader, read_batch

    reader = open_reader(cfg.data.path)
    spb, n_blocks = cfg.data.steps_per_block, -(-int(reader.n_steps.max()) // cfg.data.steps_per_block)
    xs, ys = [], []
    chunk = reader.recording_chunk
    for r0 in range(0, reader.n_recordings, chunk):
        r1 = min(r0 + chunk, reader.n_recordings)
        state = net.zero_state(r1 - r0)
        for k in range(n_blocks):
            b = read_batch(MicroBatch(cfg.data.path, (r0, r1), (k * spb, (k + 1) * spb), k), "fail")
            out, state = net.forward(b.camera, b.lidar, b.imu, state, camera_valid=b.camera_valid,
                                     lidar_valid=b.lidar_valid, imu_valid=b.imu_valid, features=True)
            use = b.valid & np.isfinite(b.targets).all(-1) & (labels[r0:r1] == 0)[:, None]
            xs.append(np.asarray(out.features)[use])
            ys.append(readout_targets(b.targets)[use])
    return np.concatenate(xs).astype(np.float64), np.concatenate(ys)


def test_train_ridge_on_dask_equals_numpy_and_its_weights_run_in_the_pipeline(cfg, tmp_path):
    from kernels import get_backend
    from kernels.network import FusionNetwork
    from kernels.weights import network_info
    from pipeline.batch.run import run as batch_run
    from pipeline.train.run import run as train_run

    c = cfg("task=train", "tracking.run_name=fit", "data.steps_per_block=50")
    res = train_run(c)
    info = network_info(res["weights"])
    assert info["trainer"] == "ridge" and info["lambda"] == res["lambda"]
    assert info["split"]["digest"] == split_record(assign_splits(32, (0.6, 0.2, 0.2), 0), (0.6, 0.2, 0.2), 0)["digest"]
    assert len(info["training_store"]["input_fingerprint"]) == 16

    be = get_backend("numpy")
    base = FusionNetwork.load(next((tmp_path / "out" / "weights").glob("*.npz")), be)
    with threadpool_limits(1):
        x, y = _features(c, base, assign_splits(32, c.eval.fractions, c.eval.seed))
    xa = np.c_[x, np.ones(len(x))]
    pen = np.eye(xa.shape[1]) * res["lambda"]
    pen[-1, -1] = 0.0
    ref = np.linalg.solve(xa.T @ xa + pen, xa.T @ y)
    trained = FusionNetwork.load(res["weights"], be)
    w = np.asarray(trained.parts["readout_w"], np.float64)
    b = np.asarray(trained.parts["readout_b"], np.float64)
    pred, pred_ref = x @ w + b, xa @ ref
    np.testing.assert_allclose(pred, pred_ref, rtol=1e-5, atol=1e-5 * np.abs(pred_ref).max())

    (r,) = [r for r in mlflow_runs(tracking_uri(tmp_path)) if r.data.tags.get("task") == "train"]
    assert r.data.tags["model.trained"] == "true" and r.data.metrics["train.lambda"] == res["lambda"]

    summary = batch_run(cfg(f"model.weights={res['weights']}", "tracking.run_name=scored"))
    ds = xr.open_zarr(summary["output_store"]).load()
    from test_run import _reference  # the one-process loop over the same blocks

    bc = cfg(f"model.weights={res['weights']}")
    with threadpool_limits(1):
        y_ref, _ = _reference(bc, Path(res["weights"]))
    np.testing.assert_array_equal(ds.y.values, y_ref)  # physical units: what the trained network computes
    valid = ds.valid.values
    assert 0.0 < np.nanmean(ds.y.values[valid][:, 0]) < 5.0  # a speed in m/s, not a standardised value
    runs = {r.info.run_name: r for r in mlflow_runs(tracking_uri(tmp_path))}
    m, tags = runs["scored"].data.metrics, runs["scored"].data.tags
    assert tags["model.trained"] == "true" and tags["eval.split"] == "test"
    for key in ("eval.speed.r2", "eval.yaw_rate.rmse", "eval.obstacle.roc_auc", "baseline.mean.speed.r2",
                "baseline.raw_linear.yaw_rate.r2", "baseline.raw_linear.obstacle.accuracy"):
        assert key in m, key
    assert abs(m["baseline.mean.speed.r2"]) < 0.2  # the training mean scores about 0 on the test split
    assert m["eval.obstacle.accuracy"] > 0.5
    assert "trained weights" in summary["evaluation_table"]


def test_a_store_without_targets_runs_checks_and_says_evaluation_was_skipped(cfg, store, tmp_path):
    import shutil

    from pipeline.batch.run import run as batch_run
    from pipeline.data import check_store
    from pipeline.train.run import run as train_run

    bare = shutil.copytree(store, tmp_path / "no_targets.zarr")
    shutil.rmtree(bare / "targets")  # recordings without odometry
    rep = check_store(str(bare))
    assert rep.ok and any(w.kind == "no-targets" for w in rep.warnings)
    summary = batch_run(cfg(f"data.path={bare}", "tracking.run_name=bare"))
    assert summary["regions_executed"] == summary["regions_total"]
    assert summary["evaluation"]["skipped"] and "evaluation skipped" in summary["evaluation_table"]
    (r,) = mlflow_runs(tracking_uri(tmp_path))
    assert "eval.skipped" in r.data.tags and not any(k.startswith(("eval.", "baseline.")) for k in r.data.metrics)
    with pytest.raises(ValueError, match="holds no targets"):
        train_run(cfg("task=train", f"data.path={bare}"))
