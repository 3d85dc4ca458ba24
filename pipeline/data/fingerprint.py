"""A cheap fingerprint of a store's contents: what resume and trained weights compare."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def input_fingerprint(store: str | Path) -> str:
    """The store's metadata (every ``zarr.json``) and the path, size and mtime of every
    chunk and shard file: sensor values rewritten in place change it, and it never reads
    the data (one stat per file; measured in docs/pipeline.md)."""
    store = Path(store)
    h = hashlib.sha256()
    for root, dirs, files in os.walk(store):
        dirs.sort()
        for f in sorted(files):
            p = Path(root) / f
            rel = p.relative_to(store).as_posix()
            if f == "zarr.json":
                h.update(rel.encode() + b"|" + p.read_bytes())
            else:
                st = p.stat()
                h.update(f"{rel}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]
