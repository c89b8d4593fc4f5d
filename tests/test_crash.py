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
    # an upload of someone else's, to a key this export does not write, is not touched while
    # it is younger than the limit (moto dates every upload 2010-11-10: the limit here is
    # larger than its age)
    other = s3_client.create_multipart_upload(Bucket=bucket, Key="ck/not-ours.bin")
    result = export_data(
        str(src), f"s3://{bucket}/ck", report_dir=reports, abandoned_upload_hours=10**6
    )
    assert result.ok and result.counts["ok"] == 2
    assert [u["UploadId"] for u in uploads()] == [other["UploadId"]]
    # older than the limit (7 days by default), it goes: abandoned, it would be billed forever
    export_data(str(src), f"s3://{bucket}/ck", report_dir=reports)
    assert uploads() == []
    for i in range(2):
        body = s3_client.get_object(Bucket=bucket, Key=f"ck/big{i}.bin")["Body"].read()
        assert body == (src / f"big{i}.bin").read_bytes()


def test_a_killed_multipart_upload_resumes_from_its_stored_parts(
    tmp_path, bucket, s3_client, s3_endpoint
):
    """kill -9 at 80 %: four of a 40 MiB file's five parts are stored (the fifth is held by a
    proxy until the kill). The rerun checks the stored parts against the file (CRC64NVME and
    MD5) and sends only the fifth: 8 MiB of 40."""
    import threading
    from urllib.parse import parse_qs, urlsplit

    from flaky_proxy import FlakyProxy

    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(40 * 2**20)
    (src / "ckpt.bin").write_bytes(data)
    changed = 1_230_000_000 * 10**9  # 2008: before the upload began (moto dates uploads 2010)
    os.utime(src / "ckpt.bin", ns=(changed, changed))
    reports = str(tmp_path / "r")
    release = threading.Event()

    def hold_the_fifth_part(method: str, path: str) -> None:
        if method == "PUT" and parse_qs(urlsplit(path).query).get("partNumber") == ["5"]:
            release.wait(timeout=600)
            raise ConnectionAbortedError("the fifth part never reaches the store")

    def stored_parts() -> int:
        found = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        if not found:
            return 0
        upload = found[0]
        listed = s3_client.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        return len(listed.get("Parts", []))

    with FlakyProxy(s3_endpoint, {}, on_request=hold_the_fifth_part) as proxy:
        proc = start_ferry(
            "export", str(src), f"s3://{bucket}/r", "--report-dir", reports,
            "--destination-option", f"endpoint_url={proxy.url}",
        )  # fmt: skip
        try:
            wait_for(lambda: stored_parts() == 4, proc)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        finally:
            release.set()
    sent: list[int] = []

    def count_parts(method: str, path: str) -> None:
        if method == "PUT" and "partNumber" in parse_qs(urlsplit(path).query):
            sent.append(int(parse_qs(urlsplit(path).query)["partNumber"][0]))

    with FlakyProxy(s3_endpoint, {}, on_request=count_parts) as proxy:
        result = export_data(
            str(src), f"s3://{bucket}/r", report_dir=reports,
            destination_options={"endpoint_url": proxy.url},
            abandoned_upload_hours=10**6,  # moto dates the killed run's upload 2010
        )  # fmt: skip
    assert result.ok and result.counts["ok"] == 1
    assert sent == [5], sent  # 8 MiB sent again, not 40
    assert s3_client.get_object(Bucket=bucket, Key="r/ckpt.bin")["Body"].read() == data
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_killed_large_import_resumes_from_the_bytes_in_its_temporary_file(
    tmp_path, bucket, s3_client, s3_endpoint
):
    """kill -9 at 75 %: three of a 64 MiB object's four byte ranges are in the temporary file
    (the fourth is held by a proxy until the kill). The rerun verifies the ranges written (their
    CRC64NVME, recorded beside them) and reads only the fourth: 16 MiB of 64."""
    import json
    import threading

    from flaky_proxy import FlakyProxy

    data = os.urandom(64 * 2**20)
    s3_client.put_object(Bucket=bucket, Key="in/big", Body=data)
    dst, reports = tmp_path / "dst", str(tmp_path / "r")
    release = threading.Event()
    last = f"bytes={48 * 2**20}-"

    def hold_the_last_range(method: str, path: str, headers) -> None:
        if method == "GET" and (headers.get("Range") or "").startswith(last):
            release.wait(timeout=600)
            raise ConnectionAbortedError("the last range never arrives")

    def written() -> int:
        found = temporaries(dst)
        if not found:
            return 0
        try:
            record = json.loads(os.getxattr(found[0], "user.ferry.ranges"))
        except (OSError, ValueError):
            return 0
        return sum(position - int(start) for start, (position, _) in record["ranges"].items())

    with FlakyProxy(s3_endpoint, {}, on_request=hold_the_last_range, with_headers=True) as proxy:
        proc = start_ferry(
            "import", f"s3://{bucket}/in", str(dst), "--report-dir", reports,
            "--source-option", f"endpoint_url={proxy.url}",
        )  # fmt: skip
        try:
            wait_for(lambda: written() == 48 * 2**20, proc)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        finally:
            release.set()
    assert len(temporaries(dst)) == 1  # what kill -9 leaves: 48 MiB written
    asked: list[str] = []

    def count_ranges(method: str, path: str, headers) -> None:
        if method == "GET" and "list-type" not in path:
            asked.append(headers.get("Range") or "whole")

    with FlakyProxy(s3_endpoint, {}, on_request=count_ranges, with_headers=True) as proxy:
        result = import_data(
            f"s3://{bucket}/in", str(dst), report_dir=reports,
            source_options={"endpoint_url": proxy.url},
        )  # fmt: skip
    assert result.ok and result.counts["ok"] == 1
    assert asked == [f"bytes={48 * 2**20}-{64 * 2**20 - 1}"], asked  # 16 MiB read again
    assert (dst / "big").read_bytes() == data
    assert temporaries(dst) == []
