"""Chunk checksums (crc32c) and the overwrite guard of ``task=generate``.

A bit flip inside a stored chunk must fail the read as a named ``unreadable-chunk``
error (checksum mismatch) under ``fail``, mask exactly the cells that use it under
``quarantine`` and show up in ``task=check``; stores written before checksums still read.
``data.overwrite`` replaces a neuroliquid store only and never follows a link out of it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from pipeline.config import DataConfig, StoreLayout
from pipeline.data import SensorDataError, StoreReader, check_store, plan_batches, read_batch
from pipeline.data.generator import generate_store
from pipeline.data.store import has_checksums, read_failure
from pipeline.data.store_path import StorePathError

LAYOUT = dict(chunk_recordings=2, shard_recordings=2, chunk_seconds=1.0, shard_seconds=2.0)


def _config(path: Path, overwrite: bool = False) -> DataConfig:
    cfg = DataConfig(path=str(path), recordings=4, duration_s=4.0, seed=5, workers=1, overwrite=overwrite,
                     layout=StoreLayout(**LAYOUT))
    cfg.synthetic.drop_prob, cfg.synthetic.length_jitter = 0.0, 0.0
    cfg.validate()
    return cfg


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("crc")
    out = {}
    for name, checksums in (("crc", True), ("plain", False)):
        cfg = _config(root / f"{name}.zarr")
        generate_store(cfg, progress=False, checksums=checksums)
        out[name] = cfg.path
    return out


def _flip(path: str, key: str, inner: int = 1, nbytes: int = 4096) -> None:
    """XOR ``nbytes`` in the middle of inner chunk ``inner`` (in index order) of shard file ``key``,
    found from the shard index (16 bytes per inner chunk and a crc32c, at the end)."""
    f = Path(path) / key
    raw = bytearray(f.read_bytes())
    arr = zarr.open_array(str(Path(path) / key.split("/")[0]), mode="r")
    n = int(np.prod([s // c for s, c in zip(arr.shards, arr.chunks, strict=True)]))
    offset, size = np.frombuffer(bytes(raw[-16 * n - 4: -4]), "<u8").reshape(n, 2)[inner]
    assert size > nbytes
    mid = int(offset + size // 2 - nbytes // 2)
    raw[mid: mid + nbytes] = bytes(b ^ 0x5A for b in raw[mid: mid + nbytes])
    f.write_bytes(bytes(raw))


def _read_all(path: str, policy: str):
    reader = StoreReader(path)
    return [read_batch(mb, policy, reader=reader) for mb in plan_batches(path, 4, 10)]


def test_every_generated_chunk_carries_a_checksum(stores):
    arrays = zarr.open_group(stores["crc"], mode="r").arrays()
    assert all(has_checksums(a) for _, a in arrays)
    assert not any(has_checksums(a) for _, a in zarr.open_group(stores["plain"], mode="r").arrays())


def test_bit_flip_in_a_lidar_shard_fails_reads_names_the_cells_and_is_checked(stores, tmp_path):
    path = shutil.copytree(stores["crc"], tmp_path / "flipped.zarr")
    _flip(path, "lidar/c/1/0/0")  # recordings 2-3, scans 0-19: 4 KiB inside the inner chunk of scans 10-19
    with pytest.raises(SensorDataError) as info:
        _read_all(path, "fail")
    err = info.value
    assert (err.kind, err.variable, err.recordings) == ("unreadable-chunk", "lidar", (2, 3)), str(err)
    assert "checksum mismatch" in str(err) and err.time_s == (1.0, 2.0), str(err)

    good, bad = _read_all(stores["crc"], "quarantine"), _read_all(path, "quarantine")
    assert bad[1].quarantined.tolist() == [False, False, True, True]  # steps 10-19 use scans 10-19
    assert not any(b.quarantined[:2].any() for b in bad)
    for g, b in zip(good, bad, strict=True):
        keep = ~b.quarantined
        assert not b.valid[b.quarantined].any() and not b.lidar[b.quarantined].any()
        for f in ("camera", "lidar", "lidar_valid", "imu", "targets", "valid"):
            assert np.array_equal(getattr(g, f)[keep], getattr(b, f)[keep]), f
        assert all(p.kind == "unreadable-chunk" and p.variable == "lidar" and "checksum mismatch" in str(p)
                   for p in b.problems)

    report = check_store(path)
    assert [(p.kind, p.variable, p.recordings) for p in report.problems] == [("unreadable-chunk", "lidar", (2, 3))]
    assert "checksum mismatch" in report.summary()


def test_a_flipped_metadata_chunk_is_named_when_the_store_opens(stores, tmp_path):
    path = shutil.copytree(stores["crc"], tmp_path / "meta.zarr")
    f = Path(path) / "n_steps/c/1"  # recordings 2-3: two int32 and the checksum
    raw = bytearray(f.read_bytes())
    raw[0] ^= 0x01
    f.write_bytes(bytes(raw))
    with pytest.raises(SensorDataError) as info:
        StoreReader(path)
    err = info.value
    assert (err.kind, err.variable, err.recordings) == ("unreadable-chunk", "n_steps", (2, 3)), str(err)
    assert "checksum mismatch" in str(err)


def test_the_same_flip_in_a_store_without_checksums_goes_unseen(stores, tmp_path):
    """Stores written before checksums still open and read; a bit flip in them is silent."""
    assert len(_read_all(stores["plain"], "fail")) == 4
    assert check_store(stores["plain"]).ok
    assert "no checksums (bit flips go undetected)" in check_store(stores["plain"]).summary()
    path = shutil.copytree(stores["plain"], tmp_path / "flipped.zarr")
    _flip(path, "lidar/c/1/0/0")
    assert check_store(path).ok  # what checksums are for
    changed = [not np.array_equal(a.lidar, b.lidar)
               for a, b in zip(_read_all(stores["plain"], "fail"), _read_all(path, "fail"), strict=True)]
    assert any(changed)


def test_only_storage_faults_are_mapped(stores):
    arr = zarr.open_array(f"{stores['crc']}/lidar", mode="r")
    with pytest.raises(IndexError) as info:  # a bad selection is a bug, not bad data
        arr[99, 0]
    assert read_failure(info.value) is None
    assert read_failure(RuntimeError("anything")) is None
    assert read_failure(OSError(5, "Input/output error")).startswith("I/O error")


def test_output_store_chunks_carry_checksums(tmp_path):
    from pipeline.batch.outputs import OutputLayout, create

    layout = OutputLayout(n_recordings=4, n_steps=20, recordings_per_group=2, steps_per_block=10, n_outputs=3,
                          state_specs=(("h", (8,), "float32"),))
    create(tmp_path / "out.zarr", layout, step_ns=np.arange(20) * 10**8, recording_ids=np.arange(4), fingerprints={})
    arrays = dict(zarr.open_group(str(tmp_path / "out.zarr"), mode="r").arrays())
    assert {"y", "valid", "done", "state_h"} <= set(arrays)
    assert all(has_checksums(a) for a in arrays.values())


# -- data.overwrite ------------------------------------------------------------------------


def test_overwrite_refuses_a_folder_that_is_not_a_store(tmp_path):
    folder = tmp_path / "holiday"
    (folder / "2024").mkdir(parents=True)
    files = {folder / "notes.txt": b"remember the milk", folder / "2024" / "beach.jpg": b"\xff\xd8\xff\xe0 jpeg"}
    for f, data in files.items():
        f.write_bytes(data)
    with pytest.raises(StorePathError, match="refusing to overwrite .*holiday.*no zarr.json"):
        generate_store(_config(folder, overwrite=True), progress=False)
    assert {f: f.read_bytes() for f in files} == files
    assert sorted(p.name for p in folder.rglob("*")) == ["2024", "beach.jpg", "notes.txt"]


def test_overwrite_refuses_a_store_with_foreign_files_or_another_schema(stores, tmp_path):
    path = Path(shutil.copytree(stores["crc"], tmp_path / "mixed.zarr"))
    (path / "lidar" / "README.txt").write_text("mine")
    with pytest.raises(StorePathError, match="lidar/README.txt"):
        generate_store(_config(path, overwrite=True), progress=False)
    assert (path / "lidar" / "README.txt").read_text() == "mine" and (path / "vision" / "zarr.json").exists()

    other = tmp_path / "other.zarr"
    zarr.open_group(str(other), mode="w", zarr_format=3).attrs["schema"] = "someone.else/1"
    with pytest.raises(StorePathError, match="no neuroliquid schema marker"):
        generate_store(_config(other, overwrite=True), progress=False)
    assert (other / "zarr.json").exists()


def test_overwrite_removes_a_store_but_not_what_its_links_point_to(stores, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("still here")
    path = Path(shutil.copytree(stores["crc"], tmp_path / "linked.zarr"))
    os.symlink(outside, path / "lidar" / "c" / "7")  # a chunk-shaped link into someone else's folder
    os.symlink(outside, path / "elsewhere")
    before = (path / "zarr.json").stat().st_ino
    generate_store(_config(path, overwrite=True), progress=False)
    assert (outside / "keep.txt").read_text() == "still here"
    assert not (path / "elsewhere").exists() and not (path / "lidar" / "c" / "7").exists()
    assert (path / "zarr.json").stat().st_ino != before and check_store(str(path)).ok

    link = tmp_path / "link.zarr"
    os.symlink(path, link)
    with pytest.raises(StorePathError, match="symbolic link"):
        generate_store(DataConfig(path=str(link), recordings=4, duration_s=4.0, workers=1, overwrite=True,
                                  layout=StoreLayout(**LAYOUT)), progress=False)  # not validated: path kept as given
    assert (path / "zarr.json").exists()


def test_overwrite_replaces_a_neuroliquid_store(stores, tmp_path):
    path = Path(shutil.copytree(stores["crc"], tmp_path / "again.zarr"))
    cfg = _config(path, overwrite=True)
    cfg.seed = 6
    generate_store(cfg, progress=False)
    assert zarr.open_group(str(path), mode="r").attrs["seed"] == 6 and check_store(str(path)).ok
    with pytest.raises(StorePathError, match="a store exists"):
        generate_store(_config(path), progress=False)
