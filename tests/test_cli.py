"""The `ferry` command: exit codes 0 / 1 / 2, and the one line a user sees when nothing can run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from flows.cli import main
from flows.local_s3 import local_s3


def ferry(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        timeout=600,  # a guard against a hang: a first run may start a local Prefect server
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ferry: error: ")
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_missing_source_directory_exits_2_with_one_line(tmp_path, s3_endpoint, bucket):
    missing = tmp_path / "nope"
    proc = ferry("export", str(missing), f"s3://{bucket}/x")
    assert_one_line_error(proc, "directory does not exist", str(missing))


def test_missing_bucket_exits_2(tmp_path, s3_endpoint):
    proc = ferry("import", "s3://no-such-bucket-here/x", str(tmp_path / "d"))
    assert_one_line_error(proc, "bucket does not exist", "s3://no-such-bucket-here/x/")
    assert not (tmp_path / "d").exists()


def test_bad_credentials_exit_2(tmp_path):
    with local_s3(check_credentials=True, timeout=600) as endpoint:
        proc = ferry(
            "import",
            "s3://any-bucket/x",
            str(tmp_path / "d"),
            env={
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": "wrong",
                "AWS_SECRET_ACCESS_KEY": "wrong",
            },
        )
    assert_one_line_error(proc, "access denied", "InvalidAccessKeyId", "s3://any-bucket/x/")


def test_no_credentials_exit_2(tmp_path, s3_endpoint):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_ACCESS") and not k.startswith("AWS_SECRET")
    }
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none")
    )
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "import", "s3://b-x/y", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert_one_line_error(proc, "no S3 credentials", "AWS_ACCESS_KEY_ID")


def test_unreachable_endpoint_exits_2(tmp_path):
    proc = ferry(
        "import",
        "s3://b-x/y",
        str(tmp_path / "d"),
        env={
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
            "AWS_ACCESS_KEY_ID": "a",
            "AWS_SECRET_ACCESS_KEY": "b",
        },
    )
    assert_one_line_error(proc, "cannot reach the S3 endpoint at http://127.0.0.1:9 for")
    assert "b-x/?" not in proc.stderr and "list-type" not in proc.stderr  # not the request URL


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["export", "s3://b-x/a", "s3://b-x/b"], "export reads a directory"),
        (["import", "/tmp", "/tmp"], "import reads a bucket"),
        (["export", "/tmp", "ftp://host/x"], "unsupported URL scheme 'ftp'"),
        (["export", "/tmp", "s3:///x"], "no bucket in URL"),
        (["import", "s3://b-x/a//b", "/tmp/x"], "empty path segment"),
        (["export", "/tmp", "s3://b-x/x", "--include", " "], "empty include/exclude pattern"),
        (["export", "/tmp", "/tmp", "--source-option", "key=v"], "do not apply to a local path"),
        (
            ["export", "/tmp", "s3://b-x/y", "--destination-option", "endpoint=http://x"],
            "unknown storage option 'endpoint' (did you mean 'endpoint_url'?)",
        ),
    ],
)
def test_wrong_arguments_exit_2_naming_the_problem(args, fragment):
    assert_one_line_error(ferry(*args), fragment)


@pytest.mark.parametrize(
    ("option", "fragment"),
    [
        (
            ["--concurrency", "0"],
            "argument --concurrency: input should be greater than or equal to 1",
        ),
        (
            ["--concurrency", "5000"],
            "argument --concurrency: input should be less than or equal to",
        ),
        (["--retries", "50"], "argument --retries: input should be less than or equal to 20"),
        (["--bandwidth-mbps", "-5"], "argument --bandwidth-mbps: must be greater than 0"),
        (["--partition-bytes", "lots"], "not a size: 'lots'"),
        (["--overwrite", "sometimes"], "invalid choice: 'sometimes'"),
        (["--destination-option", "novalue"], "expected KEY=VALUE"),
        (["--workers", "0"], "argument --workers: input should be greater than or equal to 1"),
        (["--workers", "many"], "argument --workers"),
    ],
)
def test_bad_option_values_exit_2(option, fragment):
    proc = ferry("export", "/tmp", "s3://b-x/y", *option)
    assert proc.returncode == 2
    assert fragment in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.usefixtures("prefect_api")
def test_all_ok_exits_0_and_prints_summary(tmp_path, bucket, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f.txt").write_bytes(b"data")
    code = main(
        ["export", str(tmp_path / "src"), f"s3://{bucket}/ok", "--report-dir", str(tmp_path / "r")]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "1 ok · 0 skipped · 0 rejected · 0 failed" in out
    assert "manifest: " + str(tmp_path / "r") in out


@pytest.mark.usefixtures("prefect_api")
def test_a_rejected_entry_exits_1_and_is_listed(tmp_path, bucket, s3_client, capsys):
    s3_client.put_object(Bucket=bucket, Key="bad/../x", Body=b"1")
    s3_client.put_object(Bucket=bucket, Key="bad/fine", Body=b"1")
    code = main(
        ["import", f"s3://{bucket}/bad", str(tmp_path / "d"), "--report-dir", str(tmp_path / "r")]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "rejected ../x: '..' segment would leave the destination" in out


@pytest.mark.usefixtures("prefect_api")
def test_json_output_is_the_task_result(tmp_path, bucket, s3_client, capsys):
    s3_client.put_object(Bucket=bucket, Key="j/a", Body=b"1")
    code = main(
        [
            "import",
            f"s3://{bucket}/j",
            str(tmp_path / "d"),
            "--json",
            "--report-dir",
            str(tmp_path / "r"),
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert result["counts"]["ok"] == 1 and result["job"] == "import"
    assert os.path.exists(result["manifest"])


@pytest.mark.usefixtures("prefect_api")
def test_convert_check_only_lists_renames_and_exits_0(tmp_path, bucket, s3_client, capsys):
    s3_client.put_object(Bucket=bucket, Key="a", Body=b"1")
    s3_client.put_object(Bucket=bucket, Key="a/b", Body=b"1")
    metadata = f"sqlite:///{tmp_path / 'ns.db'}"
    code = main(
        [
            "convert",
            f"s3://{bucket}",
            "--metadata",
            metadata,
            "--check-only",
            "--report-dir",
            str(tmp_path / "r"),
            "--json",
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["dry_run"] and result["counts"]["renamed"] == 1
    code = main(
        ["convert", f"s3://{bucket}", "--metadata", metadata, "--check-only"]
        + ["--report-dir", str(tmp_path / "r")]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "1 renamed" in out  # conversion's counts are shown, not hidden
    assert "would rename a → a.file." in out  # every rename is listed
    code = main(
        ["convert", f"s3://{bucket}", "--metadata", metadata, "--report-dir", str(tmp_path / "r")]
    )
    assert code == 0
    code = main(
        ["convert", f"s3://{bucket}", "--metadata", metadata, "--report-dir", str(tmp_path / "r")]
    )
    assert code == 2
    assert "already converted on" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["convert", "s3://b-x/prefix", "--metadata", "sqlite:///x.db"],
            "convert takes a whole bucket",
        ),
        (["convert", "s3://b-x", "--metadata", "::nonsense"], "not an SQLAlchemy URL"),
        (["convert", "/tmp", "--metadata", "sqlite:///x.db"], "convert takes a whole bucket"),
        (
            ["convert", "s3://b-x", "--metadata", "sqlite:////missing/dir/n.db"],
            "the metadata store's folder does not exist: /missing/dir",
        ),
        (
            ["convert", "s3://b-x", "--metadata", "postgresql+psycopg://u:pw@127.0.0.1:9/db"],
            "cannot open the metadata store",
        ),
    ],
)
def test_convert_bad_arguments_exit_2(args, fragment):
    assert_one_line_error(ferry(*args), fragment)


@pytest.mark.usefixtures("prefect_api")
def test_convert_ineligible_bucket_exits_2_with_reasons(tmp_path, s3_endpoint, s3_client):
    from prefect.settings import PREFECT_API_URL

    s3_client.create_bucket(Bucket="ferry-cli-versioned")
    s3_client.put_bucket_versioning(
        Bucket="ferry-cli-versioned", VersioningConfiguration={"Status": "Enabled"}
    )
    proc = ferry(
        "convert",
        "s3://ferry-cli-versioned",
        "--metadata",
        f"sqlite:///{tmp_path / 'ns.db'}",
        "--report-dir",
        str(tmp_path / "r"),
        env={"PREFECT_API_URL": PREFECT_API_URL.value()},
    )
    assert proc.returncode == 2, proc.stderr
    assert "versioning is enabled" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.usefixtures("prefect_api")
def test_stream_commands(tmp_path, s3_client, capsys):
    import uuid

    bucket = f"cli-stream-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "f.txt").write_bytes(b"stream me")
    name = f"cli-{uuid.uuid4().hex[:8]}"
    assert main(["stream", "create", name, str(tmp_path / "dir"), f"s3://{bucket}/x"]) == 2
    assert "lacks the tag ferry-dataflow=true" in capsys.readouterr().err
    s3_client.put_bucket_tagging(
        Bucket=bucket, Tagging={"TagSet": [{"Key": "ferry-dataflow", "Value": "true"}]}
    )
    assert main(["stream", "create", name, str(tmp_path / "dir"), f"s3://{bucket}/x"]) == 0
    assert main(["stream", "run", name, "export", "--report-dir", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    assert main(["stream", "show", name]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["state"] == "enabled" and shown["recent_tasks"][0]["counts"]["ok"] == 1
    assert main(["stream", "list"]) == 0
    assert name in capsys.readouterr().out
    assert main(["stream", "stop", name]) == 0
    assert main(["stream", "run", name, "export"]) == 2
    assert "stopped" in capsys.readouterr().err
    assert main(["stream", "delete", name]) == 0
    assert main(["stream", "show", name]) == 2
    assert "no such data stream" in capsys.readouterr().err
    assert s3_client.get_object(Bucket=bucket, Key="x/f.txt")["Body"].read() == b"stream me"


def test_importing_an_empty_prefix_exits_2_naming_it_unless_allowed(tmp_path, s3_endpoint, bucket):
    dest = tmp_path / "d"
    proc = ferry("import", f"s3://{bucket}/typo", str(dest))
    assert_one_line_error(
        proc, "no object under this prefix", f"s3://{bucket}/typo/", "--allow-empty"
    )
    assert not dest.exists()
    proc = ferry(
        "import",
        f"s3://{bucket}/typo",
        str(dest),
        "--allow-empty",
        "--report-dir",
        str(tmp_path / "r"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "0 ok · 0 skipped · 0 rejected · 0 failed" in proc.stdout


def test_an_unforeseen_error_is_one_line_with_its_own_exit_code(tmp_path, s3_endpoint, bucket):
    # a malformed config_kwargs reaches s3fs: an error no check of ferry's foresees
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"1")
    proc = ferry(
        "export", str(src), f"s3://{bucket}/x", "--destination-option", "config_kwargs=oops"
    )
    assert proc.returncode == 4, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ferry: unexpected error: ")
    assert lines[0].endswith("(run with -v for the traceback)")
    proc = ferry(
        "export", str(src), f"s3://{bucket}/x", "--destination-option", "config_kwargs=oops", "-v"
    )
    assert proc.returncode == 4 and "Traceback" in proc.stderr


@pytest.mark.usefixtures("prefect_api")
@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_cancels_the_export_prints_its_summary_and_exits_3(
    tmp_path, bucket, s3_client, workers
):
    """Ctrl-C at a terminal reaches the whole process group: the command cancels the task, and
    its worker processes (with --workers 2) stop their copies, their entries `skipped`."""
    import signal
    import time

    import pandas as pd
    from prefect.settings import PREFECT_API_URL

    src = tmp_path / "src"
    src.mkdir()
    for i in range(60):
        (src / f"f{i:02d}").write_bytes(b"x" * 100_000)  # 2 s each at 0.05 MB/s
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "export", str(src), f"s3://{bucket}/c"]
        + ["--bandwidth-mbps", "0.05", "--report-dir", str(tmp_path / "r")]
        + ["--workers", workers, "--partition-files", "15"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()},
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, as at a terminal
    )

    def copying() -> set[int]:
        """The partitions (15 files each, in name order) with an object in the bucket."""
        keys = s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])
        return {int(key["Key"].rsplit("/f", 1)[1]) // 15 for key in keys}

    # every worker process is copying (a partition takes 30-60 s, so no process has finished
    # one and taken the next, however long the others take to start)
    deadline = time.monotonic() + 600
    while len(copying()) < int(workers):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 3, err
    assert "Traceback" not in err and "cancelling" in err
    assert "manifest: " in out
    copied = s3_client.list_objects_v2(Bucket=bucket)["KeyCount"]
    assert f"{copied} ok · {60 - copied} skipped" in out
    assert copied < 60
    manifest = out.split("manifest: ")[1].split()[0]
    frame = pd.read_parquet(manifest)
    assert set(frame[frame.status == "skipped"].reason_code) == {"cancelled"}
    if workers == "2":
        assert frame.worker.nunique() == 2


def test_a_report_dir_that_cannot_be_written_fails_before_any_data_moves(
    tmp_path, s3_endpoint, bucket, s3_client
):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"1")
    (tmp_path / "a-file").write_bytes(b"")
    proc = ferry("export", str(src), f"s3://{bucket}/x", "--report-dir", str(tmp_path / "a-file"))
    assert_one_line_error(proc, "cannot write reports in the report directory", "a-file")
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


@pytest.mark.usefixtures("prefect_api")
def test_the_default_report_dir_inside_the_exported_tree_is_not_exported(
    tmp_path, bucket, s3_client, monkeypatch
):
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.bin").write_bytes(b"1")
    monkeypatch.chdir(src)  # ./ferry-reports lands inside the tree
    monkeypatch.delenv("FERRY_REPORT_DIR", raising=False)
    for _ in range(2):  # the second run finds the first one's reports in the tree
        assert main(["export", str(src), f"s3://{bucket}/x"]) == 0
    assert (src / "ferry-reports").is_dir()
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["x/data.bin"]


def test_an_unreadable_source_directory_blames_the_file_permission(tmp_path, s3_endpoint, bucket):
    src = tmp_path / "src"
    src.mkdir()
    src.chmod(0)
    command = [sys.executable, "-m", "flows.cli", "export", str(src), f"s3://{bucket}/x"]
    if os.geteuid() == 0:  # root reads anything: drop the capabilities that let it
        caps = "-dac_override,-dac_read_search"
        command = ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", *command]
    proc = subprocess.run(
        command, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120
    )
    assert_one_line_error(proc, "permission denied by the file system", str(src))
    assert "credentials" not in proc.stderr


@pytest.mark.usefixtures("prefect_api")
def test_credentials_block_carries_the_key_and_the_run_stores_only_its_name(
    tmp_path, bucket, s3_client
):
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    from flows import export_data
    from flows.local_s3 import DEMO_CREDENTIALS

    env = {"PREFECT_API_URL": PREFECT_API_URL.value()}
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "credentials", "create", "demo-key"]
        + ["--key", DEMO_CREDENTIALS["AWS_ACCESS_KEY_ID"], "--secret", "-"],
        input=DEMO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"] + "\n",
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"with a block")
    result = export_data(
        str(src), f"s3://{bucket}/blk", credentials_block="demo-key", report_dir=str(tmp_path / "r")
    )
    assert result.ok and result.counts["ok"] == 1
    with get_client(sync_client=True) as client:
        parameters = client.read_flow_run(UUID(result.task_id)).parameters
    assert parameters["credentials_block"] == "demo-key"
    assert DEMO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in str(parameters)
    # the CLI takes the block too, and warns once when a secret is passed as a plain option
    proc = ferry(
        "import",
        f"s3://{bucket}/blk",
        str(tmp_path / "d"),
        "--credentials-block",
        "demo-key",
        "--report-dir",
        str(tmp_path / "r"),
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "d" / "f").read_bytes() == b"with a block"
    proc = ferry(
        "verify",
        str(src),
        f"s3://{bucket}/blk",
        "--destination-option",
        "secret=plain",
        "--destination-option",
        "key=plain",
        "--report-dir",
        str(tmp_path / "r"),
        env=env,
    )
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "stored with the Prefect flow run in clear" in warnings[0]
    assert "--credentials-block" in warnings[0]


@pytest.mark.usefixtures("prefect_api")
def test_a_missing_credentials_block_is_one_line(tmp_path, bucket):
    from prefect.settings import PREFECT_API_URL

    proc = ferry(
        "import",
        f"s3://{bucket}/x",
        str(tmp_path / "d"),
        "--credentials-block",
        "nope",
        env={"PREFECT_API_URL": PREFECT_API_URL.value()},
    )
    assert_one_line_error(proc, "no ferry-s3-credentials block of this name", "nope")


def test_serve_without_a_prefect_server_is_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["FERRY_HOME"] = str(tmp_path / "no-server-here")
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "serve"],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert_one_line_error(
        proc, "ferry serve needs a running Prefect server", "prefect server start"
    )


def test_ferry_demo_without_the_emulator_says_how_to_get_it(tmp_path):
    """A plain install carries no S3 emulator: `ferry demo` says, in one line, how to add it."""
    import subprocess
    import sys

    blocker = tmp_path / "no_moto"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\nclass _Hide:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'moto' or name.startswith('moto.'):\n"
        "            raise ModuleNotFoundError(name)\n        return None\n"
        "sys.meta_path.insert(0, _Hide())\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "demo"],
        env={
            **os.environ,
            "PYTHONPATH": f"{blocker}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        },
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "ferry: error: ferry demo runs on moto's S3 server, which is not installed: "
        "pip install 'ferry[demo]' (from a clone, `uv run ferry demo` has it)"
    )


def test_the_command_line_answers_help_and_bad_arguments_without_loading_the_engine():
    """`ferry --help`, a wrong flag and a missing source directory need neither Prefect nor the S3
    stack nor pandas: they answer from the options model and the file system alone."""
    probe = (
        "import sys, contextlib, io\n"
        "from flows.cli import main\n"
        "out, err = io.StringIO(), io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
        "    main(['export', '--help'])\n"
        "    main(['export', '/tmp', 's3://b-x/y', '--retries', '0'])\n"
        "    main(['export', '/no/such/dir', 's3://b-x/y'])\n"
        "heavy = ('prefect', 'pandas', 'pyarrow', 's3fs', 'aiobotocore', 'aiohttp')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_prefect_api_that_stays_busy_is_one_line_saying_so(tmp_path):
    """A Prefect server whose SQLite is locked by racing writes answers 503 (its own handler's
    body); when every one of Prefect's client retries gets it, the user reads what happened."""
    import http.server
    import threading

    class Busy(http.server.BaseHTTPRequestHandler):
        def answer(self) -> None:
            body = b'{"exception_message": "Service Unavailable"}'
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PATCH = do_DELETE = answer

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = f"http://127.0.0.1:{server.server_address[1]}/api"
    try:
        env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_CLIENT_MAX_RETRIES": "1"}
        proc = ferry("schedule", "pause", "nightly", env=env)
    finally:
        server.shutdown()
    assert_one_line_error(
        proc,
        f"ferry: error: the Prefect API is busy: it answered 503 Service Unavailable to every try "
        f"({api}): run the command again",
    )


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("http://127.0.0.1:8786", "not a Dask scheduler address (try tcp://host:8786): "),
        ("tcp://127.0.0.1", "not a Dask scheduler address (try tcp://host:8786): "),
        ("tcp://127.0.0.1:{port}", "cannot reach the Dask scheduler (Connection refused): "),
    ],
)
def test_a_dask_address_that_cannot_work_is_one_line(tmp_path, bucket, address, message):
    from flows.local_s3 import free_port

    address = address.format(port=free_port())
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"1")
    proc = ferry("export", str(src), f"s3://{bucket}/x", "--dask", address)
    assert_one_line_error(proc, message + address)
    by_env = ferry("export", str(src), f"s3://{bucket}/x", env={"FERRY_DASK_ADDRESS": address})
    assert_one_line_error(by_env, message + address)
