"""The batch tasks: `export_data` (directory → bucket prefix) and `import_data` (the reverse).

Both are the one pipeline: cut the tree into ranges; list both sides of each range, plan it and cut
it into partitions (a task run per range); copy each partition as a task run as soon as its range
is planned; verify; report.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import time
from collections import Counter, deque
from dataclasses import replace
from datetime import timedelta

from prefect import flow
from prefect.runtime import flow_run

from flows import runview
from flows.credentials import for_url, warn_plain_secrets
from flows.options import Options, takes_options
from flows.result import TaskResult, ends_truthfully, state_message
from flows.workers import Growing, check_dask
from tasks.apply import CANCELLED_BEFORE, PartitionResult, skipped_partition
from tasks.check import with_settled
from tasks.delete import delete_limit
from tasks.endpoints import Directory, transfer_endpoints
from tasks.errors import DestinationUnusable
from tasks.job import Job
from tasks.listing import Filter
from tasks.manifest import ReportDir, check_report_dir, now
from tasks.options import with_export_settings
from tasks.outcome import decided_row, partition_failed_row
from tasks.partition import Partition, partition
from tasks.plan import Item
from tasks.planner import numbered
from tasks.preflight import check_bucket, check_directory
from tasks.ranges import Range, bucket_levels, directory_levels, expand, group
from tasks.rows import Action, ReasonCode, Status
from tasks.run import RunState
from tasks.runlog import run_logger
from tasks.steps import apply_step, check_step, delete_step, plan_step, report_step, verify_step
from tasks.upload import abandoned_uploads, abort_uploads


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
        for_url(
            destination,
            with_export_settings(options.destination_options, options, destination)
            if direction == "export"
            else options.destination_options,
            block,
        ),
    )
    Filter(options.include, options.exclude)  # a pattern that cannot be used fails here
    task_id = _task_id()
    job = Job(task_id, direction, directory, bucket, options)
    report = ReportDir(check_report_dir(options.report_dir), task_id)
    # a wrong path or bucket fails here, as one line, before any task run
    check_directory(directory, must_exist=direction == "export")
    check_bucket(bucket, must_hold_objects=direction == "import" and not options.allow_empty)
    check_dask(options)

    uploads = {}
    if direction == "export" and not options.dry_run and bucket.scheme == "s3":
        # elsewhere, the store's own rules. Uploads older than the limit go, whatever their key;
        # the others are resumed by their file's copy or aborted by its range
        limit = now() - timedelta(hours=options.abandoned_upload_hours)
        stale, uploads = bucket.run(abandoned_uploads, bucket.bucket, bucket.prefix, limit)
        if stale:
            gone = bucket.run(abort_uploads, bucket.bucket, stale)
            run_logger().info(
                "aborted %d multipart uploads abandoned more than %g hours ago",
                gone,
                options.abandoned_upload_hours,
            )
    if direction == "import" and not options.dry_run:
        make_root(directory)
    cutting: Counter = Counter()  # the LISTs that cut a bucket into ranges
    levels = (
        directory_levels(directory.root)
        if direction == "export"
        else bucket_levels(bucket, cutting)
    )
    spans = expand(levels)
    with RunState.of(job) as run:
        estimate = _pipeline(job, spans, report, run, uploads)
    if estimate is not None:
        estimate.update(cutting)
        runview.log_estimate(dict(estimate))
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
        estimate=dict(estimate) if estimate is not None else None,
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
    return with_settled(items, settled)


#: Ranges of the tree per process that plans them (a range's cost is unknown until it is listed:
#: more ranges balance better, each is a task run).
RANGES_PER_PROCESS = 4
#: Partitions handed to the task runner ahead of those running, per process: the rest wait in
#: the flow, and while too many wait no further range is planned (the flow holds what is
#: planned and not copied, not the whole tree).
AHEAD_PER_PROCESS = 2
WAITING_PER_PROCESS = 16


def _pipeline(job: Job, spans, report: ReportDir, run: RunState, uploads) -> Counter | None:
    """Plan the tree a range at a time and copy each range's partitions as soon as it is
    planned: ranges and partitions are task runs of the flow run, wherever `flows.workers`
    places them (the flow's process, this machine's worker processes, a Dask cluster). A dry
    run returns what the task would cost (`tasks.estimate`)."""
    options = job.options
    started = time.monotonic()
    finished: queue.SimpleQueue = queue.SimpleQueue()
    in_flight: dict = {}  # future → (what, its placement)
    waiting: deque[Partition] = deque()
    actions: Counter = Counter()
    listed_bytes = planned_files = planned_bytes = partitions = ranges_done = 0
    failure: BaseException | None = None
    extras: list = []  # delete_extra: what the destination holds and the source does not
    destination_entries = copy_failures = 0
    estimate: Counter | None = Counter() if options.dry_run else None

    with contextlib.ExitStack() as stack:
        placed = Growing(options, stack)
        ranges = deque(group(spans, RANGES_PER_PROCESS * max(2, placed.current.processes)))
        total_ranges = len(ranges)
        progress = stack.enter_context(
            runview.Progress(f"ferry-{job.direction}-progress", run.limits)
        )
        progress.listing = True

        def submit(task, what, **parameters) -> None:
            where = placed.current
            future = where.submit(
                task, job=job, report=report, run=where.run_state(run), **parameters
            )
            in_flight[future] = (what, where)
            future.add_done_callback(finished.put)

        def running(kind) -> int:
            return sum(isinstance(what, kind) for what, _ in in_flight.values())

        while True:
            processes = placed.current.processes
            if failure is not None:
                waiting.clear()  # the task fails with it, without a manifest: nothing more starts
            while waiting and running(Partition) < processes * AHEAD_PER_PROCESS + 2:
                part = waiting.popleft()
                if run.cancelled.is_set():  # never started: its rows say so, without a task run
                    done = skipped_partition(job, part, report, CANCELLED_BEFORE)
                    run.limits.count(len(part), 0)
                    runview.log_partition(part.index, partitions, done, 0.0)
                else:
                    submit(apply_step, part, part=part)
            while (
                ranges
                and (failure is None)
                and running(Range) < max(2, processes)
                and len(waiting) < processes * WAITING_PER_PROCESS
            ):
                rng = ranges.popleft()
                submit(plan_step, rng, rng=rng, uploads=uploads)
            if not in_flight:
                break
            future = finished.get()
            what, where = in_flight.pop(future)
            if isinstance(what, Range):
                try:
                    plan = future.result()
                except Exception as exc:  # noqa: BLE001 - the task fails with it, once the rest ends
                    failure = failure or exc
                    run_logger().error("listing range %d failed: %s", what.index, exc)
                    continue
                finally:
                    where.release(future)
                ranges_done += 1
                parts = numbered(plan.parts, partitions)
                partitions += len(parts)
                actions.update(plan.actions)
                listed_bytes += plan.listed_bytes
                planned_files += plan.files
                planned_bytes += plan.bytes
                waiting.extend(parts)
                extras.extend(plan.extras)
                destination_entries += plan.destination_entries
                if estimate is not None and plan.estimate:
                    estimate.update(plan.estimate)
                progress.add(plan.files, plan.bytes)
                progress.listing = bool(ranges) or running(Range) > 0
                run.planned(plan.files, plan.bytes)
                runview.log_range(what.index, total_ranges, plan, time.monotonic() - started)
                if not progress.listing and failure is None:
                    runview.log_plan(
                        job.direction,
                        actions,
                        listed_bytes,
                        (planned_files, planned_bytes),
                        partitions,
                        dry_run=options.dry_run,
                        ranges=ranges_done,
                    )
                if placed.grow(planned_files, planned_bytes, len(waiting)):
                    run_logger().info("the partitions from here on run on %s", placed.current.where)
            else:
                part = what
                try:
                    done = future.result()
                    where.release(future)
                except Exception as exc:
                    rows = [partition_failed_row(job, i, exc, now()) for i in part.items]
                    part_file = report.write_part(f"part-{part.index:05d}", rows)
                    done = PartitionResult(part.index, {"failed": len(rows)}, 0, part_file)
                where.heard(run, done)
                copy_failures += done.counts.get("failed", 0)
                runview.log_partition(part.index, partitions, done, time.monotonic() - started)
        progress.listing = False
    if failure is None and options.delete_extra:
        _mirror(job, extras, destination_entries, copy_failures, partitions, report, run)
    if failure is not None:
        raise failure
    return estimate


def _mirror(job: Job, extras, destination_entries: int, copy_failures: int, first: int,
            report: ReportDir, run: RunState) -> None:  # fmt: skip
    """delete_extra, once everything is copied: delete what the destination holds and the
    source does not, unless the task was cancelled, an entry failed to copy, it is a dry run, or
    there are more than max_delete; then each is a skipped row saying why, and the log too."""
    if not extras:
        run_logger().info("delete_extra: the destination holds nothing the source does not")
        return
    options, log = job.options, run_logger()
    limit = delete_limit(options.max_delete, destination_entries)
    why = None
    if run.cancelled.is_set():
        why = ("cancelled before the deletions", ReasonCode.CANCELLED)
    elif copy_failures:
        why = (f"not deleted: {copy_failures} entries failed to copy", ReasonCode.COPY_FAILED)
    elif limit is not None and len(extras) > limit:
        why = (
            f"not deleted: {len(extras)} deletions are over max_delete {options.max_delete} "
            f"({limit} of the {destination_entries} entries at the destination)",
            ReasonCode.OVER_MAX_DELETE,
        )
    elif options.dry_run:
        why = ("dry run: would delete", ReasonCode.DRY_RUN)
    if why is not None:
        if why[1] != ReasonCode.DRY_RUN:
            log.warning("delete_extra: %d entries not deleted: %s", len(extras), why[0])
        stamp = now()
        rows = [
            decided_row(job, i, Status.SKIPPED, why[0], stamp, reason_code=why[1]) for i in extras
        ]
        report.write_part("delete-skipped", rows)
        return
    log.info("delete_extra: deleting %d entries the source does not hold", len(extras))
    # in order, directories last and the deepest first: each is empty by its turn (unless it
    # holds entries the task keeps)
    extras.sort(key=lambda i: (i.kind == "dir", -i.path.count("/")))
    parts = partition(extras, max_files=options.partition_files, max_bytes=sys.maxsize)
    for part in parts:
        done = delete_step(job, part.renumbered(first + part.index), report)
        run.limits.count(len(part), 0)
        runview.log_partition(first + part.index, first + len(parts), done, 0.0)


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
