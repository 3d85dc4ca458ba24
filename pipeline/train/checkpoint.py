"""Per-epoch training checkpoints without pickle: the model's and Adam's tensors in one
safetensors file, the loop's counters in its JSON metadata.

``<output_dir>/checkpoints/<run>/last.safetensors`` after every epoch (and ``best.safetensors``
for the best validation loss so far); ``resume=<run>`` continues from ``last``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def save(path: Path, model, optimizer, meta: dict) -> None:
    """Atomically write the model's state, the optimizer's per-parameter state and ``meta``."""
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for i, st in opt["state"].items():
        for k, v in st.items():
            tensors[f"opt.{i}.{k}"] = v.detach().contiguous().clone()
    meta = {**meta, "lr": [g["lr"] for g in opt["param_groups"]]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata={"meta": json.dumps(meta, sort_keys=True)})
    os.replace(tmp, path)


def load(path: Path, model, optimizer=None) -> dict:
    """Restore ``model`` (and ``optimizer``) from ``path``; returns the saved ``meta``."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()["meta"])
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    if optimizer is not None:
        state = optimizer.state_dict()
        per: dict[int, dict] = {}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, i, name = k.split(".", 2)
                per.setdefault(int(i), {})[name] = v
        state["state"] = per
        for g, lr in zip(state["param_groups"], meta.get("lr", []), strict=False):
            g["lr"] = lr
        optimizer.load_state_dict(state)
    return meta
