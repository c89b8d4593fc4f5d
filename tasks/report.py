"""The report step: merge a run's part files into its manifest, write the summary, and publish
Prefect artifacts (a markdown summary and a table of rejected and failed entries)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from tasks.manifest import STATUSES, ReportDir
from tasks.rows import Action, Status

if TYPE_CHECKING:
    from tasks.verify import Check

FAILURE_TABLE_ROWS = 500


class TaskResult(BaseModel):
    """The outcome of one ferry task (a flow run): what every flow returns, what `summary.json`
    holds, and what the summary artifact shows."""

    model_config = ConfigDict(frozen=True)

    task_id: str = Field(description="The Prefect flow run id.")
    job: str = Field(description="export, import, verify or convert.")
    source: str
    destination: str
    counts: dict[str, int] = Field(description="status -> number of entries")
    bytes: int = Field(0, description="Bytes moved.")
    seconds: float = 0.0
    manifest: str = Field(description="Path or URL of the Parquet manifest.")
    dry_run: bool = False
    cancelled: bool = Field(False, description="The task was cancelled before it finished.")
    deleted: int = Field(0, description="delete_extra: entries deleted at the destination.")
    not_deleted: str | None = Field(
        None, description="delete_extra: why nothing was deleted (over max_delete, a failed copy)."
    )
    estimate: dict[str, int] | None = Field(
        None,
        description="A dry run: what the task would cost. Requests by kind (LIST, HEAD, PUT, "
        "POST, GET, DELETE) and bytes_up / bytes_down.",
    )

    @property
    def ok(self) -> bool:
        """Every entry ok or skipped."""
        return not (self.counts.get("rejected", 0) or self.counts.get("failed", 0))

    @property
    def exit_code(self) -> int:
        from flows.exit_codes import EXIT_CANCELLED, EXIT_ENTRIES_FAILED, EXIT_OK

        if self.cancelled:
            return EXIT_CANCELLED
        return EXIT_OK if self.ok else EXIT_ENTRIES_FAILED

    @property
    def entries(self) -> int:
        return sum(self.counts.values())

    @property
    def files_per_second(self) -> float:
        return self.entries / self.seconds if self.seconds > 0 else 0.0

    @property
    def megabytes_per_second(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        """`summary.json`: the fields and the derived rates."""
        return {
            **self.model_dump(exclude={"cancelled"}),
            "entries": self.entries,
            "seconds": round(self.seconds, 3),
            "files_per_second": round(self.files_per_second, 1),
            "megabytes_per_second": round(self.megabytes_per_second, 1),
        }


@dataclass(frozen=True)
class Report:
    """What the report step hands the flow: the summary, and the first rejected and failed rows
    (path, status, reason, kind, size, attempts)."""

    summary: TaskResult
    problems: list[dict]


def apply_verification(table: pa.Table, results: Mapping[str, Check]) -> pa.Table:
    """Set `verified` from the verify step; an entry that failed verification becomes `failed`,
    with the verification's reason and code."""
    if not results or table.num_rows == 0:
        return table
    paths = table.column("path").to_pylist()
    statuses = table.column("status").to_pylist()
    reasons = table.column("reason").to_pylist()
    codes = table.column("reason_code").to_pylist()
    verified = table.column("verified").to_pylist()
    actions = table.column("action").to_pylist()
    for i, path in enumerate(paths):
        if statuses[i] not in (Status.OK, Status.SKIPPED) or path not in results:
            continue
        if actions[i] == Action.DELETE:  # a mirror's deletion: not an entry that was copied
            continue
        good, problem, code = results[path]
        verified[i] = good
        if not good:
            statuses[i] = Status.FAILED.value
            reasons[i], codes[i] = f"verification failed: {problem}", code
        elif problem and not reasons[i]:
            reasons[i], codes[i] = problem, code
    columns = {
        "status": pa.array(statuses, pa.string()),
        "reason": pa.array(reasons, pa.string()),
        "reason_code": pa.array(codes, pa.string()),
        "verified": pa.array(verified, pa.bool_()),
    }
    for name, values in columns.items():
        table = table.set_column(table.schema.get_field_index(name), name, values)
    return table


def deletions_of(table: pa.Table) -> tuple[int, str | None]:
    """delete_extra: how many entries were deleted, and why none was, when none was for a
    reason of the task's own (over max_delete, a failed copy, a cancellation)."""
    deleted, why = 0, None
    kept = {"over_max_delete", "copy_failed", "cancelled"}
    columns = [table.column(c).to_pylist() for c in ("action", "status", "reason_code", "reason")]
    for action, status, code, reason in zip(*columns, strict=True):
        if action != Action.DELETE:
            continue
        if status == Status.OK:
            deleted += 1
        elif why is None and code in kept:
            why = reason
    return deleted, why


def counts_of(table: pa.Table) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for status, n in zip(*_value_counts(table.column("status")), strict=True):
        counts[status] = counts.get(status, 0) + n
    return counts


def _value_counts(column) -> tuple[list, list]:
    vc = pc.value_counts(column)
    return vc.field("values").to_pylist(), vc.field("counts").to_pylist()


def merge(report: ReportDir) -> pa.Table:
    table = report.read_parts()
    return table.sort_by([("path", "ascending")]) if table.num_rows else table


def markdown(summary: TaskResult, problems: list[dict]) -> str:
    c = summary.counts
    lines = [
        f"# ferry {summary.job}{' (dry run)' if summary.dry_run else ''}",
        "",
        f"**{summary.source}** → **{summary.destination}**",
        "",
        "| ok | skipped | rejected | failed | bytes | seconds | files/s | MB/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {c['ok']} | {c['skipped']} | {c['rejected']} | {c['failed']} | {summary.bytes:,} "
        f"| {summary.seconds:.1f} | {summary.files_per_second:.0f} "
        f"| {summary.megabytes_per_second:.1f} |",
        "",
        f"Manifest: `{summary.manifest}`",
    ]
    troubled = c.get("rejected", 0) + c.get("failed", 0)
    if troubled:
        lines += ["", f"{troubled} entries were rejected or failed; first reasons:", ""]
        lines += [f"- `{p['path']}`: {p['status']}: {p['reason']}" for p in problems[:10]]
    return "\n".join(lines)


def problems_of(table: pa.Table) -> pa.Table:
    if table.num_rows == 0:
        return table
    mask = pc.is_in(
        table.column("status"), value_set=pa.array([Status.REJECTED, Status.FAILED], pa.string())
    )
    return table.filter(mask)


def failures_table(problems: pa.Table) -> list[dict]:
    keep = ["path", "status", "reason", "kind", "size", "attempts"]
    return problems.select(keep).slice(0, FAILURE_TABLE_ROWS).to_pylist()
