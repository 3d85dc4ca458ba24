"""The data tasks of the ``neuroliquid`` app: ``task=generate`` and ``task=check``."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Config


def generate(cfg: Config) -> dict:
    """Write the synthetic store ``data.path`` (skipped when it exists, unless ``data.overwrite``)."""
    from pipeline.data.generator import generate_store  # noqa: PLC0415  (heavy imports stay lazy)

    d = cfg.data
    if d.source != "synthetic":
        raise SystemExit(f"task=generate needs data=synthetic, got data.source={d.source!r}")
    if (Path(d.path) / "zarr.json").exists() and not d.overwrite:
        print(f"store {d.path} exists; not regenerated (data.overwrite=true to replace it)")
        return {"path": d.path, "skipped": True}
    Path(d.path).parent.mkdir(parents=True, exist_ok=True)
    info = generate_store(d)
    print(f"wrote {d.path}: {d.recordings} recordings x {d.duration_s:g} s, {info['bytes'] / 1e6:.1f} MB "
          f"in {info['seconds']:.1f} s ({info['mb_per_s']:.1f} MB/s, {info['groups']} groups)")
    return info


def check(cfg: Config) -> dict:
    """Validate the whole store ``data.path`` and print a summary; exit status 1 on problems."""
    from pipeline.data.check import check_store  # noqa: PLC0415
    from pipeline.data.errors import SchemaError  # noqa: PLC0415

    try:
        report = check_store(cfg.data.path)
    except SchemaError as exc:
        print(f"store {cfg.data.path} does not follow the schema (docs/data.md):\n  {exc}")
        raise SystemExit(1) from exc
    print(report.summary())
    if not report.ok:
        raise SystemExit(1)
    return {"path": report.path, "problems": 0}
