"""Cooperative cancellation of a running task: a watcher polls its flow run's state, and the copy
loops stop starting new entries once the run is being cancelled (from the UI, `ferry stream stop`,
or anything that sets the run to Cancelling). Entries already in flight finish cleanly."""

from __future__ import annotations

import threading
from uuid import UUID

_events: dict[str, threading.Event] = {}
_lock = threading.Lock()
POLL_SECONDS = 1.0


def request_all() -> bool:
    """Cancel every task watched in this process (Ctrl-C of the command that runs it). False
    when none is being watched yet."""
    with _lock:
        events = list(_events.values())
    for event in events:
        event.set()
    return bool(events)


def requested(task_id: str) -> bool:
    with _lock:
        event = _events.get(task_id)
    return event is not None and event.is_set()


class Watch:
    """Context manager: watch flow run `task_id` for cancellation while the task runs."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.event = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Watch:
        try:
            run_id = UUID(self.task_id)
        except ValueError:
            return self  # not a Prefect flow run: nothing to watch
        with _lock:
            _events[self.task_id] = self.event
        self._thread = threading.Thread(
            target=self._poll, args=(run_id,), daemon=True, name=f"ferry-cancel-{self.task_id[:8]}"
        )
        self._thread.start()
        return self

    def _poll(self, run_id: UUID) -> None:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            while not self._stop.wait(POLL_SECONDS):
                try:
                    state = client.read_flow_run(run_id).state
                except Exception:  # noqa: BLE001 - a passing API error: look again later
                    continue
                if state is not None and state.type.value in ("CANCELLING", "CANCELLED"):
                    self.event.set()
                    return

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with _lock:
            _events.pop(self.task_id, None)
