"""Bad input: one test per kind, each checking that the error names variable and place;
and the quarantine policy masking exactly the bad (recording, block)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from pipeline.config import DataConfig, StoreLayout
from pipeline.data import (
    SchemaError,
    SensorDataError,
    StoreReader,
    check_store,
    plan_batches,
    read_batch,
)
from pipeline.data.generator import generate_store
from pipeline.data.store import open_dataset


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> str:
    cfg = DataConfig(path=str(tmp_path_factory.mktemp("val") / "clean.zarr"), recordings=4, duration_s=4.0, seed=5,
                     layout=StoreLayout(chunk_recordings=2, shard_recordings=2, chunk_seconds=1.0, shard_seconds=2.0))
    cfg.synthetic.start_offset_s, cfg.synthetic.drop_prob, cfg.synthetic.length_jitter = 0.2, 0.0, 0.0
    cfg.validate()
    generate_store(cfg, progress=False)
    return cfg.path


def _copy(clean: str, tmp_path: Path) -> str:
    return shutil.copytree(clean, tmp_path / "bad.zarr")


def _set(path: str, name: str, index, value) -> None:
    arr = zarr.open_array(f"{path}/{name}", mode="r+")
    arr[index] = value


def _read_all(path: str, policy: str = "fail"):
    reader = StoreReader(path)
    return [read_batch(mb, policy, reader=reader) for mb in plan_batches(path, 4, 10)]


def _raises(path: str, kind: str, variable: str, *where: str) -> SensorDataError:
    with pytest.raises(SensorDataError) as info:
        _read_all(path)
    err = info.value
    assert err.kind == kind and err.variable == variable, str(err)
    for w in where:
        assert w in str(err), (w, str(err))
    return err


@pytest.mark.parametrize("name,index,value,where", [
    ("lidar", (1, 15, 7), np.nan, ("recording [1]", "time 1.", "steps 1")),
    ("imu", (2, 150, 0), np.inf, ("recording [2]", "time 1.", "steps 1")),
    ("vision", None, None, ()),  # uint8 cannot hold NaN: the clean read must pass
])
def test_nan_or_inf_names_variable_recording_and_time(clean, tmp_path, name, index, value, where):
    path = _copy(clean, tmp_path)
    if index is None:
        assert len(_read_all(path)) == 4
        return
    _set(path, name, index, value)
    err = _raises(path, "nan-or-inf", name, *where)
    assert err.recordings == (index[0],) and 1.0 <= err.time_s[0] <= err.time_s[1] < 2.0


@pytest.mark.parametrize("var,index,source", [("t_cam", (3, 12), (3, 10)), ("t_imu", (0, 120), (0, 119))])
def test_timestamps_backwards_or_repeated(clean, tmp_path, var, index, source):
    path = _copy(clean, tmp_path)
    t = zarr.open_array(f"{path}/{var}", mode="r")[source]
    _set(path, var, index, t)  # index 12 <- 10 goes back; 120 <- 119 repeats
    err = _raises(path, "timestamps-not-increasing", var, f"recording [{index[0]}]", "time 1.")
    assert err.steps is not None and 10 <= err.steps[0]
    assert any(p.variable == var for p in check_store(path).problems)


def _rewrite(clean: str, tmp_path: Path, edit) -> str:
    ds = open_dataset(clean).load()
    for v in ds.variables.values():
        v.encoding = {}
    path = str(tmp_path / "edited.zarr")
    edit(ds).to_zarr(path, zarr_format=3, consolidated=False)
    return path


@pytest.mark.parametrize("edit,variable,words", [
    (lambda ds: ds.assign(lidar=ds.lidar.astype("float64")), "lidar", "dtype float64"),
    (lambda ds: ds.assign(vision=ds.vision.astype("float32")), "vision", "dtype float32"),
    (lambda ds: ds.isel(beam=slice(0, 180)), "lidar", "180 beams"),
    (lambda ds: ds.isel(channel=slice(0, 5)), "channel", "length 5"),
    (lambda ds: ds.drop_vars(["vision", "t_cam", "n_frames"]), "vision", "modality camera missing"),
    (lambda ds: ds.drop_vars(["imu"]), "imu", "modality imu missing"),
    (lambda ds: ds.assign(lidar=ds.lidar.assign_attrs(units="mm")), "lidar", "units attr 'mm'"),
    (lambda ds: ds.assign(t_imu=ds.t_imu.drop_attrs()), "t_imu", "units attr None"),
    (lambda ds: ds.assign(lidar=ds.lidar.transpose("recording", "beam", "scan")), "lidar", "dims"),
    (lambda ds: ds.drop_attrs(deep=False), "<attrs>", "'schema' missing"),
])
def test_schema_violations_say_which_part(clean, tmp_path, edit, variable, words):
    path = _rewrite(clean, tmp_path, edit)
    with pytest.raises(SchemaError) as info:
        StoreReader(path)
    assert info.value.variable == variable and words in str(info.value), str(info.value)


def test_missing_shard_file(clean, tmp_path):
    path = _copy(clean, tmp_path)
    (Path(path) / "lidar/c/1/0/0").unlink()  # recordings 2-3, scans 0-19
    _raises(path, "missing-chunk", "lidar", "recordings [2, 3]", "time 0.000-2.000 s")
    assert [p.kind for p in check_store(path).problems] == ["missing-chunk"]


def test_truncated_and_corrupt_shards(clean, tmp_path):
    path = _copy(clean, tmp_path)
    shard = Path(path) / "vision/c/0/1/0/0"  # recordings 0-1, frames 20-39
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    _raises(path, "unreadable-chunk", "vision", "recordings [0, 1]", "time 2.000-4.000 s")
    imu = Path(path) / "imu/c/1/0/0"
    raw = bytearray(imu.read_bytes())
    raw[-20:] = b"\x07" * 20  # garbage shard index (fails its checksum / points past the end)
    imu.write_bytes(bytes(raw))
    kinds = {(p.kind, p.variable) for p in check_store(path).problems}
    assert kinds == {("unreadable-chunk", "vision"), ("unreadable-chunk", "imu")}


def test_quarantine_masks_exactly_the_bad_block(clean, tmp_path):
    path = _copy(clean, tmp_path)
    _set(path, "lidar", (1, 15, 100), np.nan)  # scan 15 of recording 1: used by steps in block 1
    good, bad = _read_all(clean), []
    reader, needs = StoreReader(path), None
    for mb in plan_batches(path, 4, 10):
        b = read_batch(mb, "quarantine", reader=reader, needs_restart=needs)
        needs = b.carry_restart()
        bad.append(b)
    assert [b.quarantined.tolist() for b in bad] == [[False] * 4, [False, True, False, False], [False] * 4, [False] * 4]
    assert [b.restart.tolist() for b in bad] == [[False] * 4, [False] * 4, [False, True, False, False], [False] * 4]
    counts = np.sum([b.quarantined for b in bad], axis=0)
    assert counts.tolist() == [0, 1, 0, 0]
    (err,) = bad[1].problems
    assert err.variable == "lidar" and err.recordings == (1,) and err.kind == "nan-or-inf"
    assert not bad[1].valid[1].any() and not bad[1].lidar[1].any() and not bad[1].camera_valid[1].any()
    for g, b in zip(good, bad, strict=True):
        keep = ~b.quarantined
        for f in ("camera", "camera_valid", "lidar", "lidar_valid", "imu", "imu_valid", "targets", "valid"):
            assert np.array_equal(getattr(g, f)[keep], getattr(b, f)[keep]), f
    with pytest.raises(SensorDataError):
        _read_all(path, "fail")


def test_quarantine_of_a_missing_chunk_keeps_the_other_rows(clean, tmp_path):
    path = _copy(clean, tmp_path)
    (Path(path) / "imu/c/0/0/0").unlink()  # recordings 0-1, samples 0-199
    got = read_batch(plan_batches(path, 4, 10)[0], "quarantine", reader=StoreReader(path))
    ref = read_batch(plan_batches(clean, 4, 10)[0], reader=StoreReader(clean))
    assert got.quarantined.tolist() == [True, True, False, False]
    assert np.array_equal(got.imu[2:], ref.imu[2:]) and not got.imu[:2].any()
    assert {p.kind for p in got.problems} == {"missing-chunk"}


def test_errors_survive_pickling():
    import pickle

    err = SensorDataError("nan-or-inf", "lidar", "x", recordings=[3], time_s=(1.0, 2.0), steps=(10, 20))
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) and back.recordings == (3,)
    schema = pickle.loads(pickle.dumps(SchemaError("imu", "dtype")))
    assert isinstance(schema, SchemaError) and "imu" in str(schema)


def test_rate_attrs_must_be_positive(clean, tmp_path):
    path = _rewrite(clean, tmp_path, lambda ds: ds.assign_attrs(imu_rate_hz=-1.0))
    with pytest.raises(SchemaError, match="imu_rate_hz"):
        StoreReader(path)


def test_store_opens_with_plain_xarray(clean):
    ds = xr.open_zarr(clean, chunks=None, consolidated=False, decode_times=False, mask_and_scale=False)
    assert ds.lidar.attrs["units"] == "m" and ds.imu.attrs["channels"][5] == "gz"
