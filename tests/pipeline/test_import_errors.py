"""Nothing silently lost or invented: every bad input is a named error (or, under quarantine,
a skipped and counted recording); re-sorted, duplicate, rejected and unstamped messages are
counted in the attrs; the ``import`` group composes and validates."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("rosbags")

from _bags import TOPICS, TYPES, Msgs, write_ros1, write_rosbag2  # noqa: E402

from pipeline.config import ConfigError, DataConfig, ImportConfig, ImportTopics  # noqa: E402
from pipeline.data import check_store  # noqa: E402
from pipeline.data.importer import BagError, ImportFailed, import_bags  # noqa: E402
from pipeline.data.store import open_dataset  # noqa: E402

T0 = 1_700_000_000 * 1_000_000_000
M = Msgs(ros1=False)


def _msgs(m: Msgs = M, imu_stamps=None, drop=(), encoding="mono8", seconds=1.0):
    """A tiny robot: 10 Hz camera and scan, 100 Hz IMU, 10 Hz odometry (receive = stamp)."""
    out = []
    n = int(seconds * 10)
    for k in range(n):
        t = T0 + k * 100_000_000
        out.append((TOPICS["camera"], TYPES["camera"], t, m.image(t, np.full((32, 32), k, np.uint8), encoding)))
        out.append((TOPICS["lidar"], TYPES["lidar"], t, m.scan(t, np.full(360, 5.0, np.float32))))
        out.append((TOPICS["odometry"], TYPES["odometry"], t, m.odom(t, 1.0, 0.1)))
    stamps = imu_stamps if imu_stamps is not None else [T0 + i * 10_000_000 for i in range(n * 10)]
    for i, t in enumerate(stamps):
        out.append((TOPICS["imu"], TYPES["imu"], T0 + i * 10_000_000, m.imu(t, [0.1 * i, 0, 9.8, 0, 0, 0.1])))
    return sorted((x for x in out if x[0] not in drop), key=lambda x: x[2])


def _import(source, tmp_path, policy="fail", **kw):
    d = DataConfig(source="zarr", path=str(tmp_path / "out.zarr"), policy=policy)
    d.validate()
    return import_bags(ImportConfig(source=str(source), workers=1, **kw), d, progress=False)


def test_missing_topic_names_it_and_lists_the_bags_topics(tmp_path):
    write_rosbag2(tmp_path / "b", _msgs(drop=(TOPICS["imu"],)), M)
    with pytest.raises(BagError, match=r"missing-topic.*'/imu/data'.*/scan \(sensor_msgs/msg/LaserScan, 10\)"):
        _import(tmp_path / "b", tmp_path)
    assert not (tmp_path / "out.zarr").exists()


def test_wrong_type_is_named(tmp_path):
    write_rosbag2(tmp_path / "b", _msgs(), M)
    with pytest.raises(BagError, match=r"wrong-type.*'/scan'.*import.topics.imu.*LaserScan"):
        _import(tmp_path / "b", tmp_path, topics=ImportTopics(imu="/scan"))


def test_empty_bag_is_named(tmp_path):
    from rosbags.rosbag2 import Writer

    with Writer(tmp_path / "b", version=9) as w:
        w.add_connection(TOPICS["imu"], TYPES["imu"], typestore=M.ts)
    with pytest.raises(BagError, match="empty-bag"):
        _import(tmp_path / "b", tmp_path)


@pytest.mark.parametrize("how", ["truncated-ros1", "garbage-mcap"])
def test_corrupt_or_truncated_bag_is_named(how, tmp_path):
    if how == "truncated-ros1":
        p = write_ros1(tmp_path / "b.bag", _msgs(Msgs(ros1=True)), Msgs(ros1=True))
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    else:
        p = tmp_path / "b.mcap"
        p.write_bytes(b"\x89MCAP0\r\n" + bytes(range(256)) * 8)
    with pytest.raises(BagError, match="corrupt-bag"):
        _import(p, tmp_path)


def test_clock_going_backwards_is_named(tmp_path):
    stamps = [T0 + i * 10_000_000 for i in range(100)]
    stamps[60:] = [t - 5_000_000_000 for t in stamps[60:]]  # a clock reset 5 s back
    write_rosbag2(tmp_path / "b", _msgs(imu_stamps=stamps), M)
    with pytest.raises(BagError, match=r"clock-backwards.*'/imu/data'"):
        _import(tmp_path / "b", tmp_path)


def test_bayer_images_are_rejected_by_name(tmp_path):
    write_rosbag2(tmp_path / "b", _msgs(encoding="bayer_rggb8"), M)
    with pytest.raises(BagError, match=r"no-messages.*Bayer encoding 'bayer_rggb8'"):
        _import(tmp_path / "b", tmp_path)


def test_reordered_duplicate_and_unstamped_messages_are_counted(tmp_path):
    stamps = [T0 + i * 10_000_000 for i in range(100)]
    stamps[10], stamps[11] = stamps[11], stamps[10]  # out of order
    msgs = _msgs(imu_stamps=stamps)
    dup = next(x for x in msgs if x[0] == TOPICS["imu"] and x[2] == T0 + 500_000_000)
    msgs.append(dup)  # an exact duplicate
    unset = M.imu(0, [0, 0, 9.8, 0, 0, 0])  # header stamp 0: the receive time stands in
    msgs.append((TOPICS["imu"], TYPES["imu"], T0 + 995_000_000, unset))
    write_rosbag2(tmp_path / "b", sorted(msgs, key=lambda x: x[2]), M)
    info = _import(tmp_path / "b", tmp_path)
    assert check_store(info["path"]).ok
    ds = open_dataset(info["path"])
    imu = json.loads(ds.attrs["import_recordings"])[0]["imu"]
    assert (imu["read"], imu["reordered"], imu["duplicates"], imu["stamp_fallback"], imu["kept"]) == (102, 1, 1, 1, 101)
    assert int(ds.n_samples.values[0]) == 101 and "duplicates" in info["table"]
    t = ds.t_imu.values[0, :101]
    assert (np.diff(t) > 0).all() and t[-1] == T0 + 995_000_000


def test_quarantine_imports_the_good_bags_of_a_folder(tmp_path):
    folder = tmp_path / "bags"
    folder.mkdir()
    for name in ("a", "c"):
        write_rosbag2(folder / name, _msgs(), M)
    (folder / "b.mcap").write_bytes(b"not an mcap file at all")
    with pytest.raises(ImportFailed, match=r"corrupt-bag: b:"):
        _import(folder, tmp_path)
    assert not (tmp_path / "out.zarr").exists()
    info = _import(folder, tmp_path, policy="quarantine")
    assert (info["recordings"], info["quarantined"]) == (2, 1)
    ds = open_dataset(info["path"])
    assert [q["name"] for q in json.loads(ds.attrs["import_quarantined"])] == ["b"]
    assert [r["name"] for r in json.loads(ds.attrs["import_recordings"])] == ["a", "c"]
    assert check_store(info["path"]).ok


def test_import_config_validates_and_composes(tmp_path):
    from _pipeline_helpers import compose_config  # noqa: PLC0415

    with pytest.raises(ConfigError, match="import.clock"):
        ImportConfig(clock="gps").validate()
    with pytest.raises(ConfigError, match="import.topics.imu"):
        ImportConfig(topics=ImportTopics(imu="imu")).validate()
    with pytest.raises(ConfigError, match="import.source"):
        ImportConfig().validate(required=True)
    cfg = compose_config(["task=import", f"import.source={tmp_path}", "import.topics.odometry=null",
                          "import.lidar_beams=720", f"data.path={tmp_path / 'o.zarr'}"])
    assert cfg.importer.source == str(tmp_path) and cfg.importer.topics.odometry is None
    assert getattr(cfg, "import").lidar_beams == 720
    with pytest.raises(ConfigError, match="import.source"):
        compose_config(["task=import", f"data.path={tmp_path / 'o.zarr'}"])


def test_split_ros1_bag_is_one_recording(tmp_path):
    m1 = Msgs(ros1=True)
    msgs = _msgs(m1)
    folder = tmp_path / "bags"
    folder.mkdir()
    write_ros1(folder / "run_0.bag", msgs[: len(msgs) // 2], m1)
    write_ros1(folder / "run_1.bag", msgs[len(msgs) // 2:], m1)
    info = _import(folder, tmp_path)
    ds = open_dataset(info["path"])
    assert info["recordings"] == 1 and int(ds.n_frames.values[0]) == 10 and int(ds.n_samples.values[0]) == 100
    rec = json.loads(ds.attrs["import_recordings"])[0]
    assert rec["name"] == "run" and [p.rsplit("/", 1)[1] for p in rec["files"]] == ["run_0.bag", "run_1.bag"]


def test_split_at_gaps(tmp_path):
    msgs = _msgs(seconds=2.0)  # 2 s of everything, then a 5 s silence, then the same 2 s again
    later = [(tp, ty, t + 7 * 10**9, _restamp(msg, t + 7 * 10**9)) for tp, ty, t, msg in msgs]
    write_rosbag2(tmp_path / "b", msgs + later, M)
    info = _import(tmp_path / "b", tmp_path, split_gap_s=2.0)
    ds = open_dataset(info["path"])
    assert info["recordings"] == 2 and check_store(info["path"]).ok
    assert [r["name"] for r in json.loads(ds.attrs["import_recordings"])] == ["b#0", "b#1"]
    assert ds.n_frames.values.tolist() == [20, 20] and ds.n_samples.values.tolist() == [200, 200]
    assert int(ds.t_start.values[1]) - int(ds.t_start.values[0]) == 7 * 10**9
    assert ds.n_steps.values.tolist() == [19, 19]


def _restamp(msg, t):
    import dataclasses  # noqa: PLC0415

    return dataclasses.replace(msg, header=M.header(t, msg.header.frame_id))
