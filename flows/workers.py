"""Where a task's partitions run: the flow's own process, this machine's worker processes, or an
existing Dask cluster. Always through a Prefect task runner (Prefect's `ProcessPoolTaskRunner`,
prefect-dask's `DaskTaskRunner`), so each partition stays a task run of the flow run, and nothing
here schedules, retries or moves work itself.

- `workers` worker processes, each with its own event loop and storage client, run the
  ranges and partitions; `workers=1` runs them in the flow's process as before. By default a
  task starts in the flow's process and moves to the machine's cores once the work planned so
  far pays for them (`Growing`: a worker process costs seconds of CPU to start).
- `dask_address` (or `FERRY_DASK_ADDRESS`) sends them to the scheduler at that address instead:
  Dask places them on its workers and runs a partition again elsewhere when its worker dies.

The task's limits hold across the processes: each of the `n` processes that may run partitions
at once gets `1/n` of the bandwidth cap and of the objects in flight (`RunState.shared_by`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tasks.errors import UsageError

#: The environment variable naming a Dask scheduler when `dask_address` is not given.
DASK_ENV = "FERRY_DASK_ADDRESS"


@dataclass
class Placement:
    """Where partitions run: `runner` (None: the flow's own task runner, in its process), and how
    many processes share the task's limits (`processes`)."""

    runner: Any
    processes: int
    where: str

    def run_state(self, run):
        """What travels with each partition: the run's state itself in this process; elsewhere
        its 1/n share of the limits (and the run learns that its partitions run elsewhere, so a
        Ctrl-C also cancels the flow run in the API, where they see it)."""
        run.elsewhere = self.runner is not None
        return run if self.runner is None else run.shared_by(self.processes)

    def heard(self, run, done) -> None:
        """A partition ended elsewhere: its counts reach the run's progress now (here, they
        reached it as they moved)."""
        if self.runner is not None:
            run.limits.count(sum(done.counts.values()), done.bytes)

    @staticmethod
    def release(future) -> None:
        """Let the runner forget a future whose result has been used. Dask keeps the result of
        a future its client still holds and, when the worker holding it dies, runs the task
        again to get it back: a range planned again then, after its copies, would record its
        entries twice."""
        wrapped = getattr(future, "wrapped_future", None)
        if wrapped is not None and hasattr(wrapped, "release"):
            wrapped.release()

    def submit(self, task, **parameters):
        """A Prefect future of `task(**parameters)`, as a task run of the current flow run."""
        if self.runner is None:
            return task.submit(**parameters)
        with _ctrl_c_held():
            return self.runner.submit(task, parameters=parameters)


@contextlib.contextmanager
def _ctrl_c_held():
    """Ctrl-C blocked in this thread for a moment: the threads Prefect's process pool starts
    now (it submits from threads of its own), and the worker processes those spawn, inherit the
    blocked signal, so a Ctrl-C that reaches the process group while a worker is still starting
    is never a traceback in it (once started, it ignores Ctrl-C). A Ctrl-C meant for this
    process waits, pending, until the block ends."""
    import signal

    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def dask_address(options) -> str | None:
    return options.dask_address or os.environ.get(DASK_ENV) or None


#: A worker process costs 5-8 s of CPU to start (Prefect's process pool spawns: Python, Prefect
#: and ferry load in each; `benchmarks/scale.py`). By default a task gets one per this much work.
FILES_PER_WORKER = 10_000
BYTES_PER_WORKER = 8 * 2**30


def worker_count(options, files: int | None = None, nbytes: int = 0) -> int:
    """The worker processes of a task: `workers` when given; by default the machine's cores,
    but no more than the task's work pays for (one per FILES_PER_WORKER files or
    BYTES_PER_WORKER bytes, when the work is known)."""
    if options.workers:
        return options.workers
    cores = os.cpu_count() or 1
    if files is None:
        return cores
    return max(1, min(cores, files // FILES_PER_WORKER + nbytes // BYTES_PER_WORKER))


def check_dask(options) -> None:
    """A Dask scheduler address that is malformed or does not answer is one line, before any
    listing (a TCP connection to it, 5 s at most)."""
    address = dask_address(options)
    if not address:
        return
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if parts.scheme not in ("tcp", "tls") or not host or not port:
        raise UsageError("not a Dask scheduler address (try tcp://host:8786)", where=address)
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(f"cannot reach the Dask scheduler ({reason})", where=address) from None


@contextlib.contextmanager
def placement(
    options, partitions: int, *, files: int | None = None, nbytes: int = 0
) -> Iterator[Placement]:
    """The placement of a task's `partitions`, which carry `files` entries and `nbytes` bytes
    (a context: the runner is started and stopped)."""
    address = dask_address(options)
    if address:
        with _dask(address) as (runner, workers):
            processes = max(1, min(workers, partitions))
            yield Placement(runner, processes, f"Dask at {address} ({workers} workers)")
        return
    processes = min(worker_count(options, files, nbytes), partitions, options.concurrency)
    if processes <= 1:
        yield Placement(None, 1, "the flow's process")
        return
    with _pool(processes) as placed:
        yield placed


class Growing:
    """The placement of a task planned a range at a time: it starts where `options` say (a
    Dask cluster, `workers` processes, or the flow's process) and, by default, moves from the
    flow's process to this machine's worker processes once the work planned so far pays for
    them (`worker_count`). A task with a bandwidth cap stays where it started, so that its cap
    holds while partitions already running keep theirs."""

    def __init__(self, options, stack: contextlib.ExitStack) -> None:
        self.options, self._stack = options, stack
        self._fixed = bool(dask_address(options) or options.workers or options.bandwidth_mbps)
        if dask_address(options) or options.workers:
            self.current = stack.enter_context(placement(options, sys.maxsize))
        else:
            self.current = Placement(None, 1, "the flow's process")

    def grow(self, files: int, nbytes: int, waiting: int) -> bool:
        """Move to worker processes if the work planned so far (`files`, `nbytes`) pays for
        them and `waiting` partitions are left to run; whether it moved."""
        if self._fixed or waiting < 2:
            return False
        processes = min(worker_count(self.options, files, nbytes), self.options.concurrency)
        if processes < 2:
            return False
        self._fixed = True
        self.current = self._stack.enter_context(_pool(processes))
        return True


@contextlib.contextmanager
def _pool(processes: int) -> Iterator[Placement]:
    from prefect.task_runners import ProcessPoolTaskRunner

    pool = ProcessPoolTaskRunner(max_workers=processes, initializer=ignore_ctrl_c)
    with _api_for_workers(), pool as runner:
        yield Placement(runner, processes, f"{processes} worker processes")


def ignore_ctrl_c() -> None:
    """In each worker process: a Ctrl-C at the terminal reaches the whole process group, and
    the command cancels the task itself (its workers learn it from the flow run's state)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _api_for_workers():
    """The worker processes reach the flow's own Prefect API: the one in the environment, or
    else the one this process uses (a temporary local API, or a test harness's), put in the
    environment they start with. Without it each worker would start a temporary API of its own
    (15-30 s) and record its task runs where nobody looks."""
    if os.environ.get("PREFECT_API_URL"):
        yield
        return
    from prefect.client.orchestration import get_client

    os.environ["PREFECT_API_URL"] = str(get_client(sync_client=True).api_url).rstrip("/")
    try:
        yield
    finally:
        os.environ.pop("PREFECT_API_URL", None)


@contextlib.contextmanager
def _dask(address: str):
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise UsageError(
            "running on a Dask cluster needs prefect-dask: pip install 'ferry[dask]'",
            where=address,
        ) from None
    runner = DaskTaskRunner(address=address, client_kwargs={"timeout": "30s"})
    try:
        runner.__enter__()
    except (OSError, TimeoutError) as exc:
        raise UsageError(
            f"cannot reach the Dask scheduler ({' '.join(str(exc).split())[:200]})", where=address
        ) from None
    try:
        workers = len(runner.client.scheduler_info(n_workers=-1).get("workers", {}))
        yield runner, max(1, workers)
    finally:
        runner.__exit__(None, None, None)
