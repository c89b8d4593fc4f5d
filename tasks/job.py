"""What every partition of one transfer task needs to know: the two endpoints and the options."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tasks.endpoints import BucketPrefix, Directory
from tasks.names import printable
from tasks.options import Options
from tasks.plan import Direction


@dataclass(frozen=True)
class Job:
    task_id: str
    direction: Direction
    directory: Directory  # the file-system side
    bucket: BucketPrefix  # the object-store side
    options: Options = Options()

    def source(self, path: str, kind: str) -> str:
        return (
            self._bucket_url(path, kind)
            if self.direction == "import"
            else self.directory.join(path)
        )

    def destination(self, path: str, kind: str) -> str:
        return (
            self.directory.join(path)
            if self.direction == "import"
            else self._bucket_url(path, kind)
        )

    def _bucket_url(self, path: str, kind: str) -> str:
        key = self.bucket.key(path) + ("/" if kind == "dir" else "")
        return f"s3://{self.bucket.bucket}/{key}"


@dataclass(frozen=True)
class Outcome:
    """What happened to one entry."""

    status: str  # ok, skipped, rejected, failed
    reason: str | None = None
    bytes: int = 0
    checksum: str | None = None  # the object's ETag as written or read
    mtime_ns: int | None = None  # the source mtime actually carried over
    size: int | None = None  # the size actually copied, when it differs from the plan's
    action: str | None = None  # when different from the planned one (check → skip / copy)


def row(
    job: Job,
    item,
    outcome: Outcome,
    *,
    partition: int,
    attempts: int,
    started_at: datetime | None,
    finished_at: datetime | None,
) -> dict:
    """One manifest row."""
    kind = "file" if item.kind == "object" else item.kind
    return {
        "path": printable(item.path),
        "source": printable(job.source(item.path, item.kind)),
        "destination": printable(job.destination(item.path, item.kind)),
        "kind": kind,
        "size": outcome.size if outcome.size is not None else item.size,
        "mtime": outcome.mtime_ns if outcome.mtime_ns is not None else item.mtime_ns,
        "action": outcome.action or item.action,
        "status": outcome.status,
        "reason": outcome.reason,
        "bytes": outcome.bytes,
        "checksum": outcome.checksum or (item.etag if job.direction == "import" else None),
        "verified": None,
        "attempts": attempts,
        "started_at": started_at,
        "finished_at": finished_at,
        "partition": partition,
    }


def decided_row(job: Job, item, status: str, reason: str | None, stamp: datetime) -> dict:
    """The row of an entry settled without copying (skipped, rejected, or failed as a whole
    partition): no attempt, no partition."""
    return row(
        job,
        item,
        Outcome(status, reason),
        partition=-1,
        attempts=0,
        started_at=stamp,
        finished_at=stamp,
    )
