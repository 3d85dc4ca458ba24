"""neuroliquid kernels: CfC, LTC and LIF neurons and spike encoders on NumPy or CuPy.

Numerics only: imports numpy (and cupy lazily, in the CuPy backend); never dask,
xarray, zarr, hydra or mlflow, so it runs on a bare GPU box.
"""

from kernels.backend import Backend, BackendError, cuda_probe, get_backend

__all__ = ["Backend", "BackendError", "cuda_probe", "get_backend"]
