"""What every application (batch, loadtest, train) shares, written once: the cluster and
worker environment, the worker set-up plugin, the experiment harness, MLflow tracking,
energy, the pool sampler and scale log, and scaling (pure policy apart from the Dask
mechanism).  Imports kernels, config and data; never an application."""
