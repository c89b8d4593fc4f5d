"""End-to-end checksums: every exported object carries the CRC64NVME of its bytes, computed
while the file is read (S3's own full-object checksum for a multipart upload, ferry metadata for
a single PUT); import checks it while writing and fails an object whose bytes were replaced
behind ferry's back, leaving nothing in place; overwrite="checksum" decides by contents."""

from __future__ import annotations

import os

import pytest
from conftest import manifest_rows, run_result, write_file

from flows import export_data, import_data
from tasks.checksum import CRC_KEY, crc64, encoded

T = 1_700_000_000 * 10**9
MiB = 2**20


def test_a_single_put_carries_its_crc64nvme(tmp_path, s3_client, bucket, reports):
    data = os.urandom(1000)
    write_file(str(tmp_path / "src" / "f"), data, T)
    export_data(str(tmp_path / "src"), f"s3://{bucket}/c", report_dir=reports)
    meta = s3_client.head_object(Bucket=bucket, Key="c/f")["Metadata"]
    assert meta[CRC_KEY] == encoded(crc64(data))


def test_an_object_replaced_behind_ferrys_back_fails_and_nothing_lands(
    tmp_path, s3_client, bucket, reports
):
    """Two objects keep their metadata (and its CRC64NVME) but their bytes are replaced, the
    same size: a small one (read whole) and a large one (read in byte ranges). Both fail as
    checksum_mismatch; neither is put in place, and no temporary is left."""
    small, large = os.urandom(4096), os.urandom(40 * MiB)
    for key, data in [("x/small", small), ("x/large", large)]:
        s3_client.put_object(
            Bucket=bucket, Key=key, Body=bytes(b ^ 0xFF for b in data[:16]) + data[16:],
            Metadata={CRC_KEY: encoded(crc64(data))},
        )  # fmt: skip
    s3_client.put_object(Bucket=bucket, Key="x/fine", Body=b"fine")
    dst = tmp_path / "dst"
    result = run_result(import_data, f"s3://{bucket}/x", str(dst), report_dir=reports)
    rows = manifest_rows(result)
    for path in ("small", "large"):
        assert (rows[path]["status"], rows[path]["reason_code"]) == ("failed", "checksum_mismatch")
        assert "CRC64NVME" in rows[path]["reason"]
    assert rows["fine"]["status"] == "ok"
    assert sorted(os.listdir(dst)) == ["fine"]  # nothing half-right, no temporary


