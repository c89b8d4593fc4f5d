"""Cooperative cancellation of a running task: a watcher polls its flow run's state and sets the
run's flag (`RunState.cancelled`) once the run is being cancelled (from the UI, `ferry stream
stop`, or anything that sets the run to Cancelling); the copy loops then start no new entry and
abandon those in flight, cleanly."""

from __future__ import annotations

import threading
from uuid import UUID

POLL_SECONDS = 1.0


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
                if state is not None and state.is_final():
                    return  # over: nothing left to cancel

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
