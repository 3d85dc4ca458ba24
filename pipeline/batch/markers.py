"""Completion markers of the output store: ``done(group, block)``, one chunk per region,
written by a worker after the region's data and state (:class:`pipeline.batch.outputs.RegionWriter`).

``resume`` re-executes exactly the regions whose marker is missing, or whose chunks are not
all on disk (:func:`verify_done`); a marked region's task skips at once
(:func:`pipeline.batch.region.run_region`), so the client unmarks a region before it runs
again (:func:`clear_done`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.batch.outputs import OutputLayout, _dims
from pipeline.data.zarr_io import get_many


def done_regions(path: Path) -> np.ndarray:
    """(n_groups, n_blocks) bool: regions whose completion marker is written."""
    import zarr

    return np.asarray(zarr.open_group(str(path), mode="r")["done"][...], dtype=bool)


def clear_done(path: Path, regions) -> None:
    """Unmark ``regions`` ``[(g, k), ...]`` (the client, before they run again: a marked
    region's task would skip, see :func:`pipeline.batch.region.run_region`)."""
    import zarr

    done = zarr.open_group(str(path), mode="r+")["done"]
    for g, k in regions:
        done[g, k] = False


def verify_done(path: Path, done: np.ndarray) -> dict[tuple[int, int], str]:
    """Regions marked done whose chunks are not all on disk and decodable: ``{(g, k): why}``.

    A marker says the region was written, not that it still is: a deleted chunk would read
    back as fill values (``y`` all NaN where ``valid`` is True, a zero start state for the
    next block) and a corrupt one fails to decode.  Every variable's chunk of every done
    region is checked to exist and read (in one round trip per region); the caller re-runs
    the regions returned.  Each region is one chunk per variable (see the module docstring).
    """
    import zarr

    group = zarr.open_group(str(path), mode="r")
    # The region variables (coordinates are written once by the client; done is the marker).
    arrays = {n: a for n, a in group.arrays() if _dims(a)[:1] == ("recording",) and a.ndim >= 2}
    layout = OutputLayout(**json.loads(group.attrs["layout"]), state_specs=())
    bad: dict[tuple[int, int], str] = {}
    for g, k in np.argwhere(done).tolist():
        rs, ss = layout.recordings(g), layout.steps(k)
        reads, why = [], []
        for name, arr in arrays.items():
            region = (rs, ss) if "step" in _dims(arr) else (rs, k)
            coords = (g, k) + (0,) * (arr.ndim - 2)
            key = arr.metadata.encode_chunk_key(coords)
            if not (Path(path) / name / key).is_file():
                why.append(f"{name} chunk {key} missing")
            else:
                reads.append((name, arr, region))
        got = get_many(((a, r) for _, a, r in reads), return_exceptions=True)
        why += [f"{name} does not decode ({type(v).__name__}: {v})"[:200]
                for (name, _, _), v in zip(reads, got, strict=True) if isinstance(v, Exception)]
        if why:
            bad[(g, k)] = "; ".join(why)
    return bad
