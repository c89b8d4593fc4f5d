"""Partitions on a Dask cluster (prefect-dask's DaskTaskRunner), tested with a real
`distributed.LocalCluster` of two worker processes: the partitions run on both (manifest
`worker`), the manifest is complete and exact, cancelling stops the workers' copies within 5 s,
and a worker killed mid-partition costs nothing: the partition runs again elsewhere."""

from __future__ import annotations

import os
import signal
import time
from uuid import UUID

import pandas as pd
import pytest
from conftest import in_thread, manifest_rows, random_tree
from prefect.client.orchestration import get_client
from prefect.states import Cancelling

from flows import export_data, import_data
from tasks.rows import worker_id

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture(scope="module")
def dask_cluster(s3_endpoint, prefect_api):
    """Two worker processes (with nannies that restart a killed one), which reach the test's S3
    and Prefect API through the environment they start with, as a cluster's workers would."""
    from distributed import Client, LocalCluster

    api = str(get_client(sync_client=True).api_url).rstrip("/")
    saved = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = api
    try:
        cluster = LocalCluster(
            n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None
        )
    finally:
        if saved is None:
            os.environ.pop("PREFECT_API_URL")
        else:
            os.environ["PREFECT_API_URL"] = saved
    with cluster, Client(cluster) as client:
        yield cluster.scheduler_address, client


def worker_pids(client) -> set[int]:
    return set(client.run(os.getpid).values())


def test_partitions_run_on_the_cluster_s_workers_and_the_manifest_is_exact(
    tmp_path, bucket, s3_client, reports, dask_cluster
):
    address, client = dask_cluster
    src, back = tmp_path / "src", tmp_path / "back"
    random_tree(src, 16, 2000)
    result = export_data(
        str(src), f"s3://{bucket}/d", dask_address=address, partition_files=2, report_dir=reports
    )
    assert result.counts == {"ok": 16, "skipped": 0, "rejected": 0, "failed": 0}
    frame = pd.read_parquet(result.manifest)
    assert sorted(frame.path) == sorted(os.listdir(src))  # each entry once
    pids = {int(w.split(":")[1]) for w in frame.worker}
    assert len(pids) == 2 and pids <= worker_pids(client), pids
    assert s3_client.list_objects_v2(Bucket=bucket, Prefix="d/")["KeyCount"] == 16

    os.environ["FERRY_DASK_ADDRESS"] = address  # the environment's address, for the import
    try:
        got = import_data(f"s3://{bucket}/d", str(back), partition_files=2, report_dir=reports)
    finally:
        del os.environ["FERRY_DASK_ADDRESS"]
    assert got.counts == {"ok": 16, "skipped": 0, "rejected": 0, "failed": 0}
    assert {r["worker"] for r in manifest_rows(got).values()} - {worker_id()}
    for name in os.listdir(src):
        assert (back / name).read_bytes() == (src / name).read_bytes()


def until(what, condition, thread, seconds: float = 600):
    deadline = time.monotonic() + seconds
    while not (found := condition()):
        assert thread.is_alive(), f"the run ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {seconds} s"
        time.sleep(0.1)
    return found


