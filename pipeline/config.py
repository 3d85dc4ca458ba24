"""Typed configuration: dataclass schemas registered with Hydra's ConfigStore.

Each schema is stored under the same group name as its ``conf/`` folder, and each YAML
file there starts with ``defaults: [<schema>]``.  ``__main__`` turns the composed
config into these dataclasses once (``OmegaConf.to_object``), calls :meth:`Config.validate`
(which also makes every path absolute), and nothing below it sees a ``DictConfig``.
Later groups (backend, model, cluster, scaling, load, slo, tracking, experiment) are
added as fields of :class:`Config` with their own schema and ``conf/<group>/``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# ${project_root:} in YAML: the checkout's absolute root, whatever the working directory.
if not OmegaConf.has_resolver("project_root"):
    OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))


class ConfigError(ValueError):
    """A configuration value is out of range; the message names the key."""


def _require(ok: bool, key: str, why: str, value) -> None:
    if not ok:
        raise ConfigError(f"config {key}={value!r}: {why}")


def _no_unknown_keys(node, prefix: str = "") -> None:
    """Hydra's ``+key=value`` adds keys a schema lacks and ``OmegaConf.to_object`` keeps
    them as stray attributes, so ``+model.hiden=3`` would be silently ignored: refuse it."""
    if is_dataclass(node):
        known = {f.name for f in fields(node)}
        extra = sorted(set(vars(node)) - known)
        if extra:
            key = f"{prefix}{extra[0]}"
            raise ConfigError(f"config {key}={getattr(node, extra[0])!r}: no such key in "
                              f"{type(node).__name__} (known: {', '.join(sorted(known))})")
        for name in known:
            _no_unknown_keys(getattr(node, name), f"{prefix}{name}.")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _no_unknown_keys(item, f"{prefix[:-1]}[{i}].")


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
        _require(self.chunk_recordings > 0, f"{prefix}.chunk_recordings", "must be > 0", self.chunk_recordings)
        _require(self.chunk_seconds > 0, f"{prefix}.chunk_seconds", "must be > 0", self.chunk_seconds)
        _require(
            self.shard_recordings > 0 and self.shard_recordings % self.chunk_recordings == 0,
            f"{prefix}.shard_recordings", "must be a positive multiple of chunk_recordings", self.shard_recordings,
        )
        ratio = self.shard_seconds / self.chunk_seconds
        _require(ratio >= 1 and abs(ratio - round(ratio)) < 1e-9, f"{prefix}.shard_seconds",
                 "must be a whole multiple of chunk_seconds", self.shard_seconds)
        _require(self.compressor in ("none", "lz4", "zstd"), f"{prefix}.compressor",
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
            _require(getattr(self, key) > 0, f"{prefix}.{key}", "must be > 0", getattr(self, key))
        for key in ("camera_size", "lidar_beams"):
            _require(getattr(self, key) > 0, f"{prefix}.{key}", "must be > 0", getattr(self, key))
        _require(self.obstacles >= 0, f"{prefix}.obstacles", "must be >= 0", self.obstacles)
        _require(self.camera_fov_deg < 180, f"{prefix}.camera_fov_deg", "must be < 180", self.camera_fov_deg)
        for key in ("length_jitter", "drop_prob", "imu_drop_prob"):
            v = getattr(self, key)
            _require(0 <= v < 1, f"{prefix}.{key}", "must be in [0, 1)", v)
        _require(0 <= self.timestamp_jitter <= 0.1, f"{prefix}.timestamp_jitter", "must be in [0, 0.1]",
                 self.timestamp_jitter)
        for key in ("start_offset_s", "lidar_noise_m", "imu_accel_noise", "imu_gyro_noise",
                    "imu_accel_bias", "imu_gyro_bias"):
            _require(getattr(self, key) >= 0, f"{prefix}.{key}", "must be >= 0", getattr(self, key))


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
    layout: StoreLayout = field(default_factory=StoreLayout)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def validate(self) -> None:
        _require(self.source in ("synthetic", "zarr"), "data.source", "must be synthetic or zarr", self.source)
        _require(self.path not in ("", MISSING), "data.path", "must name a store", self.path)
        self.path = str(Path(self.path).expanduser().resolve())
        _require(self.recordings > 0, "data.recordings", "must be > 0", self.recordings)
        _require(self.duration_s > 0, "data.duration_s", "must be > 0", self.duration_s)
        _require(self.seed >= 0, "data.seed", "must be >= 0", self.seed)
        _require(self.model_rate_hz > 0, "data.model_rate_hz", "must be > 0", self.model_rate_hz)
        _require(self.imu_window > 0, "data.imu_window", "must be > 0", self.imu_window)
        _require(self.recordings_per_batch > 0, "data.recordings_per_batch", "must be > 0",
                 self.recordings_per_batch)
        _require(self.steps_per_block > 0, "data.steps_per_block", "must be > 0", self.steps_per_block)
        _require(self.policy in ("fail", "quarantine"), "data.policy", "must be fail or quarantine", self.policy)
        _require(self.workers >= 0, "data.workers", "must be >= 0", self.workers)
        self.layout.validate()
        self.synthetic.validate()


@dataclass
class BackendConfig:
    """``auto`` picks CuPy when it imports and a GPU is visible, else NumPy, and says why."""

    name: str = "auto"  # auto | numpy | cupy
    threads: int = 1  # NumPy threads per worker; the pool, not BLAS, uses the cores

    def validate(self) -> None:
        _require(self.name in ("auto", "numpy", "cupy"), "backend.name", "must be auto, numpy or cupy", self.name)
        _require(self.threads >= 1, "backend.threads", "must be >= 1", self.threads)


@dataclass
class ModelConfig:
    """The network (DESIGN.md): encoders -> liquid layer -> LIF -> readout.

    ``kind``: fusion (CfC + LIF), cfc, ltc (LTC + LIF-free), lif (spiking only).
    ``weights``: a .npz / .safetensors file to load instead of the seeded init.
    """

    kind: str = "fusion"  # fusion | cfc | ltc | lif
    hidden: int = 128
    lif_units: int = 128
    backbone_units: int = 128
    backbone_layers: int = 1
    mode: str = "default"  # CfC: default | pure | no_gate
    activation: str = "lecun_tanh"
    ode_unfolds: int = 6
    beta: float = 0.9
    threshold: float = 1.0
    reset_mechanism: str = "subtract"
    seed: int = 0
    weights: str | None = None
    dtype: str = "float32"

    def validate(self) -> None:
        _require(self.kind in ("fusion", "cfc", "ltc", "lif"), "model.kind", "must be fusion, cfc, ltc or lif", self.kind)
        for key in ("hidden", "lif_units", "backbone_units", "ode_unfolds"):
            _require(getattr(self, key) > 0, f"model.{key}", "must be > 0", getattr(self, key))
        _require(self.backbone_layers >= 0, "model.backbone_layers", "must be >= 0", self.backbone_layers)
        _require(self.mode in ("default", "pure", "no_gate"), "model.mode", "must be default, pure or no_gate", self.mode)
        _require(self.activation in ("lecun_tanh", "tanh", "relu", "silu", "gelu"), "model.activation",
                 "must be lecun_tanh, tanh, relu, silu or gelu", self.activation)
        _require(0.0 <= self.beta <= 1.0, "model.beta", "must be in [0, 1]", self.beta)
        _require(self.threshold > 0, "model.threshold", "must be > 0", self.threshold)
        _require(self.reset_mechanism in ("subtract", "zero", "none"), "model.reset_mechanism",
                 "must be subtract, zero or none", self.reset_mechanism)
        _require(self.dtype in ("float32", "float64"), "model.dtype", "must be float32 or float64", self.dtype)
        if self.weights:
            p = Path(self.weights).expanduser().resolve()
            _require(p.suffix in (".npz", ".safetensors"), "model.weights", "must be a .npz or .safetensors file", self.weights)
            _require(p.is_file(), "model.weights", "file not found", str(p))
            self.weights = str(p)


@dataclass
class ClusterConfig:
    """``local`` LocalCluster, ``local_cuda`` dask-cuda, ``address`` an existing scheduler."""

    kind: str = "local"  # local | local_cuda | address
    threads_per_worker: int = 1
    host: str = "127.0.0.1"
    dashboard_address: str = "127.0.0.1:8787"
    memory_limit: str = "auto"
    address: str | None = None
    connect_timeout_s: float = 30.0
    # glibc malloc in every worker (docs/pipeline.md, "Worker memory allocator"): blocks
    # from mmap_threshold up get their own mmap, freed heap above trim_threshold goes back
    # to the OS, and arena_max=1 keeps the task thread on the main heap (a thread arena's
    # heaps are unmapped when they empty, so each micro-batch's temporaries faulted in
    # afresh: ~4,300 page faults and 1.3-1.6x the forward time per region).  Local
    # clusters get them as the workers' environment at spawn; other workers through
    # mallopt at setup.  0 leaves a setting alone.
    malloc_mmap_threshold_mib: int = 32
    malloc_trim_threshold_mib: int = 128
    malloc_arena_max: int = 1

    @property
    def malloc(self) -> tuple[int, int, int]:
        """(mmap threshold MiB, trim threshold MiB, arena max) for :mod:`pipeline.plugins`."""
        return self.malloc_mmap_threshold_mib, self.malloc_trim_threshold_mib, self.malloc_arena_max

    def validate(self) -> None:
        _require(0 <= self.malloc_mmap_threshold_mib <= 32, "cluster.malloc_mmap_threshold_mib",
                 "must be 0 (leave alone) to 32 (glibc's maximum)", self.malloc_mmap_threshold_mib)
        _require(self.malloc_trim_threshold_mib >= 0, "cluster.malloc_trim_threshold_mib", "must be >= 0",
                 self.malloc_trim_threshold_mib)
        _require(self.malloc_arena_max >= 0, "cluster.malloc_arena_max", "must be >= 0 (0: leave alone)",
                 self.malloc_arena_max)
        _require(self.kind in ("local", "local_cuda", "address"), "cluster.kind",
                 "must be local, local_cuda or address", self.kind)
        _require(self.threads_per_worker >= 1, "cluster.threads_per_worker", "must be >= 1", self.threads_per_worker)
        _require(self.kind != "address" or bool(self.address), "cluster.address",
                 "cluster=address needs cluster.address=tcp://host:port", self.address)
        _require(self.connect_timeout_s > 0, "cluster.connect_timeout_s", "must be > 0", self.connect_timeout_s)


@dataclass
class TrackingConfig:
    """MLflow: SQLite store (absolute path) and artifacts under mlruns/."""

    uri: str = MISSING
    artifact_dir: str = MISSING
    experiment: str = "neuroliquid"
    run_name: str | None = None
    parent_run_id: str | None = None

    def validate(self) -> None:
        _require(self.uri.startswith(("sqlite:///", "http://", "https://", "postgresql", "mysql")),
                 "tracking.uri", "must be a database or server URI (MLflow 3 refuses plain file stores)", self.uri)
        self.artifact_dir = str(Path(self.artifact_dir).expanduser().resolve())
        _require(bool(self.experiment), "tracking.experiment", "must not be empty", self.experiment)


SCALING_KINDS = ("fixed", "adaptive", "predictive")
LOAD_KINDS = ("batch", "seed_phases")


@dataclass
class ScalingConfig:
    """The worker pool.  ``fixed``: ``n_workers``.  ``adaptive``: Dask's ``Adaptive``
    (``minimum``, ``maximum``, ``interval_s``, ``wait_count``, ``target_duration_s``).
    ``predictive``: :class:`pipeline.scaling.PredictiveAdaptive`, target
    ``ceil(forecast_rate(t + forecast_horizon_s) * service_s / target_utilisation)``,
    forecast by Holt's linear method over ``bin_s`` bins of observed arrivals.
    """

    kind: str = "fixed"
    n_workers: int = 0  # fixed: 0 = one worker per core (NumPy) or per GPU (CuPy)
    minimum: int = 1
    maximum: int = 2
    interval_s: float = 1.0
    wait_count: int = 3
    target_duration_s: float = 5.0  # adaptive only: Dask's wanted time to drain the queue
    target_utilisation: float = 0.7  # predictive: wanted busy fraction of each worker
    forecast_horizon_s: float = 5.0  # about the worker start-up time plus one interval
    bin_s: float = 1.0  # arrival-rate bins for the forecast
    holt_alpha: float = 0.3  # level smoothing, (0, 1]
    holt_beta: float = 0.1  # trend smoothing, [0, 1]
    tolerance: float = 0.2  # scale up only when forecast utilisation > target * (1 + tolerance)
    cooldown_up_s: float = 2.0  # no scale-up sooner than this after any scale event
    cooldown_down_s: float = 15.0  # scale down to the largest need seen over this window
    startup_timeout_s: float = 60.0  # a requested worker not seen by then counts as lost
    initial_service_s: float = 0.01  # per-request service time until one is measured

    def validate(self, prefix: str = "scaling") -> None:
        _require(self.kind in SCALING_KINDS, f"{prefix}.kind", f"must be one of {', '.join(SCALING_KINDS)}",
                 self.kind)
        _require(self.n_workers >= 0, f"{prefix}.n_workers", "must be >= 0 (0: one per core, or per GPU)",
                 self.n_workers)
        _require(self.minimum >= 0, f"{prefix}.minimum", "must be >= 0", self.minimum)
        _require(self.maximum >= max(1, self.minimum), f"{prefix}.maximum", "must be >= max(1, minimum)",
                 self.maximum)
        _require(self.interval_s > 0, f"{prefix}.interval_s", "must be > 0", self.interval_s)
        _require(self.wait_count >= 1, f"{prefix}.wait_count", "must be >= 1", self.wait_count)
        _require(self.target_duration_s > 0, f"{prefix}.target_duration_s", "must be > 0",
                 self.target_duration_s)
        _require(0 < self.target_utilisation <= 1, f"{prefix}.target_utilisation", "must be in (0, 1]",
                 self.target_utilisation)
        _require(self.forecast_horizon_s >= 0, f"{prefix}.forecast_horizon_s", "must be >= 0",
                 self.forecast_horizon_s)
        _require(self.bin_s > 0, f"{prefix}.bin_s", "must be > 0", self.bin_s)
        _require(0 < self.holt_alpha <= 1, f"{prefix}.holt_alpha", "must be in (0, 1]", self.holt_alpha)
        _require(0 <= self.holt_beta <= 1, f"{prefix}.holt_beta", "must be in [0, 1]", self.holt_beta)
        _require(0 <= self.tolerance < 1, f"{prefix}.tolerance", "must be in [0, 1)", self.tolerance)
        for key in ("cooldown_up_s", "cooldown_down_s"):
            _require(getattr(self, key) >= 0, f"{prefix}.{key}", "must be >= 0", getattr(self, key))
        _require(self.startup_timeout_s > 0, f"{prefix}.startup_timeout_s", "must be > 0",
                 self.startup_timeout_s)
        _require(self.initial_service_s > 0, f"{prefix}.initial_service_s", "must be > 0",
                 self.initial_service_s)


@dataclass
class SloConfig:
    """Service-level objectives; defaults are the seed report's (p99 <= 3 ms,
    throughput >= 5,000 requests/s, availability >= 99.9 %)."""

    p99_ms: float = 3.0
    throughput_rps: float = 5000.0
    availability_pct: float = 99.9

    def validate(self, prefix: str = "slo") -> None:
        for key in ("p99_ms", "throughput_rps", "availability_pct"):
            v = getattr(self, key)
            _require(isinstance(v, int | float) and math.isfinite(v) and v >= 0, f"{prefix}.{key}",
                     "must be a finite number >= 0", v)
        _require(self.p99_ms > 0, f"{prefix}.p99_ms", "must be > 0 (a latency bound)", self.p99_ms)
        _require(self.availability_pct <= 100, f"{prefix}.availability_pct",
                 "is a percentage of requests and cannot exceed 100", self.availability_pct)


@dataclass
class EnergyConfig:
    """Per-operation energies for the modelled estimate, with their sources, and where
    the measured counters are.  The model prices compute only (no memory traffic, idle
    or host power), so a modelled figure is a lower bound; no watts come from it."""

    pj_per_mac: float = 4.6  # 32-bit float multiply 3.7 pJ + add 0.9 pJ
    pj_per_acc: float = 0.9  # one 32-bit float add per synaptic event
    pj_per_nonlin: float = 0.0
    mac_source: str = ("Horowitz, 'Computing's energy problem', ISSCC 2014, 45 nm: "
                       "fp32 mult 3.7 pJ + fp32 add 0.9 pJ")
    acc_source: str = "Horowitz, ISSCC 2014, 45 nm: fp32 add 0.9 pJ"
    nonlin_source: str = ("not priced: the cited table has no figure for exp/tanh/erf; "
                          "counted but left at 0 pJ so the estimate stays a lower bound")
    rapl_root: str = "/sys/class/powercap"
    use_nvml: bool = True
    use_rapl: bool = True

    def validate(self, prefix: str = "energy") -> None:
        for key in ("pj_per_mac", "pj_per_acc", "pj_per_nonlin"):
            v = getattr(self, key)
            _require(math.isfinite(v) and v >= 0, f"{prefix}.{key}", "must be a finite energy >= 0 pJ", v)
        for key in ("mac_source", "acc_source", "nonlin_source"):
            _require(bool(str(getattr(self, key)).strip()), f"{prefix}.{key}",
                     "must cite where the per-operation energy comes from", getattr(self, key))


@dataclass
class LoadPhase:
    """``requests`` requests offered at ``rate_rps`` per second (``None``: all at once)."""

    name: str = "phase"
    requests: int = 100
    rate_rps: float | None = None

    def validate(self, prefix: str = "load.phases[]") -> None:
        _require(bool(self.name.strip()), f"{prefix}.name", "must not be empty", self.name)
        _require(self.requests >= 1, f"{prefix}.requests", "must be >= 1", self.requests)
        _require(self.rate_rps is None or (math.isfinite(self.rate_rps) and self.rate_rps > 0),
                 f"{prefix}.rate_rps", "must be > 0 requests/s, or null for unlimited", self.rate_rps)


@dataclass
class LoadConfig:
    """How work is released.  ``batch``: every micro-batch at once, state carried across
    time blocks.  ``seed_phases``: open-loop phases of independent requests (one window of
    ``window_steps`` model steps of one recording from zero state), grouped by a
    micro-batcher of at most ``max_batch`` requests waiting at most ``max_wait_ms``."""

    kind: str = "batch"
    phases: list[LoadPhase] = field(default_factory=list)
    scale: float = 1.0  # multiplies every phase's request count
    max_batch: int = 128
    max_wait_ms: float = 5.0
    window_steps: int = 10
    prefer_shard: bool = True  # batch requests that share a store shard first
    request_timeout_s: float = 60.0  # a request not done by then counts as failed
    seed: int = 0  # which recording and window each request reads

    def validate(self, prefix: str = "load") -> None:
        _require(self.kind in LOAD_KINDS, f"{prefix}.kind", f"must be one of {', '.join(LOAD_KINDS)}", self.kind)
        _require(self.kind == "batch" or len(self.phases) > 0, f"{prefix}.phases",
                 "must list at least one phase for a load test", self.phases)
        names = [p.name for p in self.phases]
        _require(len(set(names)) == len(names), f"{prefix}.phases", "phase names must be unique", names)
        for i, p in enumerate(self.phases):
            p.validate(f"{prefix}.phases[{i}]")
        _require(math.isfinite(self.scale) and self.scale > 0, f"{prefix}.scale", "must be > 0", self.scale)
        _require(self.max_batch >= 1, f"{prefix}.max_batch", "must be >= 1", self.max_batch)
        _require(self.max_wait_ms >= 0, f"{prefix}.max_wait_ms", "must be >= 0", self.max_wait_ms)
        _require(self.window_steps >= 1, f"{prefix}.window_steps", "must be >= 1", self.window_steps)
        _require(self.request_timeout_s > 0, f"{prefix}.request_timeout_s", "must be > 0",
                 self.request_timeout_s)
        _require(self.seed >= 0, f"{prefix}.seed", "must be >= 0", self.seed)

    def scaled_phases(self) -> list[LoadPhase]:
        """The phases with ``requests`` multiplied by ``scale`` (rounded, at least 1)."""
        return [LoadPhase(p.name, max(1, round(p.requests * self.scale)), p.rate_rps) for p in self.phases]


@dataclass
class Config:
    """The whole app.  ``task`` picks a function from ``pipeline.__main__.TASKS``.

    ``resume``: the run name of an interrupted ``task=run`` to finish (its output store
    must have been written with the same config, weights and input store).
    """

    task: str = "run"
    resume: str | None = None
    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    load: LoadConfig = field(default_factory=LoadConfig)
    slo: SloConfig = field(default_factory=SloConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def validate(self, tasks) -> Config:
        _no_unknown_keys(self)
        _require(self.task in tasks, "task", f"must be one of {', '.join(sorted(tasks))}", self.task)
        self.paths.validate()
        self.data.validate()
        for group in (self.backend, self.model, self.cluster, self.scaling, self.load, self.slo,
                      self.energy, self.tracking):
            group.validate()
        _require(not (self.cluster.kind == "address" and self.scaling.kind != "fixed"), "scaling.kind",
                 "adaptive and predictive scaling need a cluster the client can resize; with "
                 "cluster=address the deployment owns the pool (use scaling=fixed)", self.scaling.kind)
        _require(self.resume is None or bool(str(self.resume).strip()), "resume", "must name a run", self.resume)
        return self


def register_configs() -> None:
    """Store the schemas under their group names (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for group, node in (("paths", PathsConfig), ("data", DataConfig), ("backend", BackendConfig),
                        ("model", ModelConfig), ("cluster", ClusterConfig), ("scaling", ScalingConfig),
                        ("load", LoadConfig), ("slo", SloConfig), ("energy", EnergyConfig),
                        ("tracking", TrackingConfig)):
        cs.store(group=group, name=f"{group}_schema", node=node)


register_configs()
