"""Architecture rules: layering, import cycles, Hydra targets, file length (stdlib ``ast`` only).

Every import statement counts -- module level, in functions, under ``if TYPE_CHECKING:``, in
try/except -- since a function-local import is still a dependency and can hide a cycle.
An importing layer may reach only the layers listed (``ALLOWED``):

    kernels -> kernels; never dask, distributed, xarray, zarr, hydra, omegaconf, mlflow
    pipeline.config -> itself, stdlib, hydra, omegaconf;  pipeline (__init__) -> config
    pipeline.data -> kernels, config, data;  pipeline.core -> kernels, config, data, core
    pipeline.{batch,loadtest,train} -> kernels, config, data, core and its own package
    pipeline.__main__ -> all of pipeline and kernels; imported only by benchmarks and tests
    benchmarks, conf/*.yaml (Hydra ``_target_``) -> anything, but each target must exist

Any other module in pipeline/ is outside the layout.  No import cycles anywhere.
"""

from __future__ import annotations

import ast
import re
import sys
from functools import cache
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "kernels", "benchmarks")
APPS = ("batch", "loadtest", "train")
LAYERS = ("config", "data", "core", *APPS)
LAYOUT = "(data, core, batch, loadtest, train, config, __main__)"
BASE = {"kernels", "config"}
ALLOWED: dict[str, set[str | None]] = {
    "kernels": {"kernels"},
    "config": {"config"},
    "init": {"config"},
    "data": BASE | {"data"},
    "core": BASE | {"data", "core"},
    **{app: BASE | {"data", "core", app} for app in APPS},
    "main": BASE | {"init", "data", "core", *APPS, None},  # None: stray, reported anyway
}
LABELS = {"kernels": "kernels", "init": "pipeline", "main": "pipeline.__main__"}
KERNELS_BANNED = {"dask", "distributed", "xarray", "zarr", "hydra", "omegaconf", "mlflow"}
CONFIG_EXTERNAL = set(sys.stdlib_module_names) | {"hydra", "omegaconf"}
MAX_LINES = 300
TARGET_RE = re.compile(r"_target_:\s*[\"']?([\w.]+)")


class Edge(NamedTuple):
    src: str  # importing module ("conf" for a Hydra _target_)
    dst: str  # repo module, or the top-level name of an outside module
    where: str  # "pipeline/run.py:12"
    internal: bool


def module_name(rel: Path) -> str:
    parts = rel.with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(name: str, modules) -> str | None:
    """The longest dotted prefix of ``name`` that is a repo module (None: outside the repo)."""
    parts = name.split(".")
    while parts and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts) or None


def import_edges(mod: str, rel: str, tree: ast.Module, modules) -> list[Edge]:
    package = mod if rel.endswith("__init__.py") else mod.rpartition(".")[0]
    edges = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = package.split(".")
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names
            ]
        else:
            continue
        for name in dict.fromkeys(names):
            dst = resolve(name, modules)
            if dst != mod:
                ext = name.split(".")[0]
                edges.append(Edge(mod, dst or ext, f"{rel}:{node.lineno}", bool(dst)))
    return edges


def top_level_names(tree: ast.Module) -> set[str]:
    """Names bound by module-level statements (leniently: their nested bodies count too)."""
    nodes = [n for stmt in tree.body for n in ast.walk(stmt)]
    defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    names = {n.name for n in nodes if isinstance(n, defs)} | {
        n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }
    imports = [a for n in nodes if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names]
    return names | {(a.asname or a.name).split(".")[0] for a in imports}


@cache
def build(root: Path):
    """``(modules: name -> relative path, edges, dangling _target_ messages)`` for ``root``."""
    files = [p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))]
    modules = {module_name(p.relative_to(root)): p.relative_to(root).as_posix() for p in files}
    trees = {m: ast.parse((root / r).read_text(encoding="utf-8"), r) for m, r in modules.items()}
    edges = [e for m, r in modules.items() for e in import_edges(m, r, trees[m], modules)]
    dangling = []
    for yml in sorted((root / "conf").rglob("*.y*ml")):
        rel = yml.relative_to(root).as_posix()
        for lineno, line in enumerate(yml.read_text(encoding="utf-8").splitlines(), 1):
            for target in TARGET_RE.findall(line):
                mod = resolve(target.rpartition(".")[0], modules)
                attr = target[len(mod) + 1 :].split(".")[0] if mod else ""
                if mod and attr in top_level_names(trees[mod]):
                    edges.append(Edge("conf", mod, f"{rel}:{lineno}", True))
                else:
                    dangling.append(f"{rel}:{lineno}: _target_ {target} is not in the repo")
    return modules, edges, dangling


def layer(mod: str) -> str | None:
    top, _, rest = mod.partition(".")
    sub = rest.split(".")[0]
    if top != "pipeline":
        return top  # kernels, benchmarks, conf
    return {"": "init", "__main__": "main"}.get(sub, sub if sub in LAYERS else None)


