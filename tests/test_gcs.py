"""Google Cloud Storage (`gs://`) through the same pipeline as S3 and Azure.

obstore's GCS client carries every request (`tasks.engine`), against GCS's XML API on loopback
(`tests/gcs_xml.py`): the files' bytes and mtimes make the round trip, a large file goes up in
parts and comes back in byte ranges, a rerun skips what is unchanged, an object overwritten
between listing and reading is detected, and a missing bucket or a bad option is one clear line.
"""

from __future__ import annotations

import os

import pytest
from conftest import manifest_rows, run_result, store_contents, write_file
from obstore.store import GCSStore

from flows import export_data, import_data, verify_data
from tasks.endpoints import parse_endpoint
from tasks.errors import SourceMissing, UsageError
from tasks.preflight import check_bucket


def store_of(name: str, options: dict) -> GCSStore:
    return GCSStore(name, client_options={"allow_http": True}, **options)


def objects(name: str, options: dict) -> dict[str, dict]:
    return store_contents(store_of(name, options))


def test_export_import_verify_and_rerun_through_gcs(tmp_path, gcs_bucket, reports):
    name, options = gcs_bucket
    src, back = tmp_path / "src", tmp_path / "back"
    large = os.urandom(40 * 2**20)  # uploaded in parts, read back in byte ranges
    write_file(str(src / "a.txt"), b"hello gcs", 1_700_000_000_123_456_789)
    write_file(str(src / "deep/er/b.bin"), large, 1_600_000_000_000_000_000)
    write_file(str(src / "unicode é ü.txt"), b"names travel as they are", 1_650_000_000_5 * 10**8)

    result = export_data(
        str(src), f"gs://{name}/set", destination_options=options, report_dir=reports
    )
    rows = manifest_rows(result)
    assert result.counts == {"ok": 3, "skipped": 0, "rejected": 0, "failed": 0}
    assert rows["a.txt"]["destination"] == f"gs://{name}/set/a.txt"
    stored = objects(name, options)
    assert set(stored) == {"set/a.txt", "set/deep/er/b.bin", "set/unicode é ü.txt"}
    assert stored["set/deep/er/b.bin"]["size"] == len(large)
    assert stored["set/a.txt"]["attributes"]["mtime"] == "1700000000.123456789"

    got = import_data(f"gs://{name}/set", str(back), source_options=options, report_dir=reports)
    assert got.counts == {"ok": 3, "skipped": 0, "rejected": 0, "failed": 0}
    assert (back / "deep/er/b.bin").read_bytes() == large
    for relative in ("a.txt", "deep/er/b.bin", "unicode é ü.txt"):
        assert (back / relative).read_bytes() == (src / relative).read_bytes()
        assert os.stat(back / relative).st_mtime_ns == os.stat(src / relative).st_mtime_ns

    again = export_data(
        str(src), f"gs://{name}/set", destination_options=options, report_dir=reports
    )
    assert again.counts == {"ok": 0, "skipped": 3, "rejected": 0, "failed": 0}
    compared = verify_data(
        str(src), f"gs://{name}/set", destination_options=options, report_dir=reports
    )
    assert compared.ok and compared.counts["ok"] == 3
    write_file(str(src / "a.txt"), b"HELLO gcs", 1_700_000_000_123_456_789)  # same size and mtime
    differs = run_result(
        verify_data,
        str(src),
        f"gs://{name}/set",
        destination_options=options,
        verify="checksum",
        report_dir=reports,
    )
    assert differs.counts == {"ok": 2, "skipped": 0, "rejected": 0, "failed": 1}
    assert manifest_rows(differs)["a.txt"]["reason"] == "content differs"


def test_a_changed_object_is_copied_again(tmp_path, gcs_bucket, reports):
    name, options = gcs_bucket
    src = tmp_path / "src"
    write_file(str(src / "f"), b"one", 1_700_000_000_000_000_000)
    export_data(str(src), f"gs://{name}/p", destination_options=options, report_dir=reports)
    write_file(str(src / "f"), b"two", 1_700_000_001_000_000_000)  # same size, newer mtime
    result = export_data(
        str(src), f"gs://{name}/p", destination_options=options, report_dir=reports
    )
    assert result.counts["ok"] == 1
    assert bytes(store_of(name, options).get("p/f").bytes()) == b"two"


def test_gcs_endpoint_errors_are_one_clear_line(gcs_bucket):
    name, options = gcs_bucket
    with pytest.raises(SourceMissing, match="^bucket does not exist: gs://no-such-bucket/x/$"):
        check_bucket(parse_endpoint("gs://no-such-bucket/x", options))
    with pytest.raises(SourceMissing, match="no object under this prefix"):
        check_bucket(parse_endpoint(f"gs://{name}/empty", options), must_hold_objects=True)
    with pytest.raises(UsageError, match=r"^bad storage options for gs:// \(.*'bogus'"):
        parse_endpoint(f"gs://{name}/data", {**options, "bogus": "1"})


def test_an_empty_directory_is_a_rejected_row_and_a_stale_etag_is_refused(
    tmp_path, gcs_bucket, reports
):
    import asyncio

    from botocore.exceptions import ClientError

    from tasks.engine import ObstoreData, native_store

    name, options = gcs_bucket
    src = tmp_path / "src"
    write_file(str(src / "kept"), b"v1", 1_700_000_000_000_000_000)
    os.mkdir(src / "empty")
    result = export_data(
        str(src), f"gs://{name}/e", destination_options=options, report_dir=reports
    )
    assert result.counts == {"ok": 1, "skipped": 0, "rejected": 1, "failed": 0}
    row = manifest_rows(result)["empty"]
    assert row["reason_code"] == "name_not_portable"
    assert "an empty directory cannot be kept on gs://" in row["reason"]

    data = ObstoreData(native_store("gs", name, options), None, "gs")

    async def reads():
        _, meta = await data.get("e/kept", None)
        store_of(name, options).put("e/kept", b"v2")  # overwritten after it was seen
        with pytest.raises(ClientError) as refused:
            await data.get("e/kept", meta.etag)
        return refused.value.response["Error"]["Code"]

    assert asyncio.run(reads()) == "PreconditionFailed"
