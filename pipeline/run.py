"""``task=run``: the batch pipeline, end to end (DESIGN.md, The dataflow).

Plan the store's (recording group x time block) regions, create the output store once,
start the cluster with a worker plugin that loads the weights, stream the regions'
chains through Dask with a bounded window, and log the run to MLflow (only this driver
process writes to MLflow).  ``resume=<run>`` re-executes only regions without a marker.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from pipeline.config import Config

# Worker processes get one BLAS/OpenMP thread each: the pool, not BLAS, uses the cores.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "OMP_WAIT_POLICY": "PASSIVE", "MLFLOW_ENABLE_TELEMETRY": "false"}


def ensure_store(cfg: Config) -> Path:
    """The input store; the synthetic demo store is generated when it is missing."""
    path = Path(cfg.data.path)
    if not (path / "zarr.json").exists():
        if cfg.data.source != "synthetic":
            raise FileNotFoundError(f"data.path={path}: no zarr store there")
        from pipeline.data.cli import generate

        print(f"generating the synthetic store {path} (first run only)")
        generate(cfg)
    return path


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def fingerprints(cfg: Config, store: Path, weights_sha: str) -> dict[str, str]:
    """What the outputs depend on: config that changes numbers, weights, input store."""
    d = cfg.data
    config = {"data": [d.imu_window, d.recordings_per_batch, d.steps_per_block, d.policy, d.model_rate_hz],
              "model": dataclasses.asdict(cfg.model), "backend": cfg.backend.name}
    meta = {p.relative_to(store).as_posix(): p.read_bytes().decode()
            for p in sorted(store.rglob("zarr.json"))}
    return {"config": _digest(config), "weights": weights_sha[:16], "input": _digest(meta)}


def size_groups(rpb: int, chunk: int, n_recordings: int, workers: int) -> int:
    """Recordings per micro-batch: the configured size, lowered in whole input chunks until
    there are at least two recording groups per worker (chains run in parallel only
    across groups), but never below one chunk.  Micro-batches must align with the chunks."""
    if rpb % chunk and rpb < n_recordings:
        raise ValueError(f"data.recordings_per_batch={rpb} is not a multiple of the store's recording chunk "
                         f"({chunk}); micro-batches must align with chunks")
    while rpb > chunk and -(-n_recordings // rpb) < 2 * workers:
        rpb = max(chunk, (rpb - 1) // chunk * chunk)
    return rpb


class _Progress:
    """A one-line progress bar on stderr (the dashboard shows the task stream)."""

    def __init__(self, total: int) -> None:
        self.total, self.n, self.t0 = total, 0, time.perf_counter()

    def update(self, seq: float) -> None:
        self.n += 1
        el = time.perf_counter() - self.t0
        width = 30
        filled = int(width * self.n / max(self.total, 1))
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.n}/{self.total} regions "
                         f"{el:6.1f}s {seq / max(el, 1e-9):9.0f} seq/s")
        sys.stderr.flush()
        if self.n == self.total:
            sys.stderr.write("\n")


def run(cfg: Config) -> dict:
    """Run the batch pipeline; returns the summary dict (also logged to MLflow)."""
    from pipeline import outputs
    from pipeline.cluster import open_client
    from pipeline.data import MicroBatch, open_reader
    from pipeline.model import Geometry, prepare_weights, sha256_file
    from pipeline.plugins import NetworkSetup, worker_info
    from pipeline.report_run import RunStats, log_run, print_summary
    from pipeline.scaling import ScaleLog, attach_scaling
    from pipeline.scheduler import WorkerSampler, stream_chains
    from pipeline.tasks import BATCH_READER_CACHE, run_region, state_specs
    from pipeline.tracking import tracked_run

    if cfg.load.kind == "seed_phases":
        from pipeline.load import run_load

        return run_load(cfg)
    store = ensure_store(cfg)
    reader = open_reader(store)
    store_rate = float(reader.attrs["targets_rate_hz"])
    if abs(store_rate - cfg.data.model_rate_hz) > 1e-9:
        raise ValueError(f"data.model_rate_hz={cfg.data.model_rate_hz} but the store's targets are on a "
                         f"{store_rate} Hz clock (attrs targets_rate_hz); set data.model_rate_hz={store_rate}")
    run_name = cfg.resume or cfg.tracking.run_name or time.strftime("run-%Y%m%d-%H%M%S")
    out_dir = Path(cfg.paths.output_dir)
    out_path = out_dir / f"{run_name}.zarr"
    geometry = Geometry.of_store(reader, cfg.data.imu_window)
    weights_path, net = prepare_weights(cfg.model, geometry, out_dir / f"{run_name}.weights.npz")
    weights_sha = sha256_file(weights_path)

    from pipeline.cluster import default_workers

    n_workers = cfg.scaling.n_workers or default_workers(cfg.backend.name)
    pool_max = max(n_workers, cfg.scaling.maximum if cfg.scaling.kind != "fixed" else 0)
    if cfg.resume and (out_path / "zarr.json").exists():
        rpb = outputs.stored_layout(out_path)["recordings_per_group"]  # the interrupted run's grid
    else:
        rpb = size_groups(cfg.data.recordings_per_batch, int(reader.arrays["vision"].chunks[0]),
                          reader.n_recordings, pool_max)
    if rpb != cfg.data.recordings_per_batch:
        print(f"data.recordings_per_batch={cfg.data.recordings_per_batch} -> {rpb}: at least two recording "
              f"groups per worker ({pool_max}) keep every worker busy to the end")
        cfg.data.recordings_per_batch = rpb  # logged and fingerprinted as run
    prints = fingerprints(cfg, store, weights_sha)
    spb = cfg.data.steps_per_block
    n_steps = int(reader.meta["n_steps"].max(initial=0))
    layout = outputs.OutputLayout(reader.n_recordings, n_steps, rpb, spb, net.config.n_outputs,
                                  state_specs(net))
    if cfg.resume:
        outputs.check_resumable(out_path, prints)
        done = outputs.done_regions(out_path)
    else:
        if out_path.exists():
            raise FileExistsError(f"{out_path} exists: pick another tracking.run_name, or resume={run_name}")
        outputs.create(out_path, layout, step_ns=(np.arange(n_steps) + 1) * reader.step_ns,
                       recording_ids=np.arange(reader.n_recordings), fingerprints=prints,
                       # Deterministic: no run name or output path, so a rerun or resumed run
                       # of the same config is identical (the weights path is in MLflow).
                       attrs={"input_store": str(store), "weights_sha256": weights_sha})
        done = np.zeros((layout.n_groups, layout.n_blocks), bool)
    chains = []
    for g in range(layout.n_groups):
        rs = layout.recordings(g)
        chains.append([
            (f"region-{run_name}-g{g}-b{k}",
             (MicroBatch(str(store), (rs.start, rs.stop), (k * spb, (k + 1) * spb), k), str(out_path),
              cfg.data.policy, cfg.data.imu_window, g))
            for k in range(layout.n_blocks) if not done[g, k]
        ])
    n_todo = sum(map(len, chains))

    from pipeline.tracking import flatten, git_commit, package_versions

    tags = {"task": "run", "model": cfg.model.kind, "backend.requested": cfg.backend.name,
            "git_commit": git_commit(Path(cfg.paths.root_dir)), "output_store": str(out_path),
            **package_versions()}
    stats = RunStats(n_regions=n_todo, n_regions_total=int(done.size), resumed_done=int(done.sum()))
    with tracked_run(cfg.tracking.uri, cfg.tracking.experiment, run_name, Path(cfg.tracking.artifact_dir),
                     parent_run_id=cfg.tracking.parent_run_id, tags=tags) as tracker:
        tracker.log_params(flatten(dataclasses.asdict(cfg)))
        adaptive_kind = cfg.scaling.kind != "fixed"
        initial = max(1, cfg.scaling.minimum) if adaptive_kind else n_workers
        with open_client(cfg.cluster, n_workers=initial, shared_paths=[store.parent, out_dir],
                         adaptive=adaptive_kind, env=WORKER_ENV) as (client, cluster):
            client.register_plugin(NetworkSetup(cfg.backend.name, str(weights_path), cfg.backend.threads,
                                                 store=str(store),
                                                 malloc=cfg.cluster.malloc, reader_cache_bytes=BATCH_READER_CACHE))
            print(f"dashboard: {client.dashboard_link}")
            scale_log = ScaleLog()
            t0 = time.perf_counter()

            def clock() -> float:
                return time.perf_counter() - t0

            adaptive = None
            if cluster is not None:
                adaptive = attach_scaling(cluster, dataclasses.replace(cfg.scaling, n_workers=n_workers),
                                          scale_log=scale_log, clock=clock)
            client.wait_for_workers(1, timeout=120)
            infos = client.run(worker_info)
            first = next(iter(infos.values()))
            tracker.set_tags({"backend": first["backend"], "device": first["device"],
                              "backend.reason": first["reason"], "workers.initial": len(infos),
                              "worker.malloc": first["malloc"],
                              "worker.setup_s": f"{max(i['setup_s'] for i in infos.values()):.2f}"})
            print(f"backend: {first['backend']} on {first['device']} ({first['reason']}); "
                  f"{len(infos)} worker(s) set up in {max(i['setup_s'] for i in infos.values()):.2f} s "
                  f"(not in the throughput); {n_todo} of {done.size} regions to run")
            sampler = WorkerSampler(client, t0)
            sampler.sample(force=True)
            progress = _Progress(n_todo)
            t_start = time.perf_counter()
            stats.t_start = t_start - t0
            window = 2 * max(n_workers, cfg.scaling.maximum if adaptive is not None else 0)
            for c in stream_chains(client, chains, run_region, window, sampler):
                stats.add(c, t_start)
                progress.update(stats.sequences)
            stats.wall_s = time.perf_counter() - t_start
            sampler.sample(force=True)
            stats.worker_samples = sorted(sampler.samples + list(scale_log.samples))
            stats.scale_events = list(scale_log.events)
            if adaptive is not None:
                adaptive.stop()
        summary = log_run(tracker, cfg, stats, net, weights_path, out_path)
        print_summary(summary, tracker, cfg.tracking.uri)
    return summary
