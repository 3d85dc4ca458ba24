"""Issue 15's import rate: a bag converted as time slices by several processes gives exactly
the store one pass gives (counts, attrs, duplicates and re-sorting across slice boundaries);
the raw CDR fast paths read the same values as ``rosbags``; the block sums of the image
resize equal ``np.add.reduceat``'s."""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np
import pytest

pytest.importorskip("rosbags")

from _bags import TOPICS, TYPES, Msgs, write_mcap, write_ros1, write_rosbag2  # noqa: E402

from pipeline.config import DataConfig, ImportConfig  # noqa: E402
from pipeline.data.importer import BagError, cdr, import_bags, mcapfast, run, slices  # noqa: E402
from pipeline.data.importer.messages import block_sums  # noqa: E402
from pipeline.data.store import open_dataset  # noqa: E402

T0 = 1_700_000_000 * 1_000_000_000
M2, M1 = Msgs(ros1=False), Msgs(ros1=True)


def _msgs(m: Msgs, seconds: float = 2.0, backwards_at: int | None = None):
    """10 Hz camera (rgb8, 48 x 64), scan and odometry, 100 Hz IMU; out-of-order, duplicate
    and unstamped IMU messages spread over the bag (so over slice boundaries)."""
    out, n = [], int(seconds * 10)
    rng = np.random.default_rng(3)
    for k in range(n):
        t = T0 + k * 100_000_000
        out.append((TOPICS["camera"], TYPES["camera"], t, m.image(t, rng.integers(0, 256, (48, 64, 3), np.uint8),
                                                                  "rgb8")))
        ranges = rng.uniform(0.5, 11, 360).astype(np.float32)
        ranges[::10] = 12.5  # beyond the first scan's range_max (the no-return range), within later ones'
        out.append((TOPICS["lidar"], TYPES["lidar"], t, m.scan(t, ranges, range_max=12.0 + k)))
        out.append((TOPICS["odometry"], TYPES["odometry"], t, m.odom(t, 0.1 * k, 0.01 * k)))
    T, h = m.T, math.radians(10.3) / 2  # the LIDAR mounted 10.3 deg left (not a whole beam; ROS 2 bags)
    tf = None if m.ros1 else T["geometry_msgs/msg/TransformStamped"](header=m.header(T0, "base_link"), child_frame_id="laser",
                                                 transform=T["geometry_msgs/msg/Transform"](
                                                     translation=m.vec(0, 0, 0), rotation=T[
                                                         "geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=math.sin(h),
                                                                                         w=math.cos(h))))
    out += [] if tf is None else [("/tf_static", TYPES["tf"], T0, T[TYPES["tf"]](transforms=[tf]))]
    stamps = [T0 + i * 10_000_000 for i in range(n * 10)]
    for i in range(7, len(stamps) - 1, 23):
        stamps[i], stamps[i + 1] = stamps[i + 1], stamps[i]  # out of order
    if backwards_at is not None:
        stamps[backwards_at] -= 3 * 10**9
    for i, t in enumerate(stamps):
        frame = "imu" if 50 <= i < 60 else "base_link"  # a stretch of another layout: one message at a time
        msg = m.imu(0 if i % 31 == 5 else t, [0.1 * i, 0.2, 9.8, 0.01 * i, 0, 0.1], frame=frame)
        out.append((TOPICS["imu"], TYPES["imu"], T0 + i * 10_000_000, msg))
        if i % 17 == 3:
            out.append((TOPICS["imu"], TYPES["imu"], T0 + i * 10_000_000 + 1, msg))  # an exact duplicate
    return sorted(out, key=lambda x: x[2])


def _write(kind: str, folder, msgs):
    if kind == "ros1":
        return write_ros1(folder / "bag.bag", msgs, M1)
    if kind == "mcap":  # a lone MCAP file
        return write_mcap(folder / "bag.mcap", msgs, M2)
    return write_rosbag2(folder / "bag", msgs, M2, storage=kind.removeprefix("rosbag2-"))


