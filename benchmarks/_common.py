"""Helpers shared by the benchmark scripts (``from benchmarks._common import ...`` after
the script has put the repository root on sys.path)."""

from __future__ import annotations


def in_fresh_process(fn, *args):
    """``fn(*args)`` in a newly spawned Python process: one process, nothing else in it
    (measured inside a driver after its cluster runs, the same forward ran 1.3-1.6x slower)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as ex:
        return ex.submit(fn, *args).result()
