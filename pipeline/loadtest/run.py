"""``task=run load=seed_phases``: the seed report's load test -- every phase, the report,
MLflow (the driver, batcher and schedule are their own modules; docs/load.md)."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from kernels.params import OpCounts


def run(cfg) -> dict:
    """``task=run`` with ``load=seed_phases``: every phase, the report, MLflow."""
    from pipeline.core.cluster import check_worker_memory
    from pipeline.core.energy import neuromorphic_estimate, phase_energy, read_host_energy
    from pipeline.core.experiment import cluster_session, prepare, run_name, tracked
    from pipeline.core.pool import PoolSampler, ScaleLog
    from pipeline.loadtest.batcher import inflight_cap
    from pipeline.loadtest.driver import (
        Completions,
        default_inflight_timeout,
        records_of,
        roundtrip_floor,
        run_schedule,
        warm_service_s,
        warm_up,
    )
    from pipeline.loadtest.report import (
        ClusterStatus,
        ModelSize,
        PhaseMeta,
        build_report,
        log_report,
        workers_lost,
    )
    from pipeline.loadtest.schedule import plan_schedule, shard_warm_requests
    from pipeline.loadtest.supervise import Beside, Supervisor

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
            check_worker_memory(client)  # a paused worker would hold every request for ever
            warm_up(client, str(store), cfg, reader.n_steps)
            floor = roundtrip_floor(client)
            if L.inflight_timeout_s is not None:
                inflight_s, why = L.inflight_timeout_s, "load.inflight_timeout_s"
            else:
                service = warm_service_s(client, str(store), cfg, reader.n_steps)
                cap = inflight_cap(cfg.scaling, exp.max_workers)
                inflight_s = default_inflight_timeout(service, cap)
                why = (f"10 x {cap} batches in flight x {service * 1e3:.0f} ms measured per full batch, "
                       "at least 2 s")
            print(f"deadlines: {L.request_timeout_s:g} s from arrival, {inflight_s:.2f} s in flight ({why})")
            tracker.set_tags({"load.inflight_timeout_s": f"{inflight_s:.3f}", "load.inflight_timeout.source": why})
            # Adaptive pools record their own samples; a fixed pool is sampled here.
            workers_now = PoolSampler(client, clock, scale_log if adaptive is None else None, every_s=0.25).start()
            completions = Completions(clock)
            beside = Beside()
            supervisor = Supervisor(client, clock, L.retire_after_misses, beside)
            phases = L.scaled_phases()
            print(f"phases: {', '.join(f'{p.name} {p.requests}' for p in phases)}")
            plans = plan_schedule(rng, phases, clock() + 0.05, reader.n_steps, L.window_steps, shard_recs,
                                  shard_steps)
            reads: list[dict] = []

            def read_energy() -> tuple[float, dict, float]:
                t0 = clock()
                snaps = client.run(read_host_energy, *energy_args, on_error="return")
                return t0, {w: v for w, v in snaps.items() if isinstance(v, dict)}, clock()

            def on_phase_start(k: int) -> None:  # beside the arrival loop: never blocks it
                reads.append(beside.call(read_energy))
                if k < len(plans):
                    print(f"  {plans[k][0].name} starts at {clock():.2f} s")

            served = run_schedule(client, plans, cfg, str(store), clock, completions, adaptive, workers_now,
                                  inflight_timeout_s=inflight_s, on_phase_start=on_phase_start,
                                  supervisor=supervisor)
            if not supervisor.settle(60.0):
                print("a worker retirement was still in progress after 60 s; the report lists what finished")
            # The pool as it was when the last request finished: the Adaptive's own stop
            # logs nothing that belongs in the report.
            report_log = ScaleLog(list(scale_log.events), list(scale_log.samples))
            snaps = [Beside.result(b, timeout=15.0) for b in reads]
            workers_now.stop()
            healthy, n_end = _healthy_workers(client, beside)
            report_log.sample(clock(), n_end)
            records = records_of(served, plans, supervisor)
            for k, (phase, reqs) in enumerate(plans):
                recs = [r for r in records if r.phase == phase.name]
                completed = sum(r.ok for r in recs)
                a, b = snaps[k], snaps[k + 1]
                if a is not None and b is not None:
                    # Counters cover [read k, read k+1]; power divides by that same window.
                    window = max((b[0] + b[2]) / 2 - (a[0] + a[2]) / 2, 1e-6)
                    energy = phase_energy(completed, window, cfg.energy, served.ops[k], a[1], b[1])
                else:
                    done_t = [r.completion_s for r in recs if r.completion_s is not None]
                    window = max(max(done_t, default=0.0) - reqs.arrival_s[0], 1e-6)
                    energy = phase_energy(completed, window, cfg.energy, served.ops[k])
                total_ops = total_ops + served.ops[k]
                busy_s += served.busy_s[k]
                start = float(reqs.arrival_s[0])
                end = start + phase.scheduled_s() if k + 1 < len(plans) else None
                metas.append(PhaseMeta(phase.name, phase.rate_rps, energy, scheduled_start_s=start,
                                       scheduled_end_s=end))
                print(f"  {phase.name}: {completed}/{len(recs)} ok")
        n_counted = max(sum(served.counted), 1)
        n_ok = sum(r.ok for r in records)
        # Capacity: healthy workers / measured worker-seconds per request (read + compute).
        capacity = healthy * n_ok / busy_s if busy_s > 0 else None
        retired = [(r.t, r.worker, r.reason, r.outcome) for r in supervisor.retired]
        report = build_report(
            records, metas, cfg.slo, report_log,
            ClusterStatus(workers=n_end, healthy=healthy, capacity_rps=capacity,
                          deadline_misses=served.deadline_misses, retired=retired,
                          workers_lost=workers_lost(report_log, [r[0] for r in retired])),
            ModelSize(net.n_params, net.mflop_per_sequence(L.window_steps)),
            # Op counts come back with the batches that ran: divide by the requests in them.
            neuromorphic_estimate(OpCounts(*(int(v / n_counted) for v in total_ops)), cfg.energy),
        )
        report.roundtrip_ms = floor
        text = report.markdown()
        print(text)
        log_report(tracker, report, out_dir / "report")
        # The raw per-request records the report is computed from, so anyone can recompute it.
        tracker.log_artifact_text(json.dumps([dataclasses.asdict(r) for r in records]), "report/requests.json")
        tracker.log_artifact_text(json.dumps({"events": [dataclasses.asdict(e) for e in report_log.events],
                                              "samples": report_log.samples, "t_start": report.t_start,
                                              "phase_starts": {p.name: float(r.arrival_s[0]) for p, r in plans},
                                              "retired": retired}),
                                  "report/scale_log.json")
        tracker.log_metrics({"requests_total": len(records), "worker_busy_s": busy_s,
                             "service_ms_per_request": busy_s / max(n_ok, 1) * 1e3})
        print(f"MLflow: run {tracker.run_id} in experiment {tracker.experiment_id}; `make ui` to browse")
    return {"report": report, "run_id": tracker.run_id}


def _healthy_workers(client, beside, timeout_s: float = 3.0) -> tuple[int, int]:
    """(workers that answered a no-op within ``timeout_s``, workers the scheduler lists)."""
    from pipeline.loadtest.driver import _noop

    workers = list(client.nthreads())
    boxes = [beside.call(client.run, _noop, workers=[w], on_error="return") for w in workers]
    deadline = time.perf_counter() + timeout_s
    ok = 0
    for b in boxes:
        if b["done"].wait(max(deadline - time.perf_counter(), 0.0)) and "error" not in b:
            ok += all(not isinstance(v, BaseException) for v in b["value"].values())
    return ok, len(workers)
