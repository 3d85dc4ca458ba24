"""``cluster.memory_limit`` is checked before anything starts (units, and a floor from the
measured worker baseline), and the running workers' measured memory is checked against
the point where Dask pauses them (issue 13, item 3: a limit below a worker's baseline
hung at 0 regions for ever)."""

from __future__ import annotations

import logging

import pytest
from _pipeline_helpers import compose_config
from distributed import Client, LocalCluster

from pipeline.config import ClusterConfig, ConfigError
from pipeline.config.cluster import MEMORY_LIMIT_FLOOR_MIB, WORKER_BASELINE_MIB, memory_limit_bytes
from pipeline.core.cluster import ClusterError, check_worker_memory


@pytest.mark.parametrize("value, expected", [("auto", None), ("0", None), ("none", None), ("4GB", 4 * 10**9),
                                             ("500MiB", 500 * 2**20), (2**30, 2**30), ("1073741824", 2**30)])
def test_memory_limit_units(value, expected):
    assert memory_limit_bytes(value) == expected
    ClusterConfig(memory_limit=value).validate()


def test_a_fraction_is_of_system_memory():
    import psutil

    assert memory_limit_bytes("0.5") == int(0.5 * psutil.virtual_memory().total)


@pytest.mark.parametrize("value", ["abc", "12 parsecs", "-5"])
def test_memory_limit_abc_fails_at_validation_naming_the_key(value):
    with pytest.raises(ConfigError, match=r"config cluster.memory_limit=.*must be auto, 0/none"):
        ClusterConfig(memory_limit=value).validate()


def test_memory_limit_below_the_measured_baseline_is_refused_with_the_figure():
    with pytest.raises(ConfigError, match=rf"cluster.memory_limit='100MB'.*floor of {MEMORY_LIMIT_FLOOR_MIB} MiB.*"
                                          rf"{WORKER_BASELINE_MIB} MiB after set-up"):
        ClusterConfig(memory_limit="100MB").validate()


def test_memory_limit_abc_through_the_config_tree(store, tmp_path):
    from _pipeline_helpers import base_overrides

    with pytest.raises(ConfigError, match="cluster.memory_limit='abc'"):
        compose_config(base_overrides(store, tmp_path) + ["cluster.memory_limit=abc"])


def test_running_workers_above_the_pause_threshold_are_refused_with_the_measured_figure():
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      memory_limit="2GiB", silence_logs=logging.CRITICAL) as lc, Client(lc) as c:
        rss = check_worker_memory(c)  # a fresh worker: well below 80 % of 2 GiB
        assert all(40 < v < 1600 for v in rss.values()), rss
        with pytest.raises(ClusterError, match=r"holds \d+ MiB after its set-up \(measured now\).*set "
                                               r"cluster.memory_limit to at least \d+MiB"):
            check_worker_memory(c, pause_fraction=0.001)
