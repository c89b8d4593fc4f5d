"""convert_to_hns on a real bucket: eligibility, the rules, metadata only, atomic, irreversible."""

from __future__ import annotations

import re

import fsspec
import pytest
from conftest import manifest_rows

from flows import convert_to_hns
from hns.convert import ConversionRefused, NotEligible, changes, list_objects
from hns.plan import SourceObject
from hns.store import Store
from tasks.endpoints import parse_endpoint

pytestmark = pytest.mark.usefixtures("prefect_api")


def listing(client, bucket):
    """Every object with its ETag and LastModified."""
    objects = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return sorted((o["Key"], o["ETag"], o["LastModified"], o["Size"]) for o in objects)


@pytest.fixture
def metadata(tmp_path):
    return f"sqlite:///{tmp_path / 'ns.db'}"


def fill(client, bucket, keys: dict[str, bytes]):
    for key, body in keys.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)


def test_conversion_applies_the_seed_rules_and_moves_no_data(bucket, s3_client, metadata, reports):
    fill(
        s3_client,
        bucket,
        {
            "a/b": b"file that a directory will push aside",
            "a/b/c": b"in the directory",
            "d/": b"",
            "e/": b"data under a slash key",
            "plain.txt": b"kept",
        },
    )
    before = listing(s3_client, bucket)
    result = convert_to_hns(f"s3://{bucket}", metadata=metadata, report_dir=reports)
    assert listing(s3_client, bucket) == before  # metadata only
    rows = manifest_rows(result)
    ts = re.search(r"\.file\.(\d+)$", rows["a/b"]["new_path"]).group(1)
    assert rows["a/b"]["new_path"] == f"a/b.file.{ts}" and rows["a/b"]["status"] == "renamed"
    assert rows["e/"]["new_path"] == f"e.slash.{ts}"
    assert rows["d/"]["status"] == "directory"
    assert rows["plain.txt"]["status"] == "ok" and rows["plain.txt"]["verified"]
    assert result.counts == {
        "ok": 2,
        "renamed": 2,
        "directory": 1,
        "skipped": 0,
        "rejected": 0,
        "failed": 0,
    }
    fs = fsspec.filesystem("hns", metadata=metadata)
    assert fs.cat(f"{bucket}/a/b.file.{ts}") == b"file that a directory will push aside"
    assert fs.cat(f"{bucket}/e.slash.{ts}") == b"data under a slash key"
    assert fs.isdir(f"{bucket}/d") and fs.isdir(f"{bucket}/a/b")


def test_check_only_reports_renames_and_changes_nothing(bucket, s3_client, metadata, reports):
    fill(s3_client, bucket, {"x": b"1", "x/y": b"2"})
    result = convert_to_hns(
        f"s3://{bucket}", metadata=metadata, report_dir=reports, check_only=True
    )
    assert result.dry_run and result.counts["renamed"] == 1
    assert manifest_rows(result)["x"]["new_path"].startswith("x.file.")
    with Store(metadata).begin() as conn:
        assert Store(metadata).active(conn, bucket) is None
    # and a real conversion can still run
    assert convert_to_hns(f"s3://{bucket}", metadata=metadata, report_dir=reports).ok


def test_ineligible_bucket_is_refused_with_every_reason(s3_client, metadata, reports):
    bucket = "ferry-ineligible"
    s3_client.create_bucket(Bucket=bucket)
    s3_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    s3_client.put_object(Bucket=bucket, Key="cold/archived", Body=b"1", StorageClass="GLACIER")
    s3_client.put_object(Bucket=bucket, Key="tagged", Body=b"1", Tagging="team=ml")
    with pytest.raises(NotEligible) as caught:
        convert_to_hns(f"s3://{bucket}", metadata=metadata, report_dir=reports)
    message = str(caught.value)
    assert "versioning is suspended" in message
    assert "archive storage class: 'cold/archived'" in message
    assert "carry tags: 'tagged'" in message
    with Store(metadata).begin() as conn:
        assert Store(metadata).active(conn, bucket) is None


def test_converting_twice_is_refused_with_the_date(bucket, s3_client, metadata, reports):
    fill(s3_client, bucket, {"k": b"1"})
    convert_to_hns(f"s3://{bucket}", metadata=metadata, report_dir=reports)
    with pytest.raises(ConversionRefused, match=r"already converted on \d{4}-\d\d-\d\dT"):
        convert_to_hns(f"s3://{bucket}", metadata=metadata, report_dir=reports)


