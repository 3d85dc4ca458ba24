"""Bags to recordings, and the first (counting) pass over each.

``import.source`` is one bag or a folder of them.  A rosbag2 folder (``metadata.yaml``, any
number of sqlite3 or MCAP files) is one recording; so is a lone ``.mcap`` file and a ROS 1
bag, whose split parts ``<name>_0.bag``, ``<name>_1.bag``, ... (indices from 0, consecutive)
are joined.  The first pass opens every bag once: topics, message types and counts, so a
missing topic or a wrong type is named before any conversion, and nothing is read twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import ImportConfig
from pipeline.data.importer.source import BagError, BagSource, open_bag

ACCEPTED = {  # modality -> message types it converts
    "camera": ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"),
    "lidar": ("sensor_msgs/msg/LaserScan", "sensor_msgs/msg/PointCloud2"),
    "imu": ("sensor_msgs/msg/Imu",),
    "odometry": ("nav_msgs/msg/Odometry",),
    "camera_info": ("sensor_msgs/msg/CameraInfo",),
    "tf_static": ("tf2_msgs/msg/TFMessage",),
}
REQUIRED = ("camera", "lidar", "imu")
_SPLIT = re.compile(r"^(?P<stem>.+)_(?P<i>\d+)\.bag$")


@dataclass
class BagPlan:
    """One recording after the first pass: its topics (modality -> (topic, type, count)),
    or the error that rules it out."""

    source: BagSource
    topics: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    error: BagError | None = None


def _rosbag2_of(path: Path) -> Path | None:
    return path if (path / "metadata.yaml").is_file() else None


def find_recordings(source: str) -> tuple[list[BagSource], list[str]]:
    """The recordings under ``source`` (sorted by name) and the files skipped (not bags)."""
    p = Path(source).expanduser()
    if not p.exists():
        raise BagError("not-a-bag", str(p), "import.source does not exist")
    if p.is_file():
        if p.suffix == ".bag":
            group = next(g for g in _ros1_groups(list(p.parent.glob("*.bag"))).values() if p in g)
            return [BagSource(_name(group[0]), "ros1", tuple(map(str, group)))], []
        if p.suffix in (".mcap", ".db3") and _rosbag2_of(p.parent):
            return [BagSource(p.parent.name, "rosbag2", (str(p.parent),))], []
        if p.suffix == ".mcap":
            return [BagSource(p.stem, "mcap", (str(p),))], []
        raise BagError("not-a-bag", str(p), "not a .bag, an .mcap, or a file of a rosbag2 folder (metadata.yaml)")
    if _rosbag2_of(p):
        return [BagSource(p.name, "rosbag2", (str(p),))], []
    found, skipped = [], []
    bags = [f for f in p.iterdir() if f.is_file() and f.suffix == ".bag"]
    for group in _ros1_groups(bags).values():
        found.append(BagSource(_name(group[0]), "ros1", tuple(map(str, group))))
    for f in sorted(p.iterdir()):
        if f.is_dir() and _rosbag2_of(f):
            found.append(BagSource(f.name, "rosbag2", (str(f),)))
        elif f.is_file() and f.suffix == ".mcap":
            found.append(BagSource(f.stem, "mcap", (str(f),)))
        elif f.suffix != ".bag":
            skipped.append(str(f))
    if not found:
        raise BagError("not-a-bag", str(p), "the folder holds no bag (.bag, .mcap, or rosbag2 folder with "
                       f"metadata.yaml); entries: {', '.join(sorted(x.name for x in p.iterdir())[:10]) or 'none'}")
    return sorted(found, key=lambda s: s.name), skipped


def _name(first: Path) -> str:
    m = _SPLIT.match(first.name)
    return m["stem"] if m and int(m["i"]) == 0 else first.stem


def _ros1_groups(bags: list[Path]) -> dict[str, list[Path]]:
    """ROS 1 bags by recording: split parts (indices 0, 1, ... without holes) join."""
    parts: dict[str, list[tuple[int, Path]]] = {}
    for f in bags:
        m = _SPLIT.match(f.name)
        if m:
            parts.setdefault(m["stem"], []).append((int(m["i"]), f))
    out, joined = {}, set()
    for stem, items in parts.items():
        items.sort()
        if [i for i, _ in items] == list(range(len(items))):
            out[stem] = [f for _, f in items]
            joined |= {f for _, f in items}
    for f in bags:
        if f not in joined:
            out[f.stem] = [f]
    return out


def wanted_topics(icfg: ImportConfig) -> dict[str, str]:
    """modality -> topic for every configured topic (optional ones may be null)."""
    return {k: v for k in ACCEPTED if (v := getattr(icfg.topics, k)) is not None}


def plan_recording(src: BagSource, icfg: ImportConfig) -> BagPlan:
    """Open ``src`` once: its topics, checked against the config (errors are kept, not raised)."""
    plan = BagPlan(src)
    try:
        with open_bag(src) as bag:
            if sum(n for _, n in bag.topics.values()) == 0:
                raise BagError("empty-bag", src.name, f"{', '.join(src.paths)} holds no messages")
            listing = ", ".join(f"{t} ({ty}, {n})" for t, (ty, n) in sorted(bag.topics.items()))
            for mod, topic in wanted_topics(icfg).items():
                if topic not in bag.topics:
                    if mod in ("camera_info", "tf_static"):
                        continue  # optional sources: config values stand in (recorded in the attrs)
                    raise BagError("missing-topic", src.name, f"topic {topic!r} (import.topics.{mod}) is not in the "
                                   f"bag; its topics: {listing}")
                ty, n = bag.topics[topic]
                if ty not in ACCEPTED[mod]:
                    raise BagError("wrong-type", src.name, f"topic {topic!r} (import.topics.{mod}) carries {ty}, "
                                   f"expected {' or '.join(ACCEPTED[mod])}")
                if n == 0 and mod in (*REQUIRED, "odometry"):
                    raise BagError("no-messages", src.name, f"topic {topic!r} (import.topics.{mod}) has no messages")
                plan.topics[mod] = (topic, ty, n)
    except BagError as exc:
        plan.error = exc
    return plan