def running_export(destination: str) -> UUID | None:
    """The running export to `destination` (other tests' runs may be left RUNNING: killed)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState

    with get_client(sync_client=True) as prefect:
        runs = prefect.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type={"any_": ["RUNNING"]}))
        )
    return next((r.id for r in runs if r.parameters.get("destination") == destination), None)


def test_cancelling_stops_the_workers_copies_within_5_s(
    tmp_path, bucket, s3_client, reports, dask_cluster
):
    address, _ = dask_cluster
    src = tmp_path / "src"
    random_tree(src, 40, 200_000)  # 8 MB at 0.5 MB/s: 16 s
    thread, outcome = in_thread(
        export_data,
        source=str(src),
        destination=f"s3://{bucket}/c",
        dask_address=address,
        partition_files=10,
        bandwidth_mbps=0.5,
        report_dir=reports,
    )
    run_id = until("running export", lambda: running_export(f"s3://{bucket}/c"), thread)
    until("copies", lambda: s3_client.list_objects_v2(Bucket=bucket).get("KeyCount", 0), thread)
    with get_client(sync_client=True) as prefect:
        prefect.set_flow_run_state(run_id, Cancelling(), force=True)
    asked = pd.Timestamp.now(tz="UTC")
    thread.join(timeout=600)
    assert not thread.is_alive()
    # the manifest, from where the run wrote it: the caller's outcome is TaskCancelled, but once
    # in a loaded full-suite run the flow ended in Cancelling (not Cancelled) and the caller got
    # Prefect's UnfinishedRun, though every copy had stopped (not understood yet; see the note)
    print(f"the caller got {type(outcome[0]).__name__}")
    frame = pd.read_parquet(os.path.join(reports, str(run_id), "manifest.parquet"))
    assert len(frame) == 40 and sorted(frame.path) == sorted(os.listdir(src))
    copied = frame[frame.status == "ok"]
    assert 0 < len(copied) < 40
    assert set(frame[frame.status != "ok"].reason_code) == {"cancelled"}
    # the workers' last copy ended within 5 s of the request
    late = (copied.finished_at.max() - asked).total_seconds()
    print(f"last copy ended {late:.1f} s after Cancelling was set")
    assert late < 5
    keys = s3_client.list_objects_v2(Bucket=bucket).get("KeyCount", 0)
    assert keys == len(copied)


def test_a_worker_killed_mid_partition_costs_nothing(
    tmp_path, bucket, s3_client, reports, dask_cluster
):
    """kill -9 of a worker process while it copies: Dask runs its partition again on the other
    worker (or on the one its nanny starts), the task completes, every object is there once,
    whole, and the manifest holds each entry once."""
    address, client = dask_cluster
    src, back = tmp_path / "src", tmp_path / "back"
    random_tree(src, 24, 100_000)
    s3 = f"s3://{bucket}/k"
    export_data(str(src), s3, dask_address=address, report_dir=reports)
    before = worker_pids(client)
    thread, outcome = in_thread(
        import_data,
        source=s3,
        destination=str(back),
        dask_address=address,
        partition_files=6,
        bandwidth_mbps=0.24,  # 2.4 MB: 10 s, so the kill lands mid-partition
        report_dir=reports,
    )
    until("a file", lambda: os.path.isdir(back) and os.listdir(back), thread)
    victim = sorted(before)[0]
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=600)
    assert not thread.is_alive()
    result = outcome[0]
    assert not isinstance(result, BaseException), result
    assert result.counts == {"ok": 24, "skipped": 0, "rejected": 0, "failed": 0}
    frame = pd.read_parquet(result.manifest)
    assert sorted(frame.path) == sorted(os.listdir(src))
    # the killed worker's partitions were cut short (it recorded none): they ran again elsewhere
    assert f"{worker_id().split(':')[0]}:{victim}" not in set(frame.worker)
    assert victim not in worker_pids(client)
    names = sorted(os.listdir(back))
    assert names == sorted(os.listdir(src)), names  # no temporary left beside them
    for name in names:
        assert (back / name).read_bytes() == (src / name).read_bytes()


def test_verify_and_the_conversion_s_tag_check_run_on_the_cluster(
    tmp_path, bucket, s3_client, reports, dask_cluster
):
    from distributed import get_task_stream

    from flows import convert_to_hns, verify_data
    from tasks.errors import NotEligible

    address, client = dask_cluster
    src = tmp_path / "src"
    random_tree(src, 4, 100)
    export_data(str(src), f"s3://{bucket}/v", report_dir=reports)
    compared = verify_data(str(src), f"s3://{bucket}/v", dask_address=address, report_dir=reports)
    assert compared.ok and compared.counts["ok"] == 4
    pids = {int(r["worker"].split(":")[1]) for r in manifest_rows(compared).values()}
    assert pids <= worker_pids(client), pids

    s3_client.put_object(Bucket=bucket, Key="tagged", Body=b"1", Tagging="team=ml")
    with (
        get_task_stream(client) as stream,
        pytest.raises(NotEligible, match="1 objects carry tags: 'tagged'"),
    ):
        convert_to_hns(
            f"s3://{bucket}",
            metadata=f"sqlite:///{tmp_path / 'ns.db'}",
            dask_address=address,
            report_dir=reports,
        )
    assert any("tags" in str(task["key"]) for task in stream.data), stream.data
