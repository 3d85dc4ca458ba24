"""stream_chains on a real LocalCluster: order within a chain, every region known to the
scheduler from the start (the Dask dashboard's Progress panel counts the run's total),
and a region skipped by a re-run being run again with ``force``."""

from __future__ import annotations

import logging
import time

import pytest
from distributed import Client, LocalCluster

from pipeline.batch.chains import stream_chains


def _timed(chain: int, index: int, force: bool = False) -> dict:
    t0 = time.perf_counter()
    time.sleep(0.02)
    return {"chain": chain, "index": index, "t0": t0, "t1": time.perf_counter()}


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None,
                      silence_logs=logging.ERROR) as lc, Client(lc) as c:
        yield lc, c


def test_chains_run_in_order_and_the_progress_panel_counts_every_region(cluster):
    from distributed.dashboard.components.scheduler import TaskProgress

    lc, client = cluster
    panel = TaskProgress(lc.scheduler)  # the dashboard's Progress panel, on this scheduler
    chains = [[(f"region-t-g{c}-b{i}", (c, i)) for i in range(4)] for c in range(6)]
    done, seen = [], []
    for d in stream_chains(client, chains, _timed):
        done.append(d)
        panel.update()
        seen.append(dict(zip(panel.source.data["name"], panel.source.data["done"], strict=True))["region-t"])  # dask.utils.key_split of the keys
    assert sorted(d.key for d in done) == sorted(k for ch in chains for k, _ in ch)
    by_key = {d.key: d.result for d in done}
    for chain in chains:  # block i+1 started only after block i had finished
        for (prev, _), (key, _) in zip(chain, chain[1:], strict=False):
            assert by_key[key]["t0"] >= by_key[prev]["t1"]
    # The panel's bar counts all 24 regions from the first result to the last (finished
    # ones stay counted), where a bounded window of submissions read "1 / 4".
    assert all(s.endswith("/ 24") for s in seen), seen
    assert seen[-1] == "24 / 24"
    assert [int(s.split(" / ")[0]) for s in seen] == sorted(int(s.split(" / ")[0]) for s in seen)
    # The run's tasks are released once it ends.
    deadline = time.monotonic() + 10
    while any(k.startswith("region-t-") for k in lc.scheduler.tasks) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [k for k in lc.scheduler.tasks if k.startswith("region-t-")]


def _skips_once(chain: int, index: int, force: bool = False) -> dict:
    if (chain, index) == (1, 1) and not force:  # as a region whose marker was written by a lost worker's run
        return {"skipped": True}
    return {"chain": chain, "index": index, "forced": force}


def test_a_skipped_result_the_driver_has_not_counted_is_run_again_with_force(cluster):
    _, client = cluster
    chains = [[(f"skip-g{c}-b{i}", (c, i)) for i in range(3)] for c in range(2)]
    by_key = {d.key: d.result for d in stream_chains(client, chains, _skips_once)}
    assert len(by_key) == 6 and not any(r.get("skipped") for r in by_key.values())
    assert by_key["skip-g1-b1"] == {"chain": 1, "index": 1, "forced": True}
    assert by_key["skip-g0-b1"]["forced"] is False


def _fails(chain: int, index: int, force: bool = False) -> dict:
    if (chain, index) == (0, 1):
        raise ValueError("bad block g0 b1")
    return {"chain": chain, "index": index}


def test_a_failed_chain_stops_and_the_others_go_on(cluster):
    _, client = cluster
    chains = [[(f"fail-g{c}-b{i}", (c, i)) for i in range(3)] for c in range(2)]
    done = list(stream_chains(client, chains, _fails, stop_on_error=False))
    errors = [d for d in done if d.error is not None]
    assert [(d.chain, d.index) for d in errors] == [(0, 1)] and "bad block g0 b1" in str(errors[0].error)
    assert sorted((d.chain, d.index) for d in done if d.error is None) == [(0, 0), (1, 0), (1, 1), (1, 2)]
    with pytest.raises(ValueError, match="bad block g0 b1"):
        list(stream_chains(client, [[(f"fail2-g{c}-b{i}", (c, i)) for i in range(3)] for c in range(2)], _fails))
