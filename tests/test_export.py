"""Export: directory → bucket prefix, each rule of the seed on a real S3 endpoint."""

from __future__ import annotations

import os
import socket

import pytest
from conftest import bucket_objects, manifest_rows, run_result
from flaky_proxy import FlakyProxy

from flows import export_data

pytestmark = pytest.mark.usefixtures("prefect_api")

NS = 1_000_000_000


def write(path, data: bytes = b"", mtime_ns: int | None = None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def test_export_writes_bytes_and_mtime_under_both_metadata_keys(
    tmp_path, bucket, s3_client, reports
):
    src = tmp_path / "src"
    mtime = 1_700_000_000 * NS + 123_456_789
    write(str(src / "a" / "b.txt"), b"hello ferry", mtime)
    result = export_data(str(src), f"s3://{bucket}/run1", report_dir=reports)
    assert result.counts == {"ok": 1, "skipped": 0, "rejected": 0, "failed": 0}
    obj = s3_client.get_object(Bucket=bucket, Key="run1/a/b.txt")
    assert obj["Body"].read() == b"hello ferry"
    assert obj["Metadata"]["alihbr-sync-mtime"] == "1700000000"
    assert obj["Metadata"]["mtime"] == "1700000000.123456789"
    row = manifest_rows(result)["a/b.txt"]
    assert row["status"] == "ok" and row["verified"] and row["bytes"] == 11
    assert row["destination"] == f"s3://{bucket}/run1/a/b.txt"


def test_export_turns_links_and_special_files_into_empty_objects(
    tmp_path, bucket, s3_client, reports
):
    src = tmp_path / "src"
    write(str(src / "target" / "data.bin"), b"x" * 100)
    os.symlink("target/data.bin", src / "file-link")
    os.symlink("target", src / "dir-link")  # never descended into
    os.link(src / "target" / "data.bin", src / "hard")
    os.mkfifo(src / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "sock"))
    try:
        result = export_data(str(src), f"s3://{bucket}/t", report_dir=reports)
    finally:
        sock.close()
    objects = bucket_objects(s3_client, bucket, "t/")
    assert set(objects) == {
        "t/target/data.bin",
        "t/file-link",
        "t/dir-link",
        "t/hard",
        "t/fifo",
        "t/sock",
    }
    for key in ("t/file-link", "t/dir-link", "t/fifo", "t/sock"):
        assert objects[key]["ContentLength"] == 0, key
        assert "alihbr-sync-mtime" in objects[key]["Metadata"]
    assert objects["t/hard"]["ContentLength"] == 100
    rows = manifest_rows(result)
    assert rows["file-link"]["kind"] == "symlink" and rows["fifo"]["kind"] == "special"
    assert result.counts["ok"] == 6


def test_export_writes_a_marker_for_an_empty_directory_only(tmp_path, bucket, s3_client, reports):
    src = tmp_path / "src"
    os.makedirs(src / "empty" / "inner")
    write(str(src / "full" / "f"), b"1")
    export_data(str(src), f"s3://{bucket}/m", report_dir=reports)
    objects = bucket_objects(s3_client, bucket, "m/")
    assert set(objects) == {"m/empty/inner/", "m/full/f"}
    assert objects["m/empty/inner/"]["ContentLength"] == 0


def test_export_rejects_paths_longer_than_1023_characters(tmp_path, bucket, s3_client, reports):
    src = tmp_path / "src"
    deep = src
    for i in range(6):  # 6 × 201 characters
        deep = deep / (f"{i}" * 200)
    write(str(deep / "file.txt"), b"too deep")
    write(str(src / "ok.txt"), b"fine")
    result = export_data(str(src), f"s3://{bucket}/long", report_dir=reports)
    assert result.counts["rejected"] == 1 and result.counts["ok"] == 1
    row = next(r for r in manifest_rows(result).values() if r["status"] == "rejected")
    assert "longer than 1023 characters" in row["reason"]
    assert set(bucket_objects(s3_client, bucket, "long/")) == {"long/ok.txt"}


def test_export_rerun_copies_only_what_changed(tmp_path, bucket, s3_client, reports):
    src = tmp_path / "src"
    for i in range(5):
        write(str(src / f"f{i}"), b"v1", (1_600_000_000 + i) * NS)
    first = export_data(str(src), f"s3://{bucket}/r", report_dir=reports)
    assert first.counts["ok"] == 5
    write(
        str(src / "f1"), b"v2", 1_600_000_001 * NS
    )  # same size and mtime: a different file only by content
    write(str(src / "f2"), b"v2", 1_700_000_000 * NS)  # same size, new mtime
    write(str(src / "f3"), b"longer")  # new size
    s3_client.delete_object(Bucket=bucket, Key="r/f4")  # missing at the destination
    second = export_data(str(src), f"s3://{bucket}/r", report_dir=reports)
    rows = manifest_rows(second)
    assert {p for p, r in rows.items() if r["status"] == "ok"} == {"f2", "f3", "f4"}
    assert {p for p, r in rows.items() if r["status"] == "skipped"} == {"f0", "f1"}
    assert s3_client.get_object(Bucket=bucket, Key="r/f2")["Body"].read() == b"v2"


