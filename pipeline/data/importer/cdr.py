"""Raw CDR fast paths for the bulk messages (``Image``, ``Imu``, ``LaserScan``).

``rosbags`` deserialises every field of every message into Python objects (an ``Image``
copies its pixels; an ``Imu`` builds five nested messages).  The importer reads a handful of
fields, so for little-endian ROS 2 CDR these parsers read them in place: the pixels and
ranges stay zero-copy views of the raw bytes.  The result carries the same attributes, with
the same values, as ``rosbags``' message (tested field by field against it), so the
conversion code cannot tell them apart.  Anything unexpected (big-endian CDR, a length
past the end) returns None: the caller falls back to full deserialisation, whose error
names the bag.
"""

from __future__ import annotations

import struct
from types import SimpleNamespace

import numpy as np

_U32, _I32U32 = struct.Struct("<I"), struct.Struct("<iI")
_D3, _F7 = struct.Struct("<3d"), struct.Struct("<7f")
_CDR_LE = (b"\x00\x01",)  # plain CDR, little-endian


def _align(pos: int, n: int) -> int:
    """``pos`` (from the start of ``raw``) rounded up to ``n`` past the 4-byte encapsulation."""
    return pos + (-(pos - 4) % n)


def _string(raw, pos: int) -> tuple[str, int]:
    pos = _align(pos, 4)
    n = _U32.unpack_from(raw, pos)[0]
    end = pos + 4 + n
    if n == 0 or end > len(raw):
        raise IndexError
    return bytes(raw[pos + 4:end - 1]).decode(), end


def _header(raw) -> tuple[SimpleNamespace, int]:
    if bytes(raw[:2]) not in _CDR_LE:
        raise IndexError
    sec, nsec = _I32U32.unpack_from(raw, 4)
    frame, pos = _string(raw, 12)
    return SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nsec), frame_id=frame), pos


def image(raw) -> SimpleNamespace | None:
    """``sensor_msgs/msg/Image``: header, height, width, encoding, is_bigendian, step, data."""
    try:
        header, pos = _header(raw)
        pos = _align(pos, 4)
        h, w = struct.unpack_from("<II", raw, pos)
        enc, pos = _string(raw, pos + 8)
        big = raw[pos]
        pos = _align(pos + 1, 4)
        step, n = struct.unpack_from("<II", raw, pos)
        if pos + 8 + n > len(raw):
            return None
        data = np.frombuffer(raw, np.uint8, n, pos + 8)
    except (IndexError, struct.error, UnicodeDecodeError):
        return None
    return SimpleNamespace(header=header, height=h, width=w, encoding=enc, is_bigendian=big, step=step, data=data)


def imu(raw) -> SimpleNamespace | None:
    """``sensor_msgs/msg/Imu``: header, angular_velocity, linear_acceleration."""
    try:
        header, pos = _header(raw)
        pos = _align(pos, 8)  # orientation (4 f8), its covariance (9 f8), then the vectors
        if pos + 296 > len(raw):
            return None
        w = _D3.unpack_from(raw, pos + 104)
        a = _D3.unpack_from(raw, pos + 200)
    except (IndexError, struct.error, UnicodeDecodeError):
        return None
    return SimpleNamespace(header=header, angular_velocity=SimpleNamespace(x=w[0], y=w[1], z=w[2]),
                           linear_acceleration=SimpleNamespace(x=a[0], y=a[1], z=a[2]))


def laser_scan(raw) -> SimpleNamespace | None:
    """``sensor_msgs/msg/LaserScan``: header, the seven float32 fields, ranges."""
    try:
        header, pos = _header(raw)
        pos = _align(pos, 4)
        amin, amax, inc, tinc, scan_t, rmin, rmax = _F7.unpack_from(raw, pos)
        n = _U32.unpack_from(raw, pos + 28)[0]
        if pos + 32 + 4 * n > len(raw):
            return None
        ranges = np.frombuffer(raw, "<f4", n, pos + 32)
    except (IndexError, struct.error, UnicodeDecodeError):
        return None
    return SimpleNamespace(header=header, angle_min=amin, angle_max=amax, angle_increment=inc,
                           time_increment=tinc, scan_time=scan_t, range_min=rmin, range_max=rmax, ranges=ranges)


def imu_batch(raws: list) -> tuple[np.ndarray, np.ndarray, np.ndarray, str] | None:
    """``(sec, nanosec, (n, 6) [a.x a.y a.z w.x w.y w.z], frame_id)`` of ``Imu`` messages that
    share one layout (same length, same frame_id: one IMU), read as one array: what
    :func:`imu` reads of each, without a Python step per message.  None: not one layout."""
    n = len(raws)
    size = len(raws[0]) if n else 0
    if n == 0 or size < 16 or any(len(r) != size for r in raws):
        return None
    arr = np.frombuffer(b"".join(raws), np.uint8).reshape(n, size)
    flen = int(arr[0, 12:16].view("<u4")[0])
    pos = _align(16 + flen, 8)
    if flen == 0 or pos + 296 > size or not (arr[:, :2] == np.frombuffer(_CDR_LE[0], np.uint8)).all() \
            or not (arr[:, 12:16 + flen] == arr[0, 12:16 + flen]).all():
        return None
    try:
        frame = arr[0, 16:15 + flen].tobytes().decode()
    except UnicodeDecodeError:
        return None
    sec = np.ascontiguousarray(arr[:, 4:8]).view("<i4")[:, 0]
    nsec = np.ascontiguousarray(arr[:, 8:12]).view("<u4")[:, 0]
    a = np.ascontiguousarray(arr[:, pos + 200:pos + 224]).view("<f8")
    w = np.ascontiguousarray(arr[:, pos + 104:pos + 128]).view("<f8")
    return sec, nsec, np.concatenate([a, w], axis=1), frame


PARSERS = {"sensor_msgs/msg/Image": image, "sensor_msgs/msg/Imu": imu, "sensor_msgs/msg/LaserScan": laser_scan}
