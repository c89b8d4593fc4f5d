"""Plan one range of a transfer (`tasks.ranges`): list its spans on both sides, plan them, settle
the `check` entries by HEAD, write the rows the plan decided, and cut the rest into partitions.

Ranges are planned on their own, wherever the flow puts them (its process, a worker process, a
Dask worker): what comes back is the partitions to copy and the counts, never the listings.
"""

from __future__ import annotations

import gc
import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tasks.check import check_items, with_settled
from tasks.estimate import copy_requests
from tasks.job import Job
from tasks.listing import Entry, Filter, list_bucket, list_directory, without_reports
from tasks.manifest import ReportDir, now
from tasks.outcome import decided_row, dry_run_row
from tasks.partition import Partition, partition
from tasks.plan import APPLY_ACTIONS, Item, final_status, plan_export, plan_import
from tasks.ranges import Range
from tasks.rows import Action
from tasks.run import RunState


@dataclass(frozen=True)
class RangePlan:
    index: int
    #: entries listed on the source side, and their bytes
    listed: int
    listed_bytes: int
    #: planned entries by action, once the checks are settled
    actions: dict[str, int]
    #: the partitions to copy (numbered from 0 within the range: the flow numbers them)
    parts: tuple[Partition, ...]
    #: HEADs the check step made, and how many of those found the entry unchanged
    checked: int = 0
    unchanged: int = 0
    #: multipart uploads of an earlier, killed export aborted by this range
    aborted: int = 0
    #: delete_extra: what the destination holds and the source does not (action `delete`), and
    #: how many entries the destination holds in the range (what a max_delete percentage takes)
    extras: tuple[Item, ...] = ()
    destination_entries: int = 0
    #: a dry run: what the range would cost (`tasks.estimate`), requests by kind and bytes
    estimate: dict[str, int] | None = None

    @property
    def files(self) -> int:
        return sum(len(p) for p in self.parts)

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.parts)


def list_sides(job: Job, rng: Range, requests: Counter) -> tuple[list[Entry], list[Entry]]:
    """The entries of `rng` on the source side and on the destination side (the two listed at
    once: the bucket's on its event loop, the directory's here); `requests` counts the LISTs."""
    directory, bucket, spans = job.directory, job.bucket, list(rng.spans)
    # a mirror also lists what only the destination holds
    mirror = job.options.delete_extra
    with ThreadPoolExecutor(1, thread_name_prefix="ferry-list") as other_side:
        if job.direction == "export":
            listed_bucket = other_side.submit(list_bucket, bucket, spans, mirror, requests)
            source = list_directory(directory, must_exist=True, spans=spans)
            source = without_reports(source, directory, job.options.report_dir)
            return source, listed_bucket.result()
        listed_bucket = other_side.submit(list_bucket, bucket, spans, False, requests)
        resumables: list[str] = []
        there = list_directory(
            directory,
            must_exist=False,
            read_state=True,
            clean_temporaries=True,
            spans=spans,
            unknown_subtrees=mirror,
            resumables=resumables,
        )
        there = without_reports(there, directory, job.options.report_dir)
        source = listed_bucket.result()
        _clean_resumables(directory.root, resumables, source)
        return source, there


def _clean_resumables(root: str, found: list[str], source: list[Entry]) -> None:
    """Remove the resumable temporaries of a killed import that this run will not resume: those
    of an object that changed (another ETag) or is gone."""
    if not found:
        return
    import os

    from tasks.listing import remove_if_abandoned, resumable_name

    wanted = set()
    for entry in source:
        if entry.etag:
            parent, _, name = entry.path.rpartition("/")
            path = os.path.join(root, parent, resumable_name(name, entry.etag))
            wanted.add(os.path.normpath(path))
    for path in found:
        if os.path.normpath(path) not in wanted:
            remove_if_abandoned(path)


def plan_range(
    job: Job,
    rng: Range,
    report: ReportDir,
    run: RunState,
    uploads: dict[str, list[str]] | None = None,
    *,
    lister=list_sides,
) -> RangePlan:
    """Plan `rng`. `uploads`: the multipart uploads (key → upload ids) an earlier export left
    under the prefix; those to a key this range writes are aborted. `lister`: what lists the
    two sides (`list_sides`; the benchmark's synthetic trees)."""
    gc_was = gc.isenabled()
    gc.disable()  # a listing is millions of acyclic objects: collections only cost time
    try:
        return _plan(job, rng, report, run, uploads or {}, lister)
    finally:
        if gc_was:
            gc.enable()


