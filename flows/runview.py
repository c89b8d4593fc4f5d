"""What a ferry flow run shows in the Prefect UI, made in flow code so it belongs to the flow run:
log lines through the run logger (the plan, each partition, the summary), a progress artifact
that moves by files and bytes while data moves, and the summary, counts and failures artifacts.
"""

from __future__ import annotations

import threading
from collections import Counter

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from tasks.limits import TaskLimits
from tasks.report import Report, markdown
from tasks.runlog import run_logger, size

#: Seconds between two updates of the progress artifact while data moves (the UI polls it).
PROGRESS_EVERY = 1.0
#: What one entry weighs in the progress figure, in bytes: the cost of a request, so a task of
#: many small files moves smoothly and one of a few large files moves with its bytes.
ENTRY_WEIGHT = 64 * 1024


def log_plan(
    direction: str,
    actions: Counter,
    listed_bytes: int,
    work: tuple[int, int],
    partitions: int,
    *,
    dry_run: bool,
    ranges: int = 1,
) -> None:
    """The plan of the whole task, once its last range is planned: entries by action (with
    the source's bytes) and the `work` (entries, bytes) it copies."""
    what = ", ".join(f"{n:,} to {a}" for a, n in sorted(actions.items())) or "nothing"
    verb = "would copy" if dry_run else "will copy"
    run_logger().info(
        "plan (%s): %s entries (%s) listed: %s; %s %s entries (%s) in %d partitions%s",
        direction,
        f"{sum(actions.values()):,}",
        size(listed_bytes),
        what,
        verb,
        f"{work[0]:,}",
        size(work[1]),
        partitions,
        f" (the tree listed in {ranges} ranges)" if ranges > 1 else "",
    )


def log_estimate(estimate: dict[str, int]) -> None:
    """A dry run's estimate of what the task would cost."""
    from tasks.estimate import describe

    run_logger().info("dry run: the task would make %s", describe(estimate))


def log_range(index: int, of: int, plan, seconds: float) -> None:
    """One range of the tree planned (a `tasks.planner.RangePlan`)."""
    checked = (
        f", {plan.checked:,} checked by HEAD ({plan.unchanged:,} unchanged)" if plan.checked else ""
    )
    run_logger().info(
        "range %d of %d planned: %s entries (%s) listed%s; %s to copy (%s) in %d partitions, "
        "%.1f s",
        index + 1,
        of,
        f"{plan.listed:,}",
        size(plan.listed_bytes),
        checked,
        f"{plan.files:,}",
        size(plan.bytes),
        len(plan.parts),
        seconds,
    )


def log_partition(index: int, of: int, done, seconds: float) -> None:
    """One partition's result (a `tasks.apply.PartitionResult`), as it ends."""
    _log_counts(f"partition {index + 1} of {of}", done.counts, done.bytes, seconds, done.problems)


def log_batch(index: int, counts: dict[str, int], nbytes: int, seconds: float, problems=()):
    """One batch of a stream task: a warning when any entry failed or was rejected."""
    _log_counts(f"batch {index + 1}", counts, nbytes, seconds, problems)


def _log_counts(what: str, counts, nbytes: int, seconds: float, problems) -> None:
    shown = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if n) or "nothing"
    log = run_logger()
    level = log.warning if counts.get("failed") or counts.get("rejected") else log.info
    level("%s: %s; %s in %.1f s", what, shown, size(nbytes), seconds)
    for path, status, reason in problems:
        log.warning("  %s %s: %s", status, path, reason)


def log_summary(report: Report, message: str) -> None:
    """The run's last word: its counts and manifest, and the first reasons entries failed."""
    log = run_logger()
    counts = report.summary.counts
    troubled = counts.get("failed", 0) + counts.get("rejected", 0)
    (log.error if counts.get("failed") else log.warning if troubled else log.info)(message)
    for problem in report.problems[:5]:
        log.warning("%s %s: %s", problem["status"], problem["path"], problem["reason"])
    if troubled > 5:
        log.warning("... and %d more in the manifest", troubled - 5)


def publish(report: Report) -> None:
    """The summary, counts and (when there are any) failures artifacts, on the flow run."""
    summary, job = report.summary, report.summary.job
    create_table_artifact(
        [{**summary.counts, "bytes": summary.bytes, "manifest": summary.manifest}],
        key=f"ferry-{job}-counts",
        description=f"ferry {job}: counts by status",
    )
    create_markdown_artifact(
        markdown(summary, report.problems),
        key=f"ferry-{job}-summary",
        description=f"ferry {job} summary",
    )
    if report.problems:
        create_table_artifact(
            report.problems,
            key=f"ferry-{job}-failures",
            description=f"Rejected and failed entries (first {len(report.problems)})",
        )


class Progress:
    """The flow run's progress artifact: files and bytes done out of those planned, updated every
    PROGRESS_EVERY seconds while they change (from a thread of the flow's process, reading the
    run's counters, `RunState.limits`)."""

    def __init__(self, key: str, limits: TaskLimits, files: int = 0, nbytes: int = 0) -> None:
        self.limits, self.files, self.nbytes = limits, files, nbytes
        #: while the tree is still being listed, the totals grow (`add`) and say so
        self.listing = False
        self._shown: tuple | None = None
        self._stop = threading.Event()
        self.id = create_progress_artifact(
            progress=0.0 if files else 100.0, key=key, description=self._describe(0, 0)
        )
        self._thread = threading.Thread(target=self._run, daemon=True, name="ferry-progress")

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.update(final=True)

    def percent(self, files: int, nbytes: int) -> float:
        total = self.nbytes + self.files * ENTRY_WEIGHT
        if not total:
            return 100.0
        return min(100.0, 100.0 * (min(nbytes, self.nbytes) + files * ENTRY_WEIGHT) / total)

    def add(self, files: int, nbytes: int) -> None:
        """More work planned (a range of the tree)."""
        self.files += files
        self.nbytes += nbytes

    def _describe(self, files: int, nbytes: int) -> str:
        return (
            f"{files:,} of {self.files:,} entries, {size(min(nbytes, self.nbytes))} of "
            f"{size(self.nbytes)}{' planned so far (still listing)' if self.listing else ''}"
        )

    def update(self, *, final: bool = False) -> None:
        done = self.limits.done()
        if (done, self.files, self.listing) == self._shown and not final:
            return
        self._shown = (done, self.files, self.listing)
        try:
            update_progress_artifact(
                self.id, progress=self.percent(*done), description=self._describe(*done)
            )
        except Exception as exc:  # noqa: BLE001 - progress is a view: a missed update is fine
            run_logger().debug("progress update failed: %s", exc)

    def _run(self) -> None:
        from prefect.context import SyncClientContext

        # one client for every update: made per update (this thread has no client context),
        # each would cost a TLS context and a connection
        with SyncClientContext():
            while not self._stop.wait(PROGRESS_EVERY):
                self.update()
