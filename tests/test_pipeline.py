"""How a task runs on Prefect: one task run per partition, artifacts, and the manifest's shape."""

from __future__ import annotations

import asyncio
import os
import time
from uuid import UUID

import pyarrow.parquet as pq
import pytest
from conftest import manifest_rows
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows import export_data, import_data
from tasks import progress
from tasks.limits import Bandwidth
from tasks.manifest import COLUMNS, MANIFEST_SCHEMA

pytestmark = pytest.mark.usefixtures("prefect_api")

DESIGN_COLUMNS = {
    "path",
    "source",
    "destination",
    "kind",
    "size",
    "mtime",
    "action",
    "status",
    "reason",
    "bytes",
    "checksum",
    "verified",
    "attempts",
    "started_at",
    "finished_at",
    "new_path",
    "rule",
}


def flow_run_filter(result):
    return FlowRunFilter(id=FlowRunFilterId(any_=[UUID(result.task_id)]))


def tree(root, n: int):
    root.mkdir()
    for i in range(n):
        (root / f"f{i:03d}").write_bytes(b"x" * (i + 1))


def test_one_task_run_per_partition_never_per_file(tmp_path, bucket, reports):
    tree(tmp_path / "src", 10)
    result = export_data(
        str(tmp_path / "src"), f"s3://{bucket}/p", partition_files=3, report_dir=reports
    )
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=flow_run_filter(result))
    partitions = sorted(r.name for r in runs if r.name.startswith("partition-"))
    assert partitions == ["partition-0", "partition-1", "partition-2", "partition-3"]
    assert {r["partition"] for r in manifest_rows(result).values()} == {0, 1, 2, 3}


def test_artifacts_summary_failures_and_progress(tmp_path, bucket, s3_client, reports):
    s3_client.put_object(Bucket=bucket, Key="a/../bad", Body=b"1")
    s3_client.put_object(Bucket=bucket, Key="a/good", Body=b"1")
    result = import_data(f"s3://{bucket}/a", str(tmp_path / "d"), report_dir=reports)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(flow_run_filter=flow_run_filter(result))
    by_key = {a.key: a for a in artifacts}
    assert {"ferry-import-summary", "ferry-import-failures", "ferry-import-progress"} <= set(by_key)
    assert "1 entries were rejected or failed" in by_key["ferry-import-summary"].data
    assert "'..' segment" in str(by_key["ferry-import-failures"].data)
    assert by_key["ferry-import-progress"].data == 100.0


def test_manifest_follows_the_schema_and_keeps_part_files(tmp_path, bucket, reports):
    tree(tmp_path / "src", 5)
    result = export_data(
        str(tmp_path / "src"), f"s3://{bucket}/m", partition_files=2, report_dir=reports
    )
    schema = pq.read_schema(result.manifest)
    assert set(schema.names) >= DESIGN_COLUMNS
    assert tuple(schema.names) == COLUMNS
    assert (
        schema.metadata[b"ferry.manifest.version"]
        == MANIFEST_SCHEMA.metadata[b"ferry.manifest.version"]
    )
    run_dir = os.path.dirname(result.manifest)
    assert sorted(os.listdir(os.path.join(run_dir, "parts"))) == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    assert os.path.exists(os.path.join(run_dir, "summary.json"))
    row = manifest_rows(result)["f000"]
    assert row["started_at"] <= row["finished_at"]
    assert row["action"] == "copy" and row["checksum"]


def test_progress_events_reach_a_listener(tmp_path, bucket, reports):
    tree(tmp_path / "src", 4)
    events = []
    listener = progress.Observer(lambda event, files, nbytes: events.append((event, files, nbytes)))
    with progress.observing(listener):
        export_data(str(tmp_path / "src"), f"s3://{bucket}/e", report_dir=reports)
    # a task started outside the observer's context is not its business
    export_data(str(tmp_path / "src"), f"s3://{bucket}/e2", report_dir=reports)
    assert events[0] == ("planned", 4, 1 + 2 + 3 + 4)
    assert sum(f for e, f, _ in events if e == "advance") == 4
    assert sum(b for e, _, b in events if e == "advance") == 10


