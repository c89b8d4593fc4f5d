"""verify_data: compare two trees like `rclone check`, and the verify step of a transfer."""

from __future__ import annotations

import os

import pytest
from conftest import manifest_rows

from flows import EntriesFailed, export_data, verify_data
from tasks.endpoints import transfer_endpoints
from tasks.job import Job
from tasks.rows import ReasonCode
from tasks.verify import verify_copied

pytestmark = pytest.mark.usefixtures("prefect_api")


def make(root, files: dict[str, bytes], mtime_ns=1_650_000_000 * 10**9):
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, ns=(mtime_ns, mtime_ns))


def test_verify_data_reports_each_kind_of_difference(tmp_path, bucket, s3_client, reports):
    src = tmp_path / "src"
    make(
        src, {"same": b"aaaa", "size": b"aaaa", "mtime": b"aaaa", "content": b"aaaa", "gone": b"a"}
    )
    export_data(str(src), f"s3://{bucket}/v", report_dir=reports)
    s3_client.put_object(
        Bucket=bucket, Key="v/size", Body=b"longer", Metadata={"alihbr-sync-mtime": "1650000000"}
    )
    s3_client.put_object(
        Bucket=bucket, Key="v/mtime", Body=b"aaaa", Metadata={"alihbr-sync-mtime": "1700000000"}
    )
    s3_client.put_object(
        Bucket=bucket, Key="v/content", Body=b"bbbb", Metadata={"alihbr-sync-mtime": "1650000000"}
    )
    s3_client.delete_object(Bucket=bucket, Key="v/gone")
    s3_client.put_object(Bucket=bucket, Key="v/extra", Body=b"?")

    with pytest.raises(EntriesFailed) as failed:  # differences fail the run
        verify_data(str(src), f"s3://{bucket}/v", report_dir=reports)
    quick = failed.value.result
    rows = manifest_rows(quick)
    assert rows["same"]["status"] == "ok" and rows["content"]["status"] == "ok"
    assert rows["size"]["reason"].startswith("size differs")
    assert rows["mtime"]["reason"] == "mtime differs"
    assert rows["gone"]["reason"] == "missing at destination"
    assert rows["extra"]["reason"] == "only at destination"
    assert {p: r["reason_code"] for p, r in rows.items() if r["status"] == "failed"} == {
        "size": "verify_size",
        "mtime": "verify_mtime",
        "gone": "verify_missing",
        "extra": "verify_extra",
    }
    assert quick.exit_code == 1

    with pytest.raises(EntriesFailed) as failed:
        verify_data(str(src), f"s3://{bucket}/v", verify="checksum", report_dir=reports)
    deep = failed.value.result
    assert manifest_rows(deep)["content"]["reason"] == "content differs"
    assert manifest_rows(deep)["content"]["reason_code"] == ReasonCode.VERIFY_CHECKSUM
    assert manifest_rows(deep)["same"]["verified"]


def test_verify_data_copies_nothing(tmp_path, bucket, s3_client, reports):
    make(tmp_path / "src", {"a": b"1"})
    with pytest.raises(EntriesFailed) as failed:
        verify_data(str(tmp_path / "src"), f"s3://{bucket}/nothing", report_dir=reports)
    assert failed.value.result.counts["failed"] == 1
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_verify_step_catches_an_object_overwritten_after_upload(
    tmp_path, bucket, s3_client, reports
):
    make(tmp_path / "src", {f"f{i}": os.urandom(64) for i in range(10)})
    result = export_data(str(tmp_path / "src"), f"s3://{bucket}/c", report_dir=reports)
    assert all(r["verified"] for r in manifest_rows(result).values())
    s3_client.put_object(Bucket=bucket, Key="c/f3", Body=os.urandom(64))  # same size
    directory, prefix = transfer_endpoints("export", str(tmp_path / "src"), f"s3://{bucket}/c")
    job = Job(task_id="t", direction="export", directory=directory, bucket=prefix)
    rows = [{**r, "mtime": None} for r in manifest_rows(result).values()]
    results = verify_copied(job, rows)
    assert results["f3"] == (
        False,
        "object changed after it was written (ETag differs)",
        ReasonCode.VERIFY_ETAG,
    )
    assert all(check.verified for path, check in results.items() if path != "f3")


def test_verify_none_leaves_rows_unverified(tmp_path, bucket, reports):
    make(tmp_path / "src", {"a": b"1"})
    result = export_data(
        str(tmp_path / "src"), f"s3://{bucket}/n", verify="none", report_dir=reports
    )
    assert [r["verified"] for r in manifest_rows(result).values()] == [None]
