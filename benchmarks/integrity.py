"""What the integrity checks of issue 10 cost (a report, not a test), ours against ours:

* crc32c checksums: generating a 64 x 20 s store and a cold sweep of ``read_batch`` (a
  fresh reader decodes every shard once) with and without checksums, alternated;
* the stale-sample check: warm ``read_batch`` with the default ``data.max_age`` against
  ``inf`` (no limit), alternated in one process;
* resume: the input fingerprint of a store and ``verify_done`` of an output store (the
  demo store and the newest output of ``make run`` when they exist).

    python benchmarks/integrity.py

Writes benchmarks/results/integrity.json and logs one MLflow run (``neuroliquid-bench``).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO))


def _median_ms(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main() -> int:
    from pipeline.config import DataConfig, MaxAgeConfig
    from pipeline.core.tracking import log_benchmark
    from pipeline.data import MicroBatch, StoreReader, generate_store, read_batch
    from pipeline.data.fingerprint import input_fingerprint

    root = Path(tempfile.mkdtemp(prefix="nl-integrity-"))
    out: dict = {"command": "python benchmarks/integrity.py", "date": time.strftime("%Y-%m-%d"),
                 "load_average_start": os.getloadavg()[0]}
    try:
        gen, cold = {True: [], False: []}, {True: [], False: []}
        for rep in range(3):
            for crc in (True, False):
                cfg = DataConfig(path=str(root / f"s{rep}{int(crc)}.zarr"), recordings=64, duration_s=20.0,
                                 seed=0, workers=1)
                cfg.validate()
                t = time.perf_counter()
                generate_store(cfg, progress=False, checksums=crc)
                gen[crc].append(time.perf_counter() - t)
                rd = StoreReader(cfg.path)
                n = int(rd.n_steps.max())
                t = time.perf_counter()
                for s0 in range(0, n, 10):
                    read_batch(MicroBatch(cfg.path, (0, 64), (s0, s0 + 10), s0 // 10), reader=rd)
                cold[crc].append((time.perf_counter() - t) / -(-n // 10) * 1e3)
        out["checksums"] = {"generate_s": {"crc32c": statistics.median(gen[True]), "none": statistics.median(gen[False])},
                            "cold_read_batch_ms_64x10": {"crc32c": statistics.median(cold[True]),
                                                         "none": statistics.median(cold[False])}}
        store = str(root / "s01.zarr")
        rd = StoreReader(store)
        mb = MicroBatch(store, (0, 64), (0, 100), 0)
        read_batch(mb, reader=rd)  # warm
        ages = {"default": None, "none": MaxAgeConfig(camera_s=float("inf"), lidar_s=float("inf"),
                                                      imu_s=float("inf"))}
        warm = {k: [] for k in ages}
        for _ in range(7):
            for k, age in ages.items():
                warm[k].append(_median_ms(lambda age=age: read_batch(mb, reader=rd, max_age=age), 5))
        out["stale_check"] = {"warm_read_batch_ms_64x100": {k: statistics.median(v) for k, v in warm.items()}}
        demo = REPO / "data" / "demo.zarr"
        if (demo / "zarr.json").exists():
            files = sum(len(f) for _, _, f in os.walk(demo))
            out["resume"] = {"input_fingerprint_ms": _median_ms(lambda: input_fingerprint(demo), 5), "files": files,
                             "store": str(demo)}
            outputs = sorted((REPO / "data" / "outputs").glob("*.zarr"), key=lambda p: p.stat().st_mtime)
            if outputs:
                from pipeline.batch.markers import done_regions, verify_done

                done = done_regions(outputs[-1])
                out["resume"].update({"verify_done_ms": _median_ms(lambda: verify_done(outputs[-1], done), 3),
                                      "regions": int(done.sum()), "output_store": str(outputs[-1])})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out["load_average_end"] = os.getloadavg()[0]
    print(json.dumps(out, indent=1))
    path = REPO / "benchmarks" / "results" / "integrity.json"
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    flat = {"gen_s_crc": out["checksums"]["generate_s"]["crc32c"], "gen_s_none": out["checksums"]["generate_s"]["none"],
            "cold_ms_crc": out["checksums"]["cold_read_batch_ms_64x10"]["crc32c"],
            "cold_ms_none": out["checksums"]["cold_read_batch_ms_64x10"]["none"],
            **{f"warm_ms_{k}": v for k, v in out["stale_check"]["warm_read_batch_ms_64x100"].items()},
            **{k: v for k, v in out.get("resume", {}).items() if isinstance(v, float)}}
    print(f"wrote {path}; mlflow run {log_benchmark('integrity', {'recordings': 64}, flat, path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
