"""Data streams: stored links between a file-system directory and a bucket prefix.

A stream is a Prefect block (`ferry-data-stream`), so it lives in the Prefect API next to the
stream's deployments, and shows in the UI. Its credentials are a separate `ferry-s3-credentials`
block (every field masked by Prefect) that the
stream names: they never appear in a stream's settings, a flow parameter, a log or a manifest.
Creating a stream also creates its global concurrency limit (four batch tasks at once).
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any

from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from pydantic import Field

from flows.credentials import S3Credentials, credential_options, save_credentials
from tasks.endpoints import BucketPrefix, Directory, parse_endpoint
from tasks.errors import FerryError, StreamError, UsageError  # noqa: F401

MAX_STREAMS_PER_FILE_SYSTEM = 10
MAX_BATCH_TASKS = 4
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")
TAG_KEY, TAG_VALUE = "ferry-dataflow", "true"
MODIFIABLE = frozenset({"refresh_minutes", "add_prefixes", "bandwidth_mbps", "description"})


class DataStream(Block):
    """A ferry data stream: a directory linked to a bucket prefix."""

    _block_type_name = "ferry data stream"
    _block_type_slug = "ferry-data-stream"
    _description = "A directory on a file system linked to an S3 bucket prefix by ferry."

    directory: str = Field(description="The file-system directory.")
    bucket_url: str = Field(description="s3://bucket/prefix")
    endpoint_url: str | None = Field(
        None, description="S3 endpoint (default: AWS or the environment's AWS_ENDPOINT_URL)."
    )
    use_ssl: bool = Field(True, description="Reach the endpoint over HTTPS.")
    credentials_block: str | None = Field(
        None,
        description="Name of the ferry-s3-credentials block holding the stream's access key; "
        "none: the environment's.",
    )
    bandwidth_mbps: float | None = Field(None, description="Cap on each task, in MB/s.")
    description: str = Field("", description="What the stream is for.")
    auto_update: bool = Field(False, description="Import the prefixes on an interval.")
    refresh_minutes: float | None = Field(None, description="Interval of automatic updates.")
    prefixes: list[str] = Field(
        default_factory=list, description="Bucket prefixes kept up to date, like /datasets/a/"
    )
    state: str = Field("enabled", description="enabled or stopped")

    def storage_options(self) -> dict[str, Any]:
        """s3fs options for this stream's bucket, secrets loaded from its credentials block."""
        options: dict[str, Any] = {"use_ssl": self.use_ssl}
        if self.endpoint_url:
            options["endpoint_url"] = self.endpoint_url
        options.update(credential_options(self.credentials_block))
        return options

    def bucket(self) -> BucketPrefix:
        return parse_endpoint(self.bucket_url, self.storage_options())

    def settings(self) -> dict[str, Any]:
        """What `show` prints: everything but secrets."""
        keep = (
            "directory",
            "bucket_url",
            "endpoint_url",
            "use_ssl",
            "credentials_block",
            "bandwidth_mbps",
            "description",
            "auto_update",
            "refresh_minutes",
            "prefixes",
            "state",
        )
        return {k: getattr(self, k) for k in keep}


def block_name(name: str) -> str:
    return f"ferry-stream-{name}"


def limit_name(name: str) -> str:
    return f"ferry-stream-{name}"


def load(name: str) -> DataStream:
    try:
        return DataStream.load(block_name(name))
    except ValueError:
        raise StreamError("no such data stream", where=name) from None


def all_streams() -> dict[str, DataStream]:
    with get_client(sync_client=True) as client:
        try:
            documents = client.read_block_documents_by_type(DataStream.get_block_type_slug())
        except Exception:  # noqa: BLE001 - the block type is registered with the first stream
            return {}
    found = {}
    for document in documents:
        if document.name and document.name.startswith("ferry-stream-"):
            found[document.name.removeprefix("ferry-stream-")] = DataStream.load(document.name)
    return dict(sorted(found.items()))


# --- checks -------------------------------------------------------------------------------------


def mount_of(path: str) -> str:
    """The mount point of the file system holding `path`."""
    path = os.path.realpath(path)
    device = os.stat(path).st_dev
    while path != os.path.dirname(path):
        parent = os.path.dirname(path)
        if os.stat(parent).st_dev != device:
            return path
        path = parent
    return path


def overlaps(a: str, b: str) -> bool:
    a, b = a.rstrip("/") + "/", b.rstrip("/") + "/"
    return a.startswith(b) or b.startswith(a)


