"""The report step: merge a run's part files into its manifest, write the summary, and publish
Prefect artifacts (a markdown summary and a table of rejected and failed entries)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from tasks.manifest import STATUSES, ReportDir

FAILURE_TABLE_ROWS = 500


@dataclass(frozen=True)
class Summary:
    task_id: str
    job: str
    source: str
    destination: str
    counts: dict[str, int]
    bytes: int
    seconds: float
    manifest: str
    dry_run: bool = False

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
        return {
            "task_id": self.task_id,
            "job": self.job,
            "source": self.source,
            "destination": self.destination,
            "counts": self.counts,
            "entries": self.entries,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "files_per_second": round(self.files_per_second, 1),
            "megabytes_per_second": round(self.megabytes_per_second, 1),
            "manifest": self.manifest,
            "dry_run": self.dry_run,
        }


@dataclass(frozen=True)
class Report:
    """What the report step hands the flow: the summary, and the first rejected and failed rows
    (path, status, reason, kind, size, attempts)."""

    summary: Summary
    problems: list[dict]


def apply_verification(table: pa.Table, results: Mapping[str, tuple[bool, str | None]]) -> pa.Table:
    """Set `verified` from the verify step; an entry that failed verification becomes `failed`."""
    if not results or table.num_rows == 0:
        return table
    paths = table.column("path").to_pylist()
    statuses = table.column("status").to_pylist()
    reasons = table.column("reason").to_pylist()
    verified = table.column("verified").to_pylist()
    for i, path in enumerate(paths):
        if statuses[i] not in ("ok", "skipped") or path not in results:
            continue
        good, problem = results[path]
        verified[i] = good
        if not good:
            statuses[i] = "failed"
            reasons[i] = f"verification failed: {problem}"
        elif problem and not reasons[i]:
            reasons[i] = problem
    table = table.set_column(table.schema.get_field_index("status"), "status", pa.array(statuses))
    table = table.set_column(
        table.schema.get_field_index("reason"), "reason", pa.array(reasons, pa.string())
    )
    return table.set_column(
        table.schema.get_field_index("verified"), "verified", pa.array(verified, pa.bool_())
    )


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


def markdown(summary: Summary, problems: list[dict]) -> str:
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
    mask = pc.is_in(table.column("status"), value_set=pa.array(["rejected", "failed"]))
    return table.filter(mask)


def failures_table(problems: pa.Table) -> list[dict]:
    keep = ["path", "status", "reason", "kind", "size", "attempts"]
    return problems.select(keep).slice(0, FAILURE_TABLE_ROWS).to_pylist()
