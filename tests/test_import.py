"""Import: bucket prefix → directory, each rule of the seed on a real S3 endpoint."""

from __future__ import annotations

import contextlib
import os
import threading

import pytest
from conftest import manifest_rows

from flows import EntriesFailed, import_data
from tasks.endpoints import transfer_endpoints
from tasks.job import Job
from tasks.listing import list_bucket
from tasks.manifest import ReportDir
from tasks.partition import partition
from tasks.plan import plan_import
from tasks.steps import apply_step

pytestmark = pytest.mark.usefixtures("prefect_api")

NS = 1_000_000_000


def put(client, bucket, key, body=b"", **metadata):
    client.put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata)


def test_import_restores_bytes_and_mtime_from_alihbr_sync_mtime(
    tmp_path, bucket, s3_client, reports
):
    put(s3_client, bucket, "ds/a/b.txt", b"payload", **{"alihbr-sync-mtime": "1600000000"})
    result = import_data(f"s3://{bucket}/ds", str(tmp_path / "dst"), report_dir=reports)
    path = tmp_path / "dst" / "a" / "b.txt"
    assert path.read_bytes() == b"payload"
    assert os.stat(path).st_mtime_ns == 1_600_000_000 * NS
    assert result.counts["ok"] == 1 and manifest_rows(result)["a/b.txt"]["verified"]


def test_import_mtime_falls_back_to_rclone_key_then_last_modified(
    tmp_path, bucket, s3_client, reports
):
    put(s3_client, bucket, "m/rclone", b"r", mtime="1500000000.5")
    put(s3_client, bucket, "m/plain", b"p")
    last_modified = s3_client.head_object(Bucket=bucket, Key="m/plain")["LastModified"]
    import_data(f"s3://{bucket}/m", str(tmp_path / "d"), report_dir=reports)
    assert os.stat(tmp_path / "d" / "rclone").st_mtime_ns == 1_500_000_000_500_000_000
    assert os.stat(tmp_path / "d" / "plain").st_mtime == last_modified.timestamp()


def test_import_turns_empty_slash_keys_into_directories(tmp_path, bucket, s3_client, reports):
    put(s3_client, bucket, "d/empty/")
    put(s3_client, bucket, "d/nested/deeper/")
    result = import_data(f"s3://{bucket}/d", str(tmp_path / "out"), report_dir=reports)
    assert (tmp_path / "out" / "empty").is_dir()
    assert (tmp_path / "out" / "nested" / "deeper").is_dir()
    assert result.counts["ok"] == 2


def test_import_copies_only_the_latest_version(tmp_path, s3_client, reports):
    bucket = "ferry-versioned"
    s3_client.create_bucket(Bucket=bucket)
    s3_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    put(s3_client, bucket, "v/file", b"old")
    put(s3_client, bucket, "v/file", b"newest")
    put(s3_client, bucket, "v/deleted", b"gone")
    s3_client.delete_object(Bucket=bucket, Key="v/deleted")
    result = import_data(f"s3://{bucket}/v", str(tmp_path / "out"), report_dir=reports)
    assert (tmp_path / "out" / "file").read_bytes() == b"newest"
    assert not (tmp_path / "out" / "deleted").exists()
    assert result.counts["ok"] == 1


HOSTILE = {
    "h/../escape.txt": "'..' segment",
    "h/a/../../escape2.txt": "'..' segment",
    "h/back\\slash": "backslash",
    "h/a//b": "empty path segment",
    "h//abs": "absolute path",
    "h/" + "n" * 256: "longer than 255 bytes",
    "h/" + "d/" * 511 + "xy": "longer than 1023 characters",  # 1024 characters
}


def test_import_rejects_hostile_keys_and_writes_nothing_outside(
    tmp_path, bucket, s3_client, reports
):
    for key in HOSTILE:
        put(s3_client, bucket, key, b"evil")
    put(s3_client, bucket, "h/good.txt", b"good")
    dest = tmp_path / "jail" / "dest"
    dest.mkdir(parents=True)
    result = import_data(f"s3://{bucket}/h", str(dest), report_dir=reports)
    rows = manifest_rows(result)
    assert result.counts == {"ok": 1, "skipped": 0, "rejected": len(HOSTILE), "failed": 0}
    for key, reason in HOSTILE.items():
        row = next(r for r in rows.values() if r["source"] == f"s3://{bucket}/{key}")
        assert row["status"] == "rejected" and reason in row["reason"], key
        assert row["reason_code"] == "name_not_portable", key
    assert sorted(os.listdir(tmp_path / "jail")) == ["dest"]
    assert sorted(os.listdir(dest)) == ["good.txt"]
    assert result.exit_code == 1


def test_import_never_writes_through_a_symlink_in_the_destination(
    tmp_path, bucket, s3_client, reports
):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside, dest / "evil")
    put(s3_client, bucket, "s/evil/passwd", b"owned")
    put(s3_client, bucket, "s/fine", b"ok")
    result = import_data(f"s3://{bucket}/s", str(dest), report_dir=reports)
    assert os.listdir(outside) == []
    row = manifest_rows(result)["evil/passwd"]
    assert row["status"] == "rejected" and "symbolic link" in row["reason"]
    assert row["reason_code"] == "outside_tree"
    assert (dest / "fine").read_bytes() == b"ok"


