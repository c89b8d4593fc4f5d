"""The logger a ferry step writes to: Prefect's run logger inside a flow or task run (so the lines
show on the run in the UI), the `ferry` logger outside one (a plain `.fn` call, a test)."""

from __future__ import annotations

import contextvars
import logging

_bound: contextvars.ContextVar = contextvars.ContextVar("ferry_run_log", default=None)


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("ferry")


def size(nbytes: float) -> str:
    """Bytes for people: 0 B, 4.0 KiB, 1.5 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(nbytes) < 1024 or unit == "TiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} PiB"


def bind(log) -> None:
    """Make `log` the logger of the coroutines started from here (the copies of a partition,
    which run on the storage client's event loop, outside Prefect's run context)."""
    _bound.set(log)


def bound():
    """The logger bound by `bind` in this coroutine's context, else the `ferry` logger."""
    return _bound.get() or logging.getLogger("ferry")
