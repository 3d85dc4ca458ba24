"""Ctrl-C and SIGTERM that are never lost.

Python runs a signal handler in the main thread between two bytecodes, wherever that
thread is.  When that is inside a ``__del__`` (a Dask ``Future`` released as its last
reference goes, which the batch driver does for every region) or a weakref callback, the
``KeyboardInterrupt`` the handler raises is printed as "Exception ignored in ..." and
dropped: the run carried on to the end and exited 0 after a Ctrl-C (seen in CI).

:func:`install` (called by ``pipeline.__main__``) replaces Python's own SIGINT handler and
the default SIGTERM action with one that also records the signal; the driver loops call
:func:`check` where they wait, which raises the interrupt again if its first raise was
swallowed.  A signal a parent set to be ignored (``nohup``, a background job) stays ignored.
"""

from __future__ import annotations

import signal

_pending: int | None = None  # the signal received whose KeyboardInterrupt may not have got through


def _handler(signum, frame) -> None:
    global _pending
    _pending = signum
    raise KeyboardInterrupt(signal.Signals(signum).name)


def install() -> None:
    """Handle SIGINT as Python does (KeyboardInterrupt) and SIGTERM the same way, recorded."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _handler)
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _handler)


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a signal came whose raise has not been handled yet."""
    global _pending
    if _pending is not None:
        signum, _pending = _pending, None
        raise KeyboardInterrupt(signal.Signals(signum).name)


def handled() -> None:
    """The interrupt reached its handler (the entry point's ``except KeyboardInterrupt``)."""
    global _pending
    _pending = None