def test_a_failing_object_does_not_stop_the_others(tmp_path, bucket, s3_client, reports):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "blocked").write_bytes(b"a file where a directory must go")
    put(s3_client, bucket, "f/blocked/inner.txt", b"x")
    for i in range(20):
        put(s3_client, bucket, f"f/ok/{i}.txt", b"y")
    with pytest.raises(EntriesFailed) as failed:  # the flow run ends Failed
        import_data(f"s3://{bucket}/f", str(dest), report_dir=reports)
    result = failed.value.result
    assert result.counts["ok"] == 20 and result.counts["failed"] == 1
    assert str(failed.value) == f"21 entries: 1 failed, 20 ok; manifest: {result.manifest}"
    row = manifest_rows(result)["blocked/inner.txt"]
    assert row["status"] == "failed" and "in the way" in row["reason"]
    assert row["reason_code"] == "in_the_way"
    assert (dest / "blocked").read_bytes() == b"a file where a directory must go"


def test_import_rerun_copies_only_missing_or_changed(tmp_path, bucket, s3_client, reports):
    for i in range(4):
        put(s3_client, bucket, f"r/{i}", b"v1", **{"alihbr-sync-mtime": "1600000000"})
    dest = tmp_path / "dest"
    import_data(f"s3://{bucket}/r", str(dest), report_dir=reports)
    put(s3_client, bucket, "r/1", b"v2", **{"alihbr-sync-mtime": "1700000000"})  # same size
    os.remove(dest / "2")  # as if a crash lost it
    (dest / "3").write_bytes(b"local edit")
    again = import_data(f"s3://{bucket}/r", str(dest), report_dir=reports)
    rows = manifest_rows(again)
    assert {p for p, r in rows.items() if r["status"] == "ok"} == {"1", "2", "3"}
    assert (rows["0"]["status"], rows["0"]["reason_code"]) == ("skipped", "unchanged")
    assert (dest / "1").read_bytes() == b"v2" and (dest / "3").read_bytes() == b"v1"


def test_an_object_changed_mid_copy_leaves_no_partial_file(tmp_path, bucket, s3_client, reports):
    """Every GET is conditional on the listed ETag: a changed object fails, nothing is left."""
    put(s3_client, bucket, "c/data", b"original")
    directory, prefix = transfer_endpoints("import", f"s3://{bucket}/c", str(tmp_path / "dst"))
    os.makedirs(directory.root)
    items = plan_import(list_bucket(prefix), [])
    put(s3_client, bucket, "c/data", b"replaced!")
    job = Job(task_id="t-changed", direction="import", directory=directory, bucket=prefix)
    result = apply_step.fn(job, partition(items)[0], ReportDir(reports, "t-changed"))
    assert result.counts == {"failed": 1}
    row = ReportDir(reports, "t-changed").read_parts().to_pylist()[0]
    assert row["reason_code"] == "object_changed"  # the GET's precondition failed
    assert os.listdir(directory.root) == []  # no final name, no temporary file


def test_no_partial_file_ever_appears_under_its_final_name(tmp_path, bucket, s3_client, reports):
    data = os.urandom(48 * 2**20)
    s3_client.put_object(Bucket=bucket, Key="big/blob", Body=data)
    final = tmp_path / "dst" / "blob"
    seen_sizes = set()
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            with contextlib.suppress(FileNotFoundError):
                seen_sizes.add(os.stat(final).st_size)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = import_data(f"s3://{bucket}/big", str(tmp_path / "dst"), report_dir=reports)
    finally:
        stop.set()
        watcher.join()
    assert result.counts["ok"] == 1
    assert seen_sizes <= {len(data)}
    assert final.read_bytes() == data
    assert [n for n in os.listdir(final.parent) if n.startswith(".ferry-")] == []


def test_import_of_an_empty_prefix_stops_unless_allowed(tmp_path, bucket, reports):
    from tasks.errors import SourceMissing

    with pytest.raises(SourceMissing, match="no object under this prefix"):
        import_data(f"s3://{bucket}/nothing", str(tmp_path / "d"), report_dir=reports)
    assert not (tmp_path / "d").exists()
    result = import_data(
        f"s3://{bucket}/nothing", str(tmp_path / "d"), report_dir=reports, allow_empty=True
    )
    assert result.ok and sum(result.counts.values()) == 0


def test_an_archived_object_is_rejected_with_its_code(tmp_path, bucket, s3_client, reports):
    s3_client.put_object(Bucket=bucket, Key="g/cold", Body=b"frozen", StorageClass="GLACIER")
    put(s3_client, bucket, "g/warm", b"fine")
    result = import_data(f"s3://{bucket}/g", str(tmp_path / "dst"), report_dir=reports)
    rows = manifest_rows(result)
    assert (rows["cold"]["status"], rows["cold"]["reason_code"]) == ("rejected", "archived")
    assert "restore it first" in rows["cold"]["reason"]
    assert rows["warm"]["status"] == "ok"


def test_a_dry_run_import_writes_nothing_at_the_destination_not_even_its_records(
    tmp_path, bucket, s3_client, reports
):
    """The check step of a dry run asks the store, but records nothing on the files (no xattr)
    and creates no directory."""
    import os

    from tasks.listing import STATE_XATTR
    from tasks.metadata import mtime_metadata

    dest = tmp_path / "d"
    (dest / "a").mkdir(parents=True)
    (dest / "a" / "same").write_bytes(b"abc")
    mtime = os.stat(dest / "a" / "same").st_mtime_ns
    s3_client.put_object(
        Bucket=bucket, Key="dr/a/same", Body=b"abc", Metadata=mtime_metadata(mtime)
    )
    s3_client.put_object(Bucket=bucket, Key="dr/b/new", Body=b"n")
    result = import_data(f"s3://{bucket}/dr", str(dest), dry_run=True, report_dir=reports)
    rows = manifest_rows(result)
    assert rows["a/same"]["reason_code"] == "unchanged"  # the check ran
    assert rows["b/new"]["reason_code"] == "dry_run"
    assert STATE_XATTR not in os.listxattr(dest / "a" / "same")
    assert sorted(os.listdir(dest)) == ["a"]
