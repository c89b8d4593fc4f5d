"""Listing a bucket prefix: page by page, then in parallel by sub-prefix, with the same result."""

from __future__ import annotations

import os

from tasks.endpoints import parse_endpoint
from tasks.listing import Filter, list_directory, list_prefix


def test_fanned_out_listing_finds_exactly_what_a_flat_one_does(bucket, s3_client):
    keys = [f"p/{d}/{i}" for d in ("a", "b", "c") for i in range(7)]
    keys += ["p/top1", "p/top2", "p/b/deep/er/x", "p/c/", "p/zz/"]
    for key in keys:
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"" if key.endswith("/") else b"1")
    s3_client.put_object(Bucket=bucket, Key="other/x", Body=b"1")
    prefix = parse_endpoint(f"s3://{bucket}/p")

    flat = prefix.run(lambda client: list_prefix(client, prefix, flat_pages=100))
    fanned = prefix.run(lambda client: list_prefix(client, prefix, flat_pages=1, page_size=3))
    assert fanned == flat
    assert len(flat) == len(keys)
    assert {e.path for e in flat if e.kind == "dir"} == {"c", "zz"}


def test_directory_listing_never_follows_links(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f").write_bytes(b"1")
    os.symlink(tmp_path / "real", tmp_path / "link")
    entries = {e.path: e for e in list_directory(parse_endpoint(str(tmp_path)), must_exist=True)}
    assert entries["link"].kind == "symlink" and entries["link"].link_target == str(
        tmp_path / "real"
    )
    assert "link/f" not in entries


def test_filter_rejects_empty_patterns():
    import pytest

    from tasks.errors import UsageError

    with pytest.raises(UsageError, match="empty include/exclude pattern"):
        Filter([""], None)


def test_a_link_swapped_for_a_directory_after_its_stat_is_listed_as_what_it_became(tmp_path):
    """The stat said "link"; by the readlink it is a directory (readlink fails with EINVAL, as
    another process swapping them makes it do): listing takes it as a directory, not a crash."""
    import os

    from tasks.listing import _as_link

    path = tmp_path / "x"
    path.symlink_to(tmp_path)
    st = os.stat(path, follow_symlinks=False)
    assert _as_link(str(path), st)[1:] == ("symlink", str(tmp_path))
    path.unlink()
    path.mkdir()
    found, kind, target = _as_link(str(path), st)
    assert (kind, target) == ("dir", None) and found.st_ino == os.stat(path).st_ino
