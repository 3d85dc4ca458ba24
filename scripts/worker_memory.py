"""A Dask worker's resident memory: bare, after the network set-up, and after the warm
reads of every store shard (the figures behind ``cluster.memory_limit``'s floor in
pipeline/config/cluster.py and docs/pipeline.md).

    python scripts/worker_memory.py [--store data/demo.zarr] [--weights data/outputs/weights/<digest>.npz]

Prints MiB per stage for one LocalCluster worker (NumPy backend, the workers' environment).
"""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _rss_mib() -> float:
    import os

    import psutil

    return psutil.Process(os.getpid()).memory_info().rss / 2**20


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=str(REPO / "data" / "demo.zarr"))
    ap.add_argument("--weights", default=None, help="default: the first .npz under data/outputs/weights/")
    a = ap.parse_args(argv)
    from distributed import Client, LocalCluster

    from pipeline.core.cluster import WORKER_ENV
    from pipeline.core.worker_setup import NetworkSetup
    from pipeline.data import open_reader
    from pipeline.loadtest.schedule import shard_warm_requests

    weights = a.weights or sorted(glob.glob(str(REPO / "data" / "outputs" / "weights" / "*.npz")))[0]
    rd = open_reader(a.store)
    recs, starts = shard_warm_requests(rd.n_steps, 10, rd.recording_shard, 100)
    warm = {"recordings": recs, "starts": starts, "steps": 10, "policy": "quarantine", "imu_window": 10,
            "max_age": None}
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      env=WORKER_ENV) as lc, Client(lc) as c:
        print(f"bare worker: {next(iter(c.run(_rss_mib).values())):.0f} MiB")
        c.register_plugin(NetworkSetup("numpy", weights, 1, store=a.store), name="setup-only")
        print(f"after imports, the network set-up and opening the store: {next(iter(c.run(_rss_mib).values())):.0f} MiB")
        c.register_plugin(NetworkSetup("numpy", weights, 1, store=a.store, warm=warm), name="setup-warm")
        print(f"after the warm reads of every shard of {a.store}: {next(iter(c.run(_rss_mib).values())):.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
