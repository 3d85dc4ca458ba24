"""``neuroliquid task=import``: ROS bags to a recording store, on Dask.

1. find the recordings under ``import.source`` and open each once (topics, types, counts);
2. convert each recording in its own Dask task (processes, as the generator; one bag: in
   this process), staging its converted rows beside the output store; a bag of at least
   ``2 x import.slice_min_mb`` MB is converted as time slices in parallel (its share of
   ``import.workers``; :mod:`pipeline.data.importer.slices`);
3. create the store once from the staged counts, then write it with one task per shard
   group (no two tasks share a shard); remove the staging folder.

Under ``data.policy=fail`` the import fails naming every bad bag the first pass found, or,
after converting every bag, every one the conversion found, and writes nothing; under
``quarantine`` bad recordings are skipped,
counted and listed (attr ``import_quarantined``).  Every conversion and count is in the
store's attrs (``import_recordings``, JSON) and printed as a table.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from pipeline.config import Config, DataConfig, ImportConfig
from pipeline.data.importer.assemble import layout, plan, write_group
from pipeline.data.importer.discover import find_recordings, plan_recording
from pipeline.data.importer.report import summary_table
from pipeline.data.importer.source import BagError
from pipeline.data.importer.stage import stage_recording
from pipeline.data.store import create_store
from pipeline.data.store_path import StorePathError, is_store, prepare_path


class ImportFailed(BagError):
    """Bags that cannot become recordings under ``data.policy=fail``: every one is named."""

    def __init__(self, errors: list[BagError]) -> None:
        self.errors = list(errors)
        BagError.__init__(self, errors[0].kind, errors[0].source, "")
        Exception.__init__(self, f"{len(errors)} bag(s) cannot be imported: " + "; ".join(map(str, errors)))

    def __reduce__(self):
        return (ImportFailed, (self.errors,))


def _compute(tasks: list, workers: int, progress: bool) -> list:
    import dask  # noqa: PLC0415  (heavy; only the import task needs it)
    from dask.diagnostics import ProgressBar  # noqa: PLC0415

    n = workers or os.cpu_count() or 1
    kw = {"scheduler": "processes" if len(tasks) > 1 and n > 1 else "synchronous", "num_workers": min(n, len(tasks))}
    if progress:
        with ProgressBar(minimum=1.0):
            return list(dask.compute(*tasks, **kw))
    return list(dask.compute(*tasks, **kw))


def import_bags(icfg: ImportConfig, d: DataConfig, progress: bool = True) -> dict:
    """Import ``icfg.source`` into the store ``d.path``; returns a summary (see module doc).

    Raises :class:`BagError` (``import.source`` holds no bag) or :class:`ImportFailed`."""
    t0, cpu0 = time.perf_counter(), cpu_times()
    sources, skipped = find_recordings(icfg.source)
    try:  # refuse a bad output path before any work; an old store is replaced only at the end
        prepare_path(d.path, False)
    except StorePathError:
        if not (d.overwrite and is_store(d.path)):
            raise
    plans = [plan_recording(s, icfg) for s in sources]  # first pass: topics, types, counts
    idle = idle_cores(cpu0, cpu_times())  # cores other work left idle during the first pass
    errors = [p.error for p in plans if p.error is not None]
    if errors and d.policy == "fail":  # named before any conversion
        raise ImportFailed(errors)
    good = [p for p in plans if p.error is None]
    Path(d.path).parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{Path(d.path).name}.staging-", dir=Path(d.path).parent))
    try:
        args = [(p, icfg, str(staging / f"{i:05d}"), icfg.lidar_max_range_m, d.model_rate_hz,
                 _processes(p, icfg, len(good), idle)) for i, p in enumerate(good)]
        if len(args) == 1:  # one bag: converted here (in time slices), no Dask start-up
            staged = stage_recording(*args[0], meanwhile=_warm_store_imports)
        else:
            import dask  # noqa: PLC0415  (heavy; only needed with several bags)

            tasks = [dask.delayed(stage_recording)(*a) for a in args]
            staged = [r for rs in (_compute(tasks, icfg.workers, progress) if tasks else []) for r in rs]
        errors += [r["error"] for r in staged if "error" in r]
        results = [r for r in staged if "error" not in r]
        if errors and d.policy == "fail":
            raise ImportFailed(errors)
        if not results:
            raise ImportFailed(errors) if errors else BagError("no-messages", icfg.source, "nothing to import")
        quarantined = [{"name": e.source, "kind": e.kind, "error": str(e)} for e in errors]
        extra = {"import_quarantined": json.dumps(quarantined), "import_skipped_files": json.dumps(skipped)}
        sizes, rates, attrs, names = layout(results, icfg, d, extra)
        enc = plan(sizes, rates, d)
        create_store(d.path, sizes, attrs, enc, overwrite=d.overwrite, names=names)
        step = enc["t_start"]["chunks"][0]
        groups = [(r, min(r + step, len(results))) for r in range(0, len(results), step)]
        if len(groups) == 1:
            written = [write_group(d.path, results, *groups[0], sizes, enc, icfg, names)]
        else:
            import dask  # noqa: PLC0415

            written = _compute([dask.delayed(write_group)(d.path, results, a, b, sizes, enc, icfg, names)
                                for a, b in groups], icfg.workers, progress)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    table = summary_table([r["report"] for r in results], quarantined, skipped)
    in_bytes = sum(_size(p) for s in sources for p in s.paths)
    seconds = time.perf_counter() - t0
    return {"path": d.path, "recordings": len(results), "quarantined": len(quarantined), "bytes_in": in_bytes,
            "processes": [a[-1] for a in args], "idle_cores": round(idle, 2),
            "bytes_written": int(sum(written)), "seconds": seconds, "mb_per_s": in_bytes / 1e6 / seconds,
            "targets": "targets" in names, "table": table}


def _warm_store_imports() -> None:
    """Import what creating the store needs (dask.array: a fixed cost per run) while slice processes start."""
    import dask.array  # noqa: F401, PLC0415


def cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all CPUs from /proc/stat (None where there is none)."""
    try:
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return v[3] + (v[4] if len(v) > 4 else 0), sum(v)


