"""Deployments: the flows users trigger from the Prefect UI, and each data stream's own.

`ferry serve` serves, in one process: `ferry-export`, `ferry-import`, `ferry-verify` and
`ferry-convert` (parameter forms with every option explained), and for each stream its `import`
and `export` deployments, plus an interval schedule importing its auto-update prefixes when the
stream has automatic update on. A stopped stream's deployments are served paused.

Automatic updates of one stream never overlap: a run that comes due while the previous one still
runs is cancelled before it starts a process (the deployment's concurrency limit of one, with
Prefect's CANCEL_NEW strategy), so a short interval on a busy machine cannot pile up processes
that starve each other and leave every run Late.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from datetime import timedelta

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

from deployments.streams import all_streams
from flows.streams import stream_tag, stream_task


def stream_deployments(name: str, stream) -> list:
    """The deployments of one stream."""
    paused = stream.state != "enabled"
    tags = [stream_tag(name), "ferry"]
    found = [
        stream_task.to_deployment(
            name=f"{name}-{job}",
            parameters={"stream": name, "job": job},
            tags=tags,
            paused=paused,
            description=f"Batch {job} on data stream {name}: {stream.description}".strip(": "),
        )
        for job in ("import", "export")
    ]
    if stream.auto_update and stream.refresh_minutes:
        found.append(
            stream_task.to_deployment(
                name=f"{name}-auto-update",
                parameters={"stream": name, "job": "import", "auto_update": True},
                interval=timedelta(minutes=stream.refresh_minutes),
                concurrency_limit=ConcurrencyLimitConfig(
                    limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
                ),
                tags=tags,
                paused=paused,
                description=f"Imports {', '.join(stream.prefixes)} of data stream {name} every "
                f"{stream.refresh_minutes:g} minutes.",
            )
        )
    return found


def all_deployments() -> list:
    from flows import convert_to_hns, export_data, import_data, verify_data

    found = [
        export_data.to_deployment(name="export", tags=["ferry"]),
        import_data.to_deployment(name="import", tags=["ferry"]),
        verify_data.to_deployment(name="verify", tags=["ferry"]),
        convert_to_hns.to_deployment(name="convert", tags=["ferry"]),
    ]
    for name, stream in all_streams().items():
        found += stream_deployments(name, stream)
    return found


def serve() -> None:
    """Serve every deployment until interrupted (Ctrl-C or SIGTERM). Stopping ends the flow runs
    it started: Prefect's runner cancels them, and whatever of them is still alive when it returns
    is terminated here, so no flow-run process outlives `ferry serve`."""
    from prefect import serve as prefect_serve

    from deployments.crashes import ensure_crash_automation

    ensure_crash_automation()
    try:
        prefect_serve(*all_deployments(), print_starting_message=True)
    finally:
        end_processes(descendants(os.getpid()))


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (Linux /proc; none elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def end_processes(pids: list[int], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL what is still alive after `grace` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while (pids := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not pids:
            return


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap our own children
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False
