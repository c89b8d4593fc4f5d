"""Tasks of a data stream: a batch import or export on the stream's settings.

Whichever way it starts (the CLI, a deployment run from the UI or a schedule, Python), a batch
task of a stream takes one slot of the stream's global concurrency limit (four), strictly: a
fifth waits its turn, and a stream whose limit is gone cannot run. A stopped stream refuses.
"""

from __future__ import annotations

import contextlib

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
from prefect.concurrency.sync import concurrency
from prefect.runtime import flow_run

from flows.options import Options, takes_options
from flows.result import TaskResult, ends_truthfully
from flows.transfer import run_transfer
from tasks.runlog import run_logger


def stream_tag(name: str) -> str:
    return f"ferry-stream:{name}"


def _tag_this_run(name: str) -> None:
    """Tag the flow run with its stream, so `stop` and `show` find it however it started."""
    run_id = flow_run.get_id()
    if not run_id:
        return
    tags = set(flow_run.get_tags() or [])
    if stream_tag(name) in tags:
        return
    with get_client(sync_client=True) as client:
        client.update_flow_run(run_id, tags=sorted(tags | {stream_tag(name)}))


def stream_options(stream, job: str, options: Options) -> Options:
    """The options of a batch task of this stream: its storage options on the bucket's side, its
    bandwidth, its auto-update prefixes when asked; the rest as given or the defaults."""
    side = "source_options" if job == "import" else "destination_options"
    changes = {
        side: stream.storage_options(),
        "bandwidth_mbps": stream.bandwidth_mbps,
        "allow_empty": True,  # a stream's prefix (an auto-update one above all) fills later
    }
    if options.auto_update:
        prefix = stream.bucket().prefix
        changes["include"] = [p[1:][len(prefix) :] + "*" for p in stream.prefixes]
    return options.model_copy(update=changes)


def _stream_task(settings, job: str, options: Options):
    """Runs in this flow run (so its id is the one `ferry stream submit` takes)."""
    from flows.stream_tasks import stream_export, stream_import

    common = {
        "bandwidth_mbps": settings.bandwidth_mbps,
        "max_runtime": options.max_runtime,
        "idle_timeout": options.idle_timeout,
        "report_dir": options.report_dir,
    }
    if job == "stream-export":
        return stream_export.fn(
            settings.directory,
            settings.bucket_url,
            destination_options=settings.storage_options(),
            watch_mode=options.watch_mode,
            scan_seconds=options.scan_seconds,
            **common,
        )
    return stream_import.fn(
        settings.bucket_url,
        settings.directory,
        source_options=settings.storage_options(),
        events_queue=options.events_queue,
        **common,
    )


#: The state name of a batch task of a stream waiting for one of its four slots (a Running state,
#: so heartbeats and cancellation work as usual; the UI shows the name).
AWAITING_SLOT = "AwaitingStreamSlot"


@contextlib.contextmanager
def stream_slot(stream: str):
    """Hold one of the stream's four slots while copying. A slot held by a killed run comes back
    when its lease expires: 60 s, the least the server accepts. When all four are taken, the run
    says so: its state is named AwaitingStreamSlot, with a message and a log line, until a slot
    frees (so six runs of which four copy no longer look alike)."""
    from deployments.streams import MAX_BATCH_TASKS, limit_name

    name = limit_name(stream)
    with contextlib.ExitStack() as held:
        try:
            # one request, answered however slowly the API answers (a timeout would cut it short,
            # and a slot the server granted meanwhile would stay taken until its lease ended)
            held.enter_context(
                concurrency(name, occupy=1, strict=True, lease_duration=60, max_retries=0)
            )
        except ConcurrencySlotAcquisitionError as exc:
            if getattr(getattr(exc.__cause__, "response", None), "status_code", None) != 423:
                raise  # not "all slots taken" (423 Locked): the limit is gone, or the API failed
            waiting = f"waiting for one of data stream {stream}'s {MAX_BATCH_TASKS} slots"
            run_logger().info("%s: all are taken by other tasks of the stream", waiting)
            _mark_running(AWAITING_SLOT, waiting)
            held.enter_context(concurrency(name, occupy=1, strict=True, lease_duration=60))
            run_logger().info("got a slot of data stream %s; copying", stream)
            _mark_running("Running", f"holds a slot of data stream {stream}")
        yield


def _mark_running(name: str, message: str) -> None:
    """Rename this flow run's Running state (the engine's own state stays Running)."""
    from prefect.states import Running

    run_id = flow_run.get_id()
    if not run_id:
        return
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run_id, Running(name=name, message=message), force=True)


@flow(name="ferry-stream-task", log_prints=False)
@ends_truthfully
@takes_options("stream-task")
def stream_task(stream, job, options: Options) -> TaskResult:
    """A task on a data stream, with the stream's credentials, endpoint and bandwidth: a batch
    import (bucket prefix → directory) or export (directory → bucket prefix), at most four at once
    per stream; or a stream task, stream-export / stream-import, which runs until stopped,
    max_runtime or idle_timeout (seconds) and does not count against the four. With auto_update,
    a batch import takes only the stream's auto-update prefixes (what its schedule runs)."""
    from deployments.streams import StreamError, load

    settings = load(stream)
    if settings.state != "enabled":
        raise StreamError("the stream is stopped; `ferry stream enable` it first", where=stream)
    _tag_this_run(stream)
    if job.startswith("stream-"):
        return _stream_task(settings, job, options)
    options = stream_options(settings, job, options)
    with stream_slot(stream):
        if job == "import":
            return run_transfer("import", settings.bucket_url, settings.directory, options)
        return run_transfer("export", settings.directory, settings.bucket_url, options)