def test_export_include_exclude_and_dry_run(tmp_path, bucket, s3_client, reports):
    src = tmp_path / "src"
    for name in ("a.bin", "b.bin", "c.txt", "sub/d.bin"):
        write(str(src / name), b"x")
    dry = export_data(
        str(src),
        f"s3://{bucket}/f",
        include=["*.bin"],
        exclude=["b.bin"],
        dry_run=True,
        report_dir=reports,
    )
    assert dry.dry_run and dry.counts["skipped"] == 2
    assert {r["reason_code"] for r in manifest_rows(dry).values()} == {"dry_run"}
    assert bucket_objects(s3_client, bucket, "f/") == {}
    real = export_data(
        str(src), f"s3://{bucket}/f", include=["*.bin"], exclude=["b.bin"], report_dir=reports
    )
    assert set(bucket_objects(s3_client, bucket, "f/")) == {"f/a.bin", "f/sub/d.bin"}
    assert real.counts["ok"] == 2


def test_export_large_file_goes_in_parallel_parts(tmp_path, bucket, s3_client, reports):
    src = tmp_path / "src"
    data = os.urandom(40 * 2**20)
    write(str(src / "big.bin"), data)
    result = export_data(str(src), f"s3://{bucket}/big", verify="checksum", report_dir=reports)
    head = s3_client.head_object(Bucket=bucket, Key="big/big.bin")
    assert head["ETag"].strip('"').endswith("-5")  # five 8 MiB parts
    # every part carried its CRC64NVME, and the upload the whole file's: the object has it
    from tasks.checksum import crc64, encoded

    checksum = s3_client.head_object(Bucket=bucket, Key="big/big.bin", ChecksumMode="ENABLED")
    assert checksum.get("ChecksumType") == "FULL_OBJECT"
    assert checksum.get("ChecksumCRC64NVME") == encoded(crc64(data))
    assert s3_client.get_object(Bucket=bucket, Key="big/big.bin")["Body"].read() == data
    assert manifest_rows(result)["big.bin"]["verified"]


def test_multipart_threshold_decides_which_files_go_in_parts(tmp_path, bucket, s3_client, reports):
    src = tmp_path / "src"
    write(str(src / "six.bin"), os.urandom(6 * 2**20))
    export_data(str(src), f"s3://{bucket}/one", report_dir=reports)  # 16 MiB by default
    assert "-" not in s3_client.head_object(Bucket=bucket, Key="one/six.bin")["ETag"]
    result = export_data(
        str(src), f"s3://{bucket}/parts", multipart_threshold="5MiB", report_dir=reports
    )
    assert s3_client.head_object(Bucket=bucket, Key="parts/six.bin")["ETag"].endswith('-1"')
    assert manifest_rows(result)["six.bin"]["verified"]


def test_a_file_that_vanishes_after_listing_is_a_failed_row(tmp_path, bucket, s3_client, reports):
    from tasks.endpoints import transfer_endpoints
    from tasks.job import Job
    from tasks.listing import list_directory
    from tasks.manifest import ReportDir
    from tasks.partition import partition
    from tasks.plan import plan_export
    from tasks.steps import apply_step

    src = tmp_path / "src"
    for name in ("gone", "stays"):
        write(str(src / name), b"data")
    directory, prefix = transfer_endpoints("export", str(src), f"s3://{bucket}/v")
    items = plan_export(list_directory(directory, must_exist=True), [], prefix=prefix.prefix)
    os.remove(src / "gone")
    job = Job(task_id="t-vanish", direction="export", directory=directory, bucket=prefix)
    result = apply_step.fn(job, partition(items)[0], ReportDir(reports, "t-vanish"))
    assert result.counts == {"failed": 1, "ok": 1}
    rows = {r["path"]: r for r in ReportDir(reports, "t-vanish").read_parts().to_pylist()}
    assert rows["gone"]["reason"].startswith("vanished")
    assert [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]] == ["v/stays"]


