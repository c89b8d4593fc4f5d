"""Data streams: create refusals, modify limits, the four-task limit, stop, delete."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid

import pytest
from conftest import random_tree, run_logs, tagged_bucket
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from deployments.serve import stream_deployments
from deployments.streams import (
    StreamError,
    _stream_runs,
    create_stream,
    delete_stream,
    enable_stream,
    limit_name,
    load,
    modify_stream,
    stop_stream,
)
from flows.result import TaskCancelled
from flows.streams import AWAITING_SLOT, stream_task

pytestmark = pytest.mark.usefixtures("prefect_api")


def unique(prefix="s") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_create_stores_a_stream_and_its_limit(tmp_path, s3_client):
    bucket = tagged_bucket(s3_client)
    s3_client.put_object(Bucket=bucket, Key="data/new/x", Body=b"1")
    name = unique()
    create_stream(
        name,
        str(tmp_path),
        f"s3://{bucket}/data",
        key="ferry-demo",
        secret="ferry-demo-secret",
        auto_update=True,
        refresh_minutes=5,
        prefixes=["/data/new/"],
        description="training set",
    )
    stream = load(name)
    assert stream.settings()["prefixes"] == ["/data/new/"]
    assert "secret" not in str(stream.settings())  # the secret lives in its credentials block
    assert stream.storage_options()["secret"] == "ferry-demo-secret"
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(limit_name(name)).limit == 4


def test_a_streams_credentials_are_masked_by_the_api(tmp_path, s3_client):
    import httpx
    from prefect.settings import PREFECT_API_URL

    bucket = tagged_bucket(s3_client)
    name = unique()
    create_stream(
        name, str(tmp_path), f"s3://{bucket}/d", key="ferry-demo", secret="ferry-demo-secret"
    )
    block = load(name).credentials_block
    api = PREFECT_API_URL.value()
    found = httpx.post(f"{api}/block_documents/filter", json={}, timeout=30).json()
    document = next(d for d in found if d["name"] == block)
    for response in (
        httpx.get(f"{api}/block_documents/{document['id']}", timeout=30),
        httpx.post(f"{api}/block_documents/filter", json={}, timeout=30),
        httpx.get(f"{api}/block_documents/{load(name)._block_document_id}", timeout=30),
    ):
        assert response.status_code == 200
        assert "ferry-demo-secret" not in response.text
    shown = httpx.get(f"{api}/block_documents/{document['id']}", timeout=30).json()["data"]
    assert shown["secret"] == "********" and shown["key"] == "********"
    # `prefect block inspect` shows stars too
    inspect = subprocess.run(
        [sys.executable, "-m", "prefect", "block", "inspect", f"ferry-s3-credentials/{block}"],
        capture_output=True,
        text=True,
        env={**os.environ, "PREFECT_API_URL": api},
        timeout=300,
    )
    assert inspect.returncode == 0, inspect.stderr
    assert "ferry-demo-secret" not in inspect.stdout + inspect.stderr
    # the stream's tasks still get the real key
    assert load(name).storage_options()["secret"] == "ferry-demo-secret"
    delete_stream(name)  # the credentials go with it
    with get_client(sync_client=True) as client, pytest.raises(ObjectNotFound):
        client.read_block_document_by_name(block, "ferry-s3-credentials")


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        ("missing_directory", "the directory does not exist"),
        ("bad_name", "lowercase letters, digits and dashes"),
        ("untagged", "put-bucket-tagging"),
        ("no_bucket", "bucket does not exist"),
        ("short_prefix", "must be 2 to 1024 characters"),
        ("slashes", "must start and end with '/'"),
        ("missing_prefix", "does not exist in bucket"),
        ("outside_prefix", "is not inside the stream's"),
        ("auto_without_interval", "needs a refresh interval"),
    ],
)
def test_create_refusals(setup, fragment, tmp_path, s3_client):
    bucket = tagged_bucket(s3_client, tag=setup != "untagged")
    s3_client.put_object(Bucket=bucket, Key="data/a/x", Body=b"1")
    kwargs = {"name": unique(), "directory": str(tmp_path), "bucket_url": f"s3://{bucket}/data"}
    if setup == "missing_directory":
        kwargs["directory"] = str(tmp_path / "nope")
    elif setup == "bad_name":
        kwargs["name"] = "Not A Name"
    elif setup == "no_bucket":
        kwargs["bucket_url"] = "s3://no-such-bucket-for-streams/x"
    elif setup in ("short_prefix", "slashes", "missing_prefix", "outside_prefix"):
        kwargs.update(
            auto_update=True,
            refresh_minutes=1,
            prefixes={
                "short_prefix": ["/"],
                "slashes": ["data/a"],
                "missing_prefix": ["/data/zzz/"],
                "outside_prefix": ["/other/"],
            }[setup],
        )
    elif setup == "auto_without_interval":
        kwargs.update(auto_update=True, prefixes=["/data/a/"])
    with pytest.raises(StreamError, match=fragment.replace("(", r"\(")):
        create_stream(**kwargs)


def test_a_directory_is_linked_to_one_bucket_only(tmp_path, s3_client):
    first, second = tagged_bucket(s3_client), tagged_bucket(s3_client)
    (tmp_path / "inner").mkdir()
    create_stream(unique(), str(tmp_path / "inner"), f"s3://{first}/x")
    for directory in (tmp_path, tmp_path / "inner", tmp_path / "inner"):
        with pytest.raises(StreamError, match="a directory is linked to one bucket only"):
            create_stream(unique(), str(directory), f"s3://{second}/x")


def test_a_shared_bucket_needs_versioning(tmp_path, s3_client):
    plain = tagged_bucket(s3_client)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    create_stream(unique(), str(tmp_path / "a"), f"s3://{plain}/a")
    with pytest.raises(StreamError, match="needs versioning enabled"):
        create_stream(unique(), str(tmp_path / "b"), f"s3://{plain}/b")
    versioned = tagged_bucket(s3_client, versioned=True)
    (tmp_path / "c").mkdir()
    (tmp_path / "d").mkdir()
    create_stream(unique(), str(tmp_path / "c"), f"s3://{versioned}/c")
    create_stream(unique(), str(tmp_path / "d"), f"s3://{versioned}/d")


def test_at_most_ten_streams_per_file_system(tmp_path_factory, s3_client):
    import os

    from deployments.streams import all_streams, mount_of

    root = tmp_path_factory.mktemp("ten")
    bucket = tagged_bucket(s3_client, versioned=True)
    already = sum(
        1
        for s in all_streams().values()
        if os.path.isdir(s.directory) and mount_of(s.directory) == mount_of(str(root))
    )
    for i in range(max(0, 10 - already)):
        (root / f"d{i}").mkdir()
        create_stream(unique(), str(root / f"d{i}"), f"s3://{bucket}/d{i}")
    (root / "eleventh").mkdir()
    with pytest.raises(StreamError, match="has 10 data streams already"):
        create_stream(unique(), str(root / "eleventh"), f"s3://{bucket}/e")
    for name, stream in all_streams().items():  # leave room for the other tests
        if stream.directory.startswith(str(root)):
            delete_stream(name)


def test_modify_only_what_the_seed_allows(tmp_path, s3_client):
    bucket = tagged_bucket(s3_client)
    s3_client.put_object(Bucket=bucket, Key="p/one/x", Body=b"1")
    s3_client.put_object(Bucket=bucket, Key="p/two/x", Body=b"1")
    name = unique()
    create_stream(
        name,
        str(tmp_path),
        f"s3://{bucket}/p",
        auto_update=True,
        refresh_minutes=5,
        prefixes=["/p/one/"],
    )
    modify_stream(
        name, refresh_minutes=2, add_prefixes=["/p/two/"], bandwidth_mbps=600, description="new"
    )
    stream = load(name)
    assert (stream.refresh_minutes, stream.bandwidth_mbps, stream.description) == (2, 600, "new")
    assert stream.prefixes == ["/p/one/", "/p/two/"]
    with pytest.raises(StreamError, match="cannot modify bucket_url, directory"):
        modify_stream(name, directory="/elsewhere", bucket_url="s3://other/x")
    with pytest.raises(StreamError, match="does not exist in bucket"):
        modify_stream(name, add_prefixes=["/p/three/"])
    with pytest.raises(StreamError, match="more than 0 minutes"):
        modify_stream(name, refresh_minutes=0)


def test_at_most_four_batch_tasks_of_a_stream_run_at_once(tmp_path, s3_client):
    """Five tasks of a stream at once: four take the stream's slots, the fifth waits and says so.
    A proxy in front of the store holds every upload until the fifth is seen waiting, so no task
    can finish and give its slot back first, however slowly the five start."""
    from urllib.parse import urlsplit

    from flaky_proxy import FlakyProxy

    bucket = tagged_bucket(s3_client)
    random_tree(tmp_path / "src", 3, 1_000)
    opened = threading.Event()

    def hold_uploads(method: str, path: str) -> None:
        # a held upload past the client's 60 s read timeout is tried again, and held again
        if method == "PUT" and urlsplit(path).path.startswith(f"/{bucket}/out/"):
            opened.wait(timeout=900)

    with FlakyProxy(os.environ["AWS_ENDPOINT_URL"], {}, on_request=hold_uploads) as proxy:
        name = unique()
        create_stream(
            name,
            str(tmp_path / "src"),
            f"s3://{bucket}/out",
            endpoint_url=proxy.url,
            use_ssl=False,
        )
        results = []

        def run():
            try:
                results.append(stream_task(name, "export", report_dir=str(tmp_path / "r")))
            except BaseException as exc:  # noqa: BLE001 - reported below
                results.append(exc)

        runners = [threading.Thread(target=run) for _ in range(5)]
        try:
            for t in runners:
                t.start()
            deadline = time.monotonic() + 900  # five flow starts on a loaded machine
            with get_client(sync_client=True) as client:
                while True:
                    states = {r.id: r.state.name for r in _stream_runs(client, name)}
                    waited = [run_id for run_id, state in states.items() if state == AWAITING_SLOT]
                    limit = client.read_global_concurrency_limit_by_name(limit_name(name))
                    if limit.active_slots == 4 and waited:
                        break
                    # no task ends while the uploads are held: one that did failed
                    assert not results, results
                    assert time.monotonic() < deadline, (limit.active_slots, states)
                    time.sleep(0.5)
        finally:
            opened.set()
            for t in runners:
                t.join(timeout=900)
    assert len(results) == 5 and all(not isinstance(r, BaseException) and r.ok for r in results), (
        results
    )
    # the one that waited said so: in its state's name while it waited, and in its log
    logs = [m for _, m in run_logs(waited[0])]
    assert (
        f"waiting for one of data stream {name}'s 4 slots: all are taken by other tasks of "
        "the stream" in logs
    )
    assert f"got a slot of data stream {name}; copying" in logs
    # every slot given back by the tasks as they ended (none is left to its lease: a slot is
    # asked for once, without a timeout that could cut a request the server then granted)
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(limit_name(name)).active_slots == 0


def test_stop_cancels_a_running_task_and_refuses_new_ones(tmp_path, s3_client):
    bucket = tagged_bucket(s3_client)
    random_tree(tmp_path / "src", 200, 50_000)  # 50 s at 0.2 MB/s
    name = unique()
    create_stream(name, str(tmp_path / "src"), f"s3://{bucket}/out", bandwidth_mbps=0.2)
    outcome = []

    def run():
        try:
            outcome.append(stream_task(name, "export", report_dir=str(tmp_path / "r")))
        except BaseException as exc:  # noqa: BLE001 - what the caller sees is the point
            outcome.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    deadline = time.monotonic() + 600
    while not s3_client.list_objects_v2(Bucket=bucket).get("KeyCount", 0):  # it is copying
        assert runner.is_alive() and time.monotonic() < deadline, outcome
        time.sleep(0.2)
    stop_stream(name)
    runner.join(timeout=600)
    assert not runner.is_alive()
    copied = s3_client.list_objects_v2(Bucket=bucket).get("KeyCount", 0)
    assert 0 < copied < 200  # in-flight files abandoned, the rest never started
    (cancelled,) = outcome
    assert isinstance(cancelled, TaskCancelled)
    assert cancelled.result.counts["ok"] == copied
    assert cancelled.result.counts["skipped"] == 200 - copied
    with get_client(sync_client=True) as client:
        from deployments.streams import _stream_runs

        run_state = _stream_runs(client, name, limit=1)[0].state
    assert run_state.type.value == "CANCELLED"
    with pytest.raises(StreamError, match="stopped"):
        stream_task(name, "export", report_dir=str(tmp_path / "r"))
    enable_stream(name)
    assert load(name).state == "enabled"


def test_delete_removes_deployments_limit_and_stream(tmp_path, s3_client):
    bucket = tagged_bucket(s3_client)
    s3_client.put_object(Bucket=bucket, Key="d/auto/x", Body=b"1")
    name = unique()
    stream = create_stream(
        name,
        str(tmp_path),
        f"s3://{bucket}/d",
        key="k",
        secret="s",
        auto_update=True,
        refresh_minutes=1,
        prefixes=["/d/auto/"],
    )
    for deployment in stream_deployments(name, stream):
        deployment.apply()
    with get_client(sync_client=True) as client:
        from deployments.streams import _stream_deployments

        assert len(_stream_deployments(client, name)) == 3
    stop_stream(name)
    with get_client(sync_client=True) as client:
        assert all(d.paused for d in _stream_deployments(client, name))
    delete_stream(name)
    with get_client(sync_client=True) as client:
        assert _stream_deployments(client, name) == []
        with pytest.raises(ObjectNotFound):
            client.read_global_concurrency_limit_by_name(limit_name(name))
    with pytest.raises(StreamError, match="no such data stream"):
        load(name)
    assert (tmp_path).exists()
    assert s3_client.list_objects_v2(Bucket=bucket)["KeyCount"] == 1  # the data stays


def test_ferry_stream_run_stopped_prints_its_summary_and_exits_3(tmp_path, s3_client, capsys):
    from flows.cli import main

    bucket = tagged_bucket(s3_client)
    random_tree(tmp_path / "src", 200, 50_000)  # 50 s at 0.2 MB/s
    name = unique()
    create_stream(name, str(tmp_path / "src"), f"s3://{bucket}/out", bandwidth_mbps=0.2)
    code = []
    runner = threading.Thread(
        target=lambda: code.append(
            main(["stream", "run", name, "export", "--report-dir", str(tmp_path / "r")])
        )
    )
    runner.start()
    deadline = time.monotonic() + 600
    while not s3_client.list_objects_v2(Bucket=bucket).get("KeyCount", 0):  # it is copying
        assert runner.is_alive() and time.monotonic() < deadline
        time.sleep(0.2)
    stop_stream(name)
    runner.join(timeout=600)
    assert code == [3]
    out = capsys.readouterr().out
    assert "skipped" in out and "manifest: " + str(tmp_path / "r") in out
    delete_stream(name)  # at most ten streams per file system
