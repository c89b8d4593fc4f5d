"""Retries with backoff, for transient errors only (`tasks.errors.is_transient` decides)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tasks.errors import is_transient

T = TypeVar("T")


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt `attempt`: 0.2, 0.4, 0.8 … capped at 10, jittered."""
    return min(10.0, 0.2 * 2 ** (attempt - 1)) * (0.5 + random.random())


async def retrying(attempts: int, call: Callable[[], Awaitable[T]]) -> T:
    """Run `call` until it succeeds, fails for good, or `attempts` tries are spent."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except Exception as exc:
            if attempt >= attempts or not is_transient(exc):
                raise
            await asyncio.sleep(backoff(attempt))
    raise ValueError("attempts must be at least 1")
