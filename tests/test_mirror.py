"""Mirror, safely: `delete_extra` deletes what the destination holds and the source does not,
within the prefix or directory only, never what include/exclude leave out, never when a copy
failed or more would go than `max_delete` allows; each deletion is a manifest row `delete`."""

from __future__ import annotations

import os

import pytest
from conftest import manifest_rows, run_result, write_file
from flaky_proxy import FlakyProxy
from pydantic import ValidationError

from flows import export_data, import_data
from tasks.options import Options

T = 1_700_000_000 * 10**9


def _keys(s3_client, bucket: str) -> set[str]:
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def _source(tmp_path):
    src = tmp_path / "src"
    write_file(str(src / "keep"), b"keep", T)
    write_file(str(src / "d" / "inner"), b"inner", T)
    return src


def _stale(s3_client, bucket: str) -> None:
    """What an older export left: three objects and a marker no longer in the source, and
    objects beside the prefix that a mirror of m/ must never touch."""
    for key in ["m/gone", "m/d/gone-too", "m/old/deep/x", "m/empty/", "m/notes.tmp"]:
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"" if key.endswith("/") else b"old")
    for key in ["m-sibling/x", "mx", "other/m/gone"]:
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"not mine")


def test_export_deletes_the_objects_the_source_does_not_hold_and_nothing_else(
    tmp_path, s3_client, bucket, reports
):
    src = _source(tmp_path)
    _stale(s3_client, bucket)
    result = export_data(
        str(src), f"s3://{bucket}/m", delete_extra=True, exclude=["*.tmp"], report_dir=reports
    )
    assert _keys(s3_client, bucket) == {
        "m/keep", "m/d/inner", "m/notes.tmp",  # excluded: kept
        "m-sibling/x", "mx", "other/m/gone",  # outside the prefix: never touched
    }  # fmt: skip
    rows = manifest_rows(result)
    deleted = {p: r for p, r in rows.items() if r["action"] == "delete"}
    assert set(deleted) == {"gone", "d/gone-too", "old/deep/x", "empty"}
    assert all(r["status"] == "ok" for r in deleted.values())
    assert deleted["empty"]["kind"] == "dir"
    assert deleted["gone"]["destination"] == f"s3://{bucket}/m/gone"
    assert result.counts["failed"] == 0

    again = export_data(
        str(src), f"s3://{bucket}/m", delete_extra=True, exclude=["*.tmp"], report_dir=reports
    )
    assert not [r for r in manifest_rows(again).values() if r["action"] == "delete"]


def test_without_delete_extra_nothing_is_deleted(tmp_path, s3_client, bucket, reports):
    src = _source(tmp_path)
    _stale(s3_client, bucket)
    export_data(str(src), f"s3://{bucket}/m", report_dir=reports)
    assert {"m/gone", "m/d/gone-too", "m/old/deep/x", "m/empty/"} <= _keys(s3_client, bucket)


def test_a_dry_run_lists_what_would_go_and_deletes_nothing(tmp_path, s3_client, bucket, reports):
    src = _source(tmp_path)
    _stale(s3_client, bucket)
    before = _keys(s3_client, bucket)
    result = export_data(
        str(src), f"s3://{bucket}/m", delete_extra=True, dry_run=True, report_dir=reports
    )
    assert _keys(s3_client, bucket) == before
    would = {p: r for p, r in manifest_rows(result).items() if r["action"] == "delete"}
    assert set(would) == {"gone", "d/gone-too", "old/deep/x", "empty", "notes.tmp"}
    assert {(r["status"], r["reason_code"]) for r in would.values()} == {("skipped", "dry_run")}
    assert {r["reason"] for r in would.values()} == {"dry run: would delete"}


@pytest.mark.parametrize(("cap", "deleted"), [("4", False), ("5", True), ("50%", False),
                                              ("100%", True)])  # fmt: skip
def test_over_max_delete_nothing_is_deleted_and_the_rows_say_why(
    tmp_path, s3_client, bucket, reports, cap, deleted
):
    """5 deletions; the destination holds 5 entries when it is listed (100 %)."""
    src = _source(tmp_path)
    _stale(s3_client, bucket)
    result = export_data(
        str(src), f"s3://{bucket}/m", delete_extra=True, max_delete=cap, report_dir=reports
    )
    rows = [r for r in manifest_rows(result).values() if r["action"] == "delete"]
    assert len(rows) == 5
    if deleted:
        assert {r["status"] for r in rows} == {"ok"}
        assert "m/gone" not in _keys(s3_client, bucket)
        return
    assert "m/gone" in _keys(s3_client, bucket) and "m/empty/" in _keys(s3_client, bucket)
    assert {(r["status"], r["reason_code"]) for r in rows} == {("skipped", "over_max_delete")}
    assert rows[0]["reason"].startswith(f"not deleted: 5 deletions are over max_delete {cap}")


