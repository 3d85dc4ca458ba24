"""Clusters from config: the dashboard answers while a LocalCluster runs, ``cluster=address``
runs on a scheduler the test owns (and leaves it running), ``cluster=local_cuda`` without
dask-cuda or a GPU fails with the reason, and nothing outlives a closed cluster."""

from __future__ import annotations

import logging
import os
import urllib.request

import pytest
from _pipeline_helpers import live_children, mlflow_runs

from pipeline.batch.run import run
from pipeline.config import ClusterConfig, ConfigError
from pipeline.core.cluster import WORKER_ENV, ClusterError, open_client


def _ours(procs) -> list[str]:
    """Live children, less multiprocessing's resource tracker (it exits with this process)."""
    cmds = [" ".join(p.cmdline()) for p in procs]
    return [c for c in cmds if "resource_tracker" not in c]


def test_dashboard_status_page_answers_while_the_cluster_runs():
    before = _ours(live_children())
    cfg = ClusterConfig(kind="local", dashboard_address="127.0.0.1:0")
    with open_client(cfg, n_workers=1, env=WORKER_ENV) as (client, cluster):
        link = client.dashboard_link
        assert link.startswith("http://127.0.0.1:") and link.endswith("/status")
        with urllib.request.urlopen(link, timeout=30) as resp:
            body = resp.read().decode()
        assert resp.status == 200 and "bokeh" in body.lower()
        assert client.submit(os.getpid).result(timeout=30) != os.getpid()  # a worker process runs
        assert len(_ours(live_children())) > len(before)
    assert _ours(live_children()) == before  # workers and nannies are gone once it closes


def test_cluster_address_runs_on_an_existing_scheduler_and_leaves_it_up(make_config, tmp_path):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0",
                      silence_logs=logging.ERROR, env=WORKER_ENV) as lc, Client(lc) as client:
        cfg = make_config("cluster=address", f"cluster.address={lc.scheduler_address}",
                          "data.steps_per_block=100", "tracking.run_name=addr")
        summary = run(cfg)
        assert summary["regions_executed"] == 8 and summary["workers_max"] == 2
        # The deployment owns the pool: the run neither closed nor resized it.
        assert len(client.scheduler_info()["workers"]) == 2
        (r,) = mlflow_runs(cfg.tracking.uri)
        assert r.info.status == "FINISHED" and r.data.params["cluster.kind"] == "address"
        assert r.data.params["cluster.address"] == lc.scheduler_address
    with pytest.raises(ConfigError, match="scaling.kind"):
        make_config("cluster=address", "cluster.address=tcp://127.0.0.1:1", "scaling=adaptive")
    with pytest.raises(ConfigError, match="cluster.address"):
        make_config("cluster=address", "cluster.address=")


def test_local_cuda_without_dask_cuda_or_gpu_says_why(make_config):
    from kernels.backend import cuda_probe

    gpu, _ = cuda_probe()
    try:
        import dask_cuda  # noqa: F401

        has_dask_cuda = True
    except ImportError:
        has_dask_cuda = False
    if gpu and has_dask_cuda:
        pytest.skip("dask-cuda and a GPU are here: local_cuda would start")
    why = "needs a CUDA GPU" if has_dask_cuda else "needs dask-cuda"
    with pytest.raises(ClusterError, match=f"cluster=local_cuda {why}"):
        with open_client(ClusterConfig(kind="local_cuda", dashboard_address="127.0.0.1:0"), n_workers=1):
            pass
    # Through the pipeline: the same error, and the MLflow run is marked FAILED.
    cfg = make_config("cluster=local_cuda", "tracking.run_name=cuda")
    with pytest.raises(ClusterError, match=f"cluster=local_cuda {why}"):
        run(cfg)
    (r,) = mlflow_runs(cfg.tracking.uri)
    assert r.info.status == "FAILED"


def test_a_dashboard_tab_closed_before_its_session_is_not_an_error_but_other_errors_are():
    """Bokeh's own assert in bokeh/server/connection.py (a websocket closed before its
    session existed) is dropped from Tornado's error log; any other exception stays."""
    import sys

    from pipeline.core.cluster import _TabClosedBeforeSession

    def record(source: str, filename: str) -> logging.LogRecord:
        try:
            exec(compile(source, filename, "exec"), {})
        except Exception:  # noqa: BLE001  (the record carries whatever was raised)
            return logging.LogRecord("tornado.application", logging.ERROR, "web.py", 1,
                                     "Uncaught exception GET /status/ws", (), sys.exc_info())
        raise AssertionError("the source did not raise")

    f = _TabClosedBeforeSession()
    bokeh = "/site-packages/bokeh/server/connection.py"
    assert not f.filter(record("assert None is not None", bokeh))
    assert f.filter(record("assert None is not None", "/site-packages/bokeh/server/views/ws.py"))
    assert f.filter(record("raise ValueError('a real bug')", bokeh))
    assert f.filter(logging.LogRecord("tornado.application", logging.ERROR, "web.py", 1, "no exception", (), None))


def test_an_update_from_a_closing_dashboard_tab_is_not_an_error_but_a_failing_update_is(caplog):
    """Bokeh's real handler, given an update (PATCH-DOC) on a connection whose session is gone
    (the tab closed as it sent it: seen in CI as a traceback in the run's output)."""
    import asyncio
    import types

    from bokeh.protocol import Protocol
    from bokeh.protocol.messages.patch_doc import patch_doc
    from bokeh.server.connection import ServerConnection
    from bokeh.server.protocol_handler import ProtocolHandler

    from pipeline.core.cluster import quiet_dashboard_logs

    quiet_dashboard_logs()

    def handle(session) -> None:
        conn = ServerConnection(Protocol(), None, None, types.SimpleNamespace(subscribe=lambda c: None,
                                                                             unsubscribe=lambda c: None))
        if session is None:
            conn.detach_session()
        else:
            conn._session = session
        msg = patch_doc({"msgid": "1", "msgtype": "PATCH-DOC"}, {}, {"events": []})
        asyncio.run(ProtocolHandler().handle(msg, conn))

    with caplog.at_level(logging.ERROR, logger="bokeh.server.protocol_handler"):
        handle(None)
        assert caplog.records == []

        def broken(message, connection):
            raise ValueError("a real bug")

        handle(types.SimpleNamespace(_handle_patch=broken))
        (rec,) = caplog.records
        assert rec.levelno == logging.ERROR and "a real bug" in rec.getMessage()
