"""kill -9 of a real `ferry` process mid-transfer: the rerun cleans what the killed run left
(temporary files of its own, abandoned multipart uploads) and completes the task."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time

import pytest
from prefect.settings import PREFECT_API_URL

from flows import export_data, import_data
from tasks.listing import TEMPORARY_GRACE_SECONDS

pytestmark = pytest.mark.usefixtures("prefect_api")


def start_ferry(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()},
    )


def wait_for(condition, process: subprocess.Popen, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, "ferry ended before the test could kill it"
        assert time.monotonic() < deadline
        time.sleep(0.1)


def temporaries(root) -> list[str]:
    return glob.glob(os.path.join(root, "**", ".ferry-*.part"), recursive=True)


def test_a_rerun_removes_the_temporary_files_of_a_killed_import(tmp_path, bucket, s3_client):
    # a small object is on disk only once its bytes are all here (written and renamed in one
    # go); a large one is written in byte ranges into its temporary file as they arrive
    size = 33 * 2**20
    for i in range(3):
        s3_client.put_object(Bucket=bucket, Key=f"ds/s{i}/f{i:02d}", Body=bytes([i]) * size)
    dest = tmp_path / "d"
    reports = str(tmp_path / "r")
    proc = start_ferry(
        "import", f"s3://{bucket}/ds", str(dest), "--bandwidth-mbps", "2", "--report-dir", reports
    )
    wait_for(lambda: len(temporaries(dest)) >= 3, proc)  # 50 s of work in flight
    proc.kill()
    proc.wait()
    left = temporaries(dest)
    assert left  # what kill -9 leaves
    # someone else's file that looks alike but is not ferry's stays
    (dest / "s0" / "ferry-notes.part").write_bytes(b"mine")
    time.sleep(TEMPORARY_GRACE_SECONDS + 0.1)  # the grace a just-created temporary gets
    result = import_data(f"s3://{bucket}/ds", str(dest), report_dir=reports)
    assert result.ok and result.counts["ok"] + result.counts["skipped"] == 3
    assert temporaries(dest) == []
    assert (dest / "s0" / "ferry-notes.part").read_bytes() == b"mine"
    for i in range(3):
        assert (dest / f"s{i}" / f"f{i:02d}").read_bytes() == bytes([i]) * size
    # and listing never exports a temporary file, should one be there
    (dest / "s1" / ".ferry-0123.part").write_bytes(b"half")
    back = export_data(str(dest), f"s3://{bucket}/back", report_dir=reports)
    keys = {o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket, Prefix="back/")["Contents"]}
    assert "back/s1/.ferry-0123.part" not in keys and back.counts["ok"] == 4


def test_a_rerun_aborts_the_multipart_uploads_of_a_killed_export(tmp_path, bucket, s3_client):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        (src / f"big{i}.bin").write_bytes(os.urandom(40 * 2**20))  # 8 MiB parts
    reports = str(tmp_path / "r")
    proc = start_ferry(
        "export", str(src), f"s3://{bucket}/ck", "--bandwidth-mbps", "2", "--report-dir", reports
    )
    uploads = lambda: s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])  # noqa: E731
    wait_for(lambda: len(uploads()) == 2, proc)  # 40 s of work in flight
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(uploads()) == 2  # what kill -9 leaves
    # an upload of someone else's, to a key this export does not write, is not touched
    other = s3_client.create_multipart_upload(Bucket=bucket, Key="ck/not-ours.bin")
    result = export_data(str(src), f"s3://{bucket}/ck", report_dir=reports)
    assert result.ok and result.counts["ok"] == 2
    assert [u["UploadId"] for u in uploads()] == [other["UploadId"]]
    for i in range(2):
        body = s3_client.get_object(Bucket=bucket, Key=f"ck/big{i}.bin")["Body"].read()
        assert body == (src / f"big{i}.bin").read_bytes()
