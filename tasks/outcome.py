"""What happened to one entry of a transfer, and the manifest row that records it: the one place a
transfer's rows are built, for entries the apply step copied and for those settled without it
(planned skips and rejects, a dry run, a partition that failed as a whole)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from tasks.names import printable
from tasks.rows import Action, Kind, ManifestRow, ReasonCode, Status

if TYPE_CHECKING:
    from tasks.job import Job
    from tasks.plan import Item


@dataclass(frozen=True)
class Outcome:
    """What happened to one entry. A `reason` always comes with its `reason_code`."""

    status: Status | str  # a Status, or its value
    reason: str | None = None
    bytes: int = 0
    checksum: str | None = None  # the object's ETag as written or read
    mtime_ns: int | None = None  # the source mtime actually carried over
    size: int | None = None  # the size actually copied, when it differs from the plan's
    action: Action | None = None  # when different from the planned one (check → skip / copy)
    reason_code: ReasonCode | None = None


def row(
    job: Job,
    item: Item,
    outcome: Outcome,
    *,
    partition: int,
    attempts: int,
    started_at: datetime | None,
    finished_at: datetime | None,
) -> ManifestRow:
    """One manifest row."""
    return ManifestRow(
        path=printable(item.path),
        source=printable(job.source(item.path, item.kind)),
        destination=printable(job.destination(item.path, item.kind)),
        kind=Kind.FILE if item.kind == "object" else Kind(item.kind),
        size=outcome.size if outcome.size is not None else item.size,
        mtime=outcome.mtime_ns if outcome.mtime_ns is not None else item.mtime_ns,
        action=outcome.action or item.action,
        status=outcome.status,
        reason=outcome.reason,
        bytes=outcome.bytes,
        checksum=outcome.checksum or item.etag,  # an import's source ETag, or a HEAD's
        verified=None,
        attempts=attempts,
        started_at=started_at,
        finished_at=finished_at,
        partition=partition,
        reason_code=outcome.reason_code,
    )


#: The code of an entry planned for copying but settled without it, by its status.
_NOT_RUN = {Status.SKIPPED: ReasonCode.DRY_RUN, Status.FAILED: ReasonCode.PARTITION_FAILED}


def decided_row(
    job: Job,
    item: Item,
    status: Status | str,
    reason: str | None,
    stamp: datetime,
    *,
    reason_code: ReasonCode | None = None,
) -> ManifestRow:
    """The row of an entry settled without copying (skipped, rejected, or failed as a whole
    partition): no attempt, no partition. Without `reason_code`, a planned skip or reject (whose
    reason is the item's) has the plan's code, and an entry planned for copying has `dry_run`
    when skipped, `partition_failed` when failed."""
    if reason_code is None and reason is not None:
        planned = reason == item.reason
        reason_code = item.reason_code if planned else _NOT_RUN.get(Status(status))
    return row(
        job,
        item,
        Outcome(Status(status), reason, reason_code=reason_code),
        partition=-1,
        attempts=0,
        started_at=stamp,
        finished_at=stamp,
    )


def dry_run_row(job: Job, item: Item, stamp: datetime) -> ManifestRow:
    """The row of an entry a dry run would have copied (or made, or checked)."""
    return decided_row(
        job,
        item,
        Status.SKIPPED,
        f"dry run: would {item.action}",
        stamp,
        reason_code=ReasonCode.DRY_RUN,
    )


def partition_failed_row(job: Job, item: Item, exc: BaseException, stamp: datetime) -> ManifestRow:
    """The row of an entry of a partition that failed as a whole (its machinery, not the
    entry): `exc` is what stopped the partition."""
    return decided_row(
        job,
        item,
        Status.FAILED,
        f"partition failed: {exc}",
        stamp,
        reason_code=ReasonCode.PARTITION_FAILED,
    )
