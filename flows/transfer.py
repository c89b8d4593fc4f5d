"""The batch tasks: `export_data` (directory → bucket prefix) and `import_data` (the reverse).

Both are the one pipeline: list both sides, plan, partition, copy each partition as a Prefect task
run, verify, report.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace

from prefect import flow
from prefect.futures import as_completed
from prefect.runtime import flow_run

from flows import runview
from flows.credentials import for_url, warn_plain_secrets
from flows.options import Options, takes_options
from flows.result import TaskResult, ends_truthfully, state_message
from flows.workers import check_dask, placement
from tasks.apply import PartitionResult
from tasks.endpoints import Directory, transfer_endpoints
from tasks.errors import DestinationUnusable
from tasks.job import Job
from tasks.listing import Filter, without_reports
from tasks.manifest import ReportDir, check_report_dir, now
from tasks.outcome import decided_row, dry_run_row, partition_failed_row
from tasks.partition import partition
from tasks.plan import APPLY_ACTIONS, Item, final_status, plan_export, plan_import
from tasks.preflight import check_bucket, check_directory, empty_source
from tasks.rows import Action
from tasks.run import RunState
from tasks.runlog import run_logger
from tasks.steps import (
    apply_step,
    check_step,
    list_bucket_step,
    list_directory_step,
    report_step,
    verify_step,
)
from tasks.upload import abort_abandoned_uploads


def _task_id() -> str:
    return str(flow_run.get_id() or "local")


def run_transfer(direction: str, source: str, destination: str, options: Options) -> TaskResult:
    """The pipeline of one export or import; its TaskResult (`cancelled` when it was)."""
    started = time.monotonic()
    warn_plain_secrets(
        source_options=options.source_options, destination_options=options.destination_options
    )
    block = options.credentials_block
    directory, bucket = transfer_endpoints(
        direction,
        source,
        destination,
        for_url(source, options.source_options, block),
        for_url(destination, options.destination_options, block),
    )
    selected = Filter(options.include, options.exclude)
    task_id = _task_id()
    job = Job(task_id, direction, directory, bucket, options)
    report = ReportDir(check_report_dir(options.report_dir), task_id)
    # a wrong path or bucket fails here, as one line, before any task run
    check_directory(directory, must_exist=direction == "export")
    check_bucket(bucket)
    check_dask(options)

    if direction == "export":
        src_future = list_directory_step.submit(directory, must_exist=True)
        dst_future = list_bucket_step.submit(bucket)
        items = plan_export(
            without_reports(src_future.result(), directory, options.report_dir),
            dst_future.result(),
            prefix=bucket.prefix,
            overwrite=options.overwrite,
            selected=selected,
        )
        if not options.dry_run and bucket.scheme == "s3":  # elsewhere, the store's own rules
            keys = {bucket.key(i.path) for i in items if i.kind == "file"}
            bucket.run(abort_abandoned_uploads, bucket.bucket, bucket.prefix, keys, now())
    else:
        src_future = list_bucket_step.submit(bucket)
        dst_future = list_directory_step.submit(
            directory, must_exist=False, read_state=True, clean_temporaries=True
        )
        listed = src_future.result()
        if not listed and not options.allow_empty:
            raise empty_source(bucket)
        items = plan_import(
            listed, dst_future.result(), overwrite=options.overwrite, selected=selected
        )

    if direction == "import" and not options.dry_run:
        make_root(directory)
    with RunState.of(job) as run:
        items = settle_checks(job, items, run)
        work = [i for i in items if i.action in APPLY_ACTIONS]
        decided = [i for i in items if i.action not in APPLY_ACTIONS]
        stamp = now()
        planned_rows = [decided_row(job, i, final_status(i), i.reason, stamp) for i in decided]
        if options.dry_run:
            planned_rows += [dry_run_row(job, i, stamp) for i in work]
            work = []
        if planned_rows:
            report.write_part("planned", planned_rows)

        parts = partition(
            work, max_files=options.partition_files, max_bytes=options.partition_bytes
        )
        runview.log_plan(direction, items, len(parts), dry_run=options.dry_run)
        nbytes = sum(i.size for i in work)
        run.planned(len(work), nbytes)
        with runview.Progress(f"ferry-{direction}-progress", run.limits, len(work), nbytes):
            _apply_partitions(job, parts, report, run)
    if run.cancelled.is_set():
        run_logger().warning("cancelled: writing the manifest of what was done")

    verification = (
        verify_step(job, report) if options.verify != "none" and not options.dry_run else {}
    )
    done = report_step(
        report,
        verification,
        job=direction,
        source=(bucket if direction == "import" else directory).display,
        destination=(directory if direction == "import" else bucket).display,
        seconds=time.monotonic() - started,
        dry_run=options.dry_run,
    )
    result = done.summary
    if run.cancelled.is_set():
        result = result.model_copy(update={"cancelled": True})
    runview.publish(done)
    runview.log_summary(done, state_message(result))
    return result


def settle_checks(job: Job, items: list[Item], run: RunState) -> list[Item]:
    """The check step, before any copy: the `check` items settled by a HEAD each (skip when
    unchanged, else copy), in partitions of their own, through the flow's task runner."""
    checking = [i for i in items if i.action == Action.CHECK]
    if not checking:
        return items
    chunks = partition(checking, max_files=job.options.partition_files, max_bytes=sys.maxsize)
    futures = [check_step.submit(job, chunk.items, run) for chunk in chunks]
    settled: dict[str, Item] = {}
    for future, chunk in zip(futures, chunks, strict=True):
        try:
            found = future.result()
        except Exception as exc:  # noqa: BLE001 - copying the same bytes again is harmless
            run_logger().warning("check of %d entries failed (%s): copying them", len(chunk), exc)
            found = [replace(i, action=Action.COPY) for i in chunk.items]
        settled.update((i.path, i) for i in found)
    unchanged = sum(i.action == Action.SKIP for i in settled.values())
    run_logger().info(
        "checked %d entries of the same size by HEAD: %d unchanged, %d to copy",
        len(settled),
        unchanged,
        len(settled) - unchanged,
    )
    return [settled.get(i.path, i) if i.action == Action.CHECK else i for i in items]


