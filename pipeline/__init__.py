"""neuroliquid orchestration: data, Dask, scaling, load, energy, tracking, report, CLI.

Kept import-light on purpose: Dask workers re-import this package, so nothing here
pulls in xarray, zarr, dask or mlflow.  Import subpackages (``pipeline.data``, ...)
where they are used.
"""