def check_prefix(prefix: str, bucket: BucketPrefix) -> str | None:
    if not 2 <= len(prefix) <= 1024:
        return f"prefix {prefix!r} must be 2 to 1024 characters"
    if not (prefix.startswith("/") and prefix.endswith("/")):
        return f"prefix {prefix!r} must start and end with '/'"
    if bucket.prefix and not prefix[1:].startswith(bucket.prefix):
        return f"prefix {prefix!r} is not inside the stream's s3://{bucket.bucket}/{bucket.prefix}"
    return None


async def _bucket_problems(
    client, bucket: BucketPrefix, *, shared: bool, prefixes: list[str]
) -> list[str]:
    from tasks.errors import error_code, task_error

    try:
        await client.list_objects_v2(Bucket=bucket.bucket, Prefix=bucket.prefix, MaxKeys=1)
    except Exception as exc:
        return [str(task_error(exc, where=bucket.display))]
    problems = []
    try:
        tags = (await client.get_bucket_tagging(Bucket=bucket.bucket)).get("TagSet", [])
    except Exception as exc:
        if error_code(exc) not in ("NoSuchTagSet", "NoSuchTagSetError"):
            raise
        tags = []
    if {"Key": TAG_KEY, "Value": TAG_VALUE} not in [
        {"Key": t["Key"], "Value": t["Value"]} for t in tags
    ]:
        problems.append(
            f"bucket {bucket.bucket} lacks the tag {TAG_KEY}={TAG_VALUE} that guards against "
            f"linking the wrong bucket; add it with: aws s3api put-bucket-tagging --bucket "
            f"{bucket.bucket} --tagging 'TagSet=[{{Key={TAG_KEY},Value={TAG_VALUE}}}]'"
        )
    if shared:
        status = (await client.get_bucket_versioning(Bucket=bucket.bucket)).get("Status")
        if status != "Enabled":
            problems.append(
                f"bucket {bucket.bucket} is used by another stream, so it needs versioning enabled"
            )
    return problems + await _missing_prefixes(client, bucket, prefixes)


# --- lifecycle ----------------------------------------------------------------------------------


def create_stream(
    name: str,
    directory: str,
    bucket_url: str,
    *,
    endpoint_url: str | None = None,
    use_ssl: bool = True,
    key: str | None = None,
    secret: str | None = None,
    token: str | None = None,
    bandwidth_mbps: float | None = None,
    description: str = "",
    auto_update: bool = False,
    refresh_minutes: float | None = None,
    prefixes: list[str] | None = None,
) -> DataStream:
    """Validate everything, then store the stream, its credentials and its concurrency limit."""
    if not NAME.match(name or ""):
        raise StreamError(
            "a stream name is 1-48 lowercase letters, digits and dashes", where=str(name)
        )
    streams = all_streams()
    if name in streams:
        raise StreamError("a data stream of this name exists", where=name)
    target = parse_endpoint(directory)
    bucket = parse_endpoint(bucket_url)
    if not isinstance(target, Directory) or not isinstance(bucket, BucketPrefix):
        raise UsageError("a stream links a directory to s3://bucket/prefix")
    if not os.path.isdir(target.root):
        raise StreamError("the directory does not exist", where=target.root)
    prefixes = list(prefixes or [])
    if auto_update and (not refresh_minutes or refresh_minutes <= 0 or not prefixes):
        raise StreamError(
            "automatic update needs a refresh interval (minutes > 0) and at least one prefix"
        )
    if bandwidth_mbps is not None and bandwidth_mbps <= 0:
        raise StreamError("bandwidth must be greater than 0 MB/s")
    for prefix in prefixes:
        problem = check_prefix(prefix, bucket)
        if problem:
            raise StreamError(problem)
    mount = mount_of(target.root)
    same_fs = [
        n
        for n, s in streams.items()
        if os.path.isdir(s.directory) and mount_of(s.directory) == mount
    ]
    if len(same_fs) >= MAX_STREAMS_PER_FILE_SYSTEM:
        raise StreamError(
            f"the file system at {mount} has {MAX_STREAMS_PER_FILE_SYSTEM} data streams already",
            where=target.root,
        )
    for other_name, other in streams.items():
        other_bucket = parse_endpoint(other.bucket_url)
        if overlaps(other.directory, target.root) and other_bucket.bucket != bucket.bucket:
            raise StreamError(
                f"{target.root} overlaps {other.directory}, linked by stream {other_name} to "
                f"bucket {other_bucket.bucket}; a directory is linked to one bucket only"
            )
    shared = any(parse_endpoint(s.bucket_url).bucket == bucket.bucket for s in streams.values())
    options: dict[str, Any] = {"use_ssl": use_ssl}
    if endpoint_url:
        options["endpoint_url"] = endpoint_url
    credentials = {k: v for k, v in {"key": key, "secret": secret, "token": token}.items() if v}
    if credentials and not (key and secret):
        raise StreamError("an access key needs both its id (--key) and its secret (--secret)")
    probe = parse_endpoint(bucket_url, {**options, **credentials})
    problems = probe.run(_bucket_problems, probe, shared=shared, prefixes=prefixes)
    if problems:
        raise StreamError("; ".join(problems), where=bucket.display)

    credentials_block = None
    if credentials:
        credentials_block = f"{block_name(name)}-credentials"
        save_credentials(credentials_block, **credentials)
    stream = DataStream(
        directory=target.root,
        bucket_url=bucket.display,
        endpoint_url=endpoint_url,
        use_ssl=use_ssl,
        credentials_block=credentials_block,
        bandwidth_mbps=bandwidth_mbps,
        description=description,
        auto_update=auto_update,
        refresh_minutes=refresh_minutes,
        prefixes=prefixes,
    )
    with get_client(sync_client=True) as client:
        try:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=limit_name(name), limit=MAX_BATCH_TASKS)
            )
        except ObjectAlreadyExists:  # left by a deleted stream of this name: make it ours again
            client.delete_global_concurrency_limit_by_name(limit_name(name))
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=limit_name(name), limit=MAX_BATCH_TASKS)
            )
    stream.save(block_name(name))
    from deployments.crashes import ensure_crash_automation

    ensure_crash_automation()  # a killed task of the stream is marked Crashed
    return stream


