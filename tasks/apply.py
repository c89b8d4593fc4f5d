"""Apply one partition of a plan: copy its entries concurrently and write its manifest part.

Every entry ends as exactly one row. An error on one entry is retried when transient, then becomes
a `failed` (or, for a write that would leave the destination, `rejected`) row; the partition goes
on with the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass

from tasks.download import OutsideDestination, SafeDirectories, import_item
from tasks.engine import UnfitKey
from tasks.errors import describe, failure_code, is_transient
from tasks.job import Job
from tasks.manifest import ReportDir, now
from tasks.names import printable
from tasks.outcome import Outcome, row
from tasks.partition import Partition
from tasks.plan import Item
from tasks.retry import backoff, count_retries, log_retry
from tasks.rows import Action, ManifestRow, ReasonCode, Status
from tasks.run import RunState
from tasks.runlog import bind
from tasks.upload import export_item


@dataclass(frozen=True)
class PartitionResult:
    index: int
    counts: dict[str, int]
    bytes: int
    part_file: str
    #: the first few rejected or failed entries: (path, status, reason)
    problems: tuple[tuple[str, str, str], ...] = ()
    #: the paths (as planned) of every entry that failed
    failed: tuple[str, ...] = ()


def apply_partition(
    job: Job, part: Partition, report: ReportDir, run: RunState | None = None
) -> PartitionResult:
    """Copy one partition and write its manifest part file. Blocking; runs the transfers on
    s3fs's event loop, within the run's limits, until it is cancelled (a partition run on its
    own gets a run state of its own)."""
    from tasks.runlog import run_logger

    rows = job.bucket.run(copy_items, job, part, run or RunState.of(job), run_logger())
    part_file = report.write_part(f"part-{part.index:05d}", rows)
    counts = Counter(r.status.value for r in rows)
    problems = tuple(
        (r.path, r.status.value, r.reason or "")
        for r in rows
        if r.status in (Status.REJECTED, Status.FAILED)
    )[:PROBLEMS_SHOWN]
    failed = tuple(
        i.path for i, r in zip(part.items, rows, strict=True) if r.status == Status.FAILED
    )
    return PartitionResult(
        part.index, dict(counts), sum(r.bytes or 0 for r in rows), part_file, problems, failed
    )


def skipped_partition(job: Job, part: Partition, report: ReportDir, reason: str) -> PartitionResult:
    """The rows of a partition that never started (the task was cancelled first): each entry
    skipped for `reason`, as a partition that starts cancelled records them."""
    stamp = now()
    rows = [
        row(job, i, _cancelled(reason), partition=part.index, attempts=0, started_at=stamp,
            finished_at=stamp)
        for i in part.items
    ]  # fmt: skip
    part_file = report.write_part(f"part-{part.index:05d}", rows)
    return PartitionResult(part.index, {Status.SKIPPED.value: len(rows)}, 0, part_file)


#: How many rejected or failed entries a partition's log line names.
PROBLEMS_SHOWN = 3


async def copy_items(
    client, job: Job, part: Partition, run: RunState, log=None
) -> list[ManifestRow]:
    """Every entry of the partition, `job.options.concurrency` at a time; `log` (the run's logger)
    gets a line for each retry, and one when a cancellation abandons the transfers in flight."""
    limits = run.limits
    dirs = SafeDirectories(job.directory.root)
    stop = asyncio.Event()

    def settled(item: Item, outcome: Outcome, attempts: int, started) -> ManifestRow:
        return row(
            job,
            item,
            outcome,
            partition=part.index,
            attempts=attempts,
            started_at=started,
            finished_at=now(),
        )

    async def one(item: Item) -> ManifestRow:
        async with limits.objects():
            started = now()
            if stop.is_set():
                return settled(item, _cancelled(CANCELLED_BEFORE), 0, started)
            retried = count_retries()  # every retry of this object's requests, at any level
            attempts = 0
            while True:
                attempts += 1
                try:
                    if job.direction == "export":
                        work = export_item(client, job, limits, item)
                    else:
                        work = import_item(client, job, limits, item, dirs)
                    outcome = await unless_stopped(work, stop)
                    break
                except Abandoned:
                    outcome = await _abandoned(client, job, item)
                    break
                except OutsideDestination as exc:
                    outcome = Outcome(
                        Status.REJECTED, str(exc), reason_code=ReasonCode.OUTSIDE_TREE
                    )
                    break
                except UnfitKey as exc:  # a name the store's engine cannot address
                    code = ReasonCode.NAME_NOT_PORTABLE
                    outcome = Outcome(Status.REJECTED, str(exc), reason_code=code)
                    break
                except Exception as exc:
                    if attempts < job.options.retries and is_transient(exc):
                        log_retry(printable(item.path), attempts, job.options.retries, exc)
                        with contextlib.suppress(Abandoned):
                            await unless_stopped(asyncio.sleep(backoff(attempts)), stop)
                        if not stop.is_set():
                            continue
                    outcome = Outcome(Status.FAILED, describe(exc), reason_code=failure_code(exc))
                    break
            limits.count(1, 0)
            return settled(item, outcome, 1 + retried[0], started)

    if log is not None:
        bind(log)  # the copies (and their part and range retries) log to the run
    watcher = asyncio.ensure_future(_watch(run, stop, log))
    try:
        return list(await asyncio.gather(*(one(item) for item in part.items)))
    finally:
        watcher.cancel()


CANCELLED_BEFORE = "cancelled before it started"
CANCELLED_IN_FLIGHT = "cancelled: abandoned in flight (the destination is as it was)"
LANDED_AS_CANCELLED = "written as the task was cancelled (the store had committed it)"


def _cancelled(reason: str) -> Outcome:
    return Outcome(Status.SKIPPED, reason, reason_code=ReasonCode.CANCELLED)


async def _abandoned(client, job: Job, item: Item) -> Outcome:
    """The row of a transfer abandoned in flight. A download's temporary file is gone and its
    final name untouched; but a PUT the store committed just before the cancellation reached
    it did land, whole (a PUT is atomic): a HEAD tells, so the row never says otherwise."""
    if job.direction != "export" or item.kind not in ("file", "symlink", "special"):
        return _cancelled(CANCELLED_IN_FLIGHT)
    from tasks.metadata import restored_mtime
    from tasks.sameness import difference

    try:
        head = await asyncio.wait_for(client.data.head(job.bucket.key(item.path)), 10)
    except Exception:  # noqa: BLE001 - not there (or not knowable): it did not land
        return _cancelled(CANCELLED_IN_FLIGHT)
    stored, _ = restored_mtime(head.metadata, None)
    size = item.size if item.kind == "file" else 0
    if difference(
        size=size,
        mtime_ns=item.mtime_ns,
        found_size=head.size,
        found_mtime_ns=stored,
    ):
        return _cancelled(CANCELLED_IN_FLIGHT)
    return Outcome(
        Status.OK,
        LANDED_AS_CANCELLED,
        bytes=size,
        checksum=head.etag,
        mtime_ns=stored,
        action=Action.COPY,
        reason_code=ReasonCode.LANDED_WHEN_CANCELLED,
    )


#: How often the copy loop looks at the task's cancellation flag.
STOP_POLL_SECONDS = 0.2


class Abandoned(Exception):
    """The task was cancelled while this transfer was in flight; its cleanup has run."""


async def _watch(run: RunState, stop: asyncio.Event, log=None) -> None:
    while not run.cancelled.is_set():
        await asyncio.sleep(STOP_POLL_SECONDS)
    if log is not None:
        log.warning("cancelled: abandoning the transfers in flight and starting no new ones")
    stop.set()


async def unless_stopped(awaitable, stop: asyncio.Event):
    """The awaitable's result, unless `stop` is set first: then the work is cancelled (its own
    cleanup aborts multipart uploads and removes temporary files) and Abandoned is raised."""
    work = asyncio.ensure_future(awaitable)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if not work.done():
        work.cancel()
        try:
            return await work  # it may have finished before the cancel reached it
        except asyncio.CancelledError:
            raise Abandoned from None
    return work.result()
