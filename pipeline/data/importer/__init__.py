"""ROS 1 / ROS 2 bags (sqlite3, MCAP) to recording stores: ``neuroliquid task=import``.

``discover`` (bags -> recordings, the first counting pass), ``source`` (one reading
interface, named errors), ``messages`` (message -> schema row, pure numpy), ``resample``
(IMU rate, targets on the model clock), ``cdr`` (raw fast paths), ``convert`` (one time slice's messages),
``slices`` and ``worker`` (time slices of one bag in parallel), ``stage`` (one recording, a Dask task),
``assemble`` (the store, one task per shard group), ``report`` (the summary table),
``run`` (the task).  Needs the ``.[import]`` extra.  docs/data.md, "Your own recordings".
"""

from pipeline.data.importer.source import BagError

__all__ = ["BagError", "ImportFailed", "import_bags"]


def __getattr__(name: str):
    """``import_bags`` and ``ImportFailed`` on first use: a slice process (``worker``) imports
    the conversion modules without the store-writing ones (xarray, zarr, dask)."""
    if name in ("ImportFailed", "import_bags"):
        from pipeline.data.importer import run  # noqa: PLC0415

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
