"""The pipeline's Prefect tasks: thin wrappers over the plain functions of this package.

Tasks take and return plain values; none keeps state between calls, so partitions may run in
threads (the default) or on a Dask cluster.
"""

from __future__ import annotations

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.apply import PartitionResult, apply_partition
from tasks.check import check_items
from tasks.endpoints import BucketPrefix, Directory, Endpoint
from tasks.job import Job
from tasks.listing import Entry, Filter, list_bucket, list_directory
from tasks.manifest import ReportDir
from tasks.options import Options
from tasks.partition import Partition
from tasks.plan import Item
from tasks.planner import RangePlan, plan_range
from tasks.ranges import Range
from tasks.report import (
    Report,
    TaskResult,
    apply_verification,
    counts_of,
    deletions_of,
    failures_table,
    merge,
    problems_of,
)
from tasks.rows import ManifestRow
from tasks.run import RunState
from tasks.verify import Check, compare_trees, verify_copied

STEP = {"cache_policy": NO_CACHE, "persist_result": False}


@task(name="list-directory", **STEP)
def list_directory_step(
    directory: Directory, *, must_exist: bool, read_state: bool = False, clean_temporaries=False
) -> list[Entry]:
    return list_directory(
        directory,
        must_exist=must_exist,
        read_state=read_state,
        clean_temporaries=clean_temporaries,
    )


@task(name="list-bucket", **STEP)
def list_bucket_step(prefix: BucketPrefix) -> list[Entry]:
    return list_bucket(prefix)


def infrastructure_failure(task, task_run, state) -> bool:
    """Prefect retries a whole partition only when what failed is the machinery around the
    copies (the manifest part could not be written, a connection pool broke): an object's own
    errors are retried per object and end as rows, and a ferry error or a bug would only fail
    again."""
    from tasks.errors import FerryError

    try:
        state.result()
    except FerryError:
        return False
    except (OSError, ConnectionError, TimeoutError):
        return True
    except SystemError:
        # the interpreter's own fault, not ferry's: CPython 3.11's "AST constructor recursion
        # depth mismatch" when two threads compile at once (a Dask worker just restarted by
        # its nanny, importing in both its threads, without bytecode): it passes
        return True
    except Exception:  # noqa: BLE001 - anything else is a bug: retrying would hide it
        return False
    return False


@task(
    name="apply-partition",
    task_run_name="partition-{part.index}",
    retries=1,
    retry_condition_fn=infrastructure_failure,
    **STEP,
)
def apply_step(
    job: Job, part: Partition, report: ReportDir, run: RunState | None = None
) -> PartitionResult:
    return apply_partition(job, part, report, run)


@task(
    name="plan-range",
    task_run_name="range-{rng.index}",
    retries=1,
    retry_condition_fn=infrastructure_failure,
    **STEP,
)
def plan_step(
    job: Job,
    rng: Range,
    report: ReportDir,
    run: RunState | None = None,
    uploads: dict[str, list[str]] | None = None,
) -> RangePlan:
    """List one range of the tree on both sides, plan it, and cut it into partitions."""
    return plan_range(job, rng, report, run or RunState.of(job), uploads)


@task(name="delete-extra", task_run_name="delete-{part.index}", **STEP)
def delete_step(job: Job, part: Partition, report: ReportDir) -> PartitionResult:
    """delete_extra: delete what the destination holds and the source does not."""
    from tasks.delete import delete_partition

    return delete_partition(job, part, report)


@task(name="check", **STEP)
def check_step(job: Job, items: tuple[Item, ...], run: RunState | None = None) -> list[Item]:
    """Settle `check` items by HEAD before copying (see `tasks.check`)."""
    return job.bucket.run(check_items, job, items, run or RunState.of(job))


@task(name="verify", **STEP)
def verify_step(job: Job, report: ReportDir) -> dict[str, Check]:
    table = report.read_parts().select(
        ["path", "kind", "size", "mtime", "status", "reason", "checksum", "reason_code", "action"]
    )
    # nanoseconds as plain ints, so nothing is lost to datetime's microseconds
    table = table.set_column(3, "mtime", table.column("mtime").cast(pa.int64()))
    rows = table.to_pylist()
    return verify_copied(job, rows)


@task(name="report", **STEP)
def report_step(
    report: ReportDir,
    verification: dict[str, Check],
    *,
    job: str,
    source: str,
    destination: str,
    seconds: float,
    dry_run: bool = False,
    estimate: dict[str, int] | None = None,
) -> Report:
    """Merge the parts into the manifest and write the summary file. The artifacts are made by
    the flow (`flows.runview.publish`), so they show on the flow run."""
    table = apply_verification(merge(report), verification)
    manifest = report.write_manifest(table)
    deleted, not_deleted = deletions_of(table)
    summary = TaskResult(
        task_id=report.task_id,
        job=job,
        source=source,
        destination=destination,
        counts=counts_of(table),
        bytes=int(sum(b or 0 for b in table.column("bytes").to_pylist())),
        seconds=seconds,
        manifest=manifest,
        dry_run=dry_run,
        deleted=deleted,
        not_deleted=not_deleted,
        estimate=estimate,
    )
    report.write_summary(summary.as_dict())
    return Report(summary, failures_table(problems_of(table)))


@task(name="compare-trees", **STEP)
def compare_step(
    source: Endpoint, destination: Endpoint, options: Options, selected: Filter
) -> list[ManifestRow]:
    """verify_data's one step: both trees listed and compared, a row per entry."""
    return compare_trees(
        source,
        destination,
        mode=options.verify,
        selected=selected,
        concurrency=options.concurrency,
        retries=options.retries,
    )
