"""``conf/import``: ROS 1 / ROS 2 bags (sqlite3, MCAP) to a recording store (``task=import``).

The group is ``import`` on the command line (``import.source=...``).  ``import`` is a Python
keyword, so it cannot be written as a dataclass field; :func:`add_keyword_field` adds the
field to :class:`pipeline.config.Config` after the class is made (OmegaConf and Hydra see
an ordinary field; Python code reads it as ``cfg.importer`` or ``getattr(cfg, "import")``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from pipeline.config.validation import require

CLOCKS = ("header", "receive")


@dataclass
class ImportTopics:
    """Topic per modality; ``odometry`` and ``camera_info`` may be null (no targets: the
    store has none; no CameraInfo: ``camera_fov_deg`` is used)."""

    camera: str = "/camera/image_raw"
    lidar: str = "/scan"
    imu: str = "/imu/data"
    odometry: str | None = "/odom"
    camera_info: str | None = None
    tf_static: str = "/tf_static"


@dataclass
class ImportConfig:
    """How bags become recordings and how each message becomes schema data (SI units).

    ``source``: one bag (ROS 1 ``.bag``, a rosbag2 folder, an ``.mcap`` file) or a folder of
    them; every rosbag2 folder, every lone ``.mcap`` and every ROS 1 bag (its split parts
    ``name_0.bag``, ``name_1.bag``... together) is one recording.
    """

    source: str = ""
    topics: ImportTopics = field(default_factory=ImportTopics)
    clock: str = "header"  # header: the messages' header stamps | receive: the bag's receive times
    camera_height: int = 32  # target geometry: y x pixels, LIDAR beams, IMU rate
    camera_width: int = 32
    lidar_beams: int = 360
    imu_rate_hz: float = 100.0
    imu_keep_tolerance: float = 0.02  # an IMU within 2 % of imu_rate_hz keeps its samples as they are
    camera_fov_deg: float = 90.0  # used when no CameraInfo topic is given
    lidar_max_range_m: float | None = None  # null: the largest range_max of the scans
    cloud_z_min_m: float = -0.1  # PointCloud2: points within this height band (sensor frame)
    cloud_z_max_m: float = 0.5
    cloud_max_range_m: float = 30.0
    base_frame: str = "base_link"  # IMU mounting: /tf_static base_frame -> the IMU's frame_id
    imu_rotation_rpy_deg: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # else this
    lidar_yaw_deg: float = 0.0  # LIDAR mounting yaw when /tf_static has no base_frame -> scan frame transform
    ahead_distance_m: float = 2.0  # obstacle-ahead: a return closer than this
    ahead_half_angle_deg: float = 30.0  # within +- this of straight ahead
    max_reorder_s: float = 1.0  # header stamps further back than this: the clock went backwards
    split_gap_s: float | None = None  # split a bag into recordings where no sensor message comes for this long
    workers: int = 0  # conversion processes; 0 = all cores
    slice_min_mb: float | None = 256.0  # a bag of n x this many MB converts as up to n time slices in parallel

    def validate(self, required: bool = False, prefix: str = "import") -> None:
        """Check every value; ``required``: this is ``task=import``, so ``source`` must be set."""
        require(not required or bool(str(self.source).strip()), f"{prefix}.source",
                "must name a bag, an .mcap file or a folder of bags", self.source)
        require(self.clock in CLOCKS, f"{prefix}.clock", f"must be one of {', '.join(CLOCKS)}", self.clock)
        for key in ("camera", "lidar", "imu"):
            v = getattr(self.topics, key)
            require(isinstance(v, str) and v.startswith("/"), f"{prefix}.topics.{key}",
                    "must be a topic name starting with /", v)
        for key in ("odometry", "camera_info", "tf_static"):
            v = getattr(self.topics, key)
            require(v is None or (isinstance(v, str) and v.startswith("/")), f"{prefix}.topics.{key}",
                    "must be null or a topic name starting with /", v)
        for key in ("camera_height", "camera_width", "lidar_beams"):
            require(getattr(self, key) > 0, f"{prefix}.{key}", "must be > 0", getattr(self, key))
        for key in ("imu_rate_hz", "ahead_distance_m", "ahead_half_angle_deg", "max_reorder_s",
                    "cloud_max_range_m"):
            v = getattr(self, key)
            require(v > 0 and math.isfinite(v), f"{prefix}.{key}", "must be > 0 and finite", v)
        require(0 < self.camera_fov_deg < 180, f"{prefix}.camera_fov_deg", "must be in (0, 180)",
                self.camera_fov_deg)
        require(0 <= self.imu_keep_tolerance < 0.5, f"{prefix}.imu_keep_tolerance", "must be in [0, 0.5)",
                self.imu_keep_tolerance)
        require(self.lidar_max_range_m is None or self.lidar_max_range_m > 0, f"{prefix}.lidar_max_range_m",
                "must be null (from the scans) or > 0", self.lidar_max_range_m)
        require(self.cloud_z_min_m < self.cloud_z_max_m, f"{prefix}.cloud_z_max_m",
                f"must be > cloud_z_min_m ({self.cloud_z_min_m})", self.cloud_z_max_m)
        require(len(self.imu_rotation_rpy_deg) == 3 and all(math.isfinite(v) for v in self.imu_rotation_rpy_deg),
                f"{prefix}.imu_rotation_rpy_deg", "must be three finite angles (roll, pitch, yaw in degrees)",
                self.imu_rotation_rpy_deg)
        require(math.isfinite(self.lidar_yaw_deg), f"{prefix}.lidar_yaw_deg", "must be a finite angle in degrees",
                self.lidar_yaw_deg)
        require(self.ahead_half_angle_deg <= 180, f"{prefix}.ahead_half_angle_deg", "must be <= 180",
                self.ahead_half_angle_deg)
        require(self.workers >= 0, f"{prefix}.workers", "must be >= 0", self.workers)
        require(self.slice_min_mb is None or self.slice_min_mb > 0, f"{prefix}.slice_min_mb",
                "must be null (one pass per bag) or > 0 MB", self.slice_min_mb)
        require(self.split_gap_s is None or self.split_gap_s > 0, f"{prefix}.split_gap_s",
                "must be null (one recording per bag) or > 0 seconds", self.split_gap_s)
        require(bool(self.base_frame), f"{prefix}.base_frame", "must name a frame", self.base_frame)


def add_keyword_field(cls: type, name: str, typ: type, alias: str) -> None:
    """Give dataclass ``cls`` a field ``name`` that is a Python keyword (``import``).

    ``dataclass`` cannot generate code for such a field, so the ``Field`` is made on a
    stand-in class and renamed; ``__init__`` accepts it as a keyword argument and
    defaults it to ``typ()``.  OmegaConf sets it after ``__init__`` (``init=False``).
    ``alias``: a read-only property that Python code can spell.
    """
    stand_in = dataclasses.make_dataclass("_StandIn", [(f"{name}_", typ, field(
        default_factory=typ, init=False, repr=False, compare=False))])
    fld = dataclasses.fields(stand_in)[0]
    fld.name, fld.type = name, typ.__name__
    cls.__dataclass_fields__[name] = fld
    cls.__annotations__[name] = typ.__name__
    init = cls.__init__

    def __init__(self, *args, **kwargs):
        value = kwargs.pop(name, None)
        init(self, *args, **kwargs)
        setattr(self, name, value if value is not None else typ())

    __init__.__doc__ = init.__doc__
    cls.__init__ = __init__
    setattr(cls, alias, property(lambda self: getattr(self, name), doc=f"the ``{name}`` group ({typ.__name__})"))
