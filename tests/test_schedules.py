"""A stream's automatic update runs on its schedule, served by `ferry serve`, against a real
`prefect server start` (schedules need the server's scheduler; the temporary API has none)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

from flows.local_s3 import DEMO_CREDENTIALS, free_port


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    log = open(home / "server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{api}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "prefect server did not start: " + (home / "server.log").read_text()[-2000:]
                    ) from None
                time.sleep(0.5)
        yield api, {**env, "PREFECT_API_URL": api}
    finally:
        stop(server)
        log.close()


def stop(process: subprocess.Popen) -> None:
    """Terminate, and kill what does not stop in time (a server draining connections)."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_a_scheduled_import_runs_on_a_real_server(prefect_server, tmp_path, s3_endpoint, s3_client):
    _, env = prefect_server
    env = {
        **env,
        **DEMO_CREDENTIALS,
        "AWS_ENDPOINT_URL": s3_endpoint,
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "FERRY_REPORT_DIR": str(tmp_path / "reports"),
    }
    bucket = f"sched-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=bucket)
    s3_client.put_bucket_tagging(
        Bucket=bucket, Tagging={"TagSet": [{"Key": "ferry-dataflow", "Value": "true"}]}
    )
    s3_client.put_object(Bucket=bucket, Key="feed/new/a.txt", Body=b"scheduled")
    s3_client.put_object(Bucket=bucket, Key="feed/old/b.txt", Body=b"not watched")
    target = tmp_path / "fs"
    target.mkdir()
    create = (
        "from deployments.streams import create_stream; "
        f"create_stream('sched', {str(target)!r}, 's3://{bucket}/feed', auto_update=True, "
        "refresh_minutes=0.05, prefixes=['/feed/new/'])"
    )
    subprocess.run([sys.executable, "-c", create], env=env, check=True, timeout=120)
    serve = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 180
        while not (target / "new" / "a.txt").exists() and time.monotonic() < deadline:
            assert serve.poll() is None, "ferry serve exited"
            time.sleep(1)
    finally:
        stop(serve)
    assert (target / "new" / "a.txt").read_bytes() == b"scheduled"
    assert not (target / "old").exists()  # only the auto-update prefixes are imported
