"""Shared by every config group: the error type and the checks that name the key."""

from __future__ import annotations

from dataclasses import fields, is_dataclass


class ConfigError(ValueError):
    """A configuration value is out of range; the message names the key."""


def require(ok: bool, key: str, why: str, value) -> None:
    if not ok:
        raise ConfigError(f"config {key}={value!r}: {why}")


def no_unknown_keys(node, prefix: str = "") -> None:
    """Hydra's ``+key=value`` adds keys a schema lacks and ``OmegaConf.to_object`` keeps
    them as stray attributes, so ``+model.hiden=3`` would be silently ignored: refuse it."""
    if is_dataclass(node):
        known = {f.name for f in fields(node)}
        extra = sorted(set(vars(node)) - known)
        if extra:
            key = f"{prefix}{extra[0]}"
            raise ConfigError(f"config {key}={getattr(node, extra[0])!r}: no such key in "
                              f"{type(node).__name__} (known: {', '.join(sorted(known))})")
        for name in known:
            no_unknown_keys(getattr(node, name), f"{prefix}{name}.")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            no_unknown_keys(item, f"{prefix[:-1]}[{i}].")
