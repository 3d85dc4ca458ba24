"""``task=run``: the batch pipeline, end to end (DESIGN.md, The dataflow).

Plan the store's (recording group x time block) regions, create the output store once,
start the cluster with a worker plugin that loads the weights, run the regions' chains
through Dask (all submitted up front, :mod:`pipeline.batch.chains`), and log the run to
MLflow (only this driver process writes to MLflow).  ``resume=<run>`` re-executes only
regions without a marker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from pipeline.config import Config
from pipeline.data.fingerprint import input_fingerprint


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


FINGERPRINTED_DATA = ("imu_window", "recordings_per_batch", "steps_per_block", "policy", "model_rate_hz")


def fingerprinted(cfg: Config) -> dict[str, object]:
    """The settings behind the ``config`` fingerprint, flat (``{"model.hidden": 64, ...}``):
    ``data.<FINGERPRINTED_DATA>`` and every ``model.*``.  A resume that changes one is refused."""
    out: dict[str, object] = {f"data.{k}": getattr(cfg.data, k) for k in FINGERPRINTED_DATA}
    out |= {f"model.{k}": v for k, v in dataclasses.asdict(cfg.model).items()}
    return out


def fingerprints(cfg: Config, store: Path, weights_digest: str, backend: str) -> dict[str, str]:
    """What the outputs depend on: config that changes numbers, the weights' content, the
    input data and the backend the workers resolve (``auto`` is never compared as a name)."""
    d = cfg.data
    config = {"data": [getattr(d, k) for k in FINGERPRINTED_DATA], "model": dataclasses.asdict(cfg.model)}
    return {"config": _digest(config), "weights": weights_digest[:16], "input": input_fingerprint(store),
            "backend": backend}


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
    """A one-line progress bar on stderr (the dashboard shows the task stream); where
    stderr is not a terminal (a log file, CI), one plain line per 10 % instead of repaints."""

    def __init__(self, total: int) -> None:
        self.total, self.n, self.t0 = total, 0, time.perf_counter()
        self.tty = sys.stderr.isatty()
        self._tenth = 0

    def update(self, seq: float) -> None:
        self.n += 1
        el = time.perf_counter() - self.t0
        rate = f"{el:6.1f}s {seq / max(el, 1e-9):9.0f} seq/s"
        if not self.tty:
            tenth = 10 * self.n // max(self.total, 1)
            if tenth > self._tenth or self.n == self.total:
                self._tenth = tenth
                sys.stderr.write(f"{self.n}/{self.total} regions {rate.strip()}\n")
                sys.stderr.flush()
            return
        width = 30
        filled = int(width * self.n / max(self.total, 1))
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.n}/{self.total} regions {rate}")
        sys.stderr.flush()
        if self.n == self.total:
            sys.stderr.write("\n")


def resume_command(cfg: Config, name: str) -> str:
    """The command that finishes run ``name`` (its settings come from its output store;
    only where the store lies is needed when it is not the default)."""
    from pipeline.config import PROJECT_ROOT

    cmd = f"neuroliquid resume={name}"
    if Path(cfg.paths.output_dir) != PROJECT_ROOT / "data" / "outputs":
        cmd += f" paths.output_dir={cfg.paths.output_dir}"
    return cmd


def run(cfg: Config) -> dict:
    """Run the batch pipeline; returns the summary dict (also logged to MLflow)."""
    from pipeline.batch import markers, outputs
    from pipeline.batch.chains import RegionDeadline, stream_chains
    from pipeline.batch.region import run_region, score_done_region, state_specs
    from pipeline.batch.summary import RunStats, log_run, print_summary
    from pipeline.core import baselines
    from pipeline.core.cluster import check_worker_memory
    from pipeline.core.experiment import cluster_session, prepare, run_name, tracked
    from pipeline.core.pool import PoolSampler
    from pipeline.core.splits import assign_splits, split_members, split_record
    from pipeline.core.tracking import git_commit
    from pipeline.data import MicroBatch
    from pipeline.data.reader import SEQUENTIAL_CACHE_BYTES

    name = run_name(cfg, "run")
    out_dir = Path(cfg.paths.output_dir)
    out_path = out_dir / f"{name}.zarr"
    exp = prepare(cfg, "run", name)
    store, reader, net = exp.store, exp.reader, exp.net
    # Every check first: nothing (weights, output store, MLflow run) is written before they pass.
    if abs(reader.model_rate_hz - cfg.data.model_rate_hz) > 1e-9:
        raise ValueError(f"data.model_rate_hz={cfg.data.model_rate_hz} but the store's targets are on a "
                         f"{reader.model_rate_hz} Hz clock (attrs targets_rate_hz); set "
                         f"data.model_rate_hz={reader.model_rate_hz}")
    if not cfg.resume and out_path.exists():
        raise FileExistsError(f"{out_path} exists: pick another tracking.run_name, or resume={name}")
    pool_max = exp.max_workers
    if cfg.resume and (out_path / "zarr.json").exists():
        rpb = outputs.stored_layout(out_path)["recordings_per_group"]  # the interrupted run's grid
    else:
        rpb = size_groups(cfg.data.recordings_per_batch, reader.recording_chunk, reader.n_recordings, pool_max)
    if rpb != cfg.data.recordings_per_batch:
        n_groups = -(-reader.n_recordings // rpb)
        why = (f"{n_groups} recording groups for {pool_max} worker(s) keep every worker busy to the end"
               if n_groups >= 2 * pool_max else
               f"{n_groups} recording group{'s' if n_groups != 1 else ''} of one input chunk each "
               f"({reader.n_recordings} recordings, chunk {reader.recording_chunk})")
        if cfg.resume:
            why = "the interrupted run's grid"
        print(f"data.recordings_per_batch={cfg.data.recordings_per_batch} -> {rpb}: {why}")
        cfg.data.recordings_per_batch = rpb  # logged and fingerprinted as run
    prints = fingerprints(cfg, store, exp.weights.digest, exp.backend)
    spb = cfg.data.steps_per_block
    n_steps = int(reader.n_steps.max(initial=0))
    layout = outputs.OutputLayout(reader.n_recordings, n_steps, rpb, spb, net.config.n_outputs,
                                  state_specs(net))
    commit = git_commit(Path(cfg.paths.root_dir))
    labels = assign_splits(reader.n_recordings, cfg.eval.fractions, cfg.eval.seed)
    split = split_record(labels, cfg.eval.fractions, cfg.eval.seed)
    scored = split_members(labels, cfg.eval.split)
    has_targets = "targets" in reader.arrays
    base_path = baselines.cache_path(cfg.paths.output_dir, prints["input"], split["digest"], cfg.eval.split,
                                     cfg.trainer.lambdas)
    stale: dict[tuple[int, int], str] = {}  # regions marked done whose chunks are not all there
    if cfg.resume:
        outputs.check_resumable(out_path, prints, fingerprinted(cfg))
        if note := outputs.code_version_note(out_path, commit):
            print(note)
        done = markers.done_regions(out_path)
        stale = markers.verify_done(out_path, done)
        for (g, k), why in sorted(stale.items()):
            print(f"resume: region g{g} b{k} is marked done but {why}: running it again")
            done[g, k] = False
    exp.weights.commit()  # the checks have passed: the first thing this run writes
    if stale:
        markers.clear_done(out_path, sorted(stale))  # a marked region's task would skip
    if not cfg.resume:
        outputs.create(out_path, layout, step_ns=(np.arange(n_steps) + 1) * reader.step_ns,
                       recording_ids=np.arange(reader.n_recordings), fingerprints=prints,
                       # Deterministic: no run name or output path, so a rerun or resumed run
                       # of the same config is identical (the weights path is in MLflow).
                       attrs={"input_store": str(store), "weights_digest": exp.weights.digest,
                              "code_version": commit, "split": json.dumps(split, sort_keys=True)},
                       fingerprinted=fingerprinted(cfg), config=dataclasses.asdict(cfg))
        done = np.zeros((layout.n_groups, layout.n_blocks), bool)
    # Baselines are computed (once per store, split and penalty grid) from the regions a
    # complete run reads anyway; a resumed run uses the cached figures or goes without.
    cached = baselines.load_cached(base_path) if has_targets and cfg.eval.baselines else None
    want_baseline = has_targets and cfg.eval.baselines and cached is None and not done.any()
    chains = []
    for g in range(layout.n_groups):
        rs = layout.recordings(g)
        scoring = {"score": scored[rs], "labels": labels[rs], "baseline": want_baseline} if has_targets else None
        chains.append([
            (f"region-{name}-g{g}-b{k}",
             (MicroBatch(str(store), (rs.start, rs.stop), (k * spb, (k + 1) * spb), k), str(out_path),
              cfg.data.policy, cfg.data.imu_window, g, scoring, cfg.data.max_age))
            for k in range(layout.n_blocks) if not done[g, k]
        ])
    n_todo = sum(map(len, chains))

    stats = RunStats(n_regions=n_todo, n_regions_total=int(done.size), resumed_done=int(done.sum()))
    earlier = outputs.mlflow_runs(out_path) if cfg.resume else []
    with tracked(exp, {"output_store": str(out_path),
                       **({"neuroliquid.resumed_from": earlier[-1]} if earlier else {})}) as tracker:
        outputs.add_mlflow_run(out_path, tracker.run_id)
        if earlier:
            tracker.mark_interrupted(earlier)
        with cluster_session(exp, tracker, shared_paths=[store.parent, out_dir],
                             reader_cache_bytes=SEQUENTIAL_CACHE_BYTES) as session, \
                _on_interrupt(stats, out_path, resume_command(cfg, name)):
            check_worker_memory(session.client)  # a paused worker would hold its regions for ever
            print(f"{n_todo} of {done.size} regions to run")
            sampler = PoolSampler(session.client, session.clock, session.scale_log)
            sampler.sample(force=True)
            progress = _Progress(n_todo)
            t_start = time.perf_counter()
            stats.t_start = session.clock()
            deadline = RegionDeadline(cfg.load.region_timeout_s)
            for c in stream_chains(session.client, chains, run_region, sampler, deadline=deadline):
                stats.add(c, t_start)
                progress.update(stats.sequences)
            stats.wall_s = time.perf_counter() - t_start
            # Regions that missed their deadline and ran again elsewhere (a stalled worker).
            tracker.log_metrics({"regions_deadline_retries": len(deadline.retries)})
            if deadline.retries:
                print(f"{len(deadline.retries)} region(s) missed the {deadline.seconds():.0f} s deadline and ran "
                      f"again on another worker: {[k for k, _, _ in deadline.retries]}")
            if has_targets and done.any():  # regions done before: scored from their stored outputs
                futs = [session.client.submit(score_done_region, str(store), str(out_path),
                                              (layout.recordings(g).start, layout.recordings(g).stop),
                                              (layout.steps(k).start, layout.steps(k).stop),
                                              scored[layout.recordings(g)], pure=False)
                        for g, k in np.argwhere(done).tolist()]
                for r in session.client.gather(futs):
                    stats.add_scores(r)
            sampler.sample(force=True)
            stats.worker_samples = sorted(session.scale_log.samples)
            stats.scale_events = list(session.scale_log.events)
        evaluation = _evaluation(cfg, stats, exp, int(scored.sum()), has_targets, cached, want_baseline, base_path)
        summary = log_run(tracker, cfg, stats, net, exp.weights_path, out_path, evaluation)
        print_summary(summary, tracker, cfg.tracking.uri)
    return summary


@contextlib.contextmanager
def _on_interrupt(stats, out_path: Path, command: str):
    """Ctrl-C or SIGTERM: one short message (regions done of total, where the partial
    output is, the command that finishes the run), then the interrupt goes on up: the
    cluster closes and the MLflow run is marked KILLED."""
    try:
        yield
    except KeyboardInterrupt:
        done = stats.resumed_done + len(stats.keys)
        sys.stderr.write("\n" if sys.stderr.isatty() else "")
        print(f"interrupted: {done} of {stats.n_regions_total} regions done; partial output in {out_path}; "
              f"finish it with: {command}", flush=True)
        raise


def _evaluation(cfg: Config, stats, exp, n_scored: int, has_targets: bool, cached: dict | None,
                computed: bool, cache_file: Path):
    """The run's :class:`pipeline.core.evaluation.Evaluation` (baselines cached when computed)."""
    from kernels.weights import network_info
    from pipeline.core import baselines
    from pipeline.core.evaluation import Evaluation

    trained = bool(network_info(exp.weights_path).get("trainer"))
    if not has_targets:
        return Evaluation(cfg.eval.split, n_scored, trained, skipped=f"{exp.store} holds no targets")
    figures = cached
    if computed and stats.baseline.sums:
        figures = stats.baseline.figures(cfg.trainer.lambdas)
        baselines.save_cached(cache_file, figures)
    if figures is None and cfg.eval.baselines:
        print("baselines: not cached for this store and split, and a resumed run does not read every region: "
              "a complete run computes them")
    return Evaluation(cfg.eval.split, n_scored, trained, stats.evaluation.metrics(), figures or {})
