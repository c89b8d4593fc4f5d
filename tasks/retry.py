"""Retries with backoff, for transient errors only (`tasks.errors.is_transient` decides)."""

from __future__ import annotations

import asyncio
import contextvars
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tasks.errors import is_transient

T = TypeVar("T")


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt `attempt`: 0.2, 0.4, 0.8 … capped at 10, jittered."""
    return min(10.0, 0.2 * 2 ** (attempt - 1)) * (0.5 + random.random())


async def retrying(attempts: int, call: Callable[[], Awaitable[T]], what: str = "") -> T:
    """Run `call` until it succeeds, fails for good, or `attempts` tries are spent; each retry is
    a line in the run's log (`what` names the work)."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except Exception as exc:
            if attempt >= attempts or not is_transient(exc):
                raise
            log_retry(what, attempt, attempts, exc)
            await asyncio.sleep(backoff(attempt))
    raise ValueError("attempts must be at least 1")


_retries: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "ferry_retries", default=None
)


def count_retries() -> list[int]:
    """Count, from here on in this coroutine (and the tasks and threads it starts), every retry
    made at any level — the object, a part, a byte range: `box[0]`. An object's true attempts
    are 1 + its retries, whichever request was tried again."""
    box = [0]
    _retries.set(box)
    return box


def log_retry(what: str, attempt: int, attempts: int, exc: BaseException) -> None:
    """The one thing every retry does before waiting: count it, and say it in the run's log."""
    from tasks.errors import describe
    from tasks.runlog import bound

    box = _retries.get()
    if box is not None:
        box[0] += 1
    bound().warning(
        "retrying %s (attempt %d of %d failed: %s)",
        what or "a request",
        attempt,
        attempts,
        describe(exc),
    )
