"""Errors raised on bad sensor input.

Every error names *what* is wrong (``kind``), *which variable*, *which recordings* and
*which time range* (seconds from each recording's start on the model clock, and the
model steps when known), so a user can find the bad rows in their own store.
"""

from __future__ import annotations


def _fmt_recordings(recordings: tuple[int, ...]) -> str:
    if not recordings:
        return "all recordings"
    shown = ", ".join(str(r) for r in recordings[:8])
    more = f", ... ({len(recordings)} in all)" if len(recordings) > 8 else ""
    return f"recording{'s' if len(recordings) > 1 else ''} [{shown}{more}]"


class SensorDataError(ValueError):
    """Bad input found before compute.

    Parameters
    ----------
    kind : str
        Short class of problem, e.g. ``"nan-or-inf"``, ``"timestamps-not-increasing"``,
        ``"missing-chunk"``, ``"unreadable-chunk"``, ``"schema"``.
    variable : str
        The store variable at fault (``"lidar"``, ``"t_cam"``, ...).
    recordings : sequence of int
        Recording indices affected (empty: the whole store).
    time_s : (float, float) or None
        Time range affected, seconds from the recording's start (model clock origin).
    steps : (int, int) or None
        Half-open model-step range affected.
    detail : str
        Free text: what was found.
    """

    def __init__(
        self,
        kind: str,
        variable: str,
        detail: str,
        *,
        recordings: tuple[int, ...] | list[int] = (),
        time_s: tuple[float, float] | None = None,
        steps: tuple[int, int] | None = None,
    ) -> None:
        self.kind = kind
        self.variable = variable
        self.recordings = tuple(int(r) for r in recordings)
        self.time_s = None if time_s is None else (float(time_s[0]), float(time_s[1]))
        self.steps = None if steps is None else (int(steps[0]), int(steps[1]))
        self.detail = detail
        where = [_fmt_recordings(self.recordings)]
        if self.time_s is not None:
            where.append(f"time {self.time_s[0]:.3f}-{self.time_s[1]:.3f} s")
        if self.steps is not None:
            where.append(f"steps {self.steps[0]}-{self.steps[1] - 1}")
        super().__init__(f"{kind}: variable {variable!r}, {', '.join(where)}: {detail}")

    def __reduce__(self):  # picklable across Dask workers despite keyword-only fields
        return (
            _rebuild,
            (type(self), self.kind, self.variable, self.detail, self.recordings, self.time_s, self.steps),
        )


def _rebuild(cls, kind, variable, detail, recordings, time_s, steps):
    return cls(kind, variable, detail, recordings=recordings, time_s=time_s, steps=steps)


class SchemaError(SensorDataError):
    """The store does not follow the recording schema (docs/data.md); always fatal."""

    def __init__(self, variable: str, detail: str, **where) -> None:
        super().__init__("schema", variable, detail, **where)

    def __reduce__(self):
        return (_rebuild_schema, (type(self), self.variable, self.detail, self.recordings, self.time_s, self.steps))


def _rebuild_schema(cls, variable, detail, recordings, time_s, steps):
    return cls(variable, detail, recordings=recordings, time_s=time_s, steps=steps)
