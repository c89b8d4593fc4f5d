"""A stream's automatic update runs on its schedule, served by `ferry serve`, against a real
`prefect server start` (schedules need the server's scheduler; the temporary API has none)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import httpx
import pytest
from conftest import tagged_bucket

from flows.local_s3 import DEMO_CREDENTIALS, free_port


def prefect_database(postgres_url: str) -> str:
    """A fresh PostgreSQL database for a Prefect server. Prefect on SQLite answers a write that
    races another (SQLITE_BUSY_SNAPSHOT, which its busy timeout does not wait out) with 503; with
    `ferry serve` running exports beside it on a loaded machine, six tries of a schedule update in
    a row got 503. Prefect recommends PostgreSQL beyond one user: so do these tests."""
    import uuid

    import psycopg

    name = f"prefect_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url.replace("+psycopg", ""), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return postgres_url.replace("+psycopg", "+asyncpg").rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory, postgres_url):
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_API_DATABASE_CONNECTION_URL=prefect_database(postgres_url),
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
        preexec_fn=die_with_parent,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 600  # minutes on a loaded machine; seconds on an idle one
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


def die_with_parent() -> None:
    """In a child before exec: receive SIGTERM when the test process dies, however it dies, so
    a killed test run leaves no server or serve behind (Linux's PR_SET_PDEATHSIG)."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def stop(process: subprocess.Popen, timeout: float = 120) -> bool:
    """Terminate; kill what does not stop in time (a server draining connections). True when the
    process stopped on the SIGTERM."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False


def processes_with(marker: str) -> list[str]:
    """Command lines of the live processes whose environment carries this marker: everything a
    test started, however it detached (Prefect starts flow runs in sessions of their own)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if marker.encode() not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                found.append(f"{pid}: " + f.read().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # gone, or a zombie
            continue
    return found


def api_request(method: str, url: str, **kwargs) -> httpx.Response:
    """A request to the Prefect API as Prefect's own client makes it: a busy server (SQLite
    locked under load) answers 503 or 429 for a moment, and the request is tried again."""
    deadline = time.monotonic() + 120
    while True:
        response = httpx.request(method, url, **kwargs)
        if response.status_code not in (429, 502, 503) or time.monotonic() > deadline:
            return response
        time.sleep(1)


def runs_of(api: str, deployment: str) -> list[dict]:
    """The deployment's flow runs, as the API reports them, oldest first."""
    response = api_request(
        "POST",
        f"{api}/flow_runs/filter",
        json={"deployments": {"name": {"any_": [deployment]}}, "sort": "EXPECTED_START_TIME_ASC"},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()


def describe(runs: list[dict], log: Path) -> str:
    states = "\n".join(
        f"  {r['name']}: {r['state']['name']} ({r['state'].get('message') or ''})" for r in runs
    )
    return f"runs:\n{states or '  none'}\nferry serve said:\n{log.read_text()[-4000:]}"


def wait_for_a_finished_run(api, deployment, serve, log, seconds) -> dict:
    """The first run of the deployment to reach a final state other than Cancelled (a run that
    comes due while the previous one runs is cancelled by design). Fails, with every run's state
    and serve's output, if serve exits or nothing finishes within the deadline."""
    deadline = time.monotonic() + seconds
    while True:
        runs = runs_of(api, deployment)
        finished = [r for r in runs if r["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED"}]
        if finished:
            return finished[0]
        if serve.poll() is not None:
            pytest.fail("ferry serve exited\n" + describe(runs, log))
        if time.monotonic() > deadline:
            pytest.fail(f"no run finished within {seconds} s\n" + describe(runs, log))
        time.sleep(2)


def test_a_scheduled_import_runs_on_a_real_server(prefect_server, tmp_path, s3_endpoint, s3_client):
    """The stream reaches its bucket through a proxy that holds every read of the `b*` objects
    until the test ends: the import that reads them is in flight when serve stops, however fast
    or slow the machine, and ends only as serve's stop makes it end."""
    import threading
    from urllib.parse import urlsplit

    from flaky_proxy import FlakyProxy

    api, env = prefect_server
    marker = f"FERRY_TEST_MARKER={uuid.uuid4().hex}"  # inherited by every process serve starts
    env = {
        **env,
        **DEMO_CREDENTIALS,
        "AWS_ENDPOINT_URL": s3_endpoint,
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "FERRY_REPORT_DIR": str(tmp_path / "reports"),
        "FERRY_TEST_MARKER": marker.partition("=")[2],
    }
    bucket = tagged_bucket(s3_client, prefix="sched")
    s3_client.put_object(Bucket=bucket, Key="feed/new/a.txt", Body=b"scheduled")
    s3_client.put_object(Bucket=bucket, Key="feed/old/b.txt", Body=b"not watched")
    target = tmp_path / "fs"
    target.mkdir()
    reading, released = threading.Event(), threading.Event()

    def hold_the_import(method: str, path: str) -> None:
        if method in ("GET", "HEAD") and urlsplit(path).path.startswith(f"/{bucket}/feed/new/b"):
            reading.set()
            released.wait(timeout=900)
            raise ConnectionAbortedError("serve stopped the import before this read")

    with contextlib.ExitStack() as held:
        proxy = held.enter_context(FlakyProxy(s3_endpoint, {}, on_request=hold_the_import))
        held.callback(released.set)
        create = (
            "from deployments.streams import create_stream; "
            f"create_stream('sched', {str(target)!r}, 's3://{bucket}/feed', "
            f"endpoint_url={proxy.url!r}, use_ssl=False, auto_update=True, "
            "refresh_minutes=0.05, prefixes=['/feed/new/'])"
        )
        subprocess.run([sys.executable, "-c", create], env=env, check=True, timeout=300)
        log = tmp_path / "serve.log"
        serve = start_serve(env, log)
        try:
            # generous: a loaded 2-core machine takes minutes to start serve and a flow-run process
            run = wait_for_a_finished_run(api, "sched-auto-update", serve, log, seconds=900)
            runs = runs_of(api, "sched-auto-update")
            assert run["state"]["type"] == "COMPLETED", describe(runs, log)
            assert (target / "new" / "a.txt").read_bytes() == b"scheduled"
            assert not (target / "old").exists()  # only the auto-update prefixes are imported
            # a run that came due while another ran was cancelled before it started a process
            busy = [r for r in runs if r["state"]["type"] in {"RUNNING", "PENDING"}]
            assert len(busy) <= 1, describe(runs, log)
            # an import in flight when serve stops: held by the proxy at its first read of b*
            for i in range(3):
                s3_client.put_object(Bucket=bucket, Key=f"feed/new/b{i}", Body=b"x" * 1000)
            deadline = time.monotonic() + 900
            while not reading.wait(timeout=0.5):
                assert serve.poll() is None and time.monotonic() < deadline, describe(
                    runs_of(api, "sched-auto-update"), log
                )
            runs = runs_of(api, "sched-auto-update")
            in_flight = [r["id"] for r in runs if r["state"]["type"] == "RUNNING"]
            assert len(in_flight) == 1, describe(runs, log)
        finally:
            stopped = stop(serve)
        assert stopped, "ferry serve did not stop on SIGTERM\n" + log.read_text()[-4000:]
        # stopping serve ended the run it had in flight, as a final state the API shows: Cancelled
        # by serve, or Crashed by the run's own engine or, at the latest, by the heartbeat
        # automation (45 s after its last heartbeat)
        deadline = time.monotonic() + 300
        while True:
            response = api_request("GET", f"{api}/flow_runs/{in_flight[0]}", timeout=30)
            final = response.json()["state"]["type"]
            if final in {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}:
                break
            assert time.monotonic() < deadline, describe(runs_of(api, "sched-auto-update"), log)
            time.sleep(2)
        assert final in {"CANCELLED", "CRASHED"}, describe(runs_of(api, "sched-auto-update"), log)
        # stopping serve ended the runs it started: nothing of this test is left running
        deadline = time.monotonic() + 60
        while (left := processes_with(marker)) and time.monotonic() < deadline:
            time.sleep(1)
        assert not left, f"left running after ferry serve stopped: {left}"


def test_a_killed_stream_task_is_marked_crashed_and_gives_its_slot_back(
    prefect_server, tmp_path, s3_endpoint, s3_client
):
    api, env = prefect_server
    env = {
        **env,
        **DEMO_CREDENTIALS,
        "AWS_ENDPOINT_URL": s3_endpoint,
        "FERRY_REPORT_DIR": str(tmp_path / "reports"),
    }
    bucket = tagged_bucket(s3_client, prefix="crash")
    src = tmp_path / "src"
    src.mkdir()
    for i in range(200):
        (src / f"f{i:03d}").write_bytes(b"x" * 100_000)  # 100 s at 0.2 MB/s
    create = (
        "from deployments.streams import create_stream; "
        f"create_stream('crash', {str(src)!r}, 's3://{bucket}/out', bandwidth_mbps=0.2)"
    )
    subprocess.run([sys.executable, "-c", create], env=env, check=True, timeout=300)
    task = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "stream", "run", "crash", "export"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )

    def slots() -> int:
        response = api_request("GET", f"{api}/v2/concurrency_limits/ferry-stream-crash", timeout=30)
        return response.json()["active_slots"]

    def runs() -> list[dict]:
        response = api_request(
            "POST",
            f"{api}/flow_runs/filter",
            json={"flow_runs": {"tags": {"all_": ["ferry-stream:crash"]}}},
            timeout=30,
        )
        return response.json()

    deadline = time.monotonic() + 600
    while not (s3_client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) and slots() == 1):
        assert task.poll() is None and time.monotonic() < deadline, runs()
        time.sleep(0.5)
    (run,) = runs()
    assert run["state"]["type"] == "RUNNING"
    task.kill()  # kill -9 of the command running the flow
    task.wait()
    killed = time.monotonic()
    crashed_after = freed_after = None
    while crashed_after is None or freed_after is None:
        state = api_request("GET", f"{api}/flow_runs/{run['id']}", timeout=30).json()["state"]
        if crashed_after is None and state["type"] == "CRASHED":
            crashed_after = time.monotonic() - killed
        if freed_after is None and slots() == 0:
            freed_after = time.monotonic() - killed
        assert time.monotonic() - killed < 600, (state, slots())
        time.sleep(1)
    # Prefect's mechanism: heartbeat 30 s + 45 s of silence; slot lease 60 s + 15 s pass
    print(
        f"killed run Crashed after {crashed_after:.0f} s, its slot free after {freed_after:.0f} s"
    )


class ApiGate:
    """A TCP relay in front of the Prefect server; `close()` makes the API vanish for whoever
    talks through it (connections refused, open ones cut), while the server itself lives on."""

    def __init__(self, api: str) -> None:
        import socket
        import threading

        self._target = ("127.0.0.1", int(api.rsplit(":", 1)[1].split("/")[0]))
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}/api"
        self._open: list = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a, b) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        import socket

        self._closed = True
        self._server.close()
        for s in self._open:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass


