"""What the command line shows: progress while a task runs, its summary, the renames of a
conversion, the first problems; stderr for progress, stdout for results."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

MB = 1_000_000


class Console:
    """Progress and summaries on the terminal (stderr for progress, stdout for results)."""

    def __init__(self) -> None:
        from rich.console import Console as RichConsole

        self.out = RichConsole()
        self.err = RichConsole(stderr=True)

    def waiting_for_prefect(self):
        """With no PREFECT_API_URL, use ferry's local Prefect server (`flows.local_server`),
        starting it in the background the first time, saying so."""
        from flows import local_server
        from flows.local_api import needs_local_api

        if not needs_local_api():
            return
        server = local_server.running()
        if server is None:
            with self.err.status(
                "Starting ferry's local Prefect server, once: later commands reuse it "
                "(20-30 s on small machines)..."
            ):
                server, started = local_server.start()
            if started:
                self.err.print(
                    f"ferry: started a local Prefect server; its UI is at {server.ui_url} "
                    "(`ferry server stop` stops it)",
                    highlight=False,
                    soft_wrap=True,
                )
        local_server.use(server)

    def run(self, title: str, call: Callable[[], Any]) -> Any:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        from tasks.progress import Observer, observing

        bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("{task.fields[files]}"),
            TimeElapsedColumn(),
            console=self.err,
            transient=True,
            disable=not self.err.is_terminal,
        )
        task = bar.add_task(title, total=None, files="")
        state = {"files": 0, "total": 0, "bytes": 0}

        def on_event(event: str, files: int, nbytes: int) -> None:
            if event == "planned":  # a range of the tree more: the totals grow
                state["total"] += files
                state["bytes"] += nbytes
                bar.update(
                    task,
                    total=state["bytes"] or None,
                    files=f"{state['files']}/{state['total']} entries",
                )
            else:
                state["files"] += files
                bar.update(task, advance=nbytes, files=f"{state['files']}/{state['total']} entries")

        observer = Observer(on_event)
        with observing(observer), bar, _ctrl_c_cancels(observer, self.err):
            return call()

    def summary(self, result, *, as_json: bool = False) -> None:
        if as_json:
            print(json.dumps(result.model_dump(), indent=2))
            return
        c = result.counts
        seconds = result.seconds or 0.0
        rate = result.bytes / MB / seconds if seconds else 0.0
        per_second = sum(c.values()) / seconds if seconds else 0.0
        title = f"ferry {result.job}{' (dry run)' if result.dry_run else ''}"
        self.out.print(
            f"[bold]{title}[/bold]  {result.source} → {result.destination}",
            soft_wrap=True,
            highlight=False,
        )
        standard = ("ok", "skipped", "rejected", "failed")
        counts = " · ".join(
            [
                f"[red]{c.get(k, 0)} {k}[/red]"
                if k in ("rejected", "failed") and c.get(k, 0)
                else f"{c.get(k, 0)} {k}"
                for k in standard
            ]
            # conversion's own outcomes (renamed, directory, ...), shown, not hidden
            + [f"{n} {k}" for k, n in sorted(c.items()) if k not in standard and n]
            + ([f"{result.deleted} deleted"] if getattr(result, "deleted", 0) else [])
        )
        self.out.print(
            f"  {counts}   {result.bytes / MB:,.1f} MB in {seconds:.1f} s "
            f"({rate:,.1f} MB/s, {per_second:,.0f} entries/s)",
            highlight=False,
            soft_wrap=True,
        )
        if getattr(result, "estimate", None):
            from tasks.estimate import describe

            self.out.print(
                f"  would make {describe(result.estimate)}", soft_wrap=True, highlight=False
            )
        if getattr(result, "not_deleted", None):
            self.out.print(
                f"  [yellow]{result.not_deleted}[/yellow]", soft_wrap=True, highlight=False
            )
        if not result.ok:
            self._problems(result.manifest)
        if result.job == "convert":
            self._renames(result.manifest, would=result.dry_run)
        self.out.print(f"  manifest: {result.manifest}", soft_wrap=True, highlight=False)

    def _renames(self, manifest: str, *, would: bool, limit: int = 50) -> None:
        import pandas as pd

        frame = pd.read_parquet(manifest, columns=["path", "new_path", "rule"])
        moved = frame[frame["new_path"].notna() & (frame["new_path"] != frame["path"])]
        verb = "would rename" if would else "renamed"
        for row in moved.head(limit).itertuples():
            self.out.print(
                f"  {verb} {row.path} → {row.new_path} ({row.rule})", markup=False, highlight=False
            )
        if len(moved) > limit:
            self.out.print(f"  ... and {len(moved) - limit} more (see the manifest)")

    def _problems(self, manifest: str, limit: int = 10) -> None:
        import pandas as pd

        frame = pd.read_parquet(manifest, columns=["path", "status", "reason"])
        bad = frame[frame["status"].isin(["rejected", "failed"])]
        for row in bad.head(limit).itertuples():
            self.out.print(
                f"  [red]{row.status}[/red] {row.path}: {row.reason}", markup=True, highlight=False
            )
        if len(bad) > limit:
            self.out.print(f"  ... and {len(bad) - limit} more (see the manifest)")


@contextlib.contextmanager
def _ctrl_c_cancels(observer, err):
    """While a task runs, the first Ctrl-C cancels it the way Cancel in the UI does (in-flight
    transfers abandoned and cleaned up, summary printed); a second one, or one before the copy
    has started, interrupts at once."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_interrupt(signum, frame):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if not observer.cancel_all():
            raise KeyboardInterrupt
        err.print("ferry: cancelling (Ctrl-C again to stop at once)...", highlight=False)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