def _plan(job: Job, rng: Range, report: ReportDir, run: RunState, uploads, lister) -> RangePlan:
    options, bucket = job.options, job.bucket
    selected = Filter(options.include, options.exclude)
    requests: Counter = Counter()
    source, there = lister(job, rng, requests)
    extras = extra_items(job, rng, source, there, selected) if options.delete_extra else ()
    destination_entries = len(there)
    if job.direction == "export":
        items = plan_export(
            source, there, prefix=bucket.prefix, overwrite=options.overwrite, selected=selected
        )
    else:
        items = plan_import(
            source,
            there,
            overwrite=options.overwrite,
            selected=selected,
            directories=rng.directories,
        )
    del there
    listed, listed_bytes = len(source), sum(e.size for e in source)
    del source

    aborted = 0
    if uploads and not options.dry_run:
        from tasks.upload import abort_uploads

        # a large file's upload is resumed (or aborted) by its own copy (tasks.upload)
        mine = {
            key: ids
            for i in items
            if i.kind == "file"
            and (ids := uploads.get(key := bucket.key(i.path)))
            and not (i.action in APPLY_ACTIONS and i.size >= options.multipart_threshold)
        }
        if mine:
            aborted = bucket.run(abort_uploads, bucket.bucket, mine)

    checking = tuple(i for i in items if i.action == Action.CHECK)
    unchanged = 0
    if checking:
        settled = {i.path: i for i in bucket.run(check_items, job, checking, run)}
        unchanged = sum(i.action == Action.SKIP for i in settled.values())
        items = with_settled(items, settled)

    work: list[Item] = [i for i in items if i.action in APPLY_ACTIONS]
    stamp = now()
    rows = [
        decided_row(job, i, final_status(i), i.reason, stamp)
        for i in items
        if i.action not in APPLY_ACTIONS
    ]
    estimate = None
    if options.dry_run:
        rows += [dry_run_row(job, i, stamp) for i in work]
        cost = copy_requests(
            job.direction, work, options.multipart_threshold, s3=bucket.scheme == "s3"
        )
        cost.update(requests)
        cost["HEAD"] += len(checking)
        if extras and job.direction == "export":  # batches of 1,000 keys
            cost["DELETE"] += math.ceil(len(extras) / 1000)
        estimate = {k: n for k, n in cost.items() if n}
        work = []
    if rows:
        report.write_part(f"planned-{rng.index:05d}", rows)
    parts = partition(work, max_files=options.partition_files, max_bytes=options.partition_bytes)
    return RangePlan(
        index=rng.index,
        listed=listed,
        listed_bytes=listed_bytes,
        actions=dict(Counter(str(i.action) for i in items)),
        parts=tuple(parts),
        checked=len(checking),
        unchanged=unchanged,
        aborted=aborted,
        extras=extras,
        destination_entries=destination_entries,
        estimate=estimate,
    )


def extra_items(job: Job, rng: Range, source, there, selected: Filter) -> tuple[Item, ...]:
    """What the destination holds in the range and the source does not, as `delete` items: on
    export, objects and `dir/` markers under the prefix; on import, files, links and special
    files, then directories (deepest first) no key lies below. Entries include/exclude leave
    out are kept; so is a bucket report directory inside the destination prefix."""
    if job.direction == "export":
        present = {(e.path, e.kind == "dir") for e in source}
        reports = _reports_below(job)
        found = [
            e
            for e in there
            if (e.path, e.kind == "dir") not in present
            and selected(e.path)
            and not (reports and (e.path + "/").startswith(reports))
        ]
    else:
        objects, directories = set(), set(rng.directories)
        for e in source:
            (directories if e.kind == "dir" else objects).add(e.path)
            parts = e.path.split("/")
            directories.update("/".join(parts[:i]) for i in range(1, len(parts)))
        files = [e for e in there if e.kind != "dir" and e.path not in objects]
        empty = [e for e in there if e.kind == "dir" and e.path not in directories]
        empty.sort(key=lambda e: e.path.count("/"), reverse=True)  # the deepest first
        found = [e for e in files + empty if selected(e.path)]
    return tuple(
        Item(e.path, e.kind, Action.DELETE, size=e.size, mtime_ns=e.mtime_ns, etag=e.etag)
        for e in found
    )


def _reports_below(job: Job) -> str | None:
    """The report directory's path relative to the destination prefix, with a trailing '/',
    when it lies inside it (then it is never mirrored away)."""
    from tasks.report_dir import default_report_dir

    url = job.options.report_dir or default_report_dir()
    head = f"{job.bucket.scheme}://{job.bucket.bucket}/{job.bucket.prefix}"
    if not url.startswith(head):
        return None
    return url[len(head) :].strip("/") + "/"


def numbered(parts, first: int) -> list[Partition]:
    """A range's partitions numbered from `first` (partitions are numbered across the task)."""
    return [p.renumbered(first + n) for n, p in enumerate(parts)]
