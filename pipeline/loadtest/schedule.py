"""When requests arrive and what they read: each phase's open-loop schedule (recording,
start step, scheduled arrival) and the warm-read plan of one window per store shard."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Requests:
    """One phase's requests: recording, start step and scheduled arrival (s, run clock)."""

    recordings: np.ndarray
    starts: np.ndarray
    arrival_s: np.ndarray
    shard: np.ndarray  # shard key: requests with the same key share a store shard


def plan_phase(rng: np.random.Generator, n: int, rate: float | None, t0: float, n_steps: np.ndarray,
               window: int, shard_recordings: int, shard_steps: int) -> Requests:
    """``n`` requests from recordings long enough for a window, arriving from ``t0`` at
    ``rate`` per second (evenly spaced; ``None``: all at ``t0``)."""
    eligible = np.nonzero(n_steps >= window)[0]
    if eligible.size == 0:
        raise ValueError(f"no recording has {window} model steps for a request window")
    recs = rng.choice(eligible, size=n)
    starts = (rng.random(n) * (n_steps[recs] - window + 1)).astype(np.int64)
    arrival = t0 + (np.zeros(n) if rate is None else np.arange(n) / rate)
    shard = (recs // shard_recordings) * 1_000_000 + starts // shard_steps
    return Requests(recs, starts, arrival, shard)


def plan_schedule(rng: np.random.Generator, phases: list, t0: float, n_steps: np.ndarray, window: int,
                  shard_recordings: int, shard_steps: int) -> list[tuple]:
    """``[(phase, Requests)]``: phase k starts at ``t0`` plus the scheduled lengths of the
    phases before it (``LoadPhase.scheduled_s``), whatever happens to their requests."""
    out, t = [], t0
    for ph in phases:
        out.append((ph, plan_phase(rng, ph.requests, ph.rate_rps, t, n_steps, window, shard_recordings,
                                   shard_steps)))
        t += ph.scheduled_s()
    return out


def concat(parts: list[Requests]) -> tuple[Requests, np.ndarray]:
    """One schedule from consecutive phases' requests, and each request's phase index."""
    cat = lambda name: np.concatenate([getattr(r, name) for r in parts])  # noqa: E731
    reqs = Requests(cat("recordings"), cat("starts"), cat("arrival_s"), cat("shard"))
    if np.any(np.diff(reqs.arrival_s) < 0):
        raise ValueError("phase schedules overlap: a phase's arrivals run past the next phase's start")
    return reqs, np.concatenate([np.full(len(r.arrival_s), k, np.int64) for k, r in enumerate(parts)])


def shard_warm_requests(n_steps: np.ndarray, window: int, shard_recordings: int,
                        shard_steps: int) -> tuple[list[int], list[int]]:
    """One request window in every (recording shard, step shard) of the store that holds
    one: (recordings, starts), for the worker setup's warm read."""
    recs, starts = [], []
    for g in range(0, len(n_steps), shard_recordings):
        rec = g + int(np.argmax(n_steps[g:g + shard_recordings]))
        for s0 in range(0, int(n_steps[rec]) - window + 1, shard_steps):
            recs.append(rec)
            starts.append(s0)
    return recs, starts
