"""Export options set per task (and per stream): storage class and SSE-KMS key; and a dry run
that tells what the task would cost in requests and bytes, checked against the requests the
real run then makes."""

from __future__ import annotations

import os
import threading
from collections import Counter
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import write_file
from flaky_proxy import FlakyProxy
from pydantic import ValidationError

from flows import export_data, import_data
from tasks.errors import UsageError
from tasks.options import Options

T = 1_700_000_000 * 10**9
MiB = 2**20
KEY = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"


def _tree(root) -> int:
    write_file(str(root / "a" / "f1"), b"1" * 10, T)
    write_file(str(root / "a" / "f2"), b"2" * 10, T)
    write_file(str(root / "b" / "big"), os.urandom(12 * MiB), T)  # 2 parts of 8 MiB
    (root / "e").mkdir()
    return 20 + 12 * MiB


def test_objects_carry_the_storage_class_and_the_kms_key(tmp_path, s3_client, bucket, reports):
    src = tmp_path / "src"
    _tree(src)
    result = export_data(
        str(src),
        f"s3://{bucket}/sc",
        storage_class="standard-ia",
        sse_kms_key_id=KEY,
        multipart_threshold="5MiB",
        report_dir=reports,
    )
    assert result.counts["failed"] == 0
    for key in ["sc/a/f1", "sc/b/big", "sc/e/"]:  # one PUT, a multipart upload, a marker
        head = s3_client.head_object(Bucket=bucket, Key=key)
        assert head.get("StorageClass") == "STANDARD_IA", key
        assert head["ServerSideEncryption"] == "aws:kms", key
        assert head["SSEKMSKeyId"] == KEY, key


def test_wrong_export_options_are_refused_with_what_is_expected(tmp_path):
    with pytest.raises(ValidationError, match="storage_class must be one of STANDARD"):
        Options(storage_class="cheap")
    assert Options(storage_class="intelligent-tiering").storage_class == "INTELLIGENT_TIERING"
    with pytest.raises(UsageError, match="apply to s3:// destinations"):
        export_data(str(tmp_path), "gs://b/p", storage_class="STANDARD")


def _counting(counts: Counter, lock: threading.Lock):
    def count(method: str, path: str) -> None:
        query = parse_qs(urlsplit(path).query, keep_blank_values=True)
        if "list-type" in query:
            kind = None if query.get("max-keys") == ["1"] else "LIST"  # not the preflight probe
        elif "uploads" in query and method == "GET":
            kind = None  # the listing of abandoned uploads
        else:
            kind = method
        if kind:
            with lock:
                counts[kind] += 1

    return count


def test_a_dry_run_of_an_export_tells_the_requests_and_bytes_the_run_then_makes(
    tmp_path, bucket, reports
):
    src = tmp_path / "src"
    nbytes = _tree(src)
    common = dict(multipart_threshold="5MiB", verify="none", report_dir=reports)
    dry = export_data(str(src), f"s3://{bucket}/x", dry_run=True, **common)
    assert dry.estimate["PUT"] == 2 + 2 + 1  # two files, two parts, a marker
    assert dry.estimate["POST"] == 2  # the multipart upload's create and complete
    assert dry.estimate["bytes_up"] == nbytes and dry.estimate.get("bytes_down", 0) == 0
    assert dry.estimate["LIST"] >= 1

    counts, lock = Counter(), threading.Lock()
    with FlakyProxy(os.environ["AWS_ENDPOINT_URL"], {}, _counting(counts, lock)) as proxy:
        export_data(
            str(src), f"s3://{bucket}/x", destination_options={"endpoint_url": proxy.url},
            **common,
        )  # fmt: skip
    made = {k: n for k, n in counts.items()}
    assert made == {k: n for k, n in dry.estimate.items() if not k.startswith("bytes")}


def test_a_dry_run_of_an_import_tells_the_requests_and_bytes_the_run_then_makes(
    tmp_path, s3_client, bucket, reports
):
    s3_client.put_object(Bucket=bucket, Key="y/small", Body=b"s" * 100)
    s3_client.put_object(Bucket=bucket, Key="y/d/also", Body=b"a" * 50)
    s3_client.put_object(Bucket=bucket, Key="y/large", Body=os.urandom(40 * MiB))  # 3 ranges
    s3_client.put_object(Bucket=bucket, Key="y/empty/", Body=b"")  # a HEAD for its mtime
    common = dict(verify="none", report_dir=reports)
    dry = import_data(f"s3://{bucket}/y", str(tmp_path / "dry"), dry_run=True, **common)
    assert dry.estimate["GET"] == 2 + 3
    assert dry.estimate["HEAD"] == 1 + 1  # the marker's mtime; the large object's CRC64NVME
    assert dry.estimate["bytes_down"] == 150 + 40 * MiB
    assert not (tmp_path / "dry").exists() or not os.listdir(tmp_path / "dry")

    counts, lock = Counter(), threading.Lock()
    with FlakyProxy(os.environ["AWS_ENDPOINT_URL"], {}, _counting(counts, lock)) as proxy:
        import_data(
            f"s3://{bucket}/y", str(tmp_path / "real"), source_options={"endpoint_url": proxy.url},
            **common,
        )  # fmt: skip
    assert dict(counts) == {k: n for k, n in dry.estimate.items() if not k.startswith("bytes")}


@pytest.mark.usefixtures("prefect_api")
def test_the_command_line_takes_them_and_prints_the_estimate(tmp_path, bucket, s3_client, capsys):
    from flows.cli import main

    src = tmp_path / "src"
    write_file(str(src / "f"), b"data", T)
    command = ["export", str(src), f"s3://{bucket}/c", "--report-dir", str(tmp_path / "r")]
    assert main([*command, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would make 1 LIST · 1 PUT requests; 4 B up, 0 B down" in out
    assert main([*command, "--storage-class", "GLACIER_IR", "--sse-kms-key-id", KEY]) == 0
    head = s3_client.head_object(Bucket=bucket, Key="c/f")
    assert (head["StorageClass"], head["SSEKMSKeyId"]) == ("GLACIER_IR", KEY)
    assert main([*command, "--storage-class", "cheap"]) == 2
    assert "storage_class must be one of" in capsys.readouterr().err
