"""Stream tasks: long-running export of files as they are completed (checkpoint write-back), and
long-running import of objects as they appear (continuous preload).

Both keep one rolling manifest (a part file per batch, merged after each) and a status artifact
in the Prefect UI, and stop when cancelled (the UI, `ferry stream stop`, Ctrl-C), after
`max_runtime`, or after `idle_timeout` seconds with nothing to do. Entries in flight when they
stop finish; nothing half-written is left: uploads are completed or aborted, downloads are
renamed into place complete or removed.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections import Counter
from uuid import UUID

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.options import Options, takes_options
from flows.result import TaskResult, ends_truthfully, state_message
from flows.runview import log_batch
from flows.transfer import settle_checks
from flows.workers import Placement, dask_address, placement, worker_count
from tasks.apply import PROBLEMS_SHOWN, PartitionResult
from tasks.endpoints import transfer_endpoints
from tasks.events import BucketEvents
from tasks.job import Job, decided_row
from tasks.listing import Entry, Filter, entries_at, without_reports
from tasks.manifest import ReportDir, check_report_dir, now
from tasks.options import with_export_settings
from tasks.partition import Partition
from tasks.plan import APPLY_ACTIONS, final_status, plan_export, plan_import
from tasks.report import counts_of, merge
from tasks.run import RunState
from tasks.runlog import run_logger
from tasks.steps import apply_step, list_bucket_step, list_directory_step
from tasks.watch import Pending, Watcher, shared_mount

SUBMISSION_KEY = "ferry-submit"
#: A batch of this many bytes or more is split among the workers (a checkpoint of large files).
WIDE_BATCH = 64 * 2**20


def submit_files(task_id: str, paths: list[str]) -> None:
    """Hand files to a running stream export (flow run `task_id`): they are exported promptly,
    whether or not its watcher has seen them."""
    from prefect.input.run_input import send_input

    send_input(
        [os.path.abspath(p) for p in paths], flow_run_id=UUID(task_id), key_prefix=SUBMISSION_KEY
    )


class _Inbox:
    """Submitted paths, read from the flow run's inputs by a background thread."""

    def __init__(self, task_id: str) -> None:
        self.paths: queue.Queue[str] = queue.Queue()
        self._stop = threading.Event()
        self._thread = None
        try:
            self.run_id = UUID(task_id)
        except ValueError:
            return
        self._thread = threading.Thread(target=self._read, daemon=True, name="ferry-inbox")
        self._thread.start()

    def _read(self) -> None:
        from prefect.client.orchestration import get_client

        seen: set[str] = set()
        with get_client(sync_client=True) as client:
            while not self._stop.wait(0.5):
                try:
                    found = client.filter_flow_run_input(
                        flow_run_id=self.run_id,
                        key_prefix=SUBMISSION_KEY,
                        limit=100,
                        exclude_keys=seen,
                    )
                except Exception:  # noqa: BLE001 - a passing API error: try again
                    continue
                for item in found:
                    seen.add(item.key)
                    value = item.decoded_value  # send_input wraps a list as {"value": [...]}
                    paths = value.get("value") if isinstance(value, dict) else value
                    for path in paths if isinstance(paths, list) else []:
                        self.paths.put(path)

    def drain(self) -> list[str]:
        found = []
        while True:
            try:
                found.append(self.paths.get_nowait())
            except queue.Empty:
                return found

    def close(self) -> None:
        self._stop.set()