def modify_stream(name: str, **changes: Any) -> DataStream:
    """Only the refresh interval, added prefixes, bandwidth and description may change."""
    refused = sorted(set(changes) - MODIFIABLE)
    if refused:
        raise StreamError(
            f"cannot modify {', '.join(refused)}: only the refresh interval, "
            "added auto-update prefixes, bandwidth and description can change; "
            "delete and re-create the stream for anything else",
            where=name,
        )
    stream = load(name)
    if changes.get("refresh_minutes") is not None:
        if changes["refresh_minutes"] <= 0:
            raise StreamError("the refresh interval must be more than 0 minutes", where=name)
        stream.refresh_minutes = changes["refresh_minutes"]
    if changes.get("bandwidth_mbps") is not None:
        if changes["bandwidth_mbps"] <= 0:
            raise StreamError("bandwidth must be greater than 0 MB/s", where=name)
        stream.bandwidth_mbps = changes["bandwidth_mbps"]
    if changes.get("description") is not None:
        stream.description = changes["description"]
    added = [p for p in changes.get("add_prefixes") or [] if p not in stream.prefixes]
    if added:
        bucket = stream.bucket()
        for prefix in added:
            problem = check_prefix(prefix, bucket)
            if problem:
                raise StreamError(problem, where=name)
        problems = bucket.run(_missing_prefixes, bucket, added)
        if problems:
            raise StreamError("; ".join(problems), where=name)
        stream.prefixes = [*stream.prefixes, *added]
    stream.save(block_name(name), overwrite=True)
    if changes.get("refresh_minutes") is not None:  # a served auto-update follows at once
        from deployments.serve import ensure_auto_update

        with get_client(sync_client=True) as client:
            for deployment in _stream_deployments(client, name):
                if deployment.name == f"{name}-auto-update":
                    ensure_auto_update(deployment.id, stream.refresh_minutes)
    return stream


async def _missing_prefixes(client, bucket: BucketPrefix, prefixes: list[str]) -> list[str]:
    missing = []
    for prefix in prefixes:
        listed = await client.list_objects_v2(Bucket=bucket.bucket, Prefix=prefix[1:], MaxKeys=1)
        if not listed.get("KeyCount"):
            missing.append(f"prefix {prefix!r} does not exist in bucket {bucket.bucket}")
    return missing


def _stream_runs(client, name: str, states: list[str] | None = None, limit: int = 50):
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    state_filter = FlowRunFilterState(type=FlowRunFilterStateType(any_=states)) if states else None
    return client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[f"ferry-stream:{name}"]), state=state_filter
        ),
        sort=FlowRunSort.START_TIME_DESC,
        limit=limit,
    )


def _stream_deployments(client, name: str):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags

    return client.read_deployments(
        deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=[f"ferry-stream:{name}"]))
    )