def idle_cores(before, after) -> float:
    """Cores idle between two :func:`cpu_times` samples (all of them when unknown, or when
    the samples are less than ~50 ms apart: too few clock ticks to tell)."""
    cores = os.cpu_count() or 1
    if before is None or after is None or after[1] - before[1] < 5 * cores:
        return float(cores)
    return cores * (after[0] - before[0]) / (after[1] - before[1])


def _processes(p, icfg: ImportConfig, bags: int, idle: float) -> int:
    """Processes converting bag ``p`` (in time slices): its share of ``import.workers``, at
    most one per ``import.slice_min_mb`` of the bag (a slice process costs its start-up).
    ``import.workers=0`` (all cores) counts only the cores found idle during the first pass
    (``idle``), plus this process's: on a machine other work keeps busy, extra processes
    only share the same cores and add their start-up."""
    if icfg.slice_min_mb is None:
        return 1
    share = (icfg.workers or os.cpu_count() or 1) // max(1, bags)
    if not icfg.workers:
        share = min(share, 1 + int(idle + 0.5))
    return max(1, min(share, int(sum(_size(f) for f in p.source.paths) / (icfg.slice_min_mb * 1e6))))


def _size(path: str) -> int:
    p = Path(path)
    return p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def run(cfg: Config) -> dict:
    """The task: import, print the summary table; exit status 1 naming every bad bag."""
    try:
        info = import_bags(cfg.importer, cfg.data)
    except (BagError, StorePathError) as exc:
        print(f"task=import: {exc}")
        raise SystemExit(1) from exc
    print(info["table"])
    print(f"wrote {info['path']}: {info['recordings']} recording(s) ({info['quarantined']} quarantined) from "
          f"{info['bytes_in'] / 1e6:.1f} MB of bags in {info['seconds']:.1f} s ({info['mb_per_s']:.1f} MB/s)"
          + ("" if info["targets"] else "; no odometry: the store has no targets (evaluation is skipped)"))
    print(f"check it: neuroliquid task=check data=zarr data.path={info['path']}")
    return info
