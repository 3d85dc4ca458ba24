"""``conf/paths`` and ``conf/data``: where things live, the recording store, its layout and the synthetic generator."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import MISSING

from pipeline.config.validation import require


@dataclass
class PathsConfig:
    """Where things live; all absolute after :meth:`Config.validate`."""

    root_dir: str = MISSING
    data_dir: str = MISSING
    output_dir: str = MISSING

    def validate(self) -> None:
        for key in ("root_dir", "data_dir", "output_dir"):
            setattr(self, key, str(Path(getattr(self, key)).expanduser().resolve()))


@dataclass
class StoreLayout:
    """Zarr chunking of the input arrays: inner chunks inside shards.

    Inner chunks are what a read decodes (a one-recording window reads
    ``chunk_recordings`` rows); shards are the files.  Time sizes are in seconds of
    each modality's nominal rate, so chunks of all modalities cover the same span.
    """

    chunk_recordings: int = 32
    chunk_seconds: float = 1.0
    shard_recordings: int = 64
    shard_seconds: float = 10.0
    compressor: str = "none"  # none | lz4 | zstd

    def validate(self, prefix: str = "data.layout") -> None:
        require(self.chunk_recordings > 0, f"{prefix}.chunk_recordings", "must be > 0", self.chunk_recordings)
        require(self.chunk_seconds > 0, f"{prefix}.chunk_seconds", "must be > 0", self.chunk_seconds)
        require(
            self.shard_recordings > 0 and self.shard_recordings % self.chunk_recordings == 0,
            f"{prefix}.shard_recordings", "must be a positive multiple of chunk_recordings", self.shard_recordings,
        )
        ratio = self.shard_seconds / self.chunk_seconds
        require(ratio >= 1 and abs(ratio - round(ratio)) < 1e-9, f"{prefix}.shard_seconds",
                 "must be a whole multiple of chunk_seconds", self.shard_seconds)
        require(self.compressor in ("none", "lz4", "zstd"), f"{prefix}.compressor",
                 "must be one of none, lz4, zstd", self.compressor)


@dataclass
class SyntheticConfig:
    """The synthetic generator's world, sensors and recording imperfections (SI units)."""

    arena_m: float = 20.0
    obstacles: int = 12
    camera_rate_hz: float = 10.0
    camera_size: int = 32
    camera_fov_deg: float = 90.0
    lidar_rate_hz: float = 10.0
    lidar_beams: int = 360
    lidar_max_range_m: float = 12.0
    lidar_noise_m: float = 0.02
    imu_rate_hz: float = 100.0
    imu_accel_noise: float = 0.05  # m/s^2 per sample
    imu_gyro_noise: float = 0.005  # rad/s per sample
    imu_accel_bias: float = 0.02  # std of the per-recording bias, m/s^2
    imu_gyro_bias: float = 0.002  # std of the per-recording bias, rad/s
    length_jitter: float = 0.3  # recordings last duration_s * U[1 - length_jitter, 1]
    start_offset_s: float = 0.5  # each modality starts U[0, start_offset_s] after t_start
    timestamp_jitter: float = 0.02  # std of timestamp jitter, fraction of the period
    drop_prob: float = 0.01  # per camera frame and LIDAR scan
    imu_drop_prob: float = 0.001
    ahead_distance_m: float = 2.0
    ahead_half_angle_deg: float = 30.0

    def validate(self, prefix: str = "data.synthetic") -> None:
        for key in ("arena_m", "camera_rate_hz", "camera_fov_deg", "lidar_rate_hz", "lidar_max_range_m",
                    "imu_rate_hz", "ahead_distance_m", "ahead_half_angle_deg"):
            require(getattr(self, key) > 0, f"{prefix}.{key}", "must be > 0", getattr(self, key))
        for key in ("camera_size", "lidar_beams"):
            require(getattr(self, key) > 0, f"{prefix}.{key}", "must be > 0", getattr(self, key))
        require(self.obstacles >= 0, f"{prefix}.obstacles", "must be >= 0", self.obstacles)
        require(self.camera_fov_deg < 180, f"{prefix}.camera_fov_deg", "must be < 180", self.camera_fov_deg)
        for key in ("length_jitter", "drop_prob", "imu_drop_prob"):
            v = getattr(self, key)
            require(0 <= v < 1, f"{prefix}.{key}", "must be in [0, 1)", v)
        require(0 <= self.timestamp_jitter <= 0.1, f"{prefix}.timestamp_jitter", "must be in [0, 0.1]",
                 self.timestamp_jitter)
        for key in ("start_offset_s", "lidar_noise_m", "imu_accel_noise", "imu_gyro_noise",
                    "imu_accel_bias", "imu_gyro_bias"):
            require(getattr(self, key) >= 0, f"{prefix}.{key}", "must be >= 0", getattr(self, key))