def _apply_partitions(job: Job, parts, report: ReportDir, run: RunState) -> None:
    """One Prefect task run per partition, where `flows.workers.placement` puts them (the flow's
    process, this machine's worker processes, or a Dask cluster), each logged as it ends. A
    partition that could not even record its rows gets failed rows."""
    if not parts:
        return
    started = time.monotonic()
    files, nbytes = sum(len(p) for p in parts), sum(p.bytes for p in parts)
    with placement(job.options, len(parts), files=files, nbytes=nbytes) as placed:
        if placed.runner is not None:
            run_logger().info("%d partitions run on %s", len(parts), placed.where)
        shared = placed.run_state(run)
        futures = {
            placed.submit(apply_step, job=job, part=p, report=report, run=shared): p for p in parts
        }
        for future in as_completed(list(futures)):
            part = futures[future]
            try:
                done = future.result()
            except Exception as exc:
                rows = [partition_failed_row(job, i, exc, now()) for i in part.items]
                part_file = report.write_part(f"part-{part.index:05d}", rows)
                done = PartitionResult(part.index, {"failed": len(rows)}, 0, part_file)
            placed.heard(run, done)
            runview.log_partition(part.index, len(parts), done, time.monotonic() - started)


def make_root(directory: Directory) -> None:
    try:
        os.makedirs(directory.root, exist_ok=True)
    except OSError as exc:
        raise DestinationUnusable(
            f"cannot create the destination directory ({exc.strerror})", where=directory.root
        ) from exc


@flow(name="ferry-export", log_prints=False)
@ends_truthfully
@takes_options("export")
def export_data(source, destination, options: Options) -> TaskResult:
    """Export a directory to a bucket prefix: files become objects with their mtime in metadata,
    symbolic links and special files become empty objects, empty directories `dir/` markers."""
    return run_transfer("export", source, destination, options)


@flow(name="ferry-import", log_prints=False)
@ends_truthfully
@takes_options("import")
def import_data(source, destination, options: Options) -> TaskResult:
    """Import a bucket prefix into a directory: objects become files (written under a temporary
    name, then renamed), mtimes come from object metadata, `dir/` markers become directories."""
    return run_transfer("import", source, destination, options)
