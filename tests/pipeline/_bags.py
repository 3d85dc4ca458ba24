"""Bags written by writers neuroliquid did not write (``rosbags``' ROS 1 and rosbag2 writers,
``mcap`` + ``mcap-ros2-support``), from a store's recordings or from hand-made messages."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

NS = 1_000_000_000
LATENCY_NS = 1_500_000  # receive time = header stamp + this (the import uses header stamps)
TOPICS = {"camera": "/camera/image_raw", "lidar": "/scan", "imu": "/imu/data", "odometry": "/odom"}
TYPES = {"camera": "sensor_msgs/msg/Image", "lidar": "sensor_msgs/msg/LaserScan", "imu": "sensor_msgs/msg/Imu",
         "odometry": "nav_msgs/msg/Odometry", "compressed": "sensor_msgs/msg/CompressedImage",
         "cloud": "sensor_msgs/msg/PointCloud2", "tf": "tf2_msgs/msg/TFMessage"}


class Msgs:
    """Message constructors of one type store (ROS 1 headers carry ``seq``)."""

    def __init__(self, ros1: bool) -> None:
        from rosbags.typesys import Stores, get_typestore

        self.ts = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE)
        self.ros1, self.T = ros1, self.ts.types

    def header(self, t_ns: int, frame: str):
        stamp = self.T["builtin_interfaces/msg/Time"](sec=int(t_ns // NS), nanosec=int(t_ns % NS))
        kw = {"seq": 0} if self.ros1 else {}
        return self.T["std_msgs/msg/Header"](stamp=stamp, frame_id=frame, **kw)

    def image(self, t, px: np.ndarray, encoding: str = "mono8"):
        h, w = px.shape[:2]
        data = np.ascontiguousarray(px).reshape(-1).view(np.uint8)
        return self.T[TYPES["camera"]](header=self.header(t, "camera"), height=h, width=w, encoding=encoding,
                                       is_bigendian=0, step=data.size // h, data=data)

    def png(self, t, px: np.ndarray):
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(px).save(buf, format="PNG")
        return self.T[TYPES["compressed"]](header=self.header(t, "camera"), format="png",
                                           data=np.frombuffer(buf.getvalue(), np.uint8))

    def scan(self, t, ranges, angle_min=0.0, increment=None, range_min=0.0, range_max=12.0):
        n = len(ranges)
        inc = 2 * math.pi / n if increment is None else increment
        return self.T[TYPES["lidar"]](header=self.header(t, "laser"), angle_min=angle_min,
                                      angle_max=angle_min + (n - 1) * inc, angle_increment=inc, time_increment=0.0,
                                      scan_time=0.1, range_min=range_min, range_max=range_max,
                                      ranges=np.asarray(ranges, np.float32), intensities=np.zeros(0, np.float32))

    def vec(self, x, y, z):
        return self.T["geometry_msgs/msg/Vector3"](x=float(x), y=float(y), z=float(z))

    def imu(self, t, row, frame: str = "base_link"):
        q = self.T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)
        cov = np.zeros(9)
        return self.T[TYPES["imu"]](header=self.header(t, frame), orientation=q, orientation_covariance=cov,
                                    angular_velocity=self.vec(*row[3:]), angular_velocity_covariance=cov,
                                    linear_acceleration=self.vec(*row[:3]), linear_acceleration_covariance=cov)

    def odom(self, t, speed, yaw):
        T = self.T
        pose = T["geometry_msgs/msg/PoseWithCovariance"](pose=T["geometry_msgs/msg/Pose"](
            position=T["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
            orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)), covariance=np.zeros(36))
        twist = T["geometry_msgs/msg/TwistWithCovariance"](twist=T["geometry_msgs/msg/Twist"](
            linear=self.vec(speed, 0, 0), angular=self.vec(0, 0, yaw)), covariance=np.zeros(36))
        return T[TYPES["odometry"]](header=self.header(t, "odom"), child_frame_id="base_link", pose=pose, twist=twist)

    def cloud(self, t, xyz: np.ndarray):
        F = self.T["sensor_msgs/msg/PointField"]
        fields = [F(name=k, offset=4 * i, datatype=7, count=1) for i, k in enumerate("xyz")]
        data = np.ascontiguousarray(xyz, np.float32).reshape(-1).view(np.uint8)
        return self.T[TYPES["cloud"]](header=self.header(t, "lidar"), height=1, width=len(xyz), fields=fields,
                                      is_bigendian=False, point_step=12, row_step=12 * len(xyz), data=data,
                                      is_dense=True)


def store_messages(ds, r: int, m: Msgs, png: bool = False) -> list[tuple[str, str, int, object]]:
    """(topic, type, receive ns, message) of recording ``r`` of an open store, receive-ordered;
    odometry at the store's model steps from its speed and yaw-rate targets."""
    out = []
    nf, ns_, nsm, nst = (int(ds[k].values[r]) for k in ("n_frames", "n_scans", "n_samples", "n_steps"))
    for t, px in zip(ds.t_cam.values[r, :nf], ds.vision.values[r, :nf], strict=True):
        out.append((TOPICS["camera"], TYPES["compressed" if png else "camera"], int(t),
                    m.png(int(t), px) if png else m.image(int(t), px)))
    for t, rg in zip(ds.t_lidar.values[r, :ns_], ds.lidar.values[r, :ns_], strict=True):
        out.append((TOPICS["lidar"], TYPES["lidar"], int(t), m.scan(int(t), rg)))
    for t, row in zip(ds.t_imu.values[r, :nsm], ds.imu.values[r, :nsm], strict=True):
        out.append((TOPICS["imu"], TYPES["imu"], int(t), m.imu(int(t), row)))
    step = round(NS / float(ds.attrs["targets_rate_hz"]))
    t0 = int(ds.t_start.values[r])
    for k in range(nst):
        sp, yw, _ = ds.targets.values[r, k]
        out.append((TOPICS["odometry"], TYPES["odometry"], t0 + (k + 1) * step, m.odom(t0 + (k + 1) * step, sp, yw)))
    return sorted(((tp, ty, t + LATENCY_NS, msg) for tp, ty, t, msg in out), key=lambda x: x[2])


