"""Learning, part 2: ``trainer=bptt`` -- export parity with the kernels in float64, a loss
that falls, reproducible and resumable training, the trained file through the batch
pipeline, the model registry's ``models:/`` URIs, and the missing extra's one-line error."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from _pipeline_helpers import base_overrides, compose_config, mlflow_runs, tracking_uri
from threadpoolctl import threadpool_limits

torch = pytest.importorskip("torch")  # the train extra; make test installs it

TINY = ["task=train", "trainer=bptt", "trainer.batch_recordings=8", "trainer.tbptt_steps=50", "model.hidden=8",
        "model.lif_units=8", "model.backbone_units=8"]


@pytest.fixture
def cfg(store, tmp_path, mlflow_uri):
    def make(*extra: str):
        return compose_config(base_overrides(store, tmp_path) + list(extra))

    return make


@pytest.mark.parametrize(("kind", "ltc_sensory", "pool"), [
    ("fusion", None, None), ("ltc", None, None), ("ltc", 7, None), ("lif", None, None), ("fusion", None, (4, 10, True)),
    ("fusion", None, (3, 7, False)), ("lif", None, (8, 1, True)), ("ltc", 7, (8, 10, True))])
def test_export_gives_the_torch_models_outputs_in_float64(store, kind, ltc_sensory, pool):
    from kernels import get_backend
    from kernels.network import FusionNetwork
    from pipeline.config import ModelConfig
    from pipeline.core.network import Geometry, fusion_config
    from pipeline.data import MicroBatch, open_reader, read_batch
    from pipeline.train.torch_model import build, export, pool_matrix

    mc = ModelConfig(kind=kind, hidden=10, lif_units=12, backbone_units=8, dtype="float64", threshold=0.5,
                     ltc_sensory=ltc_sensory)
    fc = fusion_config(mc, Geometry.of_store(open_reader(store), 10))
    be = get_backend("numpy")
    b = read_batch(MicroBatch(store, (0, 8), (0, 60), 0), "fail")
    x, _ = FusionNetwork.init(fc, be).encode(b.camera, b.lidar, b.imu, camera_valid=b.camera_valid,
                                             lidar_valid=b.lidar_valid, imu_valid=b.imu_valid)
    P = None if pool is None else pool_matrix(fc, *pool)  # (3, 7): blocks and sectors that do not divide
    model = build(fc, seed=3, dtype="float64", pool=P)
    n_in = fc.n_features if P is None else P.shape[1]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
        # the input standardisation (and pooling) export folds into the first layer: every input moved and scaled
        model.in_shift.copy_(torch.linspace(-0.3, 0.3, n_in, dtype=torch.float64))
        model.in_scale.copy_(torch.linspace(0.05, 3.0, n_in, dtype=torch.float64))
        y, spikes, _ = model(torch.from_numpy(np.asarray(x)), (None, None))
    scale, shift = np.array([0.7, 0.2, 1.0]), np.array([1.5, 0.0, 0.0])
    net = export(model, fc, be, scale=scale, shift=shift)
    if ltc_sensory:  # torch's Linear(F, 7) became the kernels' split, event-driven input projection
        assert net.parts["ltc_in_w"].shape == (fc.n_features, 7) and net.liquid.params.n_in == 7
        assert net.inputs is not None and model.liquid.input_size == 7
    out, _ = net.forward(b.camera, b.lidar, b.imu, camera_valid=b.camera_valid, lidar_valid=b.lidar_valid,
                         imu_valid=b.imu_valid)
    np.testing.assert_allclose(out.y, y.numpy() * scale + shift, rtol=0, atol=1e-9)
    if spikes is not None:
        assert spikes.sum() > 0  # the spiking path was exercised
        np.testing.assert_array_equal(out.spike_counts, spikes.numpy().sum(-1))


def test_input_pooling_groups_the_features_and_refuses_an_ltc_without_projection():
    from kernels.fusion_config import FusionConfig
    from pipeline.config import ConfigError
    from pipeline.train.torch_model import pool_matrix

    fc = FusionConfig()
    assert pool_matrix(fc) is None
    P = pool_matrix(fc, 4, 10, True)  # 8 x 8 camera blocks, 36 sectors, 6 IMU channels, 6 levels
    assert P.shape == (fc.n_features, 64 + 36 + 6 + 6)
    assert ((P > 0).sum(1) == 1).all() and np.allclose(P.sum(0), 1.0)  # each input the mean of its group
    assert P[[0, 3, 32 * 3 + 3], 0].tolist() == [1 / 16] * 3 and P[4, 1] == 1 / 16  # block (0, 0), then (0, 1)
    assert (P[1024:1034, 64] == 0.1).all() and P[1034, 65] == 0.1
    imu = P[1384:1444, 100:106]
    assert (imu[6 * 4 + 2] == np.eye(6)[2] / 10).all()  # sample 4, channel 2: the mean of channel 2
    np.testing.assert_array_equal(P[1444:, 106:], np.eye(6))  # the level channels kept
    # LTC's per-input synapses cannot absorb P; its input projection (model=ltc) can.
    with pytest.raises(ConfigError, match="model.ltc_sensory.*set model.ltc_sensory"):
        compose_config(["task=train", "trainer=bptt", "model.kind=ltc", "trainer.pool_lidar=10"])
    assert compose_config(["task=train", "trainer=bptt", "model=ltc", "trainer.pool_lidar=10"]).trainer.pooled


def test_training_lowers_the_loss_is_reproducible_and_resumes(cfg, tmp_path):
    from kernels.weights import load_arrays, network_info
    from pipeline.train.bptt import run

    with threadpool_limits(1):
        a = run(cfg(*TINY, "trainer.epochs=2", "trainer.patience=5", "tracking.run_name=a"))
        b = run(cfg(*TINY, "trainer.epochs=1", "tracking.run_name=b", "trainer.output=" + str(tmp_path / "b1.npz")))
        b2 = run(cfg(*TINY, "trainer.epochs=2", "trainer.patience=5", "tracking.run_name=b", "resume=b"))
    runs = {r.info.run_name: r for r in mlflow_runs(tracking_uri(tmp_path))}
    client = __import__("mlflow").tracking.MlflowClient(tracking_uri(tmp_path))
    losses = [m.value for m in sorted(client.get_metric_history(runs["a"].info.run_id, "train.loss"),
                                      key=lambda m: m.step)]
    assert len(losses) == 2 and losses[1] < losses[0]  # the loss falls
    assert b["epochs_run"] == 1 and b2["epochs_run"] == 1  # the resumed run trained epoch 2 only
    wa, wb = load_arrays(a["weights"])[0], load_arrays(b2["weights"])[0]
    assert wa.keys() == wb.keys()
    for k in wa:  # straight through = interrupted after epoch 1 and resumed, bit for bit
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)
    info = network_info(a["weights"])
    assert info["trainer"] == "bptt" and info["split"]["test"] and info["training_store"]["input_fingerprint"]
    assert set(info["target_scaling"]) >= {"speed", "yaw_rate"}


def test_trained_weights_run_from_the_registry_with_y_in_physical_units(cfg, tmp_path):
    from pipeline.batch.run import run as batch_run
    from pipeline.core.registry import RegistryError, resolve
    from pipeline.train.bptt import run

    with threadpool_limits(1):
        trained = run(cfg(*TINY, "trainer.epochs=1", "tracking.run_name=reg"))
    uri = tracking_uri(tmp_path)
    assert trained["model_uri"].endswith("/1")
    for ref in ("models:/neuroliquid-fusion/1", "models:/neuroliquid-fusion/latest", "models:/neuroliquid-fusion@current"):
        path = resolve(ref, uri, tmp_path / "dl")
        assert path.read_bytes() == Path(trained["weights"]).read_bytes(), ref
    with pytest.raises(RegistryError, match="not in the registry"):
        resolve("models:/neuroliquid-fusion/9", uri, tmp_path / "dl")
    with pytest.raises(RegistryError, match="expected models:/"):
        resolve("models:/x/y/z", uri, tmp_path / "dl")

    summary = batch_run(cfg("model.weights=models:/neuroliquid-fusion@current", "tracking.run_name=scored"))
    ds = xr.open_zarr(summary["output_store"]).load()
    from test_run import _reference

    with threadpool_limits(1):
        y_ref, _ = _reference(cfg(), Path(summary["weights"]))
    np.testing.assert_array_equal(ds.y.values, y_ref)
    speed = ds.y.values[..., 0][ds.valid.values]
    assert 0.0 < np.median(speed) < 5.0  # m/s: the standardisation is folded back
    scored = [r for r in mlflow_runs(uri) if r.info.run_name == "scored"][0]
    assert scored.data.tags["model.trained"] == "true"


def test_a_missing_train_extra_is_one_line_naming_it(cfg, monkeypatch):
    from pipeline.train.bptt import run
    from pipeline.train.torch_model import MissingExtra

    monkeypatch.setitem(sys.modules, "snntorch", None)  # import snntorch -> ImportError
    with pytest.raises(MissingExtra) as err:
        run(cfg(*TINY))
    assert "\n" not in str(err.value) and "pip install -e '.[train]'" in str(err.value)
    assert "snntorch" in str(err.value)


def test_float32_kernels_score_as_float64_within_1e_3(cfg, store):
    """In float32 a spike flip at a threshold tie changes the rest of a recording, so the
    float32 network is compared with the float64 one on the task metrics, not bit for bit."""
    import dataclasses

    from kernels import get_backend
    from kernels.network import FusionNetwork
    from pipeline.core.metrics import EvalParts
    from pipeline.data import MicroBatch, open_reader, read_batch
    from pipeline.train.bptt import run

    with threadpool_limits(1):
        trained = run(cfg(*TINY, "trainer.epochs=1", "tracking.run_name=f32"))
    be = get_backend("numpy")
    f32 = FusionNetwork.load(trained["weights"], be)
    p = f32.parts
    f64 = FusionNetwork.from_parts(dataclasses.replace(f32.config, dtype="float64"), be, liquid=p["liquid"],
                                   lif=p["lif"], lif_w=p["lif_w"], lif_b=p["lif_b"], readout_w=p["readout_w"],
                                   readout_b=p["readout_b"])
    reader = open_reader(store)
    scores = {}
    for name, net in (("f32", f32), ("f64", f64)):
        parts, state = EvalParts(), None
        for k in range(4):
            b = read_batch(MicroBatch(store, (0, reader.n_recordings), (k * 50, (k + 1) * 50), k), "fail")
            out, state = net.forward(b.camera, b.lidar, b.imu, state, camera_valid=b.camera_valid,
                                     lidar_valid=b.lidar_valid, imu_valid=b.imu_valid)
            use = b.valid & np.isfinite(b.targets).all(-1)
            parts = parts + EvalParts.of(np.asarray(out.y, np.float64), b.targets, use)
        scores[name] = parts.metrics()
    for key, v64 in scores["f64"].items():
        assert abs(scores["f32"][key] - v64) <= 1e-3, (key, scores["f32"][key], v64)


def test_pareto_front_and_the_sweep_report(tmp_path):
    from pipeline.core.pareto import pareto_front, sweep_report

    score = np.array([0.5, 0.7, 0.6, 0.9, 0.4])
    cost = np.array([1.0, 2.0, 3.0, 5.0, 0.5])  # joules: lower is better
    np.testing.assert_array_equal(pareto_front(score, cost, "min"), [True, True, False, True, True])
    np.testing.assert_array_equal(pareto_front(score, -cost, "max"), [True, True, False, True, True])
    children = [{"name": f"h{i}", "eval.speed.r2": s, "eval.yaw_rate.r2": s, "eval.obstacle.accuracy": s,
                 "energy.modelled_j_per_sequence": c, "inference.seq_per_s": 100 / c}
                for i, (s, c) in enumerate(zip(score, cost, strict=True))] + [{"name": "failed"}]
    paths, table = sweep_report(children, tmp_path)
    assert len(paths) == 6 and all(p.stat().st_size > 10_000 for p in paths)
    assert "| h3 |" in table and "1 child run(s) without every figure left out" in table


def test_cli_resume_of_a_training_restores_its_own_config(cfg, tmp_path):
    """``neuroliquid resume=<run>`` alone continues an interrupted training with the
    settings it was started with (kept beside its checkpoints)."""
    from _pipeline_helpers import cli

    from pipeline.train.bptt import run

    with threadpool_limits(1):
        first = run(cfg(*TINY, "trainer.epochs=1", "tracking.run_name=cr"))
    Path(first["weights"]).unlink()  # as if stopped before the export
    out = tmp_path / "out"
    res = cli("resume=cr", "trainer.epochs=2", f"paths.output_dir={out}", f"tracking.uri={tracking_uri(tmp_path)}",
              f"tracking.artifact_dir={tmp_path / 'artifacts'}", f"hydra.run.dir={tmp_path / 'hydra'}", timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"with its own settings from {out / 'checkpoints' / 'cr' / 'config.json'}" in res.stdout
    assert "resume: from epoch 1" in res.stdout and "epoch 2/2" in res.stdout
    from kernels.weights import network_info

    info = network_info(first["weights"])
    assert info["trainer"] == "bptt" and '"hidden": 8' in info["network_config"]  # the stored model, not the default
