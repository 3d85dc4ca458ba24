"""Convert the messages of one time slice of a bag: rows in arrival order, nothing sorted yet.

A whole bag is one slice, or several converted in parallel (:mod:`pipeline.data.importer.slices`)
and joined in time order with :meth:`Converted.merge`: every stream keeps its rows, stamps and
counts in arrival order, so the sorting, duplicate and clock checks made afterwards on the
joined streams (:meth:`Stream.finish`) see exactly what one pass over the bag would.

Camera and LIDAR rows are appended to flat files as they are converted (memory stays
bounded by one message whatever the bag's size); IMU and odometry values (48 and 24 bytes
a message) and every stamp stay in memory.  Light imports only (numpy, rosbags; no
pipeline.config, xarray or dask): a slice process starts in a fraction of a second.
"""

from __future__ import annotations

import os
import shutil
from array import array
from collections import Counter
from pathlib import Path

import numpy as np

from pipeline.data.importer import cdr
from pipeline.data.importer import messages as mm
from pipeline.data.importer.source import BagError, BagSource, open_bag
from pipeline.data.schema import NS


class Stream:
    """One modality's converted rows, in arrival order, with their stamps and counts."""

    def __init__(self, topic: str, msgtype: str, path: Path | None = None, width: int = 0) -> None:
        self.topic, self.msgtype = topic, msgtype
        self.file = open(path, "wb") if path is not None else None  # noqa: SIM115  (closed in close)
        self.path, self.values = path, array("d")
        self.width, self.stamps, self.n_rows = width, array("q"), 0
        self.read, self.fallback, self.rejected = 0, 0, Counter()
        self.info: dict = {}

    def add(self, stamp: int, row) -> None:
        self.stamps.append(stamp)
        if self.file is not None:
            self.file.write(np.ascontiguousarray(row).tobytes())
        else:
            self.values.extend(row)
        self.n_rows += 1

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def __getstate__(self) -> dict:  # crosses from a slice process: the row file is closed first
        self.close()
        return dict(self.__dict__)

    def merge(self, later: Stream) -> None:
        """Append ``later`` (the next time slice of the same stream): rows, stamps, counts."""
        self.close()
        if later.path is not None and later.n_rows:
            with open(self.path, "ab") as dst, open(later.path, "rb") as src:
                shutil.copyfileobj(src, dst, 1 << 20)
        if later.path is not None and Path(later.path).exists():
            os.remove(later.path)
        self.stamps.extend(later.stamps)
        self.values.extend(later.values)
        self.n_rows += later.n_rows
        self.read, self.fallback = self.read + later.read, self.fallback + later.fallback
        self.rejected.update(later.rejected)

    def rows(self, dtype, shape) -> np.ndarray:
        if self.path is not None:
            self.close()
            return (np.memmap(self.path, dtype, "r", shape=(self.n_rows, *shape)) if self.n_rows
                    else np.zeros((0, *shape), dtype))
        return np.frombuffer(self.values, np.float64).reshape(-1, self.width)

    def finish(self, name: str, rows: np.ndarray, max_reorder_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """(sorted unique stamps, row index of each); counts what it re-sorts and drops."""
        s = np.frombuffer(self.stamps, np.int64)
        if s.size == 0:
            self.info.update(kept=0, reordered=0, duplicates=0)
            return s, np.zeros(0, np.int64)
        prev_max = np.maximum.accumulate(s)
        back = np.concatenate([[0], prev_max[:-1] - s[1:]])
        if back.max() > max_reorder_ns:
            i = int(np.argmax(back))
            raise BagError("clock-backwards", name, f"topic {self.topic!r}: message {i} is stamped "
                           f"{back[i] / NS:.3f} s before an earlier one (more than import.max_reorder_s): "
                           "the clock was reset or jumped back")
        order = np.argsort(s, kind="stable")
        ss = s[order]
        same = np.flatnonzero(ss[1:] == ss[:-1]) + 1
        drop = np.zeros(s.size, bool)
        dup = 0
        for j in same:  # rare: compare converted rows
            first = j - 1
            while drop[first]:
                first -= 1
            if np.array_equal(rows[order[j]], rows[order[first]], equal_nan=True):
                dup += 1
            else:
                self.rejected["same stamp as an earlier message, other data"] += 1
            drop[j] = True
        self.info.update(reordered=int((back > 0).sum()), duplicates=dup, kept=int((~drop).sum()))
        return ss[~drop], order[~drop]

    def counts(self) -> dict:
        return {"topic": self.topic, "type": self.msgtype, "read": self.read, "stamp_fallback": self.fallback,
                "rejected": dict(self.rejected), **self.info}


class Converted:
    """One slice's streams and what it saw (image sizes, scan geometries, covered beams,
    /tf_static rotations, CameraInfo focal length, the IMU's frame)."""

    def __init__(self, topics: dict, out: Path, tag: str) -> None:
        self.cam = Stream(*topics["camera"][:2], out / f"camera{tag}.bin")
        self.lid = Stream(*topics["lidar"][:2], out / f"lidar{tag}.bin")
        self.imu = Stream(*topics["imu"][:2], width=6)
        self.odo = Stream(*topics["odometry"][:2], width=2) if "odometry" in topics else None
        self.img_seen, self.scan_seen, self.tf = Counter(), Counter(), {}
        self.covered, self.fx, self.imu_frame = None, None, None

    def merge(self, later: Converted) -> None:
        """Append the next time slice: as if one pass had read both, in order."""
        for a, b in ((self.cam, later.cam), (self.lid, later.lid), (self.imu, later.imu), (self.odo, later.odo)):
            if a is not None:
                a.merge(b)
        self.img_seen.update(later.img_seen)
        self.scan_seen.update(later.scan_seen)
        self.tf.update(later.tf)
        self.covered &= later.covered
        self.fx = self.fx if self.fx is not None else later.fx
        self.imu_frame = self.imu_frame or later.imu_frame


def _stamp(msg, receive_ns: int, clock: str, stream: Stream) -> int:
    if clock == "receive":
        return receive_ns
    st = msg.header.stamp
    if st.sec == 0 and st.nanosec == 0:  # an unset stamp: the receive time stands in (counted)
        stream.fallback += 1
        return receive_ns
    return int(st.sec) * NS + int(st.nanosec)


def _imu_row(c: Converted, msg, stamp: int) -> None:
    a, w = msg.linear_acceleration, msg.angular_velocity
    c.imu_frame = c.imu_frame or msg.header.frame_id.lstrip("/")
    c.imu.add(stamp, (a.x, a.y, a.z, w.x, w.y, w.z))


class _ImuBatch:
    """IMU messages (most of a bag's messages) converted ``SIZE`` at a time as one array
    (:func:`pipeline.data.importer.cdr.imu_batch`), in arrival order: the same stamps, rows,
    counts and frame as one message at a time (which it falls back to for mixed layouts)."""

    SIZE = 2048

    def __init__(self, c: Converted, bag, clock: str) -> None:
        self.c, self.bag, self.clock, self.t, self.raws = c, bag, clock, [], []

    def add(self, t_recv: int, raw) -> None:
        self.t.append(t_recv)
        self.raws.append(raw)
        if len(self.raws) >= self.SIZE:
            self.flush()

    def flush(self) -> None:
        c, s, t, raws = self.c, self.c.imu, self.t, self.raws
        self.t, self.raws = [], []
        got = cdr.imu_batch(raws) if raws else None
        if got is None:
            for t_recv, raw in zip(t, raws, strict=True):
                msg = cdr.imu(raw) or self.bag.deserialize(raw, s.msgtype)
                s.read += 1
                _imu_row(c, msg, _stamp(msg, t_recv, self.clock, s))
            return
        sec, nsec, rows, frame = got
        t_recv = np.asarray(t, np.int64)
        stamps = sec.astype(np.int64) * NS + nsec.astype(np.int64)
        if self.clock == "receive":
            stamps = t_recv
        else:
            unset = (sec == 0) & (nsec == 0)  # the receive time stands in (counted)
            stamps = np.where(unset, t_recv, stamps)
            s.fallback += int(unset.sum())
        s.read += len(raws)
        c.imu_frame = c.imu_frame or frame.lstrip("/")
        s.stamps.frombytes(stamps.astype(np.int64).tobytes())
        s.values.frombytes(np.ascontiguousarray(rows, np.float64).tobytes())
        s.n_rows += len(raws)


def convert(src: BagSource, topics: dict, p: dict, out: Path, lid_max: float | None, start: int | None = None,
            stop: int | None = None, tag: str = "") -> tuple[Converted, float | None]:
    """Convert the messages of ``src`` received in [start, stop) (None: unbounded) into ``out``.

    ``p``: ``camera_height``, ``camera_width``, ``lidar_beams``, ``clock``, ``cloud_z_min_m``,
    ``cloud_z_max_m``, ``cloud_max_range_m``, ``lidar_yaw_rad`` (the LIDAR's mounting yaw,
    added to every beam's angle; :mod:`pipeline.data.importer.mounting`) (plain values: no
    config import here).
    ``lid_max``: the no-return range (None: the first scan's ``range_max``).  Returns the
    converted slice and the no-return range used."""
    H, W, B = p["camera_height"], p["camera_width"], p["lidar_beams"]
    c = Converted(topics, out, tag)
    cam, lid, imu, odo = c.cam, c.lid, c.imu, c.odo
    streams = {s.topic: s for s in (cam, lid, imu, odo) if s is not None}
    extra = {topics[k][0]: k for k in ("camera_info", "tf_static") if k in topics}
    c.covered = covered = np.ones(B, bool)
    img_seen, scan_seen, clock, yaw = c.img_seen, c.scan_seen, p["clock"], p.get("lidar_yaw_rad", 0.0)
    if topics["lidar"][1].endswith("PointCloud2"):
        lid_max = lid_max or p["cloud_max_range_m"]
    with open_bag(src) as bag:
        fast = cdr.PARSERS if bag.cdr else {}
        batch = _ImuBatch(c, bag, clock) if bag.cdr and imu.msgtype == "sensor_msgs/msg/Imu" else None
        for topic, t_recv, raw in bag.messages(list(streams) + list(extra), start, stop):
            if batch is not None and topic == imu.topic:
                batch.add(t_recv, raw)
                continue
            msgtype = bag.topics[topic][0]
            parse = fast.get(msgtype)
            msg = (parse(raw) if parse is not None else None) or bag.deserialize(raw, msgtype)
            if topic in extra:
                if extra[topic] == "camera_info" and c.fx is None:
                    k = getattr(msg, "k", None)
                    k = getattr(msg, "K", None) if k is None else k
                    c.fx = (float(k[0]), int(msg.width)) if k is not None and float(k[0]) > 0 else None
                elif extra[topic] == "tf_static":
                    for tr in msg.transforms:
                        q = tr.transform.rotation
                        c.tf[(tr.header.frame_id.lstrip("/"), tr.child_frame_id.lstrip("/"))] = (q.x, q.y, q.z, q.w)
                continue
            s = streams[topic]
            s.read += 1
            stamp = _stamp(msg, t_recv, clock, s)
            try:
                if s is cam:
                    px, enc = mm.pixels(msg)
                    img_seen[(enc, px.shape[:2])] += 1
                    s.add(stamp, mm.resize(px, H, W))
                elif s is lid and msgtype.endswith("LaserScan"):
                    if lid_max is None:
                        lid_max = float(msg.range_max)
                    scan_seen[(len(msg.ranges), round(float(msg.angle_min), 9), round(float(msg.angle_increment), 12),
                               float(msg.range_min), float(msg.range_max))] += 1
                    row, cov = mm.resample_scan(msg.ranges, msg.range_min, msg.range_max, msg.angle_min + yaw,
                                                msg.angle_increment, B, lid_max)
                    covered &= cov
                    s.add(stamp, row)
                elif s is lid:
                    xyz = mm.cloud_xyz(msg)
                    scan_seen[(f"PointCloud2 {int(msg.width) * int(msg.height)} points",)] += 1
                    s.add(stamp, mm.cloud_scan(xyz, p["cloud_z_min_m"], p["cloud_z_max_m"], B, lid_max, yaw))
                elif s is imu:
                    _imu_row(c, msg, stamp)
                else:
                    tw = msg.twist.twist
                    s.add(stamp, (tw.linear.x, tw.angular.z))
            except mm.MessageRejected as exc:
                s.rejected[str(exc)] += 1
        if batch is not None:
            batch.flush()
    for s in (cam, lid):
        s.close()
    return c, lid_max
