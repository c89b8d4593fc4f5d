"""Partitions on every core: `workers` worker processes (Prefect's ProcessPoolTaskRunner) run a
task's partitions, each with its own event loop and storage client; the manifest's `worker` says
which process settled each entry; the task's bandwidth cap and concurrency hold across them."""

from __future__ import annotations

import os

import pandas as pd
from conftest import manifest_rows, random_tree
from flaky_proxy import FlakyProxy, TwoAtOnce

from flows import export_data, import_data
from tasks.rows import worker_id


def _two_partitions_at_once() -> TwoAtOnce:
    """Holds the copies of the first partition seen (3 files each: f000-f002, f003-f005, ...)
    until a file of another partition is copied."""
    import re

    def partition(method: str, path: str) -> int | None:
        found = re.search(r"/f(\d{3})(\?|$)", path)
        if method not in ("PUT", "GET") or found is None or "list-type" in path:
            return None
        return int(found.group(1)) // 3

    return TwoAtOnce(partition)


def test_partitions_run_in_worker_processes_and_the_manifest_says_which(
    tmp_path, bucket, s3_client, reports
):
    src, back = tmp_path / "src", tmp_path / "back"
    random_tree(src, 12, 1000)
    gate = _two_partitions_at_once()
    with FlakyProxy(os.environ["AWS_ENDPOINT_URL"], {}, on_request=gate) as proxy:
        result = export_data(
            str(src),
            f"s3://{bucket}/w",
            workers=2,
            partition_files=3,
            report_dir=reports,
            destination_options={"endpoint_url": proxy.url},
        )
    assert gate.together.is_set(), "no two partitions were copied at once"
    assert result.counts == {"ok": 12, "skipped": 0, "rejected": 0, "failed": 0}
    rows = manifest_rows(result)
    workers = {r["worker"] for r in rows.values()}
    assert len(workers) == 2 and worker_id() not in workers, workers
    host = worker_id().split(":")[0]
    assert all(w.startswith(host + ":") and w.split(":")[1].isdigit() for w in workers)
    assert s3_client.list_objects_v2(Bucket=bucket, Prefix="w/")["KeyCount"] == 12

    gate = _two_partitions_at_once()
    with FlakyProxy(os.environ["AWS_ENDPOINT_URL"], {}, on_request=gate) as proxy:
        got = import_data(
            f"s3://{bucket}/w",
            str(back),
            workers=2,
            partition_files=3,
            report_dir=reports,
            source_options={"endpoint_url": proxy.url},
        )
    assert gate.together.is_set(), "no two partitions were copied at once"
    assert got.counts == {"ok": 12, "skipped": 0, "rejected": 0, "failed": 0}
    assert len({r["worker"] for r in manifest_rows(got).values()}) == 2
    for name in os.listdir(src):
        assert (back / name).read_bytes() == (src / name).read_bytes()


def test_one_worker_runs_every_partition_in_the_flows_process(tmp_path, bucket, reports):
    src = tmp_path / "src"
    random_tree(src, 6, 10)
    result = export_data(
        str(src), f"s3://{bucket}/one", workers=1, partition_files=2, report_dir=reports
    )
    assert {r["worker"] for r in manifest_rows(result).values()} == {worker_id()}


def test_by_default_a_small_task_stays_in_the_flows_process(tmp_path, bucket, reports):
    """Workers default to the machine's cores, but a worker process costs seconds to start: a
    task of 6 files (3 partitions) does not pay for one."""
    src = tmp_path / "src"
    random_tree(src, 6, 10)
    result = export_data(str(src), f"s3://{bucket}/d", partition_files=2, report_dir=reports)
    assert result.counts["ok"] == 6
    assert {r["worker"] for r in manifest_rows(result).values()} == {worker_id()}


def test_the_default_number_of_workers_follows_the_work():
    from flows.options import Options
    from flows.workers import BYTES_PER_WORKER, FILES_PER_WORKER, worker_count

    cores = os.cpu_count()
    assert worker_count(Options(), 100, 10**6) == 1
    assert worker_count(Options(), 2 * FILES_PER_WORKER, 0) == min(cores, 2)
    assert worker_count(Options(), 0, 100 * BYTES_PER_WORKER) == cores
    assert worker_count(Options(workers=3), 1, 0) == 3  # given: taken as given
    assert worker_count(Options()) == cores  # work unknown: the machine's cores


def test_the_bandwidth_cap_is_the_tasks_across_its_workers(tmp_path, bucket, reports):
    """8 files of 1 MB at a 4 MB/s cap over two workers. Each worker has half the cap, 2 MB/s,
    and one of them sends at least 4 MB (4 partitions of 2 files between two processes, however
    they share them out: a process still starting may take none). The cap grants a file's bytes
    before it is sent, with a quarter second of burst, so that worker's last grant comes
    (4 - 0.5 burst - 1 last file) / 2 = 1.25 s after its first at the earliest. Were the cap
    each worker's (4 MB/s), that would be (4 - 1 - 1) / 4 = 0.5 s."""
    src = tmp_path / "src"
    random_tree(src, 8, 10**6)
    result = export_data(
        str(src),
        f"s3://{bucket}/cap",
        workers=2,
        partition_files=2,
        bandwidth_mbps=4,
        report_dir=reports,
    )
    frame = pd.read_parquet(result.manifest)
    assert (frame.status == "ok").all() and len(frame) == 8
    busiest = frame[frame.worker == frame.groupby("worker")["size"].sum().idxmax()]
    sent = busiest["size"].sum() / 10**6
    assert sent >= 4
    took = (busiest.finished_at.max() - busiest.started_at.min()).total_seconds()
    share, burst, last_file = 4 / 2, 0.25 * 4 / 2, 1
    assert took >= (sent - burst - last_file) / share, (sent, took)


def test_by_default_a_task_moves_to_worker_processes_once_its_plan_pays_for_them():
    """A task starts in the flow's process; the work planned so far decides when worker
    processes pay (one per FILES_PER_WORKER files or BYTES_PER_WORKER bytes, up to the cores).
    Given `workers`, or a bandwidth cap, it stays where it started."""
    import contextlib

    from flows.workers import FILES_PER_WORKER, Growing
    from tasks.options import Options

    cores = os.cpu_count() or 1
    with contextlib.ExitStack() as stack:
        placed = Growing(Options(), stack)
        assert placed.current.runner is None
        assert not placed.grow(FILES_PER_WORKER - 1, 0, waiting=10)  # not yet worth a worker
        assert not placed.grow(10 * FILES_PER_WORKER, 0, waiting=1)  # nothing left to share
        assert placed.grow(10 * FILES_PER_WORKER, 0, waiting=10) == (cores > 1)
        if cores > 1:
            assert placed.current.processes == min(cores, 10)
            assert type(placed.current.runner).__name__ == "ProcessPoolTaskRunner"
            assert not placed.grow(100 * FILES_PER_WORKER, 0, waiting=10)  # once
    with contextlib.ExitStack() as stack:
        capped = Growing(Options(bandwidth_mbps=10), stack)
        assert not capped.grow(10 * FILES_PER_WORKER, 0, waiting=10)
        assert capped.current.runner is None
    with contextlib.ExitStack() as stack:
        one = Growing(Options(workers=1), stack)
        assert not one.grow(10 * FILES_PER_WORKER, 0, waiting=10)
        assert one.current.runner is None
