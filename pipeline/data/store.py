"""Zarr v3 I/O for recording stores: create, write regions, open, and find bad chunks.

Inputs are chunked along recordings and time inside shards (``pipeline.config.StoreLayout``)
and written with empty chunks kept, so every chunk of a complete store exists; a
missing shard file or inner chunk is therefore an error, never silently fill values.
All region writes cover whole shards, so parallel writers never share a file.
Every chunk carries a crc32c checksum (zarr v3's ``crc32c`` codec, last in each chunk's
codec pipeline), so changed bytes fail the read (:func:`read_failure`) instead of
decoding to wrong values; stores written without checksums still read.

``data.overwrite`` replaces only a neuroliquid store (:mod:`pipeline.data.store_path`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import xarray as xr
import zarr

from pipeline.config import StoreLayout
from pipeline.data.errors import SchemaError
from pipeline.data.schema import VARIABLES, var_attrs
from pipeline.data.store_path import prepare_path

_MAX_U64 = np.iinfo(np.uint64).max
_OPEN = dict(decode_times=False, decode_timedelta=False, mask_and_scale=False, consolidated=False)


def _compressors(name: str, checksums: bool = True) -> list:
    """The bytes-to-bytes codecs of one chunk: the compressor, then the crc32c checksum
    (inside the sharding codec when the array is sharded: one checksum per inner chunk)."""
    out = []
    if name == "lz4":
        out.append(zarr.codecs.BloscCodec(cname="lz4", clevel=1, shuffle="shuffle"))
    elif name == "zstd":
        out.append(zarr.codecs.ZstdCodec(level=1))
    return out + [zarr.codecs.Crc32cCodec()] if checksums else out


def has_checksums(arr: zarr.Array) -> bool:
    """Whether ``arr``'s chunks (inner chunks when sharded) carry a crc32c checksum."""
    codecs = arr.metadata.codecs
    inner = getattr(codecs[0], "codecs", codecs) if codecs else ()
    return any(isinstance(c, zarr.codecs.Crc32cCodec) for c in inner)


def plan_encoding(sizes: dict[str, int], rates: dict[str, float], layout: StoreLayout,
                  checksums: bool = True) -> dict[str, dict]:
    """Per-variable zarr encoding (inner ``chunks``, ``shards``, codecs, fill value).

    ``sizes`` maps dims to lengths; ``rates`` maps time dims (frame, scan, sample, step)
    to their nominal rate in Hz, so one chunk spans ``layout.chunk_seconds`` of each.
    ``checksums=False`` writes chunks without crc32c (the encoding before checksums; for
    tests and cost measurements).
    """
    n_rec = sizes["recording"]
    cr = min(layout.chunk_recordings, n_rec)
    sr = min(layout.shard_recordings, cr * math.ceil(n_rec / cr))
    per_shard = round(layout.shard_seconds / layout.chunk_seconds)
    enc = {}
    for name, spec in VARIABLES.items():
        if len(spec.dims) == 1 or spec.dims[1] not in rates:
            chunks, shards = (sr,) + tuple(sizes[d] for d in spec.dims[1:]), None  # per-recording, tiny
        else:
            tdim, rest = spec.dims[1], tuple(sizes[d] for d in spec.dims[2:])
            tc = max(1, min(round(layout.chunk_seconds * rates[tdim]), sizes[tdim]))
            ts = min(tc * per_shard, tc * math.ceil(sizes[tdim] / tc))
            chunks, shards = (cr, tc) + rest, (sr, ts) + rest
        enc[name] = {"chunks": chunks, "shards": shards, "compressors": _compressors(layout.compressor, checksums),
                     "fill_value": spec.fill}
    return enc


_DECODE_MODULES = ("zarr.codecs.", "zarr.core.buffer", "numcodecs.")


