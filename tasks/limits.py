"""A task's bandwidth cap and transfer slots, and its counters of what is done. The flow creates
them, within its `tasks.run.RunState`, and passes them to the steps."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

MB = 1_000_000


class Bandwidth:
    """Spaces out byte grants so the long-run rate stays under `rate` bytes/s (short bursts)."""

    def __init__(self, bytes_per_second: float | None, *, burst_seconds: float = 0.25) -> None:
        self.rate = bytes_per_second
        self.burst = burst_seconds
        self._next = 0.0
        self._lock = threading.Lock()

    async def acquire(self, nbytes: int) -> None:
        if not self.rate or nbytes <= 0:
            return
        with self._lock:
            now = time.monotonic()
            start = max(self._next, now - self.burst)
            self._next = start + nbytes / self.rate
            wait = start - now
        if wait > 0:
            await asyncio.sleep(wait)


@dataclass
class TaskLimits:
    bandwidth: Bandwidth
    concurrency: int
    part_concurrency: int
    #: told of every count (the run's progress listener)
    on_count: Callable[[int, int], None] | None = None
    _gates: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: entries settled and bytes moved so far by the task in this process (read by the flow's
    #: progress artifact; bytes count as they move, not when an entry ends)
    files_done: int = 0
    bytes_done: int = 0
    #: large objects being read in byte ranges right now (they share the streams)
    large_in_flight: int = 0

    def count(self, files: int, nbytes: int) -> None:
        with self._lock:
            self.files_done += files
            self.bytes_done += nbytes
        if self.on_count is not None:
            self.on_count(files, nbytes)

    def done(self) -> tuple[int, int]:
        with self._lock:
            return self.files_done, self.bytes_done

    def _gate(self, name: str, size: int) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        with self._lock:
            key = (name, id(loop))
            if key not in self._gates:
                self._gates[key] = asyncio.Semaphore(size)
            return self._gates[key]

    def objects(self) -> asyncio.Semaphore:
        """Objects in flight for the whole task (in this process)."""
        return self._gate("objects", self.concurrency)

    @contextlib.asynccontextmanager
    async def large_object(self, streams: int):
        """Hold a place among the large objects in flight; yields how many byte ranges this one
        may read at once: `streams` shared by the large objects that start together (at least
        one each), so four large objects read as four streams, not sixteen."""
        with self._lock:
            self.large_in_flight += 1
        try:
            await asyncio.sleep(0)  # siblings started in the same pass register first
            with self._lock:
                share = max(1, streams // self.large_in_flight)
            yield share
        finally:
            with self._lock:
                self.large_in_flight -= 1

    def parts(self) -> asyncio.Semaphore:
        """Parts of large files in flight for the whole task (in this process)."""
        return self._gate("parts", self.part_concurrency)