def test_unresolvable_conflict_stops_before_commit(bucket, s3_client, metadata, reports):
    import time

    ts = int(time.time())
    # whichever second the conversion starts in (within 10 minutes, however busy the machine),
    # its `.slash.<ts>` name is already taken
    keys = {f"a/b.slash.{t}": b"x" for t in range(ts, ts + 600)}
    keys["a/b/"] = b"data"
    fill(s3_client, bucket, keys)
    with pytest.raises(ConversionRefused, match="cannot be placed.*'a/b/'"):
        convert_to_hns(f"s3://{bucket}", metadata=metadata, report_dir=reports)
    with Store(metadata).begin() as conn:
        assert Store(metadata).active(conn, bucket) is None


def test_a_write_during_the_conversion_discards_the_namespace(
    bucket, s3_client, s3_endpoint, metadata, reports
):
    """Someone writes to the bucket after the conversion listed it (here: at its first tag
    look-up, which comes after the listing and before the namespace is built): the second
    listing sees it, the namespace is discarded, nothing is activated."""
    import threading

    from flaky_proxy import FlakyProxy

    fill(s3_client, bucket, {"a/x": b"1", "b": b"2"})
    wrote = threading.Event()

    def write_once(method: str, path: str) -> None:
        if "tagging" in path and not wrote.is_set():
            wrote.set()
            s3_client.put_object(Bucket=bucket, Key="late-arrival", Body=b"new")

    with (
        FlakyProxy(s3_endpoint, {}, on_request=write_once) as proxy,
        pytest.raises(
            ConversionRefused, match=r"changed during the conversion: 'late-arrival \(created\)'"
        ),
    ):
        convert_to_hns(
            f"s3://{bucket}",
            metadata=metadata,
            storage_options={"endpoint_url": proxy.url},
            report_dir=reports,
        )
    assert wrote.is_set()
    store = Store(metadata)
    with store.begin() as conn:
        assert store.active(conn, bucket) is None
    # discarded, not left half-built: the bucket converts once the writer is done
    result = convert_to_hns(f"s3://{bucket}", metadata=metadata, report_dir=reports)
    assert result.counts["failed"] == 0


def test_writes_during_conversion_are_detected():
    before = [SourceObject("a", 1, "e1", 1), SourceObject("b", 1, "e2", 1)]
    after = [SourceObject("a", 1, "e9", 2), SourceObject("c", 1, "e3", 1)]
    assert changes(before, after) == ["a (changed)", "b (deleted)", "c (created)"]


def test_listing_keeps_keys_in_order_with_markers(bucket, s3_client):
    fill(s3_client, bucket, {"b": b"1", "a/": b"", "a/x": b"1", "a": b"1"})
    prefix = parse_endpoint(f"s3://{bucket}")
    keys = [o.key for o in prefix.run(list_objects, prefix)]
    assert keys == ["a", "a/", "a/x", "b"]


def test_conversion_rows_give_each_reason_its_code():
    """The rows `manifest_rows` builds from a plan (and the verification after the commit)."""
    from hns.convert import manifest_rows as conversion_rows
    from hns.plan import plan_conversion
    from tasks.manifest import table
    from tasks.rows import ReasonCode as R

    plan = plan_conversion(
        [
            SourceObject("a/b", 1),
            SourceObject("a/b/c", 1),
            SourceObject("d/", 0),
            SourceObject("e/", 4),
            SourceObject("x//y", 1),
            SourceObject("kept", 1),
        ],
        ts=7,
    )
    bucket = parse_endpoint("s3://b", {})
    rows = {r.path: r for r in conversion_rows(bucket, plan, {"kept": "reachable at 0 paths"})}
    assert {p: (r.status, r.rule, r.reason_code) for p, r in rows.items()} == {
        "a/b": ("renamed", "file-then-directory", R.FILE_DIRECTORY_CLASH),
        "a/b/c": ("ok", "kept", None),
        "d/": ("directory", "directory", None),
        "e/": ("renamed", "slash", R.MARKER_WITH_DATA),
        "x//y": ("rejected", "invalid-name", R.NAME_NOT_PORTABLE),
        "kept": ("failed", "kept", R.VERIFY_NAMESPACE),
    }
    assert rows["kept"].reason == "verification failed: reachable at 0 paths"
    assert rows["d/"].kind == "dir" and rows["a/b"].destination == "hns://b/a/b.file.7"
    assert table(rows.values()).column("reason_code").null_count == 2
