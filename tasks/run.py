"""What one task's partitions share while it runs, created by the flow and passed to its steps:
the bandwidth cap and transfer slots (`limits`), the cancellation flag (`cancelled`), and the
progress counters with whoever listens to them.

Nothing of it is a module global. Within one process (the default thread task runner) the object
itself travels to every partition, so they share one cap and one set of slots. Pickled to another
process (a worker process or a Dask worker), it arrives with state of its own there: its share of
the cap and slots (`shared_by`: with n processes, 1/n of each, so the task's limits hold across
them), a watch on the same flow run for cancellation, and no listener.
"""

from __future__ import annotations

import threading
import weakref

from tasks import progress
from tasks.cancel import Watch
from tasks.limits import MB, Bandwidth, TaskLimits
from tasks.progress import Listener


class RunState:
    def __init__(
        self,
        task_id: str,
        *,
        bandwidth_mbps: float | None = None,
        concurrency: int = 32,
        part_concurrency: int = 16,
        listener: Listener | None = None,
        share: int = 1,
    ) -> None:
        self.task_id = task_id
        self._config = {
            "bandwidth_mbps": bandwidth_mbps,
            "concurrency": concurrency,
            "part_concurrency": part_concurrency,
            "share": share,
        }
        rate = bandwidth_mbps * MB / share if bandwidth_mbps else None
        self.limits = TaskLimits(
            Bandwidth(rate),
            max(1, concurrency // share),
            max(1, part_concurrency // share),
            on_count=self._advance,
        )
        self._watch = Watch(task_id)
        self.cancelled = self._watch.event
        self.listener = listener
        self.finished = False  # its copying is over (what follows is verify and report)
        self.elsewhere = False  # partitions run in other processes (worker processes, Dask)

    @classmethod
    def of(cls, job) -> RunState:
        """The run state of a job (its task id and options), attached to the observer of the
        code that started it in this context, if any (the command line's progress bar)."""
        run = cls(
            job.task_id,
            bandwidth_mbps=job.options.bandwidth_mbps,
            concurrency=job.options.concurrency,
        )
        observer = progress.current()
        if observer is not None:
            observer.attach(run)
        return run

    def __enter__(self) -> RunState:
        """Watch the flow run for cancellation until the task ends."""
        self._watch.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._watch.__exit__(*exc)
        self.finished = True

    def cancel(self) -> None:
        """Cancel the task here (Ctrl-C of the command that runs it), as Cancel in the UI does.
        When partitions run in other processes (`elsewhere`), the flow run is set Cancelling in
        the API too, which is how they learn it (from a thread: this may be a signal handler)."""
        self.cancelled.set()
        if self.elsewhere:
            threading.Thread(target=self._cancel_flow_run, daemon=True).start()

    def _cancel_flow_run(self) -> None:
        from uuid import UUID

        from prefect.client.orchestration import get_client
        from prefect.states import Cancelling

        try:
            with get_client(sync_client=True) as client:
                client.set_flow_run_state(UUID(self.task_id), Cancelling(), force=True)
        except Exception:  # noqa: BLE001 - not a flow run, or no API: the workers run on
            pass

    def planned(self, files: int, nbytes: int) -> None:
        if self.listener is not None:
            self.listener("planned", files, nbytes)

    def _advance(self, files: int, nbytes: int) -> None:
        if self.listener is not None:
            self.listener("advance", files, nbytes)

    def shared_by(self, processes: int) -> RunState:
        """What travels to partitions run by `processes` processes at once: each process's
        limits are 1/n of the task's (pickled as configuration; nothing of this process's own
        state goes)."""
        shared = object.__new__(RunState)
        shared.task_id = self.task_id
        shared._config = {**self._config, "share": max(1, processes)}
        return shared

    def __getstate__(self) -> dict:
        return {"task_id": self.task_id, **self._config}

    def __setstate__(self, state: dict) -> None:
        task_id = state.pop("task_id")
        self.__init__(task_id, **state)
        # every partition of the task this process runs shares one cap, one set of slots and
        # one watch (each arrives unpickled on its own): the first to arrive sets them up
        with _arrived_lock:
            first = _arrived.get(task_id)
            if first is None:
                _arrived[task_id] = self
                # this process learns of a cancellation by itself (a daemon thread, polling the
                # API until the flow run is cancelled or over)
                self._watch.__enter__()
                return
        self.limits, self._watch, self.cancelled = first.limits, first._watch, first.cancelled


#: The run states that arrived in this process from another (weakly held, by task id), so the
#: partitions of one task that run here share them; a flow's own process never uses it.
_arrived: weakref.WeakValueDictionary[str, RunState] = weakref.WeakValueDictionary()
_arrived_lock = threading.Lock()