def read_failure(exc: BaseException) -> str | None:
    """What a failed chunk read says about the stored bytes, or None when ``exc`` is not a
    storage fault (a bug, a bad selection: let it raise).

    Storage faults: a crc32c mismatch (the bytes changed after they were written), any
    error raised inside a codec or while shaping decoded bytes (corrupt or truncated
    chunk), and I/O errors.
    """
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = tb.tb_frame.f_globals.get("__name__", "") if tb is not None else ""
    if isinstance(exc, OSError):
        return f"I/O error: {type(exc).__name__}: {exc}"
    if not (isinstance(exc, ValueError | RuntimeError) and where.startswith(_DECODE_MODULES)):
        return None
    if "checksum" in str(exc).lower():  # zarr.codecs.crc32c_ (3.1): "Stored and computed checksum do not match"
        return (f"checksum mismatch{' (crc32c)' if 'crc32c' in where else ''}: "
                "the chunk's bytes changed after they were written")
    return f"cannot decode the chunk: {type(exc).__name__}: {exc}"


def create_store(path: str | Path, sizes: dict[str, int], attrs: dict, encoding: dict, overwrite: bool,
                 names=None) -> None:
    """Write the metadata of an empty store (no chunks: the generator fills every region).

    ``overwrite`` replaces an existing neuroliquid store only (:func:`prepare_path`).
    ``names``: the variables to create (default: every schema variable with ``generated``)."""
    import dask.array as da  # noqa: PLC0415  (lazy template, never computed)

    data = {}
    for name, spec in VARIABLES.items():
        if (name not in names) if names is not None else not spec.generated:
            continue
        shape = tuple(sizes[d] for d in spec.dims)
        lazy = da.full(shape, spec.fill, dtype=spec.dtype, chunks=encoding[name]["shards"] or encoding[name]["chunks"])
        data[name] = xr.Variable(spec.dims, lazy, attrs=var_attrs(name))
    ds = xr.Dataset(data, attrs=attrs)
    prepare_path(path, overwrite)
    ds.to_zarr(str(path), mode="w-", compute=False, encoding={n: e for n, e in encoding.items() if n in data},
               zarr_format=3, consolidated=False, write_empty_chunks=True)


def write_region(path: str | Path, arrays: dict[str, np.ndarray], region: dict[str, slice]) -> None:
    """Write numpy ``arrays`` (schema variable name -> values) into ``region`` of the store."""
    ds = xr.Dataset({n: (VARIABLES[n].dims, a) for n, a in arrays.items()})
    ds.to_zarr(str(path), region=region, mode="r+", zarr_format=3, consolidated=False, write_empty_chunks=True)


def open_dataset(path: str | Path) -> xr.Dataset:
    """Open a store lazily with no dask chunking and no CF decoding (raw int64 ns, no masking).

    ``chunks=None`` so reads inside a Dask task never start a nested Dask computation.
    """
    p = Path(path)
    if not (p / "zarr.json").is_file():
        raise SchemaError("<store>", f"no zarr v3 store at {p} (zarr.json missing)")
    try:
        return xr.open_zarr(str(p), chunks=None, zarr_format=3, **_OPEN)
    except Exception as exc:  # corrupt metadata, wrong format
        raise SchemaError("<store>", f"cannot open {p} as a zarr v3 dataset: {type(exc).__name__}: {exc}") from exc


def zarr_arrays(path: str | Path) -> dict[str, zarr.Array]:
    """The store's zarr arrays by name (for chunk inspection)."""
    group = zarr.open_group(str(path), mode="r", zarr_format=3)
    return {name: arr for name, arr in group.arrays()}


