"""One bag converted as time slices by several processes, joined in time order.

A bag is split at receive times into ``PER_PROCESS x processes`` equal spans ``[b_k, b_k+1)``.
This process and ``processes - 1`` light slice processes (:mod:`pipeline.data.importer.worker`:
numpy and rosbags only: light to start) take the slices one at a time,
each claiming the next unclaimed one (a file created exclusively), so a process that
started late or ran slower simply converts fewer: the processes finish together.  Each
slice stages its rows in its own files; the slices are then joined in order
(:meth:`~pipeline.data.importer.convert.Converted.merge`), so sorting, duplicates,
reordering and clock checks across slice boundaries are decided on the joined streams,
exactly as one pass over the bag decides them.  What every scan's conversion needs from
the bag's first scan (no-return range, mounting yaw: :mod:`pipeline.data.importer.mounting`)
is read before the slices start, so every slice converts with it.

Every slice is converted, then the first error in time order is raised (as one pass would).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

from pipeline.data.importer.convert import convert
from pipeline.data.importer.source import open_bag

PER_PROCESS = 4  # slices per process: the last one to finish is at most 1/4 of a process's share
_ROOT = Path(__file__).resolve().parents[3]  # the directory holding the ``pipeline`` package
_WORKER = Path(__file__).with_name("worker.py")


def bounds(first: int, last: int, slices: int) -> list[int | None]:
    """``slices + 1`` receive-time bounds covering [first, last] (None: unbounded ends)."""
    inner = [first + (last + 1 - first) * k // slices for k in range(1, slices)]
    return [None, *inner, None]


def claim_slices(src, topics: dict, p: dict, out: Path, lid_max: float | None, b: list) -> dict:
    """Convert every slice of ``b`` no other process has claimed: {k: (Converted, range) or the exception}."""
    done = {}
    for k in range(len(b) - 1):
        try:
            os.close(os.open(out / f"slice{k}.claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        try:
            done[k] = convert(src, topics, p, out, lid_max, b[k], b[k + 1], f".{k}" if k else "")
        except Exception as exc:  # noqa: BLE001  (raised in time order by convert_bag)
            done[k] = exc
    return done


def convert_bag(src, topics: dict, p: dict, out: Path, lid_max: float | None, processes: int, meanwhile=None):
    """``(Converted, no-return range)`` of the whole bag, converted by ``processes`` processes.

    ``meanwhile``: called while the slice processes start (e.g. warming the store-writing
    imports); this process then takes its share of the slices."""
    if processes > 1:
        with open_bag(src) as bag:
            first, last = bag.span
            slices = max(1, min(processes * PER_PROCESS, last - first + 1))
    if processes <= 1 or slices <= 1:
        return convert(src, topics, p, out, lid_max)
    b = bounds(first, last, slices)
    args = out / "slices.args"
    args.write_bytes(pickle.dumps((src, topics, p, out, lid_max, b)))
    procs = []
    try:
        for j in range(1, processes):
            res = out / f"slices{j}.result"
            procs.append((subprocess.Popen([sys.executable, str(_WORKER), str(_ROOT), str(args), str(res)],
                                           stdin=subprocess.DEVNULL), res))
        if meanwhile is not None:
            meanwhile()
        done = claim_slices(src, topics, p, out, lid_max, b)
        for proc, res in procs:
            rc = proc.wait()
            if not res.is_file():
                raise RuntimeError(f"a slice process exited with status {rc} and no result")
            part = pickle.loads(res.read_bytes())  # noqa: S301  (written by our own slice process)
            if isinstance(part, BaseException):
                raise part
            done.update(part)
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for k in range(slices):
        if isinstance(done[k], BaseException):
            raise done[k]
    whole, used = done[0]
    for k in range(1, slices):
        whole.merge(done[k][0])
    return whole, used
