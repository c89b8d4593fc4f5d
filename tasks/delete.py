"""Delete what a mirror's destination holds and its source does not (`delete_extra`): the
`delete` items a range's plan found (`tasks.planner.extra_items`), one manifest row each.

Never outside the destination: on export, keys are the listed ones, below the prefix; on import,
each entry is reached one directory at a time without following a link (a directory swapped for
a link is refused, `outside_tree`), the entry itself is never followed, and it is deleted only
while it is still what was listed (a file rewritten since is kept, `changed_since_listed`); a
directory is removed only when empty (one that still holds entries the task keeps is skipped,
`not_empty`).
"""

from __future__ import annotations

import errno
import os
import stat
from collections import Counter

from tasks.apply import PartitionResult
from tasks.beneath import opened_dir
from tasks.errors import OutsideTree, describe, failure_code
from tasks.job import Job
from tasks.manifest import ReportDir, now
from tasks.outcome import Outcome, row
from tasks.partition import Partition
from tasks.plan import Item
from tasks.rows import Action, ReasonCode, Status

#: Keys per DeleteObjects request (S3's most).
BATCH = 1000


def delete_partition(job: Job, part: Partition, report: ReportDir) -> PartitionResult:
    """Delete one partition of `delete` items and write its manifest part."""
    started = now()
    if job.direction == "export":
        outcomes = job.bucket.run(_delete_objects, job, part.items)
    else:
        outcomes = [_delete_local(job.directory.root, item) for item in part.items]
    finished = now()
    rows = [
        row(job, item, outcome, partition=part.index, attempts=1, started_at=started,
            finished_at=finished)
        for item, outcome in zip(part.items, outcomes, strict=True)
    ]  # fmt: skip
    part_file = report.write_part(f"part-{part.index:05d}", rows)
    counts = Counter(r.status.value for r in rows)
    problems = tuple(
        (r.path, r.status.value, r.reason or "") for r in rows if r.status == Status.FAILED
    )[:3]
    return PartitionResult(part.index, dict(counts), 0, part_file, problems)


DELETED = Outcome(Status.OK, action=Action.DELETE)


async def _delete_objects(client, job: Job, items: tuple[Item, ...]) -> list[Outcome]:
    bucket = job.bucket
    keys = [bucket.key(i.path) + ("/" if i.kind == "dir" else "") for i in items]
    for key in keys:  # the listing's own keys: below the prefix, by construction
        if not key.startswith(bucket.prefix) or key == bucket.prefix:
            raise AssertionError(f"refusing to delete {key!r}: not below {bucket.prefix!r}")
    if bucket.scheme != "s3":
        outcomes = []
        for key in keys:
            try:
                await client.data.delete(key)
                outcomes.append(DELETED)
            except Exception as exc:  # noqa: BLE001 - a row says why
                code = failure_code(exc)
                outcomes.append(Outcome(Status.FAILED, describe(exc), reason_code=code))
        return outcomes
    failed: dict[str, Outcome] = {}
    for start in range(0, len(keys), BATCH):
        batch = keys[start : start + BATCH]
        try:
            out = await client.delete_objects(
                Bucket=bucket.bucket,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )
        except Exception as exc:  # noqa: BLE001 - the whole batch's rows say why
            reason = Outcome(Status.FAILED, describe(exc), reason_code=failure_code(exc))
            failed.update(dict.fromkeys(batch, reason))
            continue
        for error in out.get("Errors", []):
            failed[error["Key"]] = Outcome(
                Status.FAILED,
                f"{error.get('Code', 'Error')}: {error.get('Message', '')}".strip(),
                reason_code=ReasonCode.ACCESS_DENIED
                if error.get("Code") == "AccessDenied"
                else ReasonCode.STORE_ERROR,
            )
    return [failed.get(k, DELETED) for k in keys]


def _delete_local(root: str, item: Item) -> Outcome:
    parent, _, name = item.path.rpartition("/")
    try:
        with opened_dir(root, parent) as dfd:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if item.kind == "dir":
                if not stat.S_ISDIR(st.st_mode):
                    return _changed("no longer a directory")
                os.rmdir(name, dir_fd=dfd)
                return DELETED
            if stat.S_ISDIR(st.st_mode) or (
                item.kind == "file" and (st.st_size != item.size or st.st_mtime_ns != item.mtime_ns)
            ):
                return _changed("changed since it was listed: kept")
            os.unlink(name, dir_fd=dfd)
            return DELETED
    except FileNotFoundError:
        return Outcome(Status.SKIPPED, "already gone", reason_code=ReasonCode.VANISHED)
    except OutsideTree as exc:
        return Outcome(Status.REJECTED, str(exc), reason_code=ReasonCode.OUTSIDE_TREE)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return Outcome(
                Status.SKIPPED,
                "directory not empty: it holds entries the task keeps",
                reason_code=ReasonCode.NOT_EMPTY,
            )
        return Outcome(Status.FAILED, describe(exc), reason_code=failure_code(exc))


def _changed(why: str) -> Outcome:
    return Outcome(Status.SKIPPED, why, reason_code=ReasonCode.CHANGED_SINCE_LISTED)


def delete_limit(max_delete: str | None, destination_entries: int) -> int | None:
    """The most deletions `max_delete` allows ('100', or '10%' of the destination's entries);
    None: no limit."""
    if max_delete is None:
        return None
    if max_delete.endswith("%"):
        return int(float(max_delete[:-1]) / 100 * destination_entries)
    return int(max_delete)