def test_a_multipart_object_is_checked_against_s3s_own_checksum(
    tmp_path, s3_client, bucket, reports
):
    data = os.urandom(40 * MiB)
    write_file(str(tmp_path / "src" / "big"), data, T)
    export_data(str(tmp_path / "src"), f"s3://{bucket}/m", report_dir=reports)
    head = s3_client.head_object(Bucket=bucket, Key="m/big", ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == encoded(crc64(data)) and CRC_KEY not in head["Metadata"]
    back = import_data(f"s3://{bucket}/m", str(tmp_path / "back"), report_dir=reports)
    assert back.counts["ok"] == 1
    assert (tmp_path / "back" / "big").read_bytes() == data


def test_overwrite_checksum_decides_by_contents(tmp_path, s3_client, bucket, reports):
    src = tmp_path / "src"
    write_file(str(src / "same-bytes-new-mtime"), b"A" * 100, T)
    write_file(str(src / "new-bytes-same-mtime"), b"B" * 100, T)
    export_data(str(src), f"s3://{bucket}/o", report_dir=reports)
    os.utime(src / "same-bytes-new-mtime", ns=(T + 10**9, T + 10**9))
    write_file(str(src / "new-bytes-same-mtime"), b"C" * 100, T)  # same size, same mtime

    by_mtime = export_data(str(src), f"s3://{bucket}/o", dry_run=True, report_dir=reports)
    rows = manifest_rows(by_mtime)
    assert rows["new-bytes-same-mtime"]["reason_code"] == "unchanged"  # missed by size+mtime
    assert rows["same-bytes-new-mtime"]["reason_code"] == "dry_run"  # copied for nothing

    by_contents = export_data(
        str(src), f"s3://{bucket}/o", overwrite="checksum", report_dir=reports
    )
    rows = manifest_rows(by_contents)
    assert (rows["new-bytes-same-mtime"]["status"], rows["new-bytes-same-mtime"]["action"]) == (
        "ok", "copy",
    )  # fmt: skip
    assert rows["same-bytes-new-mtime"]["reason_code"] == "unchanged"
    body = s3_client.get_object(Bucket=bucket, Key="o/new-bytes-same-mtime")["Body"].read()
    assert body == b"C" * 100

    dst = tmp_path / "dst"
    import_data(f"s3://{bucket}/o", str(dst), report_dir=reports)
    write_file(str(dst / "new-bytes-same-mtime"), b"D" * 100, T)  # changed, size and mtime kept
    again = import_data(f"s3://{bucket}/o", str(dst), overwrite="checksum", report_dir=reports)
    rows = manifest_rows(again)
    assert rows["new-bytes-same-mtime"]["action"] == "copy"
    assert rows["same-bytes-new-mtime"]["reason_code"] == "unchanged"
    assert (dst / "new-bytes-same-mtime").read_bytes() == b"C" * 100


def test_verify_checksum_uses_the_crc64nvme_where_the_etag_is_not_an_md5(
    tmp_path, s3_client, bucket, reports
):
    """An object uploaded in 6 MiB parts (a part size no ETag guess tries) with S3's full-object
    CRC64NVME: verify "checksum" compares the CRC, by a HEAD, nothing downloaded; a file changed
    afterwards (size and mtime kept) fails it."""
    import pandas as pd

    from tasks.endpoints import parse_endpoint
    from tasks.job import Job
    from tasks.options import Options
    from tasks.verify import verify_copied

    data = os.urandom(13 * MiB)
    chunks = [data[i : i + 6 * MiB] for i in range(0, len(data), 6 * MiB)]
    up = s3_client.create_multipart_upload(
        Bucket=bucket, Key="v/odd", ChecksumAlgorithm="CRC64NVME", ChecksumType="FULL_OBJECT"
    )
    parts = []
    for number, chunk in enumerate(chunks, 1):
        crc = encoded(crc64(chunk))
        sent = s3_client.upload_part(
            Bucket=bucket, Key="v/odd", UploadId=up["UploadId"], PartNumber=number, Body=chunk,
            ChecksumCRC64NVME=crc,
        )  # fmt: skip
        parts.append({"PartNumber": number, "ETag": sent["ETag"], "ChecksumCRC64NVME": crc})
    s3_client.complete_multipart_upload(
        Bucket=bucket, Key="v/odd", UploadId=up["UploadId"], MultipartUpload={"Parts": parts},
        ChecksumCRC64NVME=encoded(crc64(data)), ChecksumType="FULL_OBJECT",
    )  # fmt: skip
    dst = tmp_path / "dst"
    result = import_data(f"s3://{bucket}/v", str(dst), verify="checksum", report_dir=reports)
    row = manifest_rows(result)["odd"]
    assert row["verified"] and not isinstance(row["reason_code"], str), row  # no note: fully

    st = os.stat(dst / "odd")
    with open(dst / "odd", "r+b") as f:
        f.write(bytes([data[0] ^ 0xFF]))  # one byte flipped
    os.utime(dst / "odd", ns=(st.st_atime_ns, st.st_mtime_ns))
    job = Job(
        "v", "import", parse_endpoint(str(dst)), parse_endpoint(f"s3://{bucket}/v"),
        Options(verify="checksum"),
    )  # fmt: skip
    rows = pd.read_parquet(result.manifest).to_dict("records")
    for r in rows:
        r["mtime"] = int(r["mtime"].value)
    checked = verify_copied(job, rows)["odd"]
    assert not checked.verified and "CRC64NVME" in checked.reason


def test_an_import_by_checksum_keeps_a_file_whose_bytes_match_whatever_its_mtime(
    tmp_path, s3_client, bucket, reports
):
    s3_client.put_object(
        Bucket=bucket, Key="k/f", Body=b"same", Metadata={CRC_KEY: encoded(crc64(b"same"))}
    )
    dst = tmp_path / "dst"
    write_file(str(dst / "f"), b"same", T)  # the same bytes, another mtime, no import state
    result = import_data(f"s3://{bucket}/k", str(dst), overwrite="checksum", report_dir=reports)
    row = manifest_rows(result)["f"]
    assert (row["status"], row["reason_code"], row["verified"]) == ("skipped", "unchanged", True)
    assert os.stat(dst / "f").st_mtime_ns == T


@pytest.mark.usefixtures("prefect_api")
def test_the_command_line_decides_by_checksum(tmp_path, s3_client, bucket, capsys):
    from flows.cli import main

    src = tmp_path / "src"
    write_file(str(src / "f"), b"one", T)
    command = ["export", str(src), f"s3://{bucket}/cli", "--report-dir", str(tmp_path / "r")]
    assert main(command) == 0
    write_file(str(src / "f"), b"two", T)  # same size, same mtime: only the contents differ
    assert main([*command, "--overwrite", "checksum"]) == 0
    assert "1 ok · 0 skipped" in capsys.readouterr().out
    assert s3_client.get_object(Bucket=bucket, Key="cli/f")["Body"].read() == b"two"
