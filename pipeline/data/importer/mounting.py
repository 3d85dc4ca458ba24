"""What the scans' conversion needs before the first scan is converted, read once per bag:
the LIDAR's mounting yaw and the no-return range.

* Mounting yaw: scans are measured in the LIDAR's frame; the schema's beams are the body's
  (beam 0 ahead).  The rotation ``base_frame -> <the first scan's frame_id>`` of the
  ``/tf_static`` messages received up to the first scan (a direct transform; no chains) gives
  the yaw (rotation about the body's z: ``atan2(2 (w z + x y), 1 - 2 (y^2 + z^2))``); a scan
  frame that is ``base_frame`` has none; else ``import.lidar_yaw_deg``; a scan beam at angle ``a`` in the LIDAR frame lands at
  ``a + yaw`` in the body.  Roll and pitch are not applied (a tilted 2-D LIDAR is not
  levelled); the report records the yaw, its source and the frame.
* No-return range: ``import.lidar_max_range_m``, else the first LaserScan's ``range_max``
  (a PointCloud2 LIDAR: ``import.cloud_max_range_m``).

Read before any slice is converted, so one pass and parallel time slices
(:mod:`pipeline.data.importer.slices`) convert every scan with the same values.
"""

from __future__ import annotations

import math

from pipeline.data.importer.source import open_bag


def yaw_of(x: float, y: float, z: float, w: float) -> float:
    """Yaw (rad, about z, ZYX convention) of a quaternion (normalised first)."""
    n = math.sqrt(x * x + y * y + z * z + w * w)
    x, y, z, w = x / n, y / n, z / n, w / n
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def lidar_setup(src, topics: dict, base_frame: str, yaw_deg: float, max_range: float | None,
                cloud_max_range: float) -> dict:
    """``{"max_range", "yaw_rad", "yaw_source", "frame_id"}`` for ``src``'s LIDAR (see module doc)."""
    topic, msgtype = topics["lidar"][:2]
    out = {"max_range": max_range, "yaw_rad": math.radians(yaw_deg), "frame_id": None,
           "yaw_source": f"import.lidar_yaw_deg ({yaw_deg:g})"}
    with open_bag(src) as bag:
        first = None
        for _, t_recv, raw in bag.messages([topic]):
            first = (t_recv, bag.deserialize(raw, msgtype))
            break
        if first is None:
            return out
        t_recv, scan = first
        frame = scan.header.frame_id.lstrip("/")
        out["frame_id"] = frame
        if max_range is None:
            out["max_range"] = float(scan.range_max) if msgtype.endswith("LaserScan") else cloud_max_range
        if frame == base_frame:
            out.update(yaw_rad=0.0, yaw_source=f"identity: the scan's frame_id is import.base_frame ({frame})")
            return out
        tf_topic = topics.get("tf_static")
        if tf_topic is None:
            return out
        q = None
        for _, _, raw in bag.messages([tf_topic[0]], None, t_recv + 1):
            for tr in bag.deserialize(raw, tf_topic[1]).transforms:
                if (tr.header.frame_id.lstrip("/"), tr.child_frame_id.lstrip("/")) == (base_frame, frame):
                    r = tr.transform.rotation
                    q = (r.x, r.y, r.z, r.w)
        if q is not None:
            out["yaw_rad"] = yaw_of(*q)
            out["yaw_source"] = f"{tf_topic[0]}: {base_frame} -> {frame}"
    return out
