"""In-process progress events, for a live progress bar in the CLI.

Partitions call `advance` as entries finish; whoever started the task in this process (the CLI)
may `listen`. The Prefect progress artifact is updated separately, per partition, by the flow.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

Listener = Callable[[str, int, int, int], None]  # (event, files, bytes, total-or-0)

_listeners: list[Listener] = []
_lock = threading.Lock()


def listen(listener: Listener) -> Callable[[], None]:
    with _lock:
        _listeners.append(listener)

    def stop() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return stop


def _emit(event: str, files: int, nbytes: int, total: int = 0) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(event, files, nbytes, total)


def planned(files: int, nbytes: int) -> None:
    _emit("planned", files, nbytes)


def advance(files: int, nbytes: int) -> None:
    _emit("advance", files, nbytes)