def layer_violations(modules, edges) -> list[str]:
    strays = [r for m, r in modules.items() if m.split(".")[0] == "pipeline" and not layer(m)]
    out = [f"{rel} is outside the layout {LAYOUT}" for rel in strays]
    for e in edges:
        src = layer(e.src)
        if src not in ALLOWED:  # benchmarks, conf, strays (reported above)
            continue
        head = f"{e.where}: {e.src} imports {e.dst}"
        if not e.internal:
            if src == "kernels" and e.dst in KERNELS_BANNED:
                out.append(
                    f"{head} -- kernels must never import {', '.join(sorted(KERNELS_BANNED))}"
                )
            elif src == "config" and e.dst not in CONFIG_EXTERNAL:
                out.append(f"{head} -- pipeline.config may import only stdlib, hydra, omegaconf")
            continue
        dst = layer(e.dst)
        if dst == "main":
            out.append(f"{head} -- only benchmarks and tests may import pipeline.__main__")
        elif dst not in ALLOWED[src]:
            allowed = ", ".join(sorted(LABELS.get(a, f"pipeline.{a}") for a in ALLOWED[src] if a))
            stray = f" ({modules[e.dst]} is outside the layout)" if dst is None else ""
            out.append(
                f"{head}{stray} -- {LABELS.get(src, f'pipeline.{src}')} may import only {allowed}"
            )
    return out


def cycle_violations(edges) -> list[str]:
    graph: dict[str, dict[str, list[str]]] = {}
    for e in edges:
        if e.internal:
            graph.setdefault(e.src, {}).setdefault(e.dst, []).append(e.where)

    def reach(start: str) -> set[str]:  # nodes reachable in one or more steps
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), {}):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    reachable = {n: reach(n) for n in graph}
    sccs = {
        frozenset(m for m in reachable[n] if n in reachable.get(m, ()))
        for n in graph
        if n in reachable[n]
    }
    out = []
    for scc in sorted(sccs, key=sorted):
        start = min(scc)
        paths, todo = {start: [start]}, [start]  # breadth-first: shortest cycle via start
        while start not in graph[todo[0]]:
            node = todo.pop(0)
            for nxt in sorted(graph[node]):
                if nxt in scc and nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    todo.append(nxt)
        cycle = paths[todo[0]] + [start]
        hops = "\n".join(
            f"    {a} -> {b}  ({', '.join(graph[a][b])})"
            for a, b in zip(cycle, cycle[1:], strict=False)
        )
        out.append(f"import cycle among {', '.join(sorted(scc))}:\n{hops}")
    return out


def length_violations(root: Path) -> list[str]:
    out = []
    for path in sorted([*(root / "pipeline").rglob("*.py"), *(root / "kernels").rglob("*.py")]):
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        doc = " ".join((ast.get_docstring(ast.parse(text)) or "").split())
        if lines > MAX_LINES and "over 300 lines" not in doc:
            out.append(
                f"{path.relative_to(root).as_posix()} has {lines} lines (> {MAX_LINES}): "
                "split it, or give the reason in its docstring ('over 300 lines because')"
            )
    return out


def test_layering():
    modules, edges, _ = build(ROOT)
    problems = layer_violations(modules, edges)
    assert not problems, "layering violations:\n" + "\n".join(problems)


def test_no_import_cycles():
    problems = cycle_violations(build(ROOT)[1])
    assert not problems, "\n".join(problems)


def test_hydra_targets_resolve():
    problems = build(ROOT)[2]
    assert not problems, "dangling Hydra targets:\n" + "\n".join(problems)


def test_file_length():
    problems = length_violations(ROOT)
    assert not problems, "files too long:\n" + "\n".join(problems)


def test_checker_on_synthetic_tree(tmp_path):
    files = {
        "pipeline/__init__.py": "",
        "pipeline/data/__init__.py": "from .reader import read\n",
        "pipeline/data/reader.py": "def read():\n    from pipeline.core import pool\n",
        "pipeline/core/__init__.py": "",
        "pipeline/core/pool.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
        "    from ..data import reader\n",
        "pipeline/foo.py": "import os\n" * 301,
        "kernels/__init__.py": "try:\n    import dask.array\nexcept ImportError:\n    pass\n",
        "conf/x.yaml": "a:\n  _target_: pipeline.data.reader.read\nb:\n  _target_: pipeline.x.Y\n",
    }
    for name, src in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(src)
    modules, edges, dangling = build(tmp_path)
    pairs = {(e.src, e.dst) for e in edges if e.internal}
    assert ("pipeline.data", "pipeline.data.reader") in pairs  # relative import
    assert ("pipeline.core.pool", "pipeline.data.reader") in pairs  # level 2, TYPE_CHECKING
    assert ("conf", "pipeline.data.reader") in pairs
    [cycle] = cycle_violations(edges)  # hidden in a function-local import
    assert "pipeline.core.pool, pipeline.data.reader" in cycle
    assert "pipeline/data/reader.py:2" in cycle and "pipeline/core/pool.py:4" in cycle
    layers = "\n".join(layer_violations(modules, edges))
    assert "pipeline/foo.py is outside the layout" in layers
    assert "pipeline/data/reader.py:2: pipeline.data.reader imports pipeline.core.pool" in layers
    assert "kernels/__init__.py:2: kernels imports dask -- kernels must never" in layers
    assert len(dangling) == 1 and dangling == [
        "conf/x.yaml:4: _target_ pipeline.x.Y is not in the repo"
    ]
    [long] = length_violations(tmp_path)
    assert long.startswith("pipeline/foo.py has 301 lines")