def _import(bag, out, **kw):
    d = DataConfig(source="zarr", path=str(out))
    d.validate()
    return import_bags(ImportConfig(source=str(bag), **kw), d, progress=False)


def _share_with_the_worker(staging_parent):
    """Stand-in for the warm-up: wait until the slice process has claimed a slice, so both
    processes convert some."""
    def wait():
        t_end = time.monotonic() + 30
        while not list(staging_parent.glob(".*staging-*/*/slice0.claim")) and time.monotonic() < t_end:
            time.sleep(0.01)
    return wait


@pytest.mark.parametrize("kind", ["rosbag2-sqlite3", "rosbag2-mcap", "mcap", "ros1"])
def test_sliced_import_is_the_one_pass_import(kind, tmp_path, monkeypatch):
    bag = _write(kind, tmp_path, _msgs(M1 if kind == "ros1" else M2))
    one = open_dataset(_import(bag, tmp_path / "one.zarr", workers=2, slice_min_mb=None)["path"]).load()
    claimed = []
    orig = slices.claim_slices

    def spy(*a):
        done = orig(*a)
        claimed.extend(done)
        return done

    monkeypatch.setattr(slices, "claim_slices", spy)
    monkeypatch.setattr(run, "_warm_store_imports", _share_with_the_worker(tmp_path))
    many = open_dataset(_import(bag, tmp_path / "many.zarr", workers=2, slice_min_mb=1e-6)["path"]).load()
    assert 0 < len(claimed) < 2 * slices.PER_PROCESS  # this process converted some slices, the other the rest
    assert 0 not in claimed  # the slice process took the first
    rec_one, rec_many = (json.loads(ds.attrs["import_recordings"]) for ds in (one, many))
    assert rec_one == rec_many
    imu = rec_one[0]["imu"]
    assert imu["reordered"] > 3 and imu["duplicates"] > 3 and imu["stamp_fallback"] > 3
    assert rec_one[0]["lidar"]["max_range_m"] == 12.0 and imu["frame_id"] == "base_link"
    assert rec_one[0]["lidar"]["yaw_rad"] == pytest.approx(0.0 if kind == "ros1" else math.radians(10.3))
    assert {k: v for k, v in one.attrs.items() if k != "import_config"} == \
        {k: v for k, v in many.attrs.items() if k != "import_config"}
    assert set(one.variables) == set(many.variables)
    for name in one.variables:
        np.testing.assert_array_equal(one[name].values, many[name].values, err_msg=name)


def test_a_clock_reset_in_a_later_slice_is_named(tmp_path):
    bag = write_rosbag2(tmp_path / "bag", _msgs(M2, backwards_at=150), M2)
    with pytest.raises(BagError, match=r"clock-backwards.*message 15\d"):
        _import(bag, tmp_path / "out.zarr", workers=2, slice_min_mb=1e-6)


