"""stream_chains on a real LocalCluster: order within a chain, and the
chain's next block asking for the worker that ran its previous block (its reader holds
the shards the next block starts in)."""

from __future__ import annotations

import logging

import pytest
from distributed import Client, LocalCluster

from pipeline.batch.chains import stream_chains


def _where(chain: int, index: int) -> dict:
    from distributed import get_worker

    return {"worker": get_worker().address, "chain": chain, "index": index}


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None,
                      silence_logs=logging.ERROR) as lc, Client(lc) as c:
        yield c


def test_chains_run_in_order_and_keep_their_worker(client):
    submits = []
    real_submit = client.submit

    def spy(fn, *args, **kw):
        submits.append((kw["key"], kw.get("workers"), kw.get("allow_other_workers")))
        return real_submit(fn, *args, **kw)

    client.submit = spy
    try:
        chains = [[(f"c{c}-b{i}", (c, i)) for i in range(4)] for c in range(3)]
        done = list(stream_chains(client, chains, _where, window=2))
    finally:
        del client.submit
    assert sorted(d.key for d in done) == sorted(k for ch in chains for k, _ in ch)
    by_key = {d.key: d.result for d in done}
    for c, chain in enumerate(chains):
        # Block i+1 was submitted only after block i finished, asking for block i's worker
        # (but allowed elsewhere, so a busy or lost worker does not hold the chain up).
        order = [k for k, _, _ in submits if k.startswith(f"c{c}-")]
        assert order == [k for k, _ in chain]
        for (prev, _), (key, _) in zip(chain, chain[1:], strict=False):
            (_, workers, loose), = [s for s in submits if s[0] == key]
            assert workers == [by_key[prev]["worker"]] and loose is True
    first = [s for s in submits if s[0].endswith("-b0")]
    assert all(w is None for _, w, _ in first)  # a chain's first block goes wherever Dask puts it
