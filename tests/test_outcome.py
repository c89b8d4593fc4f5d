"""A transfer's rows: each entry settled without copying gets its reason and the reason's code."""

from __future__ import annotations

from datetime import UTC, datetime

from tasks.endpoints import transfer_endpoints
from tasks.job import Job
from tasks.outcome import decided_row, dry_run_row, partition_failed_row
from tasks.plan import Item
from tasks.rows import Action, Kind, ReasonCode, Status

STAMP = datetime(2024, 5, 1, tzinfo=UTC)


def job(tmp_path) -> Job:
    directory, bucket = transfer_endpoints("export", str(tmp_path), "s3://b/p/")
    return Job(task_id="t", direction="export", directory=directory, bucket=bucket)


def test_a_planned_reject_keeps_the_plan_s_reason_and_code(tmp_path):
    item = Item(
        "a\\b",
        "file",
        Action.REJECT,
        3,
        reason="backslash in name",
        reason_code=ReasonCode.NAME_NOT_PORTABLE,
    )
    row = decided_row(job(tmp_path), item, Status.REJECTED, item.reason, STAMP)
    assert (row.status, row.reason, row.reason_code) == (
        Status.REJECTED,
        "backslash in name",
        ReasonCode.NAME_NOT_PORTABLE,
    )
    assert (row.kind, row.action, row.attempts, row.partition) == (Kind.FILE, "reject", 0, -1)
    assert row.destination == "s3://b/p/a\\b"


def test_work_settled_without_running_says_dry_run_or_partition_failed(tmp_path):
    item = Item("f", "file", Action.COPY, 3)
    dry = dry_run_row(job(tmp_path), item, STAMP)
    assert (dry.status, dry.reason, dry.reason_code) == (
        Status.SKIPPED,
        "dry run: would copy",
        ReasonCode.DRY_RUN,
    )
    broken = partition_failed_row(job(tmp_path), item, OSError("disk full"), STAMP)
    assert (broken.status, broken.reason, broken.reason_code) == (
        Status.FAILED,
        "partition failed: disk full",
        ReasonCode.PARTITION_FAILED,
    )
    # the flows' plain-text form of the same rows gets the same codes
    assert decided_row(job(tmp_path), item, "skipped", "dry run: would copy", STAMP) == dry
    assert (
        decided_row(job(tmp_path), item, "failed", "partition failed: disk full", STAMP) == broken
    )