class _Session:
    """What both stream tasks share: the job, the rolling manifest (a part per batch, merged after
    each, with a status artifact), and the conditions that end the task."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.name = f"stream-{job.direction}"
        self.report = ReportDir(check_report_dir(job.options.report_dir), job.task_id)
        self.max_runtime, self.idle_timeout = job.options.max_runtime, job.options.idle_timeout
        self.started = self.last_work = time.monotonic()
        self.batches = 0
        self.troubled = 0  # batches with a failed or rejected entry
        #: a stream import driven by bucket events: the events not yet applied
        self.backlog: int | None = None
        self.run = RunState.of(job)
        self.parts = 0  # partitions so far: each batch is one, or one per worker when large
        self._stack = contextlib.ExitStack()
        self._placed: Placement | None = None

    def __enter__(self) -> _Session:
        self.run.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()
        self.run.__exit__(*exc)

    def _split(self, work) -> list[Partition]:
        """A batch as partitions: one, or for a batch of WIDE_BATCH bytes and more (a checkpoint
        of large files) one per worker, balanced by bytes, so all workers write it back."""
        nbytes = sum(i.size for i in work)
        ways = min(worker_count(self.job.options, len(work), nbytes), len(work))
        if dask_address(self.job.options) is None and (ways <= 1 or nbytes < WIDE_BATCH):
            ways = 1
        loads: list[list] = [[] for _ in range(max(1, ways))]
        sizes = [0] * len(loads)
        for item in sorted(work, key=lambda i: -i.size):
            least = sizes.index(min(sizes))
            loads[least].append(item)
            sizes[least] += item.size
        parts = []
        for items in filter(None, loads):
            parts.append(Partition(self.parts, tuple(items)))
            self.parts += 1
        return parts

    def _apply(self, parts: list[Partition]) -> list[PartitionResult]:
        """The batch's partitions, in the flow's process (one) or where `placement` puts them
        (kept for the whole session, so its worker processes start once)."""
        if len(parts) == 1 and dask_address(self.job.options) is None:
            return [apply_step(self.job, parts[0], self.report, self.run)]
        if self._placed is None:
            ways = worker_count(self.job.options)
            self._placed = self._stack.enter_context(placement(self.job.options, ways))
        placed = self._placed
        shared = placed.run_state(self.run)
        futures = [
            placed.submit(apply_step, job=self.job, part=p, report=self.report, run=shared)
            for p in parts
        ]
        done = [f.result() for f in futures]
        for d in done:
            placed.heard(self.run, d)
        return done

    def ending(self) -> str | None:
        """Why the task should end now, or None."""
        now = time.monotonic()
        if self.run.cancelled.is_set():
            return "cancelled"
        if self.max_runtime is not None and now - self.started >= self.max_runtime:
            return "max_runtime"
        if self.idle_timeout is not None and now - self.last_work >= self.idle_timeout:
            return "idle_timeout"
        return None

    def wait(self, seconds: float) -> None:
        """Sleep, waking early when the task is cancelled."""
        self.run.cancelled.wait(seconds)

    def apply(self, items) -> set[str]:
        """Settle one batch of planned items and publish the manifest; the paths that failed."""
        items = settle_checks(self.job, items, self.run)
        decided = [i for i in items if i.action not in APPLY_ACTIONS]
        work = [i for i in items if i.action in APPLY_ACTIONS]
        if decided:
            self.report.write_part(
                f"decided-{self.batches:05d}",
                [decided_row(self.job, i, final_status(i), i.reason, now()) for i in decided],
            )
        started = time.monotonic()
        counts = Counter(final_status(i) for i in decided)
        nbytes, problems = (
            0,
            [(i.path, "rejected", i.reason) for i in decided if final_status(i) == "rejected"][
                :PROBLEMS_SHOWN
            ],
        )
        failed: set[str] = set()
        if work:
            for done in self._apply(self._split(work)):
                counts.update(done.counts)
                nbytes, problems = nbytes + done.bytes, problems + list(done.problems)
                failed |= set(done.failed)
        log_batch(self.batches, counts, nbytes, time.monotonic() - started, problems)
        if counts.get("failed") or counts.get("rejected"):
            self.troubled += 1
        self.batches += 1
        self.last_work = time.monotonic()
        self.publish()
        return failed

    def publish(self) -> TaskResult:
        table = merge(self.report)
        manifest = self.report.write_manifest(table)
        counts = counts_of(table)
        nbytes = int(sum(b or 0 for b in table.column("bytes").to_pylist())) if len(table) else 0
        create_markdown_artifact(
            f"# ferry {self.name}\n\n{self.batches} batches"
            + (f" ({self.troubled} with failed or rejected entries)" if self.troubled else "")
            + "; "
            + ", ".join(f"{v} {k}" for k, v in counts.items())
            + f"; {nbytes:,} bytes"
            + (
                f"\n\nBacklog: {self.backlog} bucket events not yet applied"
                if self.backlog is not None
                else ""
            )
            + f"\n\nManifest: `{manifest}`",
            key=f"ferry-{self.name}-status",
        )
        return TaskResult(
            task_id=self.job.task_id,
            job=self.name,
            source=self.job.source("", "dir"),
            destination=self.job.destination("", "dir"),
            counts=counts,
            bytes=nbytes,
            seconds=time.monotonic() - self.started,
            manifest=manifest,
        )

    def result(self, reason: str) -> TaskResult:
        """The task's result (`cancelled` when it was); the flow's state follows from it: Failed
        when any entry of any batch failed."""
        result = self.publish()
        run_logger().info("stream task ended (%s): %s", reason, state_message(result))
        if reason == "cancelled":
            return result.model_copy(update={"cancelled": True})
        return result


def _announce(task_id: str, root: str) -> None:
    """Tell whoever started it how to hand files over (stderr, so JSON output stays clean)."""
    import sys

    sys.stderr.write(
        f"ferry: stream export {task_id} is watching {root}; hand files over "
        f"with: ferry stream submit {task_id} PATH...\n"
    )


def _watcher(root: str, pending: Pending, options: Options) -> Watcher:
    """The watcher `watch_mode` asks for, and a line in the run's log saying which it is."""
    mode, shared = options.watch_mode, shared_mount(root)
    scan = mode in ("scan", "both") or (mode == "auto" and shared is not None)
    watcher = Watcher(
        root,
        pending,
        use_inotify=mode != "scan",
        scan_seconds=options.scan_seconds if scan else None,
    )
    why = f" ({shared} mount: other machines' writes are not inotify events)" if shared else ""
    every = f" every {options.scan_seconds:g} s" if "scan" in watcher.kind else ""
    run_logger().info("watching %s by %s%s%s", root, watcher.kind, every, why)
    return watcher


