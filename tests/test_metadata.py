from __future__ import annotations

from tasks.metadata import mtime_metadata, restored_mtime
from tasks.sameness import difference, same_mtime

NS = 1_000_000_000


def test_mtime_metadata_writes_both_keys():
    meta = mtime_metadata(1_716_487_553 * NS + 123_456_789)
    assert meta == {"alihbr-sync-mtime": "1716487553", "mtime": "1716487553.123456789"}


def test_restore_prefers_alihbr_sync_mtime_over_rclone_mtime():
    meta = {"alihbr-sync-mtime": "1700000000", "mtime": "1600000000.5"}
    assert restored_mtime(meta, 1) == (1_700_000_000 * NS, "alihbr-sync-mtime")


def test_restore_keeps_nanoseconds_when_both_keys_agree():
    meta = mtime_metadata(1_716_487_553 * NS + 123_456_789)
    assert restored_mtime(meta, 1)[0] == 1_716_487_553 * NS + 123_456_789


def test_restore_falls_back_to_rclone_mtime_then_last_modified():
    assert restored_mtime({"mtime": "1600000000.25"}, 1) == (1_600_000_000_250_000_000, "mtime")
    assert restored_mtime({}, 42) == (42, "LastModified")
    assert restored_mtime({"alihbr-sync-mtime": "garbage"}, 42) == (42, "LastModified")


def test_same_mtime_compares_at_the_precision_each_side_keeps():
    a = 10 * NS + 5
    assert same_mtime(a, 10 * NS + 400)  # to the microsecond
    assert not same_mtime(a, 10 * NS + 500_000)
    # a side with whole seconds only (alihbr-sync-mtime) is compared to the second
    assert same_mtime(10 * NS, 10 * NS + 500_000_000)
    assert not same_mtime(10 * NS, 11 * NS + 5)
    assert not same_mtime(None, a)


def test_one_rule_says_whether_it_is_the_same_file():
    same = {"size": 4, "mtime_ns": 10 * NS + 5, "found_size": 4, "found_mtime_ns": 10 * NS + 5}
    assert difference(**same) is None
    assert difference(**{**same, "found_size": 5}) == "size differs: 5 at destination, 4 expected"
    assert difference(**{**same, "found_mtime_ns": 12 * NS + 5}) == "mtime differs"
    assert difference(**{**same, "mtime_ns": 10 * NS}) is None  # whole seconds: to the second


def test_verify_after_an_import_skipped_by_the_whole_second_rule_passes(
    tmp_path, bucket, s3_client, reports, prefect_api
):
    """A file whose mtime has a fraction, against an object carrying only alihbr-sync-mtime
    (whole seconds): import skips it as unchanged, and its own verification agrees (it used to
    report "mtime differs at destination")."""
    import os

    from flows import import_data

    dest = tmp_path / "dst"
    dest.mkdir()
    (dest / "f").write_bytes(b"data")
    os.utime(dest / "f", ns=(1_700_000_000_600_000_000, 1_700_000_000_600_000_000))
    s3_client.put_object(
        Bucket=bucket, Key="w/f", Body=b"data", Metadata={"alihbr-sync-mtime": "1700000000"}
    )
    result = import_data(f"s3://{bucket}/w", str(dest), report_dir=reports)
    import pandas as pd

    (row,) = pd.read_parquet(result.manifest).to_dict("records")
    assert (row["status"], row["reason"], row["verified"]) == ("skipped", "unchanged", True)
