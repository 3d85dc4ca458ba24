"""Preloaded into every worker process of a local cluster (``distributed.worker.preload``).

Ctrl-C in a terminal sends SIGINT to the whole foreground process group, workers
included, and a ``kill`` of the group sends them SIGTERM: each worker then printed its own
KeyboardInterrupt traceback, or died under its nanny, which restarted it while the run
was shutting down.  Workers ignore both; the driver handles them (the run stops, says how
to resume, and closes the cluster, which stops its workers in order).  A worker whose
driver is gone still exits: its nanny's stop queue closes.  Workers of ``cluster=address``
belong to their deployment and are never touched.  The known harmless warning of a task
cancelled by the close is dropped here, where it is logged (:class:`_CancelledAtClose`).
"""

from __future__ import annotations

import logging
import signal
import threading


class _CancelledAtClose(logging.Filter):
    """Drops the one warning a worker logs per task still running when the run's cluster
    closes (an interrupted run): "Async instruction for <Task cancelled ...> ended with
    CancelledError".  The region is not done (no marker), so resume runs it again."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "ended with CancelledError" not in record.getMessage()


def dask_setup(worker) -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.getLogger("distributed.worker.state_machine").addFilter(_CancelledAtClose())