def write_rosbag2(path: Path, msgs: list, m: Msgs, storage: str = "sqlite3") -> Path:
    from rosbags.rosbag2 import StoragePlugin, Writer

    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as w:
        _write_all(w, msgs, m.ts, m.ts.serialize_cdr)
    return path


def write_ros1(path: Path, msgs: list, m: Msgs) -> Path:
    from rosbags.rosbag1 import Writer

    with Writer(path) as w:
        _write_all(w, msgs, m.ts, m.ts.serialize_ros1)
    return path


def _write_all(w, msgs: list, ts, serialize) -> None:
    """``msgs`` through a rosbags writer, one connection per topic."""
    conns = {}
    for topic, ty, t, msg in msgs:
        if topic not in conns:
            conns[topic] = w.add_connection(topic, ty, typestore=ts)
        w.write(conns[topic], t, serialize(msg, ty))


def write_mcap(path: Path, msgs: list, m: Msgs) -> Path:
    """A lone MCAP file with ``mcap`` + ``mcap-ros2-support`` (no metadata.yaml)."""
    from mcap_ros2.writer import Writer

    with open(path, "wb") as fh:
        w, schemas = Writer(fh), {}
        for topic, ty, t, msg in msgs:
            if ty not in schemas:
                schemas[ty] = w.register_msgdef(ty, m.ts.generate_msgdef(ty, ros_version=2)[0])
            w.write_message(topic, schemas[ty], _plain(msg), log_time=t, publish_time=t)
        w.finish()
    return path


def _plain(msg):
    """A rosbags message as dicts, lists and bytes (what ``mcap-ros2-support`` encodes)."""
    if isinstance(msg, np.ndarray):
        return msg.tobytes() if msg.dtype == np.uint8 else msg.tolist()
    if isinstance(msg, list):
        return [_plain(x) for x in msg]
    if hasattr(msg, "__dataclass_fields__"):
        return {k: _plain(getattr(msg, k)) for k in msg.__dataclass_fields__ if k != "__msgtype__"}
    return msg
