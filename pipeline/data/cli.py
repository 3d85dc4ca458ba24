"""The data tasks of the ``neuroliquid`` app: ``task=generate`` and ``task=check``."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Config


def generate(cfg: Config) -> dict:
    """Write the synthetic store ``data.path`` (skipped when it exists, unless ``data.overwrite``).

    ``data.overwrite`` replaces a neuroliquid store only: any other non-empty path is
    refused with exit status 1 and left untouched (:func:`pipeline.data.store_path.prepare_path`).
    """
    from pipeline.data.generator import generate_store  # noqa: PLC0415  (heavy imports stay lazy)
    from pipeline.data.store_path import StorePathError, is_store  # noqa: PLC0415

    d = cfg.data
    if d.source != "synthetic":
        raise SystemExit(f"task=generate needs data=synthetic, got data.source={d.source!r}")
    if is_store(d.path) and not d.overwrite:
        print(f"store {d.path} exists; not regenerated (data.overwrite=true to replace it)")
        return {"path": d.path, "skipped": True}
    Path(d.path).parent.mkdir(parents=True, exist_ok=True)
    try:
        info = generate_store(d)
    except StorePathError as exc:
        raise SystemExit(f"task=generate: {exc}") from exc
    print(f"wrote {d.path}: {d.recordings} recordings x {d.duration_s:g} s, {info['bytes'] / 1e6:.1f} MB "
          f"in {info['seconds']:.1f} s ({info['mb_per_s']:.1f} MB/s, {info['groups']} group{'s' if info['groups'] != 1 else ''})")
    return info


def check(cfg: Config) -> dict:
    """Validate the whole store ``data.path`` and print a summary; exit status 1 on problems."""
    from pipeline.data.check import check_store  # noqa: PLC0415
    from pipeline.data.errors import SchemaError, SensorDataError  # noqa: PLC0415

    try:
        report = check_store(cfg.data.path)
    except SchemaError as exc:
        print(f"store {cfg.data.path} does not follow the schema (docs/data.md):\n  {exc}")
        raise SystemExit(1) from exc
    except SensorDataError as exc:  # per-recording metadata missing or unreadable: nothing else can be read
        print(f"store {cfg.data.path} cannot be opened:\n  {exc}")
        raise SystemExit(1) from exc
    print(report.summary())
    if not report.ok:
        raise SystemExit(1)
    return {"path": report.path, "problems": 0}
