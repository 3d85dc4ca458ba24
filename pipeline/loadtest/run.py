"""``task=run load=seed_phases``: the seed report's load test -- every phase, the report,
MLflow (the driver, batcher and schedule are their own modules; docs/load.md)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from kernels.params import OpCounts


def run(cfg) -> dict:
    """``task=run`` with ``load=seed_phases``: every phase, the report, MLflow."""
    from pipeline.core.energy import neuromorphic_estimate, phase_energy, read_host_energy
    from pipeline.core.experiment import cluster_session, prepare, run_name, tracked
    from pipeline.core.pool import PoolSampler, n_workers
    from pipeline.loadtest.driver import Completions, roundtrip_floor, run_phase, warm_up
    from pipeline.loadtest.report import (
        ClusterStatus,
        ModelSize,
        PhaseMeta,
        build_report,
        log_report,
    )
    from pipeline.loadtest.schedule import plan_phase, shard_warm_requests

    name = run_name(cfg, "load")
    out_dir = Path(cfg.paths.output_dir) / name
    exp = prepare(cfg, "load", name)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} exists: another run has this name; pick another tracking.run_name")
    store, reader, net = exp.store, exp.reader, exp.net
    L = cfg.load
    shard_recs = reader.recording_shard
    shard_steps = max(1, int(round(cfg.data.layout.shard_seconds * reader.model_rate_hz)))
    rng = np.random.default_rng(L.seed)
    records, metas = [], []
    energy_args = (cfg.energy.rapl_root, cfg.energy.use_nvml, cfg.energy.use_rapl)
    total_ops = OpCounts()
    busy_s = 0.0
    warm_recs, warm_starts = shard_warm_requests(reader.n_steps, L.window_steps, shard_recs, shard_steps)
    warm = {"recordings": warm_recs, "starts": warm_starts, "steps": L.window_steps,
            "policy": cfg.data.policy, "imu_window": cfg.data.imu_window, "max_age": cfg.data.max_age}
    exp.weights.commit()  # after the checks above: nothing is written before they pass
    with tracked(exp, {"scaling": exp.scaling.kind}) as tracker:
        with cluster_session(exp, tracker, shared_paths=[store.parent], wait_for=exp.initial_workers,
                             warm=warm) as session:
            client, clock, scale_log, adaptive = session.client, session.clock, session.scale_log, session.adaptive
            warm_up(client, str(store), cfg, reader.n_steps)
            floor = roundtrip_floor(client)
            # Adaptive pools record their own samples; a fixed pool is sampled here.
            workers_now = PoolSampler(client, clock, scale_log if adaptive is None else None, every_s=0.25).start()
            completions = Completions(clock)
            print(f"phases: {', '.join(f'{p.name} {p.requests}' for p in L.scaled_phases())}")
            for phase in L.scaled_phases():
                before = client.run(read_host_energy, *energy_args)
                reqs = plan_phase(rng, phase.requests, phase.rate_rps, clock() + 0.01, reader.n_steps,
                                  L.window_steps, shard_recs, shard_steps)
                recs, extra = run_phase(client, phase, reqs, cfg, str(store), clock, completions, adaptive,
                                        workers_now)
                after = client.run(read_host_energy, *energy_args)
                done_t = [r.completion_s for r in recs if r.completion_s is not None]
                duration = max(max(done_t, default=0.0) - reqs.arrival_s[0], 1e-6)
                ops = extra["ops"]
                total_ops = total_ops + ops
                busy_s += extra["busy_s"]
                completed = sum(r.ok for r in recs)
                energy = phase_energy(completed, duration, cfg.energy, ops, before, after)
                metas.append(PhaseMeta(phase.name, phase.rate_rps, energy, extra["lag_s"]))
                records.extend(recs)
                print(f"  {phase.name}: {completed}/{len(recs)} ok in {duration:.2f} s")
            workers_now.stop()
            healthy = n_workers(client)
            scale_log.sample(clock(), healthy)
        n_requests = max(len(records), 1)
        n_ok = sum(r.ok for r in records)
        # Capacity: healthy workers / measured worker-seconds per request (read + compute).
        capacity = healthy * n_ok / busy_s if busy_s > 0 else None
        report = build_report(
            records, metas, cfg.slo, scale_log,
            ClusterStatus(workers=healthy, healthy=healthy, capacity_rps=capacity),
            ModelSize(net.n_params, net.mflop_per_sequence(L.window_steps)),
            neuromorphic_estimate(OpCounts(*(int(v / n_requests) for v in total_ops)), cfg.energy),
        )
        report.roundtrip_ms = floor
        text = report.markdown()
        print(text)
        log_report(tracker, report, out_dir / "report")
        # The raw per-request records the report is computed from, so anyone can recompute it.
        tracker.log_artifact_text(json.dumps([dataclasses.asdict(r) for r in records]), "report/requests.json")
        tracker.log_artifact_text(json.dumps({"events": [dataclasses.asdict(e) for e in scale_log.events],
                                              "samples": scale_log.samples, "t_start": report.t_start}),
                                  "report/scale_log.json")
        tracker.log_metrics({"requests_total": len(records), "worker_busy_s": busy_s,
                             "service_ms_per_request": busy_s / max(n_ok, 1) * 1e3})
        print(f"MLflow: run {tracker.run_id} in experiment {tracker.experiment_id}; `make ui` to browse")
    return {"report": report, "run_id": tracker.run_id}
