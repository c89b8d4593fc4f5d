"""Apply one partition of a plan: copy its entries concurrently and write its manifest part.

Every entry ends as exactly one row. An error on one entry is retried when transient, then becomes
a `failed` (or, for a write that would leave the destination, `rejected`) row; the partition goes
on with the rest.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

from tasks import cancel, progress
from tasks import limits as task_limits
from tasks.download import OutsideDestination, SafeDirectories, import_item
from tasks.errors import describe, is_transient
from tasks.job import Job, Outcome, row
from tasks.manifest import ReportDir, now
from tasks.partition import Partition
from tasks.plan import Item
from tasks.retry import backoff
from tasks.upload import export_item


@dataclass(frozen=True)
class PartitionResult:
    index: int
    counts: dict[str, int]
    bytes: int
    part_file: str


def apply_partition(job: Job, part: Partition, report: ReportDir) -> PartitionResult:
    """Copy one partition and write its manifest part file. Blocking; runs the transfers on
    s3fs's event loop."""
    rows = job.bucket.run(copy_items, job, part)
    part_file = report.write_part(f"part-{part.index:05d}", rows)
    counts = Counter(r["status"] for r in rows)
    return PartitionResult(part.index, dict(counts), sum(r["bytes"] or 0 for r in rows), part_file)


async def copy_items(client, job: Job, part: Partition) -> list[dict]:
    limits = task_limits.for_task(
        job.task_id, bandwidth_mbps=job.bandwidth_mbps, concurrency=job.concurrency
    )
    dirs = SafeDirectories(job.directory.root)

    async def one(item: Item) -> dict:
        async with limits.objects():
            started = now()
            if cancel.requested(job.task_id):
                return row(
                    job,
                    item,
                    Outcome("skipped", "cancelled before it started"),
                    partition=part.index,
                    attempts=0,
                    started_at=started,
                    finished_at=started,
                )
            attempts = 0
            while True:
                attempts += 1
                try:
                    if job.direction == "export":
                        outcome = await export_item(client, job, limits, item)
                    else:
                        outcome = await import_item(client, job, limits, item, dirs)
                    break
                except OutsideDestination as exc:
                    outcome = Outcome("rejected", str(exc))
                    break
                except Exception as exc:
                    if attempts < job.retries and is_transient(exc):
                        await asyncio.sleep(backoff(attempts))
                        continue
                    outcome = Outcome("failed", describe(exc))
                    break
            progress.advance(1, 0)
            return row(
                job,
                item,
                outcome,
                partition=part.index,
                attempts=attempts,
                started_at=started,
                finished_at=now(),
            )

    return list(await asyncio.gather(*(one(item) for item in part.items)))
