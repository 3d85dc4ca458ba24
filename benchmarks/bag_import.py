"""Bag import benchmark (issue 15): ``task=import`` MB/s against ``rosbags``' own
read-and-deserialize rate of the same bag, and the peak memory of the whole import.

Workload: one rosbag2 bag (MCAP storage, written here with ``rosbags``; page-cached, as
just written) of raw ``sensor_msgs/Image`` (640 x 480 rgb8, 10 Hz), ``LaserScan`` (720 beams
from -pi, 10 Hz) and ``Imu`` (400 Hz), ``--gb`` GB in all, imported with
``import.workers=0`` (all cores: time slices on the cores idle at the start) and, for
comparison, ``1`` (one pass).  Targets: import >= 0.5 x the rosbags rate, both measured
inside a running Python process with their modules imported (rosbags: ``AnyReader`` over
every message, deserialized; ours: ``import_bags``, everything from finding the bags to the
written store); the whole-process rate, with the interpreter's start and imports (~1 s),
is reported beside it.  Peak memory (RSS of the import process and its children, summed,
sampled every 20 ms) <= 2 shards + 300 MiB whatever the bag's size.

Run alone (``python benchmarks/bag_import.py --gb 1 4``) or from ``benchmarks/data.py
--import-gb 1 4`` (off by default in ``make bench``: it writes 5 GB of bags to /tmp).  Writes benchmarks/results/data_import.json when run alone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
T0 = 1_700_000_000 * 1_000_000_000

_IMPORT = """
import sys, json
from pipeline.config import DataConfig, ImportConfig, ImportTopics
from pipeline.data.importer import import_bags
d = DataConfig(source="zarr", path=sys.argv[2]); d.validate()
icfg = ImportConfig(source=sys.argv[1], topics=ImportTopics(odometry=None), workers=int(sys.argv[3]))
info = import_bags(icfg, d, progress=False)
info.pop("table"); print(json.dumps(info))
"""


def write_bag(path: Path, gb: float) -> int:
    """Write the workload bag; returns its size in bytes."""
    import numpy as np
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    T = ts.types

    def header(t, frame):
        return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9),
                                        frame_id=frame)

    frames = max(1, int(gb * 1e9 / (640 * 480 * 3 + 3500 + 40 * 330)))
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (480, 640, 3), np.uint8).reshape(-1)
    cov, q = np.zeros(9), T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)
    vec = T["geometry_msgs/msg/Vector3"]
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        c_cam = w.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        c_lid = w.add_connection("/scan", "sensor_msgs/msg/LaserScan", typestore=ts)
        c_imu = w.add_connection("/imu/data", "sensor_msgs/msg/Imu", typestore=ts)
        for k in range(frames):
            t = T0 + k * 100_000_000
            im = T["sensor_msgs/msg/Image"](header=header(t, "camera"), height=480, width=640, encoding="rgb8",
                                            is_bigendian=0, step=1920, data=img)
            w.write(c_cam, t, ts.serialize_cdr(im, "sensor_msgs/msg/Image"))
            scan = T["sensor_msgs/msg/LaserScan"](
                header=header(t, "laser"), angle_min=-math.pi, angle_max=math.pi - 2 * math.pi / 720,
                angle_increment=2 * math.pi / 720, time_increment=0.0, scan_time=0.1, range_min=0.1,
                range_max=30.0, ranges=rng.uniform(0.2, 29, 720).astype(np.float32),
                intensities=np.zeros(0, np.float32))
            w.write(c_lid, t, ts.serialize_cdr(scan, "sensor_msgs/msg/LaserScan"))
            for i in range(40):
                ti = t + i * 2_500_000
                m = T["sensor_msgs/msg/Imu"](header=header(ti, "base_link"), orientation=q, orientation_covariance=cov,
                                             angular_velocity=vec(x=0.0, y=0.0, z=0.1), angular_velocity_covariance=cov,
                                             linear_acceleration=vec(x=0.1 * i, y=0.0, z=9.8),
                                             linear_acceleration_covariance=cov)
                w.write(c_imu, ti, ts.serialize_cdr(m, "sensor_msgs/msg/Imu"))
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def read_rate(path: Path) -> float:
    """rosbags' own rate over the bag: read and deserialize every message (s)."""
    from rosbags.highlevel import AnyReader

    t0 = time.perf_counter()
    with AnyReader([path]) as r:
        for conn, _, raw in r.messages():
            r.deserialize(raw, conn.msgtype)
    return time.perf_counter() - t0


