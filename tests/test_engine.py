"""The data plane's two engines (`tasks.engine`): obstore whenever every storage option has an
obstore equivalent, aiobotocore otherwise, and for the keys obstore's paths cannot hold."""

from __future__ import annotations

import os

from conftest import bucket_objects, manifest_rows

from flows import export_data, import_data
from tasks.engine import fits_obstore, obstore_config


def test_the_engine_follows_the_storage_options(monkeypatch):
    monkeypatch.delenv("FERRY_ENGINE", raising=False)
    assert obstore_config({}) == {}
    assert obstore_config({"key": "k", "secret": "s", "endpoint_url": "http://x"}) == {}
    sse = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "arn:k", "BucketKeyEnabled": True}
    assert obstore_config({"s3_additional_kwargs": sse}) == {
        "server_side_encryption": "aws:kms",
        "sse_kms_key_id": "arn:k",
        "sse_bucket_key_enabled": "true",
    }
    assert obstore_config({"requester_pays": True}) == {"request_payer": True}
    # no obstore equivalent: every request goes through aiobotocore, so nothing is dropped
    assert obstore_config({"s3_additional_kwargs": {"ACL": "public-read"}}) is None
    assert obstore_config({"config_kwargs": {"s3": {"addressing_style": "virtual"}}}) is None
    assert obstore_config({"client_kwargs": {"verify": False}}) is None
    monkeypatch.setenv("FERRY_ENGINE", "boto")
    assert obstore_config({}) is None


def test_keys_obstore_cannot_hold_are_told_apart():
    assert fits_obstore("a/b c/é.txt") and fits_obstore("a/..b/.c")
    for key in ("dir/", "a//b", "a/./b", "a/../b", "tab\there", "del\x7f"):
        assert not fits_obstore(key)


def test_an_option_without_an_obstore_equivalent_still_applies(
    tmp_path, bucket, s3_client, reports
):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"public")
    acl = {"s3_additional_kwargs": {"ACL": "public-read"}}
    result = export_data(
        str(src), f"s3://{bucket}/acl", destination_options=acl, report_dir=reports
    )
    assert result.counts["ok"] == 1
    grants = s3_client.get_object_acl(Bucket=bucket, Key="acl/f")["Grants"]
    assert any(g["Grantee"].get("URI", "").endswith("/AllUsers") for g in grants)


def test_names_obstore_cannot_hold_round_trip_through_aiobotocore(
    tmp_path, bucket, s3_client, reports
):
    src, back = tmp_path / "src", tmp_path / "back"
    src.mkdir()
    (src / "tab\there").write_bytes(b"a tab in the name")
    (src / "plain").write_bytes(b"plain")
    os.mkdir(src / "empty")  # a marker, `empty/`
    result = export_data(str(src), f"s3://{bucket}/odd", report_dir=reports)
    assert result.counts == {"ok": 3, "skipped": 0, "rejected": 0, "failed": 0}
    assert set(bucket_objects(s3_client, bucket)) >= {"odd/tab\there", "odd/empty/", "odd/plain"}
    got = import_data(f"s3://{bucket}/odd", str(back), report_dir=reports)
    rows = manifest_rows(got)
    assert rows["tab\there"]["status"] == "ok", rows
    assert (back / "tab\there").read_bytes() == b"a tab in the name"
    assert (back / "empty").is_dir()


def test_obstore_errors_read_like_the_stores_own():
    import obstore.exceptions as ox
    from botocore.exceptions import ClientError

    from tasks.engine import store_error
    from tasks.errors import describe, failure_code, is_transient
    from tasks.rows import ReasonCode

    busy = store_error(
        ox.GenericError(
            "Generic S3 error: Error performing HEAD http://h/b/k in 1ms - Server returned "
            "non-2xx status code: 503 Service Unavailable"
        ),
        "k",
    )
    assert isinstance(busy, ClientError) and is_transient(busy)
    assert describe(busy) == "503: Service Unavailable"
    changed = store_error(ox.PreconditionError("Request precondition failure for path k"), "k")
    assert failure_code(changed) == ReasonCode.OBJECT_CHANGED and not is_transient(changed)
    denied = store_error(
        ox.GenericError(
            "Server returned non-2xx status code: 403 Forbidden: <Error><Code>AccessDenied</Code>"
            "<Message>Access Denied</Message></Error>"
        ),
        "k",
    )
    assert describe(denied) == "AccessDenied: Access Denied"
    assert failure_code(denied) == ReasonCode.ACCESS_DENIED
    refused = store_error(ox.GenericError("HTTP error: error sending request"), "k")
    assert isinstance(refused, ConnectionError) and is_transient(refused)
