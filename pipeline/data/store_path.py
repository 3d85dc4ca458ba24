"""Which paths a new store may be written to, and which ``data.overwrite`` may replace.

``data.overwrite`` replaces only a neuroliquid store (:func:`prepare_path`): a directory
whose ``zarr.json`` is a zarr v3 group carrying the schema marker and which holds nothing
but zarr metadata and chunks.  Anything else (a folder of photos, another zarr store) is
refused, deleting nothing; symbolic links are never followed when a store is removed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from pipeline.data.schema import SCHEMA_VERSION


class StorePathError(FileExistsError):
    """A store cannot be written at a path: it holds something that is not a neuroliquid
    store (refused, never deleted), or a store is there and overwrite is off."""


_SCHEMA_FAMILY = SCHEMA_VERSION.rsplit("/", 1)[0] + "/"  # any version of the recording schema
_CHUNK_KEY = re.compile(r"c([./]\d+)*")  # a chunk key's first part: "c", "c/0/1" or "c.0.1" encodings


def _not_a_store(p: Path) -> str | None:
    """Why directory ``p`` is not a neuroliquid store, or None when it is one.

    A neuroliquid store: ``zarr.json`` is a zarr v3 group whose ``schema`` attr is a
    ``neuroliquid.recordings/*`` version, and every other entry is an array of it (its own
    ``zarr.json`` plus chunk keys: ``c``, digits below) -- zarr writes nothing else.
    Symbolic links inside are not inspected: removal unlinks them, never their targets.
    """
    meta = p / "zarr.json"
    if meta.is_symlink() or not meta.is_file():
        return "it has no zarr.json (not a zarr v3 store)"
    try:
        doc = json.loads(meta.read_text())
    except (OSError, ValueError) as exc:
        return f"its zarr.json is not readable JSON ({exc})"
    if not isinstance(doc, dict) or doc.get("zarr_format") != 3 or doc.get("node_type") != "group":
        return "its zarr.json is not a zarr v3 group"
    schema = (doc.get("attributes") or {}).get("schema")
    if not (isinstance(schema, str) and schema.startswith(_SCHEMA_FAMILY)):
        return f"its attrs carry no neuroliquid schema marker (schema={schema!r}, expected {SCHEMA_VERSION!r})"
    foreign = []
    for top in sorted(os.scandir(p), key=lambda e: e.name):
        if top.is_symlink() or (top.name == "zarr.json" and top.is_file(follow_symlinks=False)):
            continue
        if not top.is_dir(follow_symlinks=False) or not (Path(top.path) / "zarr.json").is_file():
            foreign.append(top.name)
            continue
        for entry in os.scandir(top.path):
            if entry.is_symlink() or entry.name == "zarr.json" and entry.is_file(follow_symlinks=False):
                continue
            if not _CHUNK_KEY.fullmatch(entry.name):
                foreign.append(f"{top.name}/{entry.name}")
            elif entry.is_dir(follow_symlinks=False):
                for dirpath, dirs, files in os.walk(entry.path):  # never descends into links
                    foreign += [os.path.relpath(os.path.join(dirpath, n), p) for n in dirs + files if not n.isdigit()]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f", ... ({len(foreign)} in all)" if len(foreign) > 5 else "")
        return f"it holds entries that are not zarr metadata or chunks: {shown}"
    return None


def is_store(path: str | Path) -> bool:
    """Whether ``path`` is a directory (not a link to one) that :func:`prepare_path` may replace."""
    p = Path(path)
    return not p.is_symlink() and p.is_dir() and _not_a_store(p) is None


def prepare_path(path: str | Path, overwrite: bool) -> None:
    """Make ``path`` ready for a new store; raise :class:`StorePathError` (deleting nothing)
    unless it is absent, an empty directory, or -- with ``overwrite`` -- a neuroliquid store,
    which is then removed.

    A ``path`` that is itself a symbolic link is refused under ``overwrite`` (the link would
    have to be followed to delete its target); links inside a store are unlinked, and what
    they point to is left alone.
    """
    p = Path(path)
    if overwrite and p.is_symlink():
        raise StorePathError(f"refusing to overwrite {p}: it is a symbolic link (to {os.readlink(p)}); "
                             "overwrite never follows links: give the store's own path")
    if not p.exists():
        return
    if not p.is_dir():
        raise StorePathError(f"cannot write a store at {p}: it exists and is not a directory")
    if not any(p.iterdir()):
        return
    why = _not_a_store(p)
    if why is not None:
        raise StorePathError(f"refusing to {'overwrite' if overwrite else 'write a store into'} {p}: {why}; "
                             "data.overwrite only replaces a neuroliquid recording store")
    if not overwrite:
        raise StorePathError(f"a store exists at {p} (data.overwrite=true replaces it)")
    shutil.rmtree(p)  # unlinks symbolic links inside, never follows them
