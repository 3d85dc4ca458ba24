"""Train / validation / test splits by recording, never by time inside a recording.

A recording goes wholly to one split: its steps are strongly correlated in time, so a split
inside a recording would score a model on the seconds next to the ones it was fitted on.
The assignment is a seeded permutation of the recording indices, cut by the configured
fractions: the same store (recording count) and seed give the same recordings every time,
so a later ``eval.split=test`` scores exactly the recordings a trained model never saw.
"""

from __future__ import annotations

import hashlib

import numpy as np

SPLITS = ("train", "validation", "test")


def assign_splits(n_recordings: int, fractions: tuple[float, float, float], seed: int) -> np.ndarray:
    """(n_recordings,) int8: 0 train, 1 validation, 2 test.

    Counts are ``round(fraction * n)`` for validation and test (at least one each when the
    fraction is > 0 and there are recordings to spare), the rest is train."""
    if n_recordings < 0:
        raise ValueError(f"n_recordings must be >= 0, got {n_recordings}")
    f = np.asarray(fractions, float)
    if f.shape != (3,) or (f < 0).any() or abs(f.sum() - 1.0) > 1e-9:
        raise ValueError(f"split fractions (train, validation, test) must be >= 0 and sum to 1, got {fractions}")
    counts = [0, 0, 0]
    for i in (2, 1):
        counts[i] = int(round(f[i] * n_recordings))
        if f[i] > 0 and counts[i] == 0 and n_recordings - sum(counts) > 1:
            counts[i] = 1
    counts[0] = n_recordings - counts[1] - counts[2]
    if counts[0] < 0:
        raise ValueError(f"split fractions {fractions} leave no recordings to train on ({n_recordings} recordings)")
    order = np.random.default_rng(seed).permutation(n_recordings)
    labels = np.empty(n_recordings, np.int8)
    labels[order[: counts[0]]] = 0
    labels[order[counts[0]: counts[0] + counts[1]]] = 1
    labels[order[counts[0] + counts[1]:]] = 2
    return labels


def split_members(labels: np.ndarray, name: str) -> np.ndarray:
    """(n,) bool: the recordings of split ``name`` (``all``: every recording)."""
    if name == "all":
        return np.ones(len(labels), bool)
    if name not in SPLITS:
        raise ValueError(f"split {name!r} is not one of {', '.join((*SPLITS, 'all'))}")
    return labels == SPLITS.index(name)


def split_record(labels: np.ndarray, fractions, seed: int) -> dict:
    """What a run, an output store or a weights file records about its split: the seed, the
    fractions, the recordings of each split and a short digest of the assignment."""
    return {"seed": int(seed), "fractions": [float(x) for x in fractions],
            "digest": hashlib.sha256(np.asarray(labels, np.int8).tobytes()).hexdigest()[:16],
            **{name: np.flatnonzero(labels == i).tolist() for i, name in enumerate(SPLITS)}}
