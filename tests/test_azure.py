"""Azure Blob Storage (`az://`) through the same pipeline as S3, against Azurite on loopback.

obstore carries every request (`tasks.engine`): the files' bytes and mtimes make the round trip,
a large file goes up in parts, a rerun skips what is unchanged, and what Azure cannot hold (an
empty directory's marker) is a rejected row with its reason, never a crash.
"""

from __future__ import annotations

import os

import obstore
import pytest
from conftest import manifest_rows, store_contents, write_file
from obstore.store import AzureStore

from flows import export_data, import_data, verify_data
from tasks.endpoints import parse_endpoint
from tasks.errors import AccessDenied, SourceMissing, UsageError
from tasks.preflight import check_bucket


def blobs(name: str, options: dict) -> dict[str, dict]:
    return store_contents(AzureStore(name, client_options={"allow_http": True}, **options))


def test_export_import_and_rerun_through_azure(tmp_path, container, reports):
    name, options = container
    src, back = tmp_path / "src", tmp_path / "back"
    large = os.urandom(20 * 2**20)  # above the multipart threshold: uploaded in 8 MiB parts
    write_file(str(src / "a.txt"), b"hello azure", 1_700_000_000_123_456_789)
    write_file(str(src / "deep/er/b.bin"), large, 1_600_000_000_000_000_000)
    write_file(str(src / "unicode é ü.txt"), b"names travel as they are", 1_650_000_000_5 * 10**8)
    os.mkdir(src / "empty")

    result = export_data(
        str(src), f"az://{name}/set", destination_options=options, report_dir=reports
    )
    rows = manifest_rows(result)
    assert result.counts == {"ok": 3, "skipped": 0, "rejected": 1, "failed": 0}
    assert rows["empty"]["status"] == "rejected"
    assert rows["empty"]["reason_code"] == "name_not_portable"
    assert "empty directory cannot be kept on az://" in rows["empty"]["reason"]
    assert rows["a.txt"]["destination"] == f"az://{name}/set/a.txt"
    stored = blobs(name, options)
    assert set(stored) == {"set/a.txt", "set/deep/er/b.bin", "set/unicode é ü.txt"}
    assert stored["set/deep/er/b.bin"]["size"] == len(large)
    # the mtime travels in the blob's metadata, under the name Azure allows (rclone's)
    assert stored["set/a.txt"]["attributes"]["mtime"] == "1700000000.123456789"

    got = import_data(f"az://{name}/set", str(back), source_options=options, report_dir=reports)
    assert got.counts == {"ok": 3, "skipped": 0, "rejected": 0, "failed": 0}
    assert (back / "deep/er/b.bin").read_bytes() == large
    for relative in ("a.txt", "deep/er/b.bin", "unicode é ü.txt"):
        assert os.stat(back / relative).st_mtime_ns == os.stat(src / relative).st_mtime_ns

    again = export_data(
        str(src), f"az://{name}/set", destination_options=options, report_dir=reports
    )
    assert again.counts == {"ok": 0, "skipped": 3, "rejected": 1, "failed": 0}
    compared = verify_data(str(src / "deep"), f"az://{name}/set/deep", destination_options=options)
    assert compared.ok and compared.counts["ok"] == 1


def test_a_changed_blob_is_copied_again_and_an_overwritten_one_detected(
    tmp_path, container, reports
):
    name, options = container
    src = tmp_path / "src"
    write_file(str(src / "f"), b"one", 1_700_000_000_000_000_000)
    export_data(str(src), f"az://{name}/p", destination_options=options, report_dir=reports)
    write_file(str(src / "f"), b"two", 1_700_000_001_000_000_000)  # same size, newer mtime
    result = export_data(
        str(src), f"az://{name}/p", destination_options=options, report_dir=reports
    )
    assert result.counts["ok"] == 1
    store = AzureStore(name, client_options={"allow_http": True}, **options)
    assert bytes(store.get("p/f").bytes()) == b"two"


def test_azure_endpoint_errors_are_one_clear_line(container, azure_endpoint):
    name, options = container
    with pytest.raises(SourceMissing, match="^container does not exist: az://no-such-one/x/$"):
        check_bucket(parse_endpoint("az://no-such-one/x", options))
    wrong = {**options, "account_key": "AAAA" + options["account_key"][4:]}
    with pytest.raises(AccessDenied, match="check the credentials for: az://"):
        check_bucket(parse_endpoint(f"az://{name}/x", wrong))
    with pytest.raises(UsageError) as bad:
        parse_endpoint(f"az://{name}/x", {**options, "acount_name": "x"})
    assert str(bad.value) == (
        "bad storage options for az:// (Configuration key: 'acount_name' is not valid for store "
        f"'MicrosoftAzure'.): az://{name}/x"
    )
    with pytest.raises(SourceMissing, match="no object under this prefix"):
        check_bucket(parse_endpoint(f"az://{name}/empty", options), must_hold_objects=True)


def test_gcs_urls_are_understood_and_their_options_checked():
    """gs:// goes through the same obstore engine (its requests: `tests/test_gcs.py`); what needs
    no server is checked here."""
    prefix = parse_endpoint("gs://bucket/data", {"bearer_token": "t"})
    assert (prefix.scheme, prefix.bucket, prefix.prefix) == ("gs", "bucket", "data/")
    assert prefix.display == "gs://bucket/data/"
    with pytest.raises(UsageError, match=r"^bad storage options for gs:// \(.*'bogus'"):
        parse_endpoint("gs://bucket/data", {"bogus": "1"})
    with pytest.raises(UsageError, match="unsupported URL scheme 'ftp'"):
        parse_endpoint("ftp://host/x")
    assert obstore.__version__.startswith("0.12")


def test_conversion_refuses_a_bucket_that_is_not_s3(container):
    from tasks.preflight import whole_bucket

    name, options = container
    with pytest.raises(
        UsageError, match=f"^convert takes a whole bucket: s3://bucket: az://{name}$"
    ):
        whole_bucket(f"az://{name}", options)
