"""Worker allocator settings (docs/pipeline.md, "Worker memory allocator"): local clusters
spawn workers with them in the environment, other deployments get them by mallopt."""

from __future__ import annotations

import os
import subprocess
import sys

from pipeline.core.malloc import malloc_env, tune_malloc


def test_malloc_env_names_glibc_variables_and_skips_zeros():
    assert malloc_env(32, 128, 1) == {"MALLOC_MMAP_THRESHOLD_": str(32 << 20),
                                      "MALLOC_TRIM_THRESHOLD_": str(128 << 20), "MALLOC_ARENA_MAX": "1"}
    assert malloc_env(0, 0, 0) == {}
    assert malloc_env(16, 0, 0) == {"MALLOC_MMAP_THRESHOLD_": str(16 << 20)}


def _tune_in_fresh_process(env: dict[str, str]) -> str:
    # Dask's nanny copies its spawn environment into the spawning process's os.environ,
    # so after any cluster test this process carries MALLOC_* itself: start clean.
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    code = "from pipeline.core.malloc import tune_malloc; print(tune_malloc(32, 128, 1))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**base, **env})
    return out.stdout.strip()


def test_tune_malloc_uses_mallopt_where_the_environment_lacks_the_settings():
    assert _tune_in_fresh_process({}).endswith("(mallopt at setup)")


def test_tune_malloc_changes_nothing_where_the_process_started_with_them():
    assert _tune_in_fresh_process(malloc_env(32, 128, 1)).endswith("(environment at start)")


def test_all_zero_leaves_malloc_alone():
    assert tune_malloc(0, 0, 0) == "untouched"