def import_run(bag: Path, out: Path, workers: int) -> tuple[dict, float, int]:
    """Import in a child process; (its summary, wall s, peak summed RSS bytes of it and its children)."""
    import psutil

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _IMPORT, str(bag), str(out), str(workers)], env=env,
                            stdout=subprocess.PIPE, text=True)
    p, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(peak, sum(x.memory_info().rss for x in [p, *p.children(recursive=True)]))
        except psutil.Error:
            pass
        time.sleep(0.02)
    seconds = time.perf_counter() - t0
    out_text = proc.stdout.read()
    if proc.returncode:
        raise RuntimeError(f"import failed ({proc.returncode}): {out_text}")
    return json.loads(out_text.strip().splitlines()[-1]), seconds, peak


def bench_import(gbs: list[float], workers: int = 0, one_process: bool = True) -> list[dict]:
    """One row per bag size: sizes, both rates, their ratio, peak memory against its target
    (``one_process``: also the import with ``import.workers=1``, one pass, for comparison)."""
    rows = []
    for gb in gbs:
        tmp = Path(tempfile.mkdtemp(prefix="neuroliquid-bag-"))
        try:
            t0 = time.perf_counter()
            size = write_bag(tmp / "bag", gb)
            write_s = time.perf_counter() - t0
            load = os.getloadavg()
            read_s = read_rate(tmp / "bag")
            info, wall, peak = import_run(tmp / "bag", tmp / "out.zarr", workers)
            shard = max(f.stat().st_size for f in (tmp / "out.zarr").rglob("*") if f.is_file() and f.name != "zarr.json")
            one_wall = None
            if one_process:
                shutil.rmtree(tmp / "out.zarr")
                one_wall = import_run(tmp / "bag", tmp / "out.zarr", 1)[1]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        target = 2 * shard + 300 * 2**20
        row = {"gb": gb, "bag_bytes": size, "write_s": write_s, "rosbags_read_mb_s": size / 1e6 / read_s,
               "import_mb_s": size / 1e6 / wall, "import_in_process_mb_s": info["mb_per_s"], "import_wall_s": wall,
               # like for like: both rates inside a running Python process, their modules imported
               "ratio": info["mb_per_s"] / (size / 1e6 / read_s), "ratio_whole_process": read_s / wall, "peak_rss_mib": peak / 2**20, "largest_shard_mib": shard / 2**20,
               "peak_target_mib": target / 2**20, "workers": workers, "load_average_before": load,
               "processes": info.get("processes"), "idle_cores_at_start": info.get("idle_cores"),
               "one_process_import_mb_s": None if one_wall is None else size / 1e6 / one_wall}
        print(f"import {size / 1e9:5.2f} GB bag: {info['mb_per_s']:7.1f} MB/s in import_bags vs rosbags "
              f"read+deserialize {row['rosbags_read_mb_s']:7.1f} MB/s (both inside a running process) -> "
              f"{row['ratio']:.2f} ({'meets' if row['ratio'] >= 0.5 else 'MISSES'} 0.5); whole process with Python's "
              f"start and imports {row['import_mb_s']:.1f} MB/s ({row['ratio_whole_process']:.2f}); peak RSS "
              f"{row['peak_rss_mib']:.0f} MiB ({'meets' if peak <= target else 'MISSES'} <= 2 shards + 300 MiB = "
              f"{row['peak_target_mib']:.0f} MiB); load average before {load[0]:.2f}; conversion processes "
              f"{info.get('processes')} ({info.get('idle_cores')} cores idle at the start)"
              + ("" if one_wall is None else f"; workers=1: {row['one_process_import_mb_s']:.1f} MB/s"))
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, nargs="+", default=[1.0, 4.0])
    ap.add_argument("--workers", type=int, default=0, help="import.workers (0: all cores, the idle ones)")
    ap.add_argument("--no-one-process", action="store_true", help="skip the workers=1 comparison import")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "data_import.json")
    a = ap.parse_args(argv)
    rows = bench_import(a.gb, a.workers, not a.no_one_process)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"import": rows, "load_average": os.getloadavg(), "cores": os.cpu_count()}, indent=2))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
