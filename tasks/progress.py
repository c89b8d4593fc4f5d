"""Following a task from the code that started it in this process (the command line's progress
bar and Ctrl-C): the caller sets an `Observer` for its context (`observing`), and the flow attaches
the run state it creates to it (`RunState.of`). Nothing is shared through a module global."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tasks.run import RunState

#: (event, files, bytes): "planned" with each range's work as it is planned (the totals grow),
#: "advance" with each step's share.
Listener = Callable[[str, int, int], None]


class Observer:
    """The runs started in one context, with one listener for their progress."""

    def __init__(self, listener: Listener | None = None) -> None:
        self.listener = listener
        self._runs: list[RunState] = []
        self._lock = threading.Lock()

    def attach(self, run: RunState) -> None:
        run.listener = self.listener
        with self._lock:
            self._runs.append(run)

    def cancel_all(self) -> bool:
        """Cancel every run attached that is still copying; False when there is none (before
        the copy starts, or after it ends: a Ctrl-C then interrupts at once)."""
        with self._lock:
            runs = [r for r in self._runs if not r.finished]
        for run in runs:
            run.cancel()
        return bool(runs)


_observer: ContextVar[Observer | None] = ContextVar("ferry_observer", default=None)


@contextlib.contextmanager
def observing(observer: Observer) -> Iterator[Observer]:
    token = _observer.set(observer)
    try:
        yield observer
    finally:
        _observer.reset(token)


def current() -> Observer | None:
    """The observer of the code that started this task in this context, if any."""
    return _observer.get()
