"""Shared fixtures: a real S3 endpoint (moto's server over HTTP) and a real Prefect API."""

from __future__ import annotations

import os
import sys
import tempfile
import uuid

import boto3
import pytest

from flows.local_api import prefect_defaults
from flows.local_s3 import DEMO_CREDENTIALS, local_s3

prefect_defaults()
# No test may look for credentials on a cloud metadata address.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
# A command a test runs with no PREFECT_API_URL starts ferry's local Prefect server: it lives in a
# folder of this session's, and is stopped when the session ends (never the user's own).
os.environ["FERRY_HOME"] = tempfile.mkdtemp(prefix="ferry-home-")
# Each command runs in its own process; tests/test_warm.py tests the warm start on its own.
os.environ["FERRY_WARM"] = "0"


@pytest.fixture(scope="session", autouse=True)
def _stop_ferry_local_server():
    yield
    from flows import local_server

    local_server.stop()


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server on a free loopback port, with credentials in the environment the way a
    user would set them (ferry reads AWS_ENDPOINT_URL like any AWS tool)."""
    saved = {k: os.environ.get(k) for k in [*DEMO_CREDENTIALS, "AWS_ENDPOINT_URL"]}
    with local_s3(timeout=600) as endpoint:  # a busy machine starts it slowly
        os.environ.update(DEMO_CREDENTIALS)
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        yield endpoint
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def s3_client(s3_endpoint):
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3_client):
    """A fresh, empty bucket for one test."""
    name = f"ferry-test-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def prefect_api():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def reports(tmp_path):
    return str(tmp_path / "reports")


def manifest_rows(result) -> dict[str, dict]:
    """The task's manifest as {path: row}."""
    import pandas as pd

    frame = pd.read_parquet(result.manifest)
    return {row["path"]: row for row in frame.to_dict("records")}


def write_file(path, data: bytes, mtime_ns: int) -> None:
    """A file with these bytes and this mtime, its directories made as needed."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def store_contents(store) -> dict[str, dict]:
    """{path: {size, attributes}} of every object in an obstore store (a GCS bucket, an Azure
    container), read back through the store's own client."""
    found = {}
    for meta in store.list().collect():
        got = store.get(meta["path"])
        found[meta["path"]] = {"size": meta["size"], "attributes": got.attributes}
    return found


def random_tree(root, files: int, size: int) -> None:
    """`files` files of `size` random bytes, f000, f001, ... in `root`."""
    os.makedirs(root, exist_ok=True)
    for i in range(files):
        with open(os.path.join(root, f"f{i:03d}"), "wb") as f:
            f.write(os.urandom(size))


def in_thread(target, **kwargs):
    """Run `target(**kwargs)` in a thread; (the thread, a list that gets its result or the
    exception it raised)."""
    import threading

    outcome = []

    def run():
        try:
            outcome.append(target(**kwargs))
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def run_result(flow, *args, **kwargs):
    """The flow's TaskResult, whether its run ended Completed or Failed (some entries failed:
    a race may legitimately fail some)."""
    from flows import EntriesFailed

    try:
        return flow(*args, **kwargs)
    except EntriesFailed as exc:
        return exc.result


def run_logs(flow_run_id) -> list[tuple[str, str]]:
    """(level name, message) of every log line of a flow run and its task runs, as the Prefect
    API holds them (the UI's log tab), oldest first."""
    import logging

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
            sort=LogSort.TIMESTAMP_ASC,
        )
    return [(logging.getLevelName(log.level), log.message) for log in logs]


def flow_run_of(result):
    """The flow run (from the API) behind a TaskResult."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(result.task_id)


def tagged_bucket(
    s3_client, *, versioned: bool = False, tag: bool = True, prefix: str = "stream"
) -> str:
    """A new bucket with the tag data streams require (and versioning, if asked)."""
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    if tag:
        s3_client.put_bucket_tagging(
            Bucket=name, Tagging={"TagSet": [{"Key": "ferry-dataflow", "Value": "true"}]}
        )
    if versioned:
        s3_client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def bucket_objects(client, bucket: str, prefix: str = "") -> dict[str, dict]:
    """{key: head_object response} for every object under the prefix."""
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = client.head_object(Bucket=bucket, Key=obj["Key"])
    return found


def _pg_binary(name: str) -> str:
    import glob
    import shutil

    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None
    )
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return found


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server on a free loopback port, run as the `postgres` user."""
    import shutil
    import subprocess
    import tempfile

    from flows.local_s3 import free_port

    data = tempfile.mkdtemp(prefix="ferry-pg-")
    shutil.chown(data, "postgres")
    port = free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(
        [*as_postgres, _pg_binary("initdb"), "-D", data, "-A", "trust", "-U", "ferry"],
        check=True,
        capture_output=True,
    )
    ctl = _pg_binary("pg_ctl")
    subprocess.run(
        [
            *as_postgres,
            ctl,
            "-D",
            data,
            "-l",
            f"{data}/log",
            "-w",
            "-o",
            f"-p {port} -k {data} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://ferry@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_postgres, ctl, "-D", data, "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def azure_endpoint():
    """Azurite's blob service on a free loopback port (installed from npm on first use)."""
    from azurite import azurite

    with azurite(timeout=600) as endpoint:
        yield endpoint


@pytest.fixture
def container(azure_endpoint):
    """A fresh Azure Blob container for one test: (name, the storage options that reach it)."""
    from azurite import create_container, options

    name = f"ferry-{uuid.uuid4().hex[:12]}"
    create_container(azure_endpoint, name)
    return name, options(azure_endpoint)


@pytest.fixture(scope="session")
def gcs_endpoint():
    """A Google Cloud Storage XML endpoint on loopback (`tests/gcs_xml.py`: moto's server, which
    also keeps `x-goog-meta-*`)."""
    here = os.path.dirname(os.path.abspath(__file__))
    with local_s3(
        server=[sys.executable, os.path.join(here, "gcs_xml.py")], timeout=600
    ) as endpoint:
        yield endpoint


@pytest.fixture
def gcs_bucket(gcs_endpoint):
    """A fresh gs:// bucket for one test: (name, the storage options that reach it)."""
    from gcs_xml import create_bucket, options

    name = f"ferry-{uuid.uuid4().hex[:12]}"
    create_bucket(gcs_endpoint, name)
    return name, options(gcs_endpoint)


@pytest.hookimpl(trylast=True)  # after the session's fixtures (the harness's server) are gone
def pytest_sessionfinish(session, exitstatus):
    """A test that ran a flow with no API of its own started Prefect's temporary local server,
    which stops at exit and logs so to a console pytest has closed by then (a 'Logging error'
    traceback after the summary). It is stopped here instead, while the console is open."""
    import sys

    if "prefect.server.api.server" in sys.modules:
        from prefect.server.api.server import SubprocessASGIServer, subprocess_server_logger

        subprocess_server_logger.disabled = True  # its API is the server it stops
        for server in list(SubprocessASGIServer._instances.values()):
            server.stop()
