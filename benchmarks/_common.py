"""Helpers shared by the benchmark scripts (``from benchmarks._common import ...`` after
the script has put the repository root on sys.path)."""

from __future__ import annotations


def in_fresh_process(fn, *args):
    """``fn(*args)`` in a newly spawned Python process: one process, nothing else in it
    (measured inside a driver after its cluster runs, the same forward ran 1.3-1.6x slower)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as ex:
        return ex.submit(fn, *args).result()


def accuracy_config(store, root, workers: int, *extra: str):
    """The typed config of the accuracy benchmark's runs, composed from conf/ as the CLI does."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from pipeline.__main__ import TASKS
    from pipeline.config import PROJECT_ROOT

    overrides = ["backend=numpy", f"data.path={store}", f"scaling.n_workers={workers}",
                 "cluster.dashboard_address=127.0.0.1:0", f"paths.output_dir={root / 'out'}",
                 f"tracking.uri=sqlite:///{root / 'mlflow.db'}", f"tracking.artifact_dir={root / 'artifacts'}",
                 "tracking.experiment=bench-accuracy", *extra]
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = OmegaConf.to_object(compose("config", overrides=overrides))
    return cfg.validate(TASKS)


def quiet(fn, *args):
    """``fn(*args)`` with its stdout and stderr swallowed."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        return fn(*args)