@flow(name="ferry-stream-export", log_prints=False)
@ends_truthfully
@takes_options("stream-export")
def stream_export(source_dir, destination, options: Options) -> TaskResult:
    """Watch a directory and export each new or changed file once it is complete (closed after
    writing, or renamed into place; without inotify: unchanged for settle_seconds), in small
    batches, with batch export's rules, metadata and manifest rows. Files handed over with
    `ferry stream submit` go at once. Runs until cancelled, max_runtime seconds, or idle_timeout
    seconds without work. watch=False: export only what is submitted."""
    directory, bucket = transfer_endpoints(
        "export",
        source_dir,
        destination,
        None,
        with_export_settings(options.destination_options, options, destination),
    )
    # a completed file is exported whatever the bucket holds: it is the newer copy
    options = options.model_copy(update={"overwrite": "always"})
    job = Job(str(flow_run.get_id() or "local"), "export", directory, bucket, options)
    selected = Filter(options.include, options.exclude)
    pending = Pending(options.settle_seconds)
    watcher = _watcher(directory.root, pending, options) if options.watch else None
    inbox = _Inbox(job.task_id)
    session = _Session(job)
    session.publish()  # the manifest exists (empty) once the watcher is watching
    _announce(job.task_id, directory.root)
    try:
        with session:
            while not (reason := session.ending()):
                if watcher is not None:
                    watcher.poll(options.batch_seconds)
                else:
                    session.wait(options.batch_seconds)
                paths = sorted(set(pending.ready()) | set(inbox.drain()))
                entries = without_reports(
                    _entries(directory.root, paths), directory, options.report_dir
                )
                if entries:
                    session.apply(
                        plan_export(
                            entries,
                            [],
                            prefix=bucket.prefix,
                            overwrite=options.overwrite,
                            selected=selected,
                        )
                    )
    finally:
        inbox.close()
        if watcher is not None:
            watcher.close()
    return session.result(reason)


def _entries(root: str, paths: list[str]) -> list[Entry]:
    """Listing entries for these paths (below root only; gone ones dropped)."""
    import stat

    from tasks.listing import kind_of

    found = []
    root_prefix = root.rstrip("/") + "/"
    for path in paths:
        if not path.startswith(root_prefix):
            continue
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            continue
        kind = kind_of(st.st_mode)
        found.append(
            Entry(
                path=path[len(root_prefix) :],
                kind=kind,
                size=st.st_size if kind == "file" else 0,
                mtime_ns=st.st_mtime_ns,
                link_target=os.readlink(path) if kind == "symlink" else None,
            )
        )
    return found


@flow(name="ferry-stream-import", log_prints=False)
@ends_truthfully
@takes_options("stream-import")
def stream_import(source, destination_dir, options: Options) -> TaskResult:
    """Poll a bucket prefix every interval_seconds and preload new or changed objects into the
    directory, with batch import's rules. With events_queue (the bucket's S3 → SQS event
    notifications), each object is imported as its event arrives, and the listing every
    interval_seconds is the reconcile that catches what the events missed; the run's status
    shows the backlog (events not yet applied). Runs until cancelled, max_runtime seconds, or
    idle_timeout seconds without anything new."""
    directory, bucket = transfer_endpoints(
        "import", source, destination_dir, options.source_options, None
    )
    job = Job(str(flow_run.get_id() or "local"), "import", directory, bucket, options)
    selected = Filter(options.include, options.exclude)
    os.makedirs(directory.root, exist_ok=True)
    events = BucketEvents(options.events_queue, bucket) if options.events_queue else None
    session = _Session(job)
    session.publish()  # the manifest exists (empty) from the start
    reported: set[tuple[str, str | None]] = set()  # rejected or failed keys, reported once
    listed_at = -float("inf")
    with session:
        while True:
            if events is None or time.monotonic() - listed_at >= options.interval_seconds:
                # the listing: the whole task without events; with them, the reconcile
                listed_at = time.monotonic()
                items = plan_import(
                    list_bucket_step(bucket),
                    list_directory_step(
                        directory, must_exist=False, read_state=True, clean_temporaries=True
                    ),
                    selected=selected,
                )
                landed: list = []
            else:
                landed = events.receive(wait=1)
                found = [entry for entry, _ in landed]
                items = plan_import(
                    found, entries_at(directory, [e.path for e in found]), selected=selected
                )
            todo = [i for i in items if i.action != "skip" and (i.path, i.etag) not in reported]
            reported.update((i.path, i.etag) for i in todo if i.action == "reject")
            if todo:
                # a failed object is not tried again by this task (it is a manifest row; a
                # rerun tries it), so it neither repeats rows nor keeps the task from idling
                failed = session.apply(todo)
                reported.update((i.path, i.etag) for i in todo if i.path in failed)
            if events is not None:
                events.done()
                session.backlog = events.backlog()
                if landed:
                    oldest = max(age for _, age in landed)
                    run_logger().info(
                        "bucket events: %d new objects imported (of %d events), the oldest "
                        "landed %.2f s before; backlog %d",
                        len(todo),
                        len(landed),
                        oldest,
                        session.backlog,
                    )
                    session.publish()
            if reason := session.ending():
                break
            if events is None:
                session.wait(options.interval_seconds)
    return session.result(reason)
