"""glibc malloc settings for worker processes (docs/pipeline.md, "Worker memory allocator").

Local clusters spawn their workers with :func:`malloc_env` in the environment (glibc reads
it once, at process start); other workers get :func:`tune_malloc` (``mallopt``) at setup.
"""

from __future__ import annotations


def malloc_env(mmap_threshold_mib: int, trim_threshold_mib: int, arena_max: int) -> dict[str, str]:
    """glibc's environment variables for these settings (0: not set), for worker spawn."""
    env = {}
    if mmap_threshold_mib:
        env["MALLOC_MMAP_THRESHOLD_"] = str(int(mmap_threshold_mib) << 20)
    if trim_threshold_mib:
        env["MALLOC_TRIM_THRESHOLD_"] = str(int(trim_threshold_mib) << 20)
    if arena_max:
        env["MALLOC_ARENA_MAX"] = str(int(arena_max))
    return env


def tune_malloc(mmap_threshold_mib: int, trim_threshold_mib: int, arena_max: int = 0) -> str:
    """This process's glibc malloc settings; returns what is in force.

    Where the process was started with them (:func:`malloc_env`, as local clusters spawn
    their workers) nothing is changed.  Otherwise ``mallopt`` sets them now: allocations
    of at least ``mmap_threshold_mib`` MiB get their own mmap, smaller ones are reused
    from the heap, which keeps up to ``trim_threshold_mib`` MiB free before handing memory
    back, and ``arena_max`` caps the arenas of threads that have none yet (threads that
    already allocated keep theirs: only the spawn environment is sure to cover them).
    Not glibc (musl, macOS): nothing is changed.  0 leaves a setting alone.
    """
    import ctypes
    import ctypes.util
    import os

    want = malloc_env(mmap_threshold_mib, trim_threshold_mib, arena_max)
    if not want:
        return "untouched"
    desc = ", ".join(f"{k}={v}" for k, v in want.items())
    if all(os.environ.get(k) == v for k, v in want.items()):
        return f"{desc} (environment at start)"
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return f"untouched (no mallopt in {name})"
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
    ok = True
    for param, value in ((M_MMAP_THRESHOLD, int(mmap_threshold_mib) << 20),
                         (M_TRIM_THRESHOLD, int(trim_threshold_mib) << 20), (M_ARENA_MAX, int(arena_max))):
        if value:
            ok &= mallopt(param, value) == 1
    if not ok:
        return f"untouched (mallopt refused {desc})"
    return f"{desc} (mallopt at setup)"