@dataclass
class MaxAgeConfig:
    """Oldest sample still valid input at a model step, per modality (seconds before the step).

    Camera and LIDAR feed the latest frame/scan at or before each step; one older than its
    maximum age (a sensor outage, or a valid count shorter than the recording) is stale:
    the step gets ``*_valid`` False and zero input, and the read counts it
    (``AlignedBatch.stale_steps``).  IMU windows only ever hold the step's own samples, so
    an IMU step is counted stale (its samples stay valid) when the newest IMU sample at or
    before it is older than ``imu_s``.  ``None``: ``periods`` periods of the store's
    nominal rate attr (``camera_rate_hz`` ...); ``inf`` (``.inf`` in YAML) turns it off.
    """

    periods: float = 3.0
    camera_s: float | None = None
    lidar_s: float | None = None
    imu_s: float | None = None

    def validate(self, prefix: str = "data.max_age") -> None:
        require(self.periods >= 1, f"{prefix}.periods", "must be >= 1 (one period is the normal sample age)",
                self.periods)
        for key in ("camera_s", "lidar_s", "imu_s"):
            v = getattr(self, key)
            require(v is None or v > 0, f"{prefix}.{key}", "must be > 0 seconds, inf (no limit) or null "
                    f"({self.periods:g} nominal periods)", v)


@dataclass
class DataConfig:
    """Recording store: where it is, how it is generated, read and validated.

    ``source`` is ``synthetic`` (``task=generate`` writes the store) or ``zarr`` (a user
    store that follows the schema in docs/data.md).
    """

    source: str = "synthetic"
    path: str = MISSING
    recordings: int = 64
    duration_s: float = 30.0
    seed: int = 0
    model_rate_hz: float = 10.0
    imu_window: int = 10  # IMU samples per model step handed to the network (padded)
    recordings_per_batch: int = 64
    steps_per_block: int = 100
    policy: str = "fail"  # fail | quarantine
    overwrite: bool = False
    workers: int = 0  # generation processes; 0 = all cores
    max_age: MaxAgeConfig = field(default_factory=MaxAgeConfig)  # stale camera/LIDAR/IMU samples
    layout: StoreLayout = field(default_factory=StoreLayout)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def validate(self) -> None:
        require(self.source in ("synthetic", "zarr"), "data.source", "must be synthetic or zarr", self.source)
        require(self.path not in ("", MISSING), "data.path", "must name a store", self.path)
        self.path = str(Path(self.path).expanduser().resolve())
        require(self.recordings > 0, "data.recordings", "must be > 0", self.recordings)
        require(self.duration_s > 0, "data.duration_s", "must be > 0", self.duration_s)
        require(self.seed >= 0, "data.seed", "must be >= 0", self.seed)
        require(self.model_rate_hz > 0, "data.model_rate_hz", "must be > 0", self.model_rate_hz)
        require(self.imu_window > 0, "data.imu_window", "must be > 0", self.imu_window)
        require(self.recordings_per_batch > 0, "data.recordings_per_batch", "must be > 0",
                 self.recordings_per_batch)
        require(self.steps_per_block > 0, "data.steps_per_block", "must be > 0", self.steps_per_block)
        require(self.policy in ("fail", "quarantine"), "data.policy", "must be fail or quarantine", self.policy)
        require(self.workers >= 0, "data.workers", "must be >= 0", self.workers)
        self.max_age.validate()
        self.layout.validate()
        self.synthetic.validate()
