"""The one bridge to zarr's asynchronous API: many chunk reads or writes in one round trip.

zarr-python 3 runs every synchronous ``Array`` call through its own event loop; one call
per array cost ~1.3 ms each on a loaded 2-core box, so readers and writers that touch
several arrays at once gather the coroutines of ``Array.async_array`` (public since zarr
3.1) and run them together with ``zarr.core.sync.sync``, zarr's own bridge into that loop.
This is the only module that uses ``zarr.core.sync``; the zarr range it is tested on is
pinned in pyproject.toml (tests/pipeline/test_zarr_io.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


def get_many(reads: Iterable[tuple[Any, Any]], return_exceptions: bool = False) -> list:
    """``[array[selection] for array, selection in reads]``, concurrently.  With
    ``return_exceptions`` a failed read gives its exception in place of its values (as in
    ``asyncio.gather``); otherwise the first error raises."""
    return _run([a.async_array.getitem(sel) for a, sel in reads], return_exceptions)


def set_many(writes: Iterable[tuple[Any, Any, Any]]) -> None:
    """``array[selection] = values`` for each ``(array, selection, values)``, concurrently;
    the first error raises."""
    _run([a.async_array.setitem(sel, values) for a, sel, values in writes], False)


def _run(coroutines: list, return_exceptions: bool) -> list:
    from zarr.core.sync import sync

    async def gather():
        return await asyncio.gather(*coroutines, return_exceptions=return_exceptions)

    return sync(gather())
