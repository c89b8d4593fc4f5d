from __future__ import annotations

from tasks.metadata import mtime_metadata, restored_mtime, same_mtime

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


def test_same_mtime_tolerates_whole_seconds_only_when_asked():
    a = 10 * NS + 5
    assert same_mtime(a, 10 * NS + 400)
    assert not same_mtime(a, 10 * NS + 500_000)
    assert same_mtime(a, 10 * NS + 500_000, whole_seconds=True)
    assert not same_mtime(None, a)
