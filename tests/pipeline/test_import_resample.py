"""Resampling of imported messages: a 640 x 480 rgb8 camera, a 720-beam scan from -pi, a scan
covering only the front half, a 400 Hz IMU, a PointCloud2 wall -- unit level and through a
whole import of a hand-made bag (no odometry: a store without targets)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("rosbags")

from _bags import TOPICS, TYPES, Msgs, write_rosbag2  # noqa: E402

from pipeline.config import DataConfig, ImportConfig, ImportTopics  # noqa: E402
from pipeline.data import check_store  # noqa: E402
from pipeline.data.importer import import_bags  # noqa: E402
from pipeline.data.importer import messages as mm  # noqa: E402
from pipeline.data.importer.resample import imu_to_rate  # noqa: E402
from pipeline.data.store import open_dataset  # noqa: E402

T0 = 1_700_000_000 * 1_000_000_000
M = Msgs(ros1=False)


def _band_image():
    """640 x 480 rgb8, black with a white band over source columns 320..339."""
    px = np.zeros((480, 640, 3), np.uint8)
    px[:, 320:340] = 255
    return px


def _object_scan(clockwise: bool = False, t: int = T0):
    """720 beams from -pi (or from +pi, clockwise): 10 m, an object at 44..46 deg left at 3 m."""
    inc = 2 * math.pi / 720 * (-1 if clockwise else 1)
    ang = np.degrees(-math.pi + np.arange(720) * 2 * math.pi / 720) if not clockwise else \
        np.degrees(math.pi - np.arange(720) * 2 * math.pi / 720)
    ranges = np.where((ang >= 43.9) & (ang <= 46.1), 3.0, 10.0).astype(np.float32)
    return M.scan(t, ranges, angle_min=math.pi if clockwise else -math.pi, increment=inc, range_max=20.0)


def test_camera_band_lands_in_the_right_columns():
    g, enc = mm.grey(M.image(T0, _band_image(), "rgb8"))
    out = mm.resize(g, 32, 32)
    assert enc == "rgb8" and out.shape == (32, 32)
    # centre crop 480 x 480 (columns 80..559): band at crop columns 240..259, 15 px per output column
    assert (out[:, 16] == 255).all() and (out[:, 17] == 85).all()
    assert (np.delete(out, [16, 17], axis=1) == 0).all()
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255
    assert (mm.grey(M.image(T0, red, "rgb8"))[0] == 76).all()
    assert (mm.grey(M.image(T0, red[..., ::-1].copy(), "bgr8"))[0] == 76).all()


@pytest.mark.parametrize("clockwise", [False, True])
def test_scan_object_lands_in_the_right_beams(clockwise):
    s = _object_scan(clockwise)
    out, covered = mm.resample_scan(s.ranges, s.range_min, s.range_max, s.angle_min, s.angle_increment, 360, 20.0)
    assert covered.all()
    assert (out[44:47] == 3.0).all()
    assert (np.delete(out, [44, 45, 46]) == 10.0).all()


def test_front_half_scan_marks_the_rest_not_covered():
    ranges = np.full(181, 5.0, np.float32)
    ranges[0], ranges[90], ranges[100] = np.nan, 99.0, 0.01  # NaN, beyond range_max, below range_min
    out, covered = mm.resample_scan(ranges, 0.05, 30.0, -math.pi / 2, math.pi / 180, 360, 12.0)
    want = np.zeros(360, bool)
    want[:91] = want[270:] = True
    np.testing.assert_array_equal(covered, want)
    assert out[270] == 12.0 and out[0] == 12.0 and out[10] == 12.0  # no return: max range
    assert (out[~covered] == 12.0).all() and out[45] == 5.0


def test_400hz_imu_keeps_its_mean_per_window():
    rng = np.random.default_rng(0)
    t = T0 + 2_500_000 * (np.arange(400) + 1)  # 400 Hz, first window full
    x = rng.normal(size=(400, 6))
    t_out, x_out, how = imu_to_rate(t, x, T0, 100.0, 0.02)
    assert "window means" in how and t_out.size == 100
    np.testing.assert_array_equal(t_out, T0 + 10_000_000 * (np.arange(100) + 1))
    np.testing.assert_allclose(x_out, x.reshape(100, 4, 6).mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(x_out.mean(axis=0), x.mean(axis=0), rtol=1e-12)
    t_keep, x_keep, how = imu_to_rate(t[::4], x[::4], T0, 100.0, 0.02)  # 100 Hz: kept as recorded
    assert "kept" in how and (t_keep == t[::4]).all() and (x_keep == x[::4]).all()


def _wall_cloud():
    y = np.arange(-3.0, 3.0, 0.005)
    pts = [np.stack([np.full_like(y, 3.0), y, np.full_like(y, z)], 1) for z in (0.0, 0.2)]
    pts.append(np.array([[1.0, 0.0, 2.0], [1.0, 0.1, -1.0], [np.nan, 0.0, 0.0]]))  # outside the band, NaN
    return np.concatenate(pts)


def test_pointcloud_wall_gives_the_right_ranges():
    xyz = mm.cloud_xyz(M.cloud(T0, _wall_cloud()))
    out = mm.cloud_scan(xyz, -0.1, 0.5, 360, 30.0)
    for b in range(-40, 41):
        theta = math.radians(max(abs(b) - 0.5, 0))  # the sector's point nearest the wall's normal
        assert out[b % 360] == pytest.approx(3.0 / math.cos(theta), rel=2e-3), b
    assert (out[60:300] == 30.0).all()  # nothing behind: no return


def _front_scan(t):
    """181 beams at 1 deg from -90 deg: the front half only, 4 m everywhere."""
    return M.scan(t, np.full(181, 4.0, np.float32), angle_min=-math.pi / 2, increment=math.pi / 180, range_max=12.0)


def _hand_bag(path, kind: str):
    cloud = kind == "pointcloud2"
    msgs = []
    for k in range(20):  # 10 Hz camera and LIDAR, 2 s
        t = T0 + k * 100_000_000
        msgs.append((TOPICS["camera"], TYPES["camera"], t, M.image(t, _band_image(), "rgb8")))
        scan = M.cloud(t, _wall_cloud()) if cloud else _front_scan(t) if kind == "front-half" else _object_scan(t=t)
        msgs.append((TOPICS["lidar"], TYPES["cloud" if cloud else "lidar"], t, scan))
    rng = np.random.default_rng(1)
    imu = rng.normal(size=(800, 6))
    for i in range(800):  # 400 Hz
        t = T0 + 2_500_000 * (i + 1)
        msgs.append((TOPICS["imu"], TYPES["imu"], t, M.imu(t, imu[i])))
    write_rosbag2(path, sorted(msgs, key=lambda m: m[2]), M)
    return imu


@pytest.mark.parametrize("kind", ["laserscan", "pointcloud2", "front-half"])
def test_import_of_a_real_geometry_bag(kind, tmp_path):
    imu = _hand_bag(tmp_path / "bag", kind)
    out = tmp_path / "out.zarr"
    d = DataConfig(source="zarr", path=str(out))
    d.validate()
    icfg = ImportConfig(source=str(tmp_path / "bag"), topics=ImportTopics(odometry=None), workers=1)
    info = import_bags(icfg, d, progress=False)
    assert not info["targets"]
    rep = check_store(str(out))
    assert rep.ok and any(w.kind == "no-targets" for w in rep.warnings), rep.summary()
    ds = open_dataset(out).load()
    assert "targets" not in ds.variables and int(ds.n_frames[0]) == 20 and int(ds.n_scans[0]) == 20
    assert (ds.vision.values[0, :20, :, 16] == 255).all() and (ds.vision.values[0, :20, :, 17] == 85).all()
    n = int(ds.n_samples[0])
    assert n == 200
    np.testing.assert_allclose(ds.imu.values[0, :n], imu.reshape(200, 4, 6).mean(axis=1), rtol=1e-5, atol=1e-6)
    lid = ds.lidar.values[0, :20]
    covered = ds.lidar_covered.values[0]
    assert covered.all() == (kind != "front-half")
    assert any(w.kind == "lidar-not-covered" for w in rep.warnings) == (kind == "front-half")
    if kind == "pointcloud2":
        assert lid[:, 0] == pytest.approx(3.0, rel=1e-3) and (lid[:, 180] == 30.0).all()
    elif kind == "front-half":
        assert covered[:91].all() and covered[270:].all() and not covered[91:270].any()
        assert (lid[:, covered] == 4.0).all() and (lid[:, ~covered] == 12.0).all()
    else:
        assert (lid[:, 44:47] == 3.0).all() and (lid[:, 47] == 10.0).all() and ds.attrs["lidar_max_range_m"] == 20.0


def test_camera_info_fov_and_imu_mounting_from_tf_static(tmp_path):
    """CameraInfo gives camera_fov_rad (of the crop); /tf_static's base_link -> imu_link
    rotation (90 deg yaw) turns the IMU's x into the body's y."""
    T = M.T
    msgs = [m for m in _msgs_tiny() if m[0] != TOPICS["imu"]]
    roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    info = T["sensor_msgs/msg/CameraInfo"](header=M.header(T0, "camera"), height=480, width=640,
                                           distortion_model="plumb_bob", d=np.zeros(5), k=np.array(
                                               [240.0, 0, 320, 0, 240.0, 240, 0, 0, 1]), r=np.eye(3).ravel(),
                                           p=np.zeros(12), binning_x=0, binning_y=0, roi=roi)
    msgs.append(("/camera/camera_info", "sensor_msgs/msg/CameraInfo", T0, info))
    half = math.sqrt(0.5)
    tr = T["geometry_msgs/msg/TransformStamped"](header=M.header(T0, "base_link"), child_frame_id="imu_link",
                                                 transform=T["geometry_msgs/msg/Transform"](
                                                     translation=M.vec(0, 0, 0),
                                                     rotation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=half,
                                                                                                w=half)))
    msgs.append(("/tf_static", TYPES["tf"], T0, T[TYPES["tf"]](transforms=[tr])))
    for i in range(100):
        t = T0 + 10_000_000 * i
        msgs.append((TOPICS["imu"], TYPES["imu"], t, M.imu(t, [1.0, 0, 9.8, 0, 0, 0.5], frame="imu_link")))
    write_rosbag2(tmp_path / "bag", sorted(msgs, key=lambda m: m[2]), M)
    d = DataConfig(source="zarr", path=str(tmp_path / "out.zarr"))
    d.validate()
    icfg = ImportConfig(source=str(tmp_path / "bag"), workers=1,
                        topics=ImportTopics(odometry=None, camera_info="/camera/camera_info"))
    import_bags(icfg, d, progress=False)
    ds = open_dataset(d.path).load()
    assert ds.attrs["camera_fov_rad"] == pytest.approx(2 * math.atan(480 / 2 / 240.0))  # the 480-wide crop
    np.testing.assert_allclose(ds.imu.values[0, :100], np.tile([0, 1.0, 9.8, 0, 0, 0.5], (100, 1)), atol=1e-6)
    rec = json.loads(ds.attrs["import_recordings"])[0]
    assert "/tf_static" in rec["imu"]["rotation_source"] and "camera_info" in rec["camera"]["fov_source"]


def _msgs_tiny():
    out = []
    for k in range(10):
        t = T0 + k * 100_000_000
        out.append((TOPICS["camera"], TYPES["camera"], t, M.image(t, _band_image(), "rgb8")))
        out.append((TOPICS["lidar"], TYPES["lidar"], t, _object_scan(t=t)))
    return out


def _tf(t, parent, child, yaw_deg):
    T = M.T
    h = math.radians(yaw_deg) / 2
    return ("/tf_static", TYPES["tf"], t, T[TYPES["tf"]](transforms=[T["geometry_msgs/msg/TransformStamped"](
        header=M.header(t, parent), child_frame_id=child, transform=T["geometry_msgs/msg/Transform"](
            translation=M.vec(0, 0, 0), rotation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=math.sin(h),
                                                                                  w=math.cos(h))))]))


@pytest.mark.parametrize("how", ["tf_static", "config", "tf_static-after-the-first-scan", "cloud"])
def test_lidar_mounting_yaw_turns_the_scan_into_the_body_frame(how, tmp_path):
    """A LIDAR mounted turned 90 deg left (``base_link -> laser`` in /tf_static, or
    ``import.lidar_yaw_deg``): its object at 44..46 deg is at 134..136 deg of the body."""
    msgs = []
    for k in range(10):
        t = T0 + k * 100_000_000
        msgs.append((TOPICS["camera"], TYPES["camera"], t, M.image(t, _band_image(), "rgb8")))
        if how == "cloud":  # a point at 3 m, 45 deg left of the sensor
            xyz = np.array([[3 * math.cos(math.radians(45)), 3 * math.sin(math.radians(45)), 0.0]])
            msgs.append((TOPICS["lidar"], TYPES["cloud"], t, M.cloud(t, xyz)))
        else:
            msgs.append((TOPICS["lidar"], TYPES["lidar"], t, _object_scan(t=t)))
    for i in range(100):
        t = T0 + 10_000_000 * i
        msgs.append((TOPICS["imu"], TYPES["imu"], t, M.imu(t, [0, 0, 9.8, 0, 0, 0])))
    frame = "lidar" if how == "cloud" else "laser"
    if how != "config":  # after the first scan: too late for the scans, ignored
        msgs.append(_tf(T0 + (50_000_000 if how.endswith("scan") else 0), "base_link", frame, 90.0))
    write_rosbag2(tmp_path / "bag", sorted(msgs, key=lambda m: m[2]), M)
    d = DataConfig(source="zarr", path=str(tmp_path / "out.zarr"))
    d.validate()
    icfg = ImportConfig(source=str(tmp_path / "bag"), workers=1, topics=ImportTopics(odometry=None),
                        lidar_yaw_deg=90.0 if how == "config" else 0.0)
    import_bags(icfg, d, progress=False)
    ds = open_dataset(d.path).load()
    lid, lidar = ds.lidar.values[0, :10], json.loads(ds.attrs["import_recordings"])[0]["lidar"]
    if how == "cloud":
        assert (lid[:, 135] == pytest.approx(3.0)) and (np.delete(lid, 135, axis=1) == 30.0).all()
    elif how.endswith("scan"):
        assert (lid[:, 44:47] == 3.0).all() and lidar["yaw_rad"] == 0.0  # the laser's own frame, as recorded
    else:
        assert (lid[:, 134:137] == 3.0).all() and (np.delete(lid, [134, 135, 136], axis=1) == 10.0).all()
    if how in ("tf_static", "cloud"):
        assert lidar["yaw_source"] == f"/tf_static: base_link -> {frame}"
        assert lidar["yaw_rad"] == pytest.approx(math.pi / 2)
    assert lidar["frame_id"] == frame