def ferry(env, *args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def start_serve(env, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )


def wait_for(what: str, check, serve, log: Path, seconds: float = 900):
    deadline = time.monotonic() + seconds
    while not (found := check()):
        if serve is not None and serve.poll() is not None:
            pytest.fail(f"ferry serve exited while waiting for {what}\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {seconds} s\n{log.read_text()[-4000:]}")
        time.sleep(1)
    return found


def test_named_schedules_run_with_their_parameters_and_survive_restarts(
    prefect_server, tmp_path, s3_endpoint, s3_client
):
    api, env = prefect_server
    env = {
        **env,
        **DEMO_CREDENTIALS,
        "AWS_ENDPOINT_URL": s3_endpoint,
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "FERRY_REPORT_DIR": str(tmp_path / "reports"),
    }
    bucket = tagged_bucket(s3_client, prefix="named")
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"f{i}").write_bytes(b"scheduled")

    # mistakes are refused in one line, before anything is stored
    bad_cron = ferry(
        env,
        "schedule",
        "create",
        "bad",
        "--cron",
        "0 2 * *",
        "export",
        str(src),
        f"s3://{bucket}/x",
    )
    assert bad_cron.returncode == 2
    assert bad_cron.stderr.strip().startswith("ferry: error: not a valid schedule:"), bad_cron
    missing = ferry(
        env,
        "schedule",
        "create",
        "bad",
        "--cron",
        "0 2 * * *",
        "export",
        str(tmp_path / "nope"),
        f"s3://{bucket}/x",
    )
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"ferry: error: directory does not exist: {tmp_path / 'nope'}"

    create = ["schedule", "create", "every-few", "--interval", "20", "export", str(src)]
    made = ferry(env, *create, f"s3://{bucket}/sched", "--concurrency", "4")
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == (
        "created schedule every-few: export every 20 s; `ferry serve` runs it"
    )
    again = ferry(env, *create, f"s3://{bucket}/sched")
    assert again.returncode == 2, again.stderr
    assert "a schedule of this name exists" in again.stderr
    # a schedule added in the UI (no name: the UI gives none)
    deployment = api_request(
        "GET", f"{api}/deployments/name/ferry-export/export", timeout=30
    ).json()
    api_request(
        "POST",
        f"{api}/deployments/{deployment['id']}/schedules",
        json=[{"schedule": {"cron": "0 3 * * *", "timezone": "UTC"}, "active": False}],
        timeout=30,
    ).raise_for_status()

    gate = ApiGate(api)  # this serve reaches the API through a relay that can vanish
    log = tmp_path / "serve.log"
    serve = start_serve({**env, "PREFECT_API_URL": gate.url}, log)
    try:

        def a_completed_run():
            runs = runs_of(api, "export")
            return [r for r in runs if r["state"]["type"] == "COMPLETED"]

        (run, *_) = wait_for("completed scheduled export", a_completed_run, serve, log)
        # the schedule's parameters bound: the run exported the tree with them
        assert run["parameters"]["source"] == str(src)
        assert run["parameters"]["concurrency"] == 4
        keys = {o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]}
        assert {f"sched/f{i}" for i in range(3)} <= keys
        paused = ferry(env, "schedule", "pause", "every-few")
        assert paused.returncode == 0, paused.stderr
        assert paused.stdout.strip() == "paused schedule every-few"

        # a stream created while serve runs is served without a restart
        create = (
            "from deployments.streams import create_stream; "
            f"create_stream('latecomer', {str(src)!r}, 's3://{bucket}/late')"
        )
        subprocess.run([sys.executable, "-c", create], env=env, check=True, timeout=300)

        def served_stream():
            response = api_request(
                "GET", f"{api}/deployments/name/ferry-stream-task/latecomer-export", timeout=30
            )
            return response.json() if response.status_code == 200 else None

        late = wait_for("stream deployment", served_stream, serve, log)
        response = api_request(
            "POST", f"{api}/deployments/{late['id']}/create_flow_run", json={}, timeout=30
        )
        assert response.status_code == 201, response.text
        started = response.json()

        def finished():
            state = api_request("GET", f"{api}/flow_runs/{started['id']}", timeout=30).json()[
                "state"
            ]
            return state if state["type"] in {"COMPLETED", "FAILED", "CRASHED"} else None

        assert wait_for("run of the new stream", finished, serve, log)["type"] == "COMPLETED"
        assert s3_client.list_objects_v2(Bucket=bucket, Prefix="late/")["KeyCount"] == 3
        # `stream show` says what Prefect does with each of its deployments
        shown = json.loads(ferry(env, "stream", "show", "latecomer").stdout)["deployments"]
        export = next(d for d in shown if d["deployment"].endswith("latecomer-export"))
        assert export["served"] and not export["paused"]
        assert export["what_prefect_does"].startswith("active and served by ferry serve")
        assert ferry(env, "stream", "stop", "latecomer").returncode == 0
        shown = json.loads(ferry(env, "stream", "show", "latecomer").stdout)["deployments"]
        assert shown and all(d["paused"] for d in shown)
        assert all(
            d["what_prefect_does"].startswith("paused because the stream is stopped") for d in shown
        )
    finally:
        # the API vanishes, then serve is told to stop: it still stops, on its own
        gate.close()
        began = time.monotonic()
        stopped = stop(serve, timeout=60)
        took = time.monotonic() - began
    output = log.read_text()
    assert stopped, f"ferry serve did not stop on SIGTERM\n{output[-4000:]}"
    assert "never awaited" not in output, output[-4000:]
    print(f"ferry serve stopped {took:.1f} s after SIGTERM with its API gone")

    # serve comes back: the named schedule (still paused) and the UI's are both there
    log2 = tmp_path / "serve2.log"
    serve = start_serve(env, log2)
    try:
        wait_for("serve start", lambda: "ferry serve: serving" in log2.read_text(), serve, log2)
        listed = ferry(env, "schedule", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        schedules = {s["name"]: s for s in json.loads(listed.stdout)}
        assert schedules["every-few"]["active"] is False
        assert schedules["every-few"]["parameters"]["destination"] == f"s3://{bucket}/sched"
        ui = [s for name, s in schedules.items() if name.startswith("(UI)")]
        assert [s["schedule"] for s in ui] == ["cron 0 3 * * * (UTC)"]
        deleted = ferry(env, "schedule", "delete", "every-few")
        assert deleted.returncode == 0, deleted.stderr
        assert deleted.stdout.strip() == "deleted schedule every-few"
        gone = ferry(env, "schedule", "pause", "every-few")
        assert gone.returncode == 2
        assert gone.stderr.strip() == (
            "ferry: error: no such schedule (see `ferry schedule list`): every-few"
        )
    finally:
        assert stop(serve)
