"""What runs beside the load test's arrival loop: ``client.submit`` in its own thread
(:class:`Submitter`), slow calls in daemon threads (:class:`Beside`), and the :class:`Supervisor` that handles deadline misses -- finds the
worker that held a late micro-batch, probes it, and retires and replaces it (its nanny
restarts it) when it does not answer or keeps missing (docs/load.md, "Deadlines")."""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass

from pipeline.core.pool import processing_on


def _noop() -> None:
    return None


class Beside:
    """Runs slow calls in daemon threads beside the arrival loop; :meth:`result` waits
    for one with a timeout (a call stuck on a stalled worker is abandoned, never joined)."""

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []

    def call(self, fn, *args, **kwargs) -> dict:
        box: dict = {"done": threading.Event()}

        def run() -> None:
            try:
                box["value"] = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 -- handed to whoever reads the box
                box["error"] = exc
            finally:
                box["t"] = time.perf_counter()
                box["done"].set()

        t = threading.Thread(target=run, daemon=True, name=f"beside-{getattr(fn, '__name__', 'call')}")
        t.start()
        self._threads.append(t)
        return box

    @staticmethod
    def result(box: dict, timeout: float):
        """The call's value, or None when it failed or did not finish within ``timeout``."""
        if not box["done"].wait(timeout):
            return None
        return box.get("value")


@dataclass
class Retirement:
    t: float  # run clock
    worker: str
    reason: str
    outcome: str


class Supervisor:
    """Deadline misses, per worker; probes and retires workers beside the loop."""

    def __init__(self, client, clock, retire_after: int, beside: Beside, probe_timeout_s: float = 2.0) -> None:
        self.client, self.clock, self.retire_after, self.beside = client, clock, retire_after, beside
        self.probe_timeout_s = probe_timeout_s
        self.misses: Counter = Counter()
        self.retired: list[Retirement] = []
        self.worker_of: dict = {}  # batch key -> worker that held it when its deadline passed
        self._lock = threading.Lock()
        self._retiring: set[str] = set()
        self._handlers: list[dict] = []

    def missed(self, key, fut) -> None:
        self._handlers.append(self.beside.call(self._handle, key, fut))

    def settle(self, timeout_s: float = 60.0) -> bool:
        """Wait (at most ``timeout_s``) for the misses being handled -- a retirement in
        progress -- so the report is complete and the pool whole before the cluster
        closes.  True when every handler finished."""
        deadline = time.perf_counter() + timeout_s
        return all(b["done"].wait(max(deadline - time.perf_counter(), 0.0)) for b in list(self._handlers))

    def _handle(self, key, fut) -> None:
        try:
            w = self.client.run_on_scheduler(processing_on, [key]).get(key, "")
        except Exception:  # noqa: BLE001 -- a closing client: nothing to retire
            w = ""
        if fut is not None:
            fut.cancel()
        with self._lock:
            self.worker_of[key] = w
            if not w or w in self._retiring:
                return
            self.misses[w] += 1
            n = self.misses[w]
        box = self.beside.call(self.client.run, _noop, workers=[w], on_error="return")
        answered = box["done"].wait(self.probe_timeout_s) and "error" not in box
        if answered and n < self.retire_after:
            return
        reason = (f"did not answer a probe within {self.probe_timeout_s:g} s after a missed deadline"
                  if not answered else f"missed {n} deadlines")
        with self._lock:
            if w in self._retiring:
                return
            self._retiring.add(w)
        t = self.clock()
        try:
            out = self.client.restart_workers([w], timeout=30, raise_for_error=False)
            outcome = f"restarted by its nanny ({out.get(w, out)})"
        except Exception as exc:  # noqa: BLE001 -- no nanny (cluster=address): drop it from the scheduler
            why = f"{type(exc).__name__}: {exc}"[:150]
            try:
                self.client.run_on_scheduler(_remove_worker, w)
                outcome = f"removed from the scheduler (no restart: {why})"
            except Exception as exc2:  # noqa: BLE001
                outcome = f"could not be retired: restart {why}; remove {type(exc2).__name__}: {exc2}"[:300]
        print(f"worker {w} retired: {reason}; {outcome}")
        with self._lock:
            self.retired.append(Retirement(t, w, reason, outcome))


async def _remove_worker(address, dask_scheduler=None):
    await dask_scheduler.remove_worker(address, stimulus_id=f"neuroliquid-retire-{time.time()}", close=True)


class Submitter:
    """``client.submit`` in its own thread: a slow submit never holds a release back."""

    def __init__(self, client, completions, fn, fixed_args: tuple) -> None:  # completions: driver.Completions
        self.client, self.completions, self.fn, self.fixed = client, completions, fn, fixed_args
        self.q: queue.SimpleQueue = queue.SimpleQueue()
        self.futures: dict = {}
        self._thread = threading.Thread(target=self._loop, daemon=True, name="load-submitter")
        self._thread.start()

    def put(self, key, recordings, starts) -> None:
        self.q.put((key, recordings, starts))

    def _loop(self) -> None:
        while True:
            item = self.q.get()
            if item is None:
                return
            key, recordings, starts = item
            try:
                fut = self.client.submit(self.fn, self.fixed[0], recordings, starts, *self.fixed[1:],
                                         key=key, pure=False)
            except Exception as exc:  # noqa: BLE001 -- reported as the batch's failure
                self.completions.done.put((self.completions.clock(), Failed(key, exc)))
                continue
            self.futures[key] = fut
            self.completions.add(fut)

    def stop(self) -> None:
        self.q.put(None)
        self._thread.join(timeout=5)


@dataclass
class Failed:
    key: object
    exc: BaseException
    status: str = "error"

    def exception(self) -> BaseException:
        return self.exc

    def release(self) -> None:
        pass