def cancel_runs(name: str) -> int:
    """Cancel the stream's scheduled, pending and running tasks; returns how many."""
    from prefect.states import Cancelled, Cancelling

    count = 0
    with get_client(sync_client=True) as client:
        for run in _stream_runs(client, name, ["SCHEDULED", "PENDING", "RUNNING", "PAUSED"], 200):
            waiting = run.state is not None and run.state.type.value in ("SCHEDULED", "PAUSED")
            new_state = (
                Cancelled(message="stream stopped")
                if waiting
                else Cancelling(message="stream stopped")
            )
            client.set_flow_run_state(run.id, new_state, force=True)
            count += 1
    return count


def _set_state(name: str, state: str) -> DataStream:
    stream = load(name)
    stream.state = state
    stream.save(block_name(name), overwrite=True)
    with get_client(sync_client=True) as client:
        for deployment in _stream_deployments(client, name):
            if state == "stopped":
                client.pause_deployment(deployment.id)
            else:
                client.resume_deployment(deployment.id)
    return stream


def stop_stream(name: str) -> DataStream:
    """Refuse new tasks, pause the stream's schedules, cancel its running tasks."""
    stream = _set_state(name, "stopped")
    cancel_runs(name)
    return stream


def enable_stream(name: str) -> DataStream:
    """Undo `stop_stream`: accept tasks, resume the schedules."""
    return _set_state(name, "enabled")


def delete_stream(name: str) -> None:
    """Cancel its tasks, remove its deployments (with their schedules), its concurrency limit,
    its credentials and itself. The data on both sides stays as it is."""
    stream = load(name)
    cancel_runs(name)
    with get_client(sync_client=True) as client:
        for deployment in _stream_deployments(client, name):
            client.delete_deployment(deployment.id)
        with contextlib.suppress(ObjectNotFound):  # already gone is fine
            client.delete_global_concurrency_limit_by_name(limit_name(name))
        names = [block_name(name)]
        if stream.credentials_block:
            names.append(stream.credentials_block)
        for block in names:
            slug = (
                DataStream.get_block_type_slug()
                if block == block_name(name)
                else S3Credentials.get_block_type_slug()
            )
            try:
                document = client.read_block_document_by_name(block, slug)
            except ObjectNotFound:
                continue
            client.delete_block_document(document.id)


def deployment_states(name: str) -> list[dict[str, Any]]:
    """Each deployment of the stream and what Prefect will really do with it: a deployment is
    paused because the stream is stopped, or paused in Prefect by someone else while the stream
    is enabled, or active and served by a running `ferry serve` (its runner polls it), or active
    with nobody serving it (its scheduled runs wait, Late)."""
    stream = load(name)
    found = []
    with get_client(sync_client=True) as client:
        for deployment in sorted(_stream_deployments(client, name), key=lambda d: d.name):
            status = getattr(deployment.status, "value", deployment.status)
            served = status == "READY"
            if stream.state != "enabled":
                what = (
                    "paused because the stream is stopped: Prefect makes no scheduled run, and "
                    "a run started by hand is refused; `ferry stream enable` resumes it"
                )
            elif deployment.paused:
                what = (
                    "paused in Prefect although the stream is enabled (paused in the UI, or by "
                    "an older ferry serve on its way out): Prefect makes no scheduled run until "
                    "it is resumed; `ferry serve` resumes it when it starts"
                )
            elif served:
                what = "active and served by ferry serve: runs start as they come due"
            else:
                what = (
                    "active but not served (no ferry serve is polling it): Prefect makes the "
                    "scheduled runs, and they wait, Late, until `ferry serve` starts"
                )
            found.append(
                {
                    "deployment": f"ferry-stream-task/{deployment.name}",
                    "paused": bool(deployment.paused),
                    "served": served,
                    "last_polled": deployment.last_polled,
                    "what_prefect_does": what,
                }
            )
    return found


def recent_tasks(name: str, limit: int = 10) -> list[dict[str, Any]]:
    """The stream's latest tasks: run name, job, state, start, counts."""
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
    )

    found = []
    with get_client(sync_client=True) as client:
        for run in _stream_runs(client, name, limit=limit):
            counts = None
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_="-counts")),
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])),
            )
            for artifact in artifacts:
                data = artifact.data
                if isinstance(data, str):
                    import json

                    data = json.loads(data)
                if data:
                    counts = {k: v for k, v in data[0].items() if k != "manifest"}
            found.append(
                {
                    "run": run.name,
                    "id": str(run.id),
                    "job": (run.parameters or {}).get("job"),
                    "state": run.state.name if run.state else None,
                    "started": run.start_time.isoformat(timespec="seconds")
                    if run.start_time
                    else None,
                    "counts": counts,
                }
            )
    return found
