"""A slice process: ``python worker.py <root> <args.pickle> <result.pickle>``: converts the
slices of a bag that no other process has claimed (:mod:`pipeline.data.importer.slices`).

Run as a script, not ``-m``: importing ``pipeline.data`` the usual way runs its
``__init__`` (xarray, zarr, pandas: the bulk of a process's start-up), none of which a
conversion needs.  So the ``pipeline.data`` package is registered by path only, and only the
conversion modules (numpy, rosbags) are imported.  The result ({slice: the converted
slice or the exception that stopped it}) is pickled to ``result.pickle``.
"""

from __future__ import annotations

import os
import pickle
import sys
import types


def _light_imports(root: str) -> None:
    sys.path[0] = root  # not this script's folder: its module names must not shadow others
    pkg = types.ModuleType("pipeline.data")  # its submodules import as usual; ``pipeline`` itself is light
    pkg.__path__ = [os.path.join(root, "pipeline", "data")]
    sys.modules.setdefault("pipeline.data", pkg)


def _picklable(x):
    if not isinstance(x, BaseException):
        return x
    try:
        pickle.dumps(x)
        return x
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(x).__name__}: {x}")


def main(root: str, args_path: str, result_path: str) -> int:
    _light_imports(root)
    from pipeline.data.importer.slices import claim_slices  # noqa: PLC0415

    with open(args_path, "rb") as fh:
        args = pickle.load(fh)  # noqa: S301  (written by the parent process, beside the result)
    try:
        result = {k: _picklable(v) for k, v in claim_slices(*args).items()}
    except Exception as exc:  # noqa: BLE001  (the parent raises it)
        result = _picklable(exc)
    tmp = result_path + ".tmp"
    with open(tmp, "wb") as fh:
        pickle.dump(result, fh)
    os.replace(tmp, result_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:4]))
