"""Transient store errors are retried per object with backoff; lasting ones become failed rows."""

from __future__ import annotations

import pytest
from conftest import flow_run_of, manifest_rows, run_logs
from flaky_proxy import FlakyProxy

from flows import EntriesFailed, export_data, import_data

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_export_retries_a_passing_fault_and_records_attempts(
    tmp_path, bucket, s3_endpoint, s3_client, reports
):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("flaky.bin", "steady.bin"):
        (src / name).write_bytes(b"payload")
    with FlakyProxy(s3_endpoint, {"flaky.bin": 2}) as proxy:
        result = export_data(
            str(src),
            f"s3://{bucket}/p",
            report_dir=reports,
            destination_options={"endpoint_url": proxy.url},
        )
    rows = manifest_rows(result)
    assert rows["flaky.bin"]["status"] == "ok" and rows["flaky.bin"]["attempts"] == 3
    assert rows["steady.bin"]["attempts"] == 1
    assert s3_client.get_object(Bucket=bucket, Key="p/flaky.bin")["Body"].read() == b"payload"


def test_a_lasting_store_error_fails_one_object_and_the_rest_carry_on(
    tmp_path, bucket, s3_client, s3_endpoint, reports
):
    for i in range(10):
        s3_client.put_object(Bucket=bucket, Key=f"d/ok-{i}", Body=b"fine")
    s3_client.put_object(Bucket=bucket, Key="d/doomed", Body=b"never")
    with FlakyProxy(s3_endpoint, {"/d/doomed": -1}) as proxy:
        with pytest.raises(EntriesFailed) as failed:
            import_data(
                f"s3://{bucket}/d",
                str(tmp_path / "dst"),
                retries=3,
                report_dir=reports,
                source_options={"endpoint_url": proxy.url},
            )
        assert proxy.seen["/d/doomed"] == 3
    result = failed.value.result
    # the run's log (the UI's log tab) names each retry with its error, and the failure
    logs = run_logs(result.task_id)
    retries = [m for level, m in logs if m.startswith("retrying doomed")]
    assert [r.split(" failed:")[0] for r in retries] == [
        "retrying doomed (attempt 1 of 3",
        "retrying doomed (attempt 2 of 3",
    ]
    assert all("ServiceUnavailable" in r for r in retries)
    assert ("ERROR", f"11 entries: 1 failed, 10 ok; manifest: {result.manifest}") in logs
    warned = [m for level, m in logs if level == "WARNING"]
    assert any(m.startswith("failed doomed: ServiceUnavailable") for m in warned)
    assert flow_run_of(result).state.type.value == "FAILED"
    rows = manifest_rows(result)
    assert result.counts == {"ok": 10, "skipped": 0, "rejected": 0, "failed": 1}
    assert rows["doomed"]["attempts"] == 3
    assert "ServiceUnavailable" in rows["doomed"]["reason"]
    assert not (tmp_path / "dst" / "doomed").exists()
    assert sorted(p.name for p in (tmp_path / "dst").iterdir()) == [f"ok-{i}" for i in range(10)]


def test_permanent_errors_are_not_retried(tmp_path, bucket, s3_client, reports):
    """A precondition failure (object replaced since listing) is not transient: one attempt."""
    from tasks.endpoints import transfer_endpoints
    from tasks.job import Job
    from tasks.listing import list_bucket
    from tasks.manifest import ReportDir
    from tasks.partition import partition
    from tasks.plan import plan_import
    from tasks.steps import apply_step

    s3_client.put_object(Bucket=bucket, Key="x/a", Body=b"1")
    directory, prefix = transfer_endpoints("import", f"s3://{bucket}/x", str(tmp_path / "d"))
    (tmp_path / "d").mkdir()
    items = plan_import(list_bucket(prefix), [])
    s3_client.put_object(Bucket=bucket, Key="x/a", Body=b"2")
    job = Job(task_id="t-perm", direction="import", directory=directory, bucket=prefix)
    apply_step.fn(job, partition(items)[0], ReportDir(reports, "t-perm"))
    row = ReportDir(reports, "t-perm").read_parts().to_pylist()[0]
    assert row["status"] == "failed" and row["attempts"] == 1
    assert "PreconditionFailed" in row["reason"]


def test_a_lasting_error_on_one_head_in_verify_is_that_object_s_row(
    tmp_path, bucket, s3_client, s3_endpoint, reports
):
    """verify_data reads stored mtimes with a HEAD per object: one object whose HEAD keeps
    failing is a failed row saying why, and the rest are compared."""
    from flows import verify_data

    src = tmp_path / "src"
    src.mkdir()
    for name in ("a", "b", "doomed"):
        (src / name).write_bytes(b"same")
    export_data(str(src), f"s3://{bucket}/v", report_dir=reports)
    with (
        FlakyProxy(s3_endpoint, {"/v/doomed": -1}) as proxy,
        pytest.raises(EntriesFailed) as failed,
    ):
        verify_data(
            str(src),
            f"s3://{bucket}/v",
            destination_options={"endpoint_url": proxy.url},
            report_dir=reports,
        )
    rows = manifest_rows(failed.value.result)
    assert rows["a"]["status"] == rows["b"]["status"] == "ok"
    assert rows["doomed"]["status"] == "failed"
    # a HEAD's error has no body: its status is all the store says
    assert rows["doomed"]["reason"] == "cannot read the object's metadata: 503: Service Unavailable"


def test_attempts_count_the_retries_of_a_part_and_of_a_byte_range(
    tmp_path, bucket, s3_endpoint, s3_client, reports
):
    """A large file's inner retries (one part of its multipart upload, one byte range of its
    download) are the object's attempts too, not hidden behind attempts == 1."""
    import os

    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(33 * 2**20))  # 5 parts out, 3 byte ranges back
    with FlakyProxy(s3_endpoint, {"partNumber=2": 2}) as proxy:
        result = export_data(
            str(src),
            f"s3://{bucket}/big",
            report_dir=reports,
            destination_options={"endpoint_url": proxy.url},
        )
        assert proxy.seen["partNumber=2"] == 3
    row = manifest_rows(result)["big"]
    assert row["status"] == "ok" and row["attempts"] == 3
    logs = [m for _, m in run_logs(result.task_id)]
    assert sum(m.startswith(f"retrying part 2 of {src / 'big'} (attempt ") for m in logs) == 2
    # the way back: byte ranges at once; the first GET of the key breaks, once
    with FlakyProxy(s3_endpoint, {"/big/big": 1}) as proxy:
        back = import_data(
            f"s3://{bucket}/big",
            str(tmp_path / "back"),
            report_dir=reports,
            source_options={"endpoint_url": proxy.url},
        )
        # three ranges of up to 16 MiB, one of them twice, and a HEAD for its CRC64NVME
        assert proxy.seen["/big/big"] == 5
    row = manifest_rows(back)["big"]
    assert row["status"] == "ok" and row["attempts"] == 2
    assert (tmp_path / "back" / "big").read_bytes() == (src / "big").read_bytes()


def test_a_dropped_connection_seen_by_aiohttp_is_transient():
    import aiohttp

    from tasks.errors import is_transient

    assert is_transient(aiohttp.ServerDisconnectedError())
    assert is_transient(aiohttp.ClientPayloadError("response payload is not completed"))
    assert not is_transient(ValueError("a bug"))