def _shard_index(arr: zarr.Array, file_size: int, path: Path):
    """(present (chunks per shard) bool, truncated bool) from a shard file's index, or None if unknown."""
    codec = arr.metadata.codecs[0]
    names = [type(c).__name__ for c in codec.index_codecs]
    if names not in (["BytesCodec", "Crc32cCodec"], ["BytesCodec"]):
        return None  # an index layout we do not parse; zarr still checks it when reading
    per = tuple(s // c for s, c in zip(arr.shards, arr.chunks, strict=True))
    nbytes = 16 * math.prod(per) + (4 if len(names) == 2 else 0)
    if file_size < nbytes:
        return np.zeros(per, bool), True
    with open(path, "rb") as fh:
        if codec.index_location.value == "end":
            fh.seek(file_size - nbytes)
        raw = fh.read(nbytes)
    idx = np.frombuffer(raw[: 16 * math.prod(per)], "<u8").reshape(per + (2,))
    present = idx[..., 0] != _MAX_U64
    end = np.where(present, idx[..., 0] + idx[..., 1], 0)
    return present, bool((end > file_size).any())


def _shard_problems(root: Path, arr: zarr.Array, name: str, coords: tuple[int, ...]):
    """Problems of one stored object (shard, or chunk when unsharded) at grid ``coords``."""
    outer, shape = arr.shards or arr.chunks, arr.shape
    sep = getattr(arr.metadata.chunk_key_encoding, "separator", "/")
    path = root / name / Path(*("c" + sep + sep.join(map(str, coords))).split("/"))
    rs = slice(coords[0] * outer[0], min((coords[0] + 1) * outer[0], shape[0]))
    ts = slice(coords[1] * outer[1], min((coords[1] + 1) * outer[1], shape[1])) if len(shape) > 1 else slice(0, 1)
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return [("missing-chunk", rs, ts)]
    status = _shard_index(arr, size, path) if arr.shards is not None else None
    if status is None:
        return []
    present, truncated = status
    if truncated:
        return [("unreadable-chunk", rs, ts)]
    inner, out = arr.chunks, []
    # trailing dims are never split, so the index is (rows, times)
    for ci, cj in zip(*np.nonzero(~present.reshape(present.shape[0], -1)), strict=True):
        r0, t0 = rs.start + ci * inner[0], ts.start + cj * inner[1]
        if r0 < shape[0] and t0 < (shape[1] if len(shape) > 1 else 1):
            out.append(("missing-chunk", slice(r0, min(r0 + inner[0], shape[0])),
                        slice(t0, min(t0 + inner[1], shape[1]))))
    return out


def decode_problems(arr: zarr.Array, rows: slice, span: slice | None = None) -> list[tuple[str, slice, slice, str]]:
    """Inner chunks under rows x span (first two dims) that fail to read, each read alone:
    ``("unreadable-chunk", recordings, indices, why)`` (:func:`read_failure` says why).

    The slow path, for locating what a failed read hit; other errors raise.
    """
    shape, inner = arr.shape, arr.chunks
    t = span if span is not None else slice(0, shape[1] if len(shape) > 1 else 1)
    out = []
    for r0 in range(rows.start - rows.start % inner[0], min(rows.stop, shape[0]), inner[0]):
        rs = slice(r0, min(r0 + inner[0], shape[0]))
        starts = range(t.start - t.start % inner[1], min(t.stop, shape[1]), inner[1]) if len(shape) > 1 else [0]
        for t0 in starts:
            ts = slice(t0, min(t0 + inner[1], shape[1])) if len(shape) > 1 else slice(0, 1)
            try:
                arr[(rs, ts)[: len(shape)]]
            except Exception as exc:
                why = read_failure(exc)
                if why is None:
                    raise
                out.append(("unreadable-chunk", rs, ts, why))
    return out


def chunk_problems(root: str | Path, arr: zarr.Array, name: str, rows: slice | None = None,
                   span: slice | None = None, verified: set | None = None) -> list[tuple[str, slice, slice]]:
    """Missing or truncated storage under rows x span (first two dims) of a local array.

    Returns ``(kind, recordings, indices)`` per bad inner chunk, ``kind`` one of
    ``missing-chunk`` (shard file or inner chunk absent) and ``unreadable-chunk``
    (shard shorter than its index says).  Whole array when ``rows``/``span`` are None.
    Shards in ``verified`` are skipped; shards found complete are added to it.
    """
    outer, shape = arr.shards or arr.chunks, arr.shape
    r = rows or slice(0, shape[0])
    t = span or slice(0, shape[1] if len(shape) > 1 else 1)
    out = []
    for i in range(r.start // outer[0], -(-r.stop // outer[0])):
        for j in range(t.start // outer[1], -(-t.stop // outer[1])) if len(shape) > 1 else [0]:
            coords = (i, j) + (0,) * (len(shape) - 2) if len(shape) > 1 else (i,)
            if verified is not None and coords in verified:
                continue
            found = _shard_problems(Path(root), arr, name, coords)
            out += found
            if verified is not None and not found:
                verified.add(coords)
    return out
