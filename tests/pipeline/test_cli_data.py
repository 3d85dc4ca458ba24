"""``neuroliquid task=generate`` and ``task=check`` through the real command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pipeline.__main__ import TASKS
from pipeline.config import PROJECT_ROOT, Config, ConfigError

CLI = [str(Path(sys.executable).with_name("neuroliquid"))]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=180, env=env, cwd=PROJECT_ROOT)


def test_generate_then_check_then_break(tmp_path):
    store = tmp_path / "cli.zarr"
    gen = _run("task=generate", f"data.path={store}", "data.recordings=3", "data.duration_s=3", "data.seed=2")
    assert gen.returncode == 0, gen.stderr
    assert "wrote" in gen.stdout and (store / "zarr.json").exists()
    again = _run("task=generate", f"data.path={store}", "data.recordings=3", "data.duration_s=3")
    assert again.returncode == 0 and "not regenerated" in again.stdout

    ok = _run("task=check", "data=zarr", f"data.path={store}")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    for line in ("recordings  3", "imu     nominal 100 Hz", "chunking    lidar", "problems    0 (store is valid)"):
        assert line in ok.stdout, ok.stdout

    (store / "lidar/c/0/0/0").unlink()  # the first shard: all 3 recordings, the first 10 s
    bad = _run("task=check", f"data.path={store}")
    assert bad.returncode == 1 and "missing-chunk: variable 'lidar', recordings [0, 1, 2]" in bad.stdout, bad.stdout


def test_bad_values_and_foreign_stores_get_clear_errors(tmp_path):
    zero = _run("task=check", f"data.path={tmp_path}/x.zarr", "data.recordings=0")
    assert zero.returncode != 0 and "data.recordings=0: must be > 0" in zero.stderr
    (tmp_path / "foreign.zarr").mkdir()
    foreign = _run("task=check", "data=zarr", f"data.path={tmp_path}/foreign.zarr")
    assert foreign.returncode == 1 and "does not follow the schema" in foreign.stdout
    assert "zarr.json missing" in foreign.stdout
    task = _run("task=nope", f"data.path={tmp_path}/x.zarr")
    assert task.returncode != 0 and "task='nope': must be one of check, generate" in task.stderr


def test_overwrite_refuses_a_folder_that_is_not_a_store(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "notes.txt").write_text("do not delete")
    (folder / "cat.jpg").write_bytes(b"\xff\xd8\xff\xe0")
    gen = _run("task=generate", f"data.path={folder}", "data.overwrite=true", "data.recordings=2", "data.duration_s=2")
    assert gen.returncode == 1 and "refusing to overwrite" in gen.stderr and "no zarr.json" in gen.stderr, gen.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["cat.jpg", "notes.txt"]
    assert (folder / "notes.txt").read_text() == "do not delete"


@pytest.mark.parametrize("overrides", [[], ["data=zarr", "data.path=rel/store.zarr"], ["data.policy=quarantine"]])
def test_configs_compose_and_paths_become_absolute(overrides):
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = OmegaConf.to_object(compose("config", overrides=overrides))
    assert isinstance(cfg, Config)
    cfg.validate(TASKS)
    assert Path(cfg.paths.root_dir) == PROJECT_ROOT and Path(cfg.data.path).is_absolute()
    if not overrides:
        assert cfg.data.path == str(PROJECT_ROOT / "data" / "demo.zarr")


@pytest.mark.parametrize("key,value,message", [
    ("policy", "ignore", "data.policy='ignore': must be fail or quarantine"),
    ("duration_s", -1.0, "data.duration_s=-1.0: must be > 0"),
    ("model_rate_hz", 0.0, "data.model_rate_hz=0.0: must be > 0"),
])
def test_config_validation_messages(key, value, message):
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = OmegaConf.to_object(compose("config", overrides=[f"data.{key}={value}"]))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cfg.validate(TASKS)