def test_a_bad_message_in_a_slice_process_is_named(tmp_path, monkeypatch):
    """A message that does not deserialize, late in the bag: the same named error, whichever
    process converts its slice."""
    from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: PLC0415

    msgs = _msgs(M2)
    with Writer(tmp_path / "bag", version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {}
        for topic, ty, t, msg in msgs:
            if topic not in conns:
                conns[topic] = w.add_connection(topic, ty, typestore=M2.ts)
            raw = M2.ts.serialize_cdr(msg, ty)
            w.write(conns[topic], t, raw[:40] if (topic, t) == (TOPICS["imu"], T0 + 1_800_000_000) else raw)
    monkeypatch.setattr(run, "_warm_store_imports", _share_with_the_worker(tmp_path))
    with pytest.raises(BagError, match=r"corrupt-bag: bag: a sensor_msgs/msg/Imu message does not deserialize"):
        _import(tmp_path / "bag", tmp_path / "out.zarr", workers=2, slice_min_mb=1e-6)
    assert not (tmp_path / "out.zarr").exists()


def test_cdr_fast_paths_read_what_rosbags_reads():
    from rosbags.typesys import Stores, get_typestore  # noqa: PLC0415

    ts = get_typestore(Stores.ROS2_HUMBLE)
    rng = np.random.default_rng(0)
    for frame in ("", "a", "ab", "abc", "abcd", "camera_optical_frame"):  # every string padding
        for enc, px in (("rgb8", rng.integers(0, 256, (5, 7, 3), np.uint8)),
                        ("mono16", rng.integers(0, 256, (3, 4, 2), np.uint8)), ("mono8", np.zeros((1, 3), np.uint8))):
            m = M2.image(T0 + 5, px, enc)
            m.header.frame_id = frame
            checks = [(m, TYPES["camera"], ("height", "width", "encoding", "is_bigendian", "step"), "data"),
                      (M2.scan(T0, rng.uniform(0, 9, 11), angle_min=-1.5, range_min=0.25), TYPES["lidar"],
                       ("angle_min", "angle_max", "angle_increment", "time_increment", "scan_time", "range_min",
                        "range_max"), "ranges"),
                      (M2.imu(T0 + 7, rng.normal(size=6), frame=frame), TYPES["imu"], (), None)]
            for msg, ty, fields, array_field in checks:
                msg.header.frame_id = frame
                raw = ts.serialize_cdr(msg, ty)
                ref, fast = ts.deserialize_cdr(raw, ty), cdr.PARSERS[ty](raw)
                assert (fast.header.frame_id, fast.header.stamp.sec, fast.header.stamp.nanosec) == \
                       (ref.header.frame_id, ref.header.stamp.sec, ref.header.stamp.nanosec)
                for f in fields:
                    assert getattr(fast, f) == getattr(ref, f), (ty, f)
                if array_field:
                    a, b = getattr(fast, array_field), getattr(ref, array_field)
                    assert a.dtype == b.dtype and np.array_equal(a, b)
                if ty == TYPES["imu"]:
                    for v in ("linear_acceleration", "angular_velocity"):
                        assert [getattr(getattr(fast, v), c) for c in "xyz"] == [getattr(getattr(ref, v), c) for c in "xyz"]
                assert cdr.PARSERS[ty](raw[: len(raw) // 2]) is None  # truncated: full deserialisation names it
                assert cdr.PARSERS[ty](b"\x00\x00" + raw[2:]) is None  # big-endian CDR: not read here


def test_the_lean_mcap_reader_yields_what_rosbags_yields(tmp_path):
    """Many chunks (full-size images), messages of several topics at the same receive time
    on both sides of chunk boundaries, an exact duplicate: the same (topic, time, bytes)
    stream, whole and in slices; chunks out of time order are left to rosbags."""
    from rosbags.highlevel import AnyReader  # noqa: PLC0415

    rng = np.random.default_rng(4)
    msgs = []
    for k in range(12):
        t = T0 + k * 100_000_000
        msgs.append((TOPICS["camera"], TYPES["camera"], t, M2.image(t, rng.integers(0, 256, (480, 640, 3), np.uint8),
                                                                    "rgb8")))
        msgs += [(TOPICS["lidar"], TYPES["lidar"], t, M2.scan(t, np.full(360, 5.0, np.float32))),
                 (TOPICS["imu"], TYPES["imu"], t, M2.imu(t, rng.normal(size=6)))]
    msgs.append(msgs[7])
    bag = write_rosbag2(tmp_path / "bag", sorted(msgs, key=lambda x: x[2]), M2, storage="mcap")
    lean = mcapfast.lean_messages(mcapfast.mcap_file(str(bag)))
    assert lean is not None
    names = [TOPICS["camera"], TOPICS["imu"]]
    with AnyReader([bag]) as r:
        conns = [c for c in r.connections if c.topic in names]
        for start, stop in ((None, None), (T0 + 250_000_000, T0 + 700_000_000), (T0 + 300_000_000, None)):
            ref = [(c.topic, t, bytes(raw)) for c, t, raw in r.messages(conns, start=start, stop=stop)]
            assert [(tp, t, bytes(raw)) for tp, t, raw in lean(names, start, stop)] == ref
            assert len(ref) > 6
    late = write_rosbag2(tmp_path / "late", [*sorted(msgs, key=lambda x: x[2]), msgs[0]], M2, storage="mcap")
    assert mcapfast.lean_messages(mcapfast.mcap_file(str(late))) is None
    from mcap.reader import make_reader  # noqa: PLC0415

    with open(mcapfast.mcap_file(str(bag)), "rb") as fh:
        assert len(make_reader(fh).get_summary().chunk_indexes) > 6


def test_imu_batches_read_what_one_message_at_a_time_reads():
    rng = np.random.default_rng(2)
    msgs = [M2.imu(0 if i == 3 else T0 + i * 7, rng.normal(size=6), frame="imu_link") for i in range(9)]
    raws = [M2.ts.serialize_cdr(x, TYPES["imu"]) for x in msgs]
    sec, nsec, rows, frame = cdr.imu_batch(raws)
    for i, raw in enumerate(raws):
        one = cdr.imu(raw)
        assert (sec[i], nsec[i]) == (one.header.stamp.sec, one.header.stamp.nanosec) and frame == "imu_link"
        assert rows[i].tolist() == [getattr(getattr(one, v), k) for v in ("linear_acceleration", "angular_velocity")
                                    for k in "xyz"]
    other = M2.ts.serialize_cdr(M2.imu(T0, np.zeros(6), frame="imu_lnk"), TYPES["imu"])  # same length, other frame
    assert len(other) == len(raws[0]) and cdr.imu_batch([*raws, other]) is None
    assert cdr.imu_batch([*raws, M2.ts.serialize_cdr(M2.imu(T0, np.zeros(6), frame="imu"), TYPES["imu"])]) is None


@pytest.mark.parametrize("shape,fy,fx", [((480, 480, 3), 15, 15), ((64, 96, 1), 2, 3), ((960, 960, 4), 30, 30)])
def test_block_sums_are_reduceats(shape, fy, fx):
    px = np.random.default_rng(1).integers(0, 256, (shape[0], shape[1] + 8, shape[2]), np.uint8)
    px[: fy * 2] = 255  # full blocks: the largest sums
    crop = px[:, 4:4 + shape[1]]  # a view, as the centre crop is
    x = np.add.reduceat(crop, np.arange(0, shape[1], fx), axis=1, dtype=np.uint32)
    ref = np.add.reduceat(x, np.arange(0, shape[0], fy), axis=0, dtype=np.uint32)
    np.testing.assert_array_equal(block_sums(crop, fy, fx), ref)


def test_all_cores_means_the_idle_ones(tmp_path):
    """``import.workers=0``: one process more than the cores other work leaves idle (a busy
    machine gains nothing from slices); an explicit ``workers`` is taken as given."""
    bag = write_rosbag2(tmp_path / "bag", _msgs(M2, seconds=0.5), M2)
    plan = type("P", (), {"source": type("S", (), {"paths": (str(bag),)})()})()
    auto, two = ImportConfig(workers=0, slice_min_mb=1e-6), ImportConfig(workers=2, slice_min_mb=1e-6)
    assert [run._processes(plan, auto, 1, idle) for idle in (0.0, 0.3, 1.0, 64.0)] == \
        [1, 1, 2, min(65, os.cpu_count())]
    assert run._processes(plan, two, 1, 0.0) == 2 and run._processes(plan, two, 2, 0.0) == 1
    n = os.cpu_count()
    assert run.idle_cores((10, 100), (10 + 50 * n, 100 + 100 * n)) == pytest.approx(0.5 * n)
    assert run.idle_cores((10, 100), (10, 101)) == n  # too short to tell: all cores