def test_a_failed_copy_stops_every_deletion(tmp_path, s3_client, bucket, reports):
    src = _source(tmp_path)
    write_file(str(src / "doomed"), b"never lands", T)
    _stale(s3_client, bucket)
    with FlakyProxy(os.environ["AWS_ENDPOINT_URL"], {"/m/doomed": -1}) as proxy:
        result = run_result(
            export_data,
            str(src),
            f"s3://{bucket}/m",
            delete_extra=True,
            retries=1,
            destination_options={"endpoint_url": proxy.url},
            report_dir=reports,
        )
    rows = manifest_rows(result)
    assert rows["doomed"]["status"] == "failed"
    assert "m/gone" in _keys(s3_client, bucket)
    kept = [r for r in rows.values() if r["action"] == "delete"]
    assert {r["reason_code"] for r in kept} == {"copy_failed"}
    assert kept[0]["reason"] == "not deleted: 1 entries failed to copy"


def test_import_deletes_the_files_the_bucket_does_not_hold_within_the_directory(
    tmp_path, s3_client, bucket, reports
):
    for key in ["i/keep", "i/d/inner", "i/e/"]:
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"" if key.endswith("/") else b"x")
    dst, outside = tmp_path / "dst", tmp_path / "outside"
    write_file(str(outside / "precious"), b"precious", T)
    write_file(str(dst / "stale"), b"stale", T)
    write_file(str(dst / "d" / "stale-too"), b"stale", T)
    write_file(str(dst / "gone" / "deep" / "x"), b"x", T)  # a whole tree the bucket lost
    write_file(str(dst / "kept" / "notes.tmp"), b"excluded", T)  # its directory stays
    os.symlink(outside, dst / "link-out")  # a link: deleted as a link, never followed
    result = import_data(
        f"s3://{bucket}/i", str(dst), delete_extra=True, exclude=["*.tmp"], report_dir=reports
    )
    listed = sorted(
        os.path.relpath(os.path.join(base, n), dst)
        for base, dirs, files in os.walk(dst)
        for n in dirs + files
    )
    assert listed == ["d", "d/inner", "e", "keep", "kept", "kept/notes.tmp"]
    assert (outside / "precious").read_bytes() == b"precious"
    rows = manifest_rows(result)
    deleted = {p: r["status"] for p, r in rows.items() if r["action"] == "delete"}
    assert deleted == {
        "stale": "ok", "d/stale-too": "ok", "gone/deep/x": "ok", "gone/deep": "ok",
        "gone": "ok", "link-out": "ok", "kept": "skipped",
    }  # fmt: skip
    assert rows["kept"]["reason_code"] == "not_empty"
    assert result.counts["failed"] == 0


def test_a_file_rewritten_after_it_was_listed_is_kept(tmp_path, s3_client, bucket, reports):
    """The import's destination changes between its listing and the deletions (a file written
    again while the copies run): it is kept, and its row says so."""
    s3_client.put_object(Bucket=bucket, Key="r/keep", Body=b"x")
    dst = tmp_path / "dst"
    write_file(str(dst / "busy"), b"old", T)

    def rewrite_during_the_copy(method: str, path: str) -> None:
        if method == "GET" and path.startswith(f"/{bucket}/r/keep"):
            write_file(str(dst / "busy"), b"rewritten", T + 1)

    with FlakyProxy(os.environ["AWS_ENDPOINT_URL"], {}, on_request=rewrite_during_the_copy) as p:
        result = import_data(
            f"s3://{bucket}/r",
            str(dst),
            delete_extra=True,
            source_options={"endpoint_url": p.url},
            report_dir=reports,
        )
    assert (dst / "busy").read_bytes() == b"rewritten"
    row = manifest_rows(result)["busy"]
    assert (row["action"], row["status"], row["reason_code"]) == (
        "delete", "skipped", "changed_since_listed",
    )  # fmt: skip


@pytest.mark.parametrize("bad", ["many", "-1", "120%", "1.5"])
def test_a_max_delete_that_is_neither_a_count_nor_a_percentage_is_refused(bad):
    with pytest.raises(ValidationError, match="max_delete (takes a count|must be a count)"):
        Options(delete_extra=True, max_delete=bad)
    assert Options(max_delete=" 7 ").max_delete == "7"
    assert Options(max_delete="12.5%").max_delete == "12.5%"
    assert Options(max_delete=0).max_delete == "0"


@pytest.mark.usefixtures("prefect_api")
def test_the_command_line_mirrors_and_reports_a_cap(tmp_path, s3_client, bucket, capsys):
    from flows.cli import main

    src = _source(tmp_path)
    _stale(s3_client, bucket)
    command = ["export", str(src), f"s3://{bucket}/m", "--delete-extra"]
    command += ["--report-dir", str(tmp_path / "r")]
    assert main([*command, "--max-delete", "2"]) == 0
    out, err = capsys.readouterr()
    assert "not deleted: 5 deletions are over max_delete 2" in out + err
    assert "m/gone" in _keys(s3_client, bucket)

    assert main([*command, "--max-delete", "lots"]) == 2
    out, err = capsys.readouterr()
    assert "max_delete takes a count (100) or a percentage (10%), not 'lots'" in err

    assert main(command) == 0
    out, err = capsys.readouterr()
    assert "5 deleted" in out
    assert "m/gone" not in _keys(s3_client, bucket)
