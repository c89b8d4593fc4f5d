"""Deployments: the flows users trigger from the Prefect UI, and each data stream's own.

`ferry serve` serves, in one process: `ferry-export`, `ferry-import`, `ferry-verify` and
`ferry-convert` (parameter forms with every option explained, and the named schedules of
`ferry schedule`), and for each stream its `import` and `export` deployments, plus an interval
schedule importing its auto-update prefixes when the stream has automatic update on. A stopped
stream's deployments are served paused; a stream created while it runs is served within
STREAM_POLL_SECONDS. Registering a deployment never sends its schedules, so schedules added in
the UI survive a restart.

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

from deployments.schedules import keeping_schedules
from deployments.streams import all_streams
from flows.streams import stream_tag, stream_task

#: Seconds between two looks for streams created while `ferry serve` runs.
STREAM_POLL_SECONDS = 5.0
#: After SIGTERM, `ferry serve` is gone within this many seconds, even with the server gone.
STOP_SECONDS = 5.0
AUTO_UPDATE_SLUG = "auto-update"


def stream_deployments(name: str, stream) -> list:
    """The deployments of one stream. They are served paused when the stream is stopped; their
    schedules (the auto-update interval, which `ferry serve` keeps in step with the stream, and
    any added in the UI) are left as they are on the server."""
    paused = stream.state != "enabled"
    tags = [stream_tag(name), "ferry"]
    common = {"tags": tags, "paused": paused}
    found = [
        stream_task.to_deployment(
            name=f"{name}-{job}",
            parameters={"stream": name, "job": job},
            description=f"Batch {job} on data stream {name}: {stream.description}".strip(": "),
            **common,
        )
        for job in ("import", "export")
    ]
    if stream.auto_update and stream.refresh_minutes:
        found.append(
            stream_task.to_deployment(
                name=f"{name}-auto-update",
                parameters={"stream": name, "job": "import", "auto_update": True},
                concurrency_limit=ConcurrencyLimitConfig(
                    limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
                ),
                description=f"Imports {', '.join(stream.prefixes)} of data stream {name} every "
                f"{stream.refresh_minutes:g} minutes.",
                **common,
            )
        )
    return [keeping_schedules(d, keep_paused=False) for d in found]


def ensure_auto_update(deployment_id, minutes: float) -> None:
    """The auto-update deployment's own schedule (slug auto-update), at the stream's interval;
    other schedules on it (added in the UI) stay."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import IntervalSchedule

    every = IntervalSchedule(interval=timedelta(minutes=minutes))
    with get_client(sync_client=True) as client:
        for existing in client.read_deployment_schedules(deployment_id):
            if existing.slug == AUTO_UPDATE_SLUG:
                if getattr(existing.schedule, "interval", None) != every.interval:
                    client.update_deployment_schedule(deployment_id, existing.id, schedule=every)
                return
        client.create_deployment_schedules(
            deployment_id, [DeploymentScheduleCreate(schedule=every, slug=AUTO_UPDATE_SLUG)]
        )


def job_deployments() -> list:
    from deployments.schedules import job_deployment

    return [job_deployment(job) for job in ("export", "import", "verify", "convert")]


def serve() -> None:
    """Serve every deployment until interrupted (Ctrl-C or SIGTERM): ferry's four jobs (with the
    schedules `ferry schedule` and the UI put on them) and every data stream's, including
    streams created while it runs. Stopping ends the flow runs it started, and takes at most
    STOP_SECONDS even when the Prefect server is already gone."""
    import asyncio

    from deployments.crashes import ensure_crash_automation

    ensure_crash_automation()
    try:
        asyncio.run(_serve(job_deployments()))
    except KeyboardInterrupt:
        pass
    finally:
        end_processes(descendants(os.getpid()))


async def _serve(jobs: list) -> None:
    import asyncio

    from prefect.runner import Runner

    class FerryRunner(Runner):
        def handle_sigterm(self, *args, **kwargs) -> None:
            _stop_within(STOP_SECONDS)
            super().handle_sigterm(*args, **kwargs)

    # pause_on_shutdown=False: a deployment is paused only because its stream is stopped (or a
    # user paused it), never because ferry serve stopped; its scheduled runs then show Late
    runner = FerryRunner(name=f"ferry-serve-{os.getpid()}", pause_on_shutdown=False)
    served: set[str] = set()
    for deployment in jobs:
        await runner.aadd_deployment(deployment)
    await _add_streams(runner, served)
    print(
        "ferry serve: serving ferry-export, ferry-import, ferry-verify, ferry-convert and "
        f"{len(served)} data stream(s); Ctrl-C or SIGTERM stops it",
        flush=True,
    )

    async def watch_streams() -> None:
        while True:
            await asyncio.sleep(STREAM_POLL_SECONDS)
            try:
                await _add_streams(runner, served)
            except Exception as exc:  # noqa: BLE001 - the API may be away for a moment
                runner._logger.warning("could not look for new data streams: %s", exc)

    watcher = asyncio.ensure_future(watch_streams())
    try:
        await runner.start()
    finally:
        watcher.cancel()


async def _add_streams(runner, served: set[str]) -> None:
    """Serve the streams not served yet (all of them at start; new ones as they appear)."""
    import asyncio

    streams = await asyncio.to_thread(all_streams)
    for name, stream in streams.items():
        if name in served:
            continue
        # to_deployment is async-dispatching: built in a thread, it returns deployments
        for deployment in await asyncio.to_thread(stream_deployments, name, stream):
            deployment_id = await runner.aadd_deployment(deployment)
            if deployment.name.endswith("-auto-update"):
                await asyncio.to_thread(ensure_auto_update, deployment_id, stream.refresh_minutes)
        served.add(name)
        if runner.started:
            print(f"ferry serve: now serving data stream {name}", flush=True)


def _stop_within(seconds: float) -> None:
    """Whatever the runner's own shutdown waits for (an API that is gone, a slow cancellation),
    the process ends after `seconds` and a few more: its flow-run processes are ended, the runs
    they ran are marked Cancelled when the API still answers, and it exits."""
    import threading

    def deadline() -> None:
        time.sleep(seconds)
        print(
            f"ferry serve: still stopping after {seconds:g} s: ending the flow runs still in "
            "flight and exiting",
            flush=True,
        )
        pids = descendants(os.getpid())
        runs = [run for run in map(flow_run_of, pids) if run]
        end_processes(pids, grace=1.0)
        mark_cancelled(runs, timeout=1.5)
        os._exit(0)

    threading.Thread(target=deadline, daemon=True, name="ferry-stop-deadline").start()


def flow_run_of(pid: int) -> str | None:
    """The flow run a process of the runner runs (Prefect puts its id in the environment)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            for item in f.read().split(b"\0"):
                if item.startswith(b"PREFECT__FLOW_RUN_ID="):
                    return item.partition(b"=")[2].decode()
    except OSError:
        pass
    return None


def mark_cancelled(runs: list[str], *, timeout: float) -> None:
    """Best effort, bounded: a run whose process ferry serve ended is Cancelled, not left
    Running (if the API is gone, the heartbeat automation marks it Crashed later)."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    api = PREFECT_API_URL.value()
    if not api or not runs:
        return
    state = {"type": "CANCELLED", "message": "ferry serve stopped while it ran"}
    deadline = time.monotonic() + timeout
    with contextlib.suppress(Exception), httpx.Client(timeout=timeout) as client:
        for run in runs:
            if time.monotonic() > deadline:
                return
            client.post(f"{api}/flow_runs/{run}/set_state", json={"state": state, "force": True})


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