def test_a_name_that_is_not_utf8_is_a_rejected_row_and_the_rest_is_copied(
    tmp_path, bucket, s3_client, reports
):
    import codecs

    src = tmp_path / "src"
    src.mkdir()
    root = os.fsencode(src)
    write(os.fsdecode(root + b"/caf\xe9.txt"), b"latin-1 name")  # a file
    write(os.fsdecode(root + b"/d\xff\\x/inner.txt"), b"in a latin-1 directory")  # a directory
    os.mkdir(root + b"/empty\xfe")  # an empty directory, which would become a marker
    write(str(src / "fine.txt"), b"fine")
    result = export_data(str(src), f"s3://{bucket}/u", report_dir=reports)
    rows = manifest_rows(result)
    rejected = {p: r for p, r in rows.items() if r["status"] == "rejected"}
    assert set(rejected) == {"caf\\xe9.txt", "d\\xff\\\\x/inner.txt", "empty\\xfe"}
    assert all(
        "not valid UTF-8" in r["reason"] and "\\xNN" in r["reason"] for r in rejected.values()
    )
    # the escaped form gives the original bytes back
    assert codecs.escape_decode(b"d\\xff\\\\x/inner.txt")[0] == b"d\xff\\x/inner.txt"
    assert rows["fine.txt"]["status"] == "ok"
    assert set(bucket_objects(s3_client, bucket, "u/")) == {"u/fine.txt"}
    assert not result.ok


def test_s3_additional_kwargs_reach_every_write(tmp_path, bucket, s3_client, reports):
    """Storage options s3fs applies to its requests apply to ferry's: server-side encryption on
    a single PUT and on a multipart upload; requester-pays on the way back."""
    from flows import import_data

    src = tmp_path / "src"
    src.mkdir()
    write(str(src / "small"), b"s" * 1000)
    write(str(src / "large"), os.urandom(17 * 2**20))  # above the multipart threshold
    sse = {"s3_additional_kwargs": {"ServerSideEncryption": "AES256"}}
    result = export_data(
        str(src), f"s3://{bucket}/sse", destination_options=sse, report_dir=reports
    )
    assert result.counts["ok"] == 2
    for key in ("sse/small", "sse/large"):
        assert s3_client.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"
    back = import_data(
        f"s3://{bucket}/sse",
        str(tmp_path / "back"),
        source_options={"requester_pays": True},
        report_dir=reports,
    )
    assert back.counts["ok"] == 2
    assert (tmp_path / "back" / "large").read_bytes() == (src / "large").read_bytes()


@pytest.mark.parametrize(
    ("option", "says"),
    [
        ("version_aware", "copies the current version"),
        ("max_concurrency", "use ferry's concurrency option"),
        ("fixed_upload_size", "sizes multipart parts itself"),
    ],
)
def test_a_storage_option_ferry_would_not_apply_is_refused(tmp_path, option, says):
    from tasks.endpoints import parse_endpoint
    from tasks.errors import UsageError

    with pytest.raises(UsageError) as refused:
        parse_endpoint("s3://b/p", {option: True})
    message = str(refused.value)
    assert message.startswith(f"storage option {option!r} does not apply to ferry's transfers: ")
    assert says in message and message.endswith(": s3://b/p")


def test_the_manifest_gives_each_reason_its_code(tmp_path, bucket, s3_endpoint, reports):
    """A rerun with one unchanged file, one name that cannot travel and one object the store
    keeps refusing: each row's reason comes with its code, and ok rows have none."""
    import pyarrow.parquet as pq

    from tasks.rows import Action, Kind, ReasonCode, Status

    src = tmp_path / "src"
    write(str(src / "same"), b"same", 1_600_000_000 * NS)
    write(str(src / "doomed"), b"v1", 1_600_000_000 * NS)
    export_data(str(src), f"s3://{bucket}/rc", report_dir=reports)
    write(str(src / "doomed"), b"version 2")  # a new size: copied again
    write(str(src / "back\\slash"), b"x")
    write(str(src / "new"), b"new")
    with FlakyProxy(s3_endpoint, {"/rc/doomed": -1}) as proxy:
        result = run_result(
            export_data,
            str(src),
            f"s3://{bucket}/rc",
            retries=1,
            report_dir=reports,
            destination_options={"endpoint_url": proxy.url},
        )
    manifest = pq.read_table(result.manifest).drop_columns(["mtime"]).to_pylist()
    rows = {r["path"]: r for r in manifest}
    assert {p: (r["status"], r["reason_code"]) for p, r in rows.items()} == {
        "same": ("skipped", "unchanged"),
        "back\\slash": ("rejected", "name_not_portable"),
        "doomed": ("failed", "store_error"),
        "new": ("ok", None),
    }
    assert rows["same"]["reason"] == "unchanged"
    assert rows["back\\slash"]["reason"] == "backslash in name"
    assert rows["doomed"]["reason"].startswith("ServiceUnavailable")
    # every value written is declared, and a reason always has its code
    for row in manifest:
        Status(row["status"]), Kind(row["kind"]), Action(row["action"])
        assert (row["reason"] is None) == (row["reason_code"] is None)
        assert row["reason_code"] is None or ReasonCode(row["reason_code"])
