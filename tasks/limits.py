"""What a task shares among its partitions in one process: a bandwidth cap and transfer slots.

Partitions of a task that run in the same process (the default thread runner) share one limiter,
found by task id. Partitions spread over several processes (a Dask cluster) each get the cap
divided by `processes`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

from tasks import progress

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
    _gates: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: entries settled and bytes moved so far by the task in this process (read by the flow's
    #: progress artifact; bytes count as they move, not when an entry ends)
    files_done: int = 0
    bytes_done: int = 0

    def count(self, files: int, nbytes: int) -> None:
        with self._lock:
            self.files_done += files
            self.bytes_done += nbytes
        progress.advance(files, nbytes)

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

    def parts(self) -> asyncio.Semaphore:
        """Parts of large files in flight for the whole task (in this process)."""
        return self._gate("parts", self.part_concurrency)


_registry: dict[str, TaskLimits] = {}
_registry_lock = threading.Lock()


def for_task(
    task_id: str, *, bandwidth_mbps: float | None, concurrency: int, part_concurrency: int = 16
) -> TaskLimits:
    with _registry_lock:
        limits = _registry.get(task_id)
        if limits is None:
            rate = bandwidth_mbps * MB if bandwidth_mbps else None
            limits = TaskLimits(Bandwidth(rate), concurrency, part_concurrency)
            _registry[task_id] = limits
        return limits


def peek(task_id: str) -> TaskLimits | None:
    """The task's limits in this process, if any partition has started."""
    with _registry_lock:
        return _registry.get(task_id)


def release(task_id: str) -> None:
    with _registry_lock:
        _registry.pop(task_id, None)