def test_a_run_state_sent_to_another_process_brings_its_own_limits_and_watch():
    """Partitions may run in other processes: what a run shares travels as its settings, and a
    process that receives it gets a cap, slots and a cancellation flag of its own, shared by the
    task's partitions there."""
    import pickle

    from tasks.run import RunState

    run = RunState("local", bandwidth_mbps=5, concurrency=3)
    run.cancel()
    run.limits.count(2, 10)
    copy = pickle.loads(pickle.dumps(run))
    assert copy.task_id == "local" and copy.limits.concurrency == 3
    assert copy.limits.bandwidth.rate == 5_000_000
    assert copy.limits is not run.limits and copy.limits.done() == (0, 0)
    assert not copy.cancelled.is_set() and copy.listener is None
    # the task's other partitions that arrive in that process share what the first set up
    other = pickle.loads(pickle.dumps(run))
    assert other.limits is copy.limits and other.cancelled is copy.cancelled
    assert other.listener is None


def test_bandwidth_limiter_never_grants_faster_than_its_rate():
    """A lower bound only: the limiter may be slower on a busy machine, never faster."""
    limiter = Bandwidth(1_000_000, burst_seconds=0)

    async def take():
        await asyncio.gather(*(limiter.acquire(100_000) for _ in range(5)))

    started = time.monotonic()
    asyncio.run(take())
    assert time.monotonic() - started >= 0.4  # 500 kB at 1 MB/s, the first grant immediate


def test_same_size_entries_are_settled_by_a_check_step_before_any_copy(tmp_path, bucket, reports):
    """The listing of a bucket has no mtimes: an entry of the same size is a `check`, settled by
    a HEAD as its range is planned, before copying, so the partitions only copy."""
    src = tmp_path / "src"
    tree(src, 4)
    export_data(str(src), f"s3://{bucket}/c", report_dir=reports)
    os.utime(src / "f001", ns=(1_700_000_000 * 10**9,) * 2)  # same size, another mtime
    result = export_data(str(src), f"s3://{bucket}/c", report_dir=reports)
    rows = manifest_rows(result)
    assert rows["f001"]["status"] == "ok" and rows["f001"]["action"] == "copy"
    assert rows["f001"]["partition"] == 0
    for path in ("f000", "f002", "f003"):
        row = rows[path]
        assert (row["status"], row["action"], row["reason_code"]) == (
            "skipped",
            "skip",
            "unchanged",
        )
        assert row["checksum"] and row["partition"] == -1  # the HEAD's ETag; never in a partition
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=flow_run_filter(result))
    planned = [r for r in runs if r.name.startswith("range-")]
    partitions = [r for r in runs if r.name.startswith("partition-")]
    assert len(planned) == 1 and len(partitions) == 1
    assert planned[0].end_time <= partitions[0].start_time


def test_large_objects_read_together_share_the_byte_range_streams():
    """Four large objects started together read one range each (4 streams in all, not 16); one
    alone reads four; a fifth beside four still reads one."""
    import asyncio

    from tasks.limits import Bandwidth, TaskLimits

    limits = TaskLimits(Bandwidth(None), 32, 16)

    async def shares(n: int) -> list[int]:
        async def one() -> int:
            async with limits.large_object(4) as streams:
                await asyncio.sleep(0.01)
                return streams

        return list(await asyncio.gather(*(one() for _ in range(n))))

    assert asyncio.run(shares(1)) == [4]
    assert asyncio.run(shares(2)) == [2, 2]
    assert asyncio.run(shares(4)) == [1, 1, 1, 1]
    assert asyncio.run(shares(5)) == [1] * 5
    assert limits.large_in_flight == 0
