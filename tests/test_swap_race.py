"""A directory swapped for a symbolic link while a task runs, by another process, round after
round: an import never writes outside its destination, an export never reads outside its
source."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import manifest_rows, run_result

from flows import export_data, import_data

pytestmark = pytest.mark.usefixtures("prefect_api")

ROUNDS = 6

#: Swaps DIR between the real directory and a link to OUTSIDE, as fast as it can, until STOP
#: exists.
SWAPPER = """
import os, sys
d, outside, stop = sys.argv[1:4]
real = d + ".real"
while not os.path.exists(stop):
    try:
        os.rename(d, real)
        os.symlink(outside, d)
        os.unlink(d)
        os.rename(real, d)
    except OSError:
        pass
if os.path.islink(d):
    os.unlink(d)
if os.path.isdir(real) and not os.path.exists(d):
    os.rename(real, d)
"""


def swapping(directory, outside, stop):
    return subprocess.Popen(
        [sys.executable, "-c", SWAPPER, str(directory), str(outside), str(stop)],
        stdin=subprocess.DEVNULL,
    )


def test_an_import_never_writes_through_a_directory_swapped_for_a_link(
    tmp_path, bucket, s3_client, reports
):
    for i in range(60):
        s3_client.put_object(Bucket=bucket, Key=f"ds/sub/f{i:02d}", Body=b"x" * 1000)
    outside = tmp_path / "outside"
    outside.mkdir()
    for round_ in range(ROUNDS):
        dest = tmp_path / f"d{round_}"
        (dest / "sub").mkdir(parents=True)
        stop = tmp_path / f"stop{round_}"
        swapper = swapping(dest / "sub", outside, stop)
        try:
            result = run_result(
                import_data, f"s3://{bucket}/ds", str(dest), report_dir=reports, overwrite="always"
            )
        finally:
            stop.touch()
            swapper.wait(timeout=60)
        assert os.listdir(outside) == [], f"round {round_}: written outside"
        rows = manifest_rows(result)
        assert len(rows) == 60
        for path, row in rows.items():
            landed = (dest / path).is_file() and not (dest / "sub").is_symlink()
            assert row["status"] in {"ok", "rejected", "failed"}
            if row["status"] == "ok":
                assert landed, (round_, path)


def test_an_export_never_reads_through_a_directory_swapped_for_a_link(
    tmp_path, bucket, s3_client, reports
):
    outside = tmp_path / "outside"
    outside.mkdir()
    for i in range(300):
        (outside / f"f{i:02d}").write_bytes(b"SECRET" * 100)
    for round_ in range(2 * ROUNDS):
        src = tmp_path / f"s{round_}"
        (src / "sub").mkdir(parents=True)
        for i in range(300):
            (src / "sub" / f"f{i:02d}").write_bytes(b"inside" * 100)
        stop = tmp_path / f"stop{round_}"
        swapper = swapping(src / "sub", outside, stop)
        try:
            run_result(export_data, str(src), f"s3://{bucket}/r{round_}", report_dir=reports)
        finally:
            stop.touch()
            swapper.wait(timeout=60)
        listed = s3_client.list_objects_v2(Bucket=bucket, Prefix=f"r{round_}/").get("Contents", [])
        for obj in listed:
            body = s3_client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            assert b"SECRET" not in body, (round_, obj["Key"])


def test_an_export_planned_before_a_swap_reads_nothing_through_the_link(
    tmp_path, bucket, s3_client, reports
):
    """The deterministic half of the race: listed while `sub` is a directory, copied after it
    became a link to files outside the tree (small files and a multipart one)."""
    from tasks.endpoints import transfer_endpoints
    from tasks.job import Job
    from tasks.listing import list_directory
    from tasks.manifest import ReportDir
    from tasks.partition import partition
    from tasks.plan import plan_export
    from tasks.steps import apply_step

    outside = tmp_path / "outside"
    outside.mkdir()
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for name, size in (("small", 600), ("big", 40 * 2**20)):
        (src / "sub" / name).write_bytes(b"i" * size)
        (outside / name).write_bytes(b"SECRET" * (size // 6))
    directory, prefix = transfer_endpoints("export", str(src), f"s3://{bucket}/det")
    items = plan_export(list_directory(directory, must_exist=True), [], prefix=prefix.prefix)
    os.rename(src / "sub", tmp_path / "moved")
    os.symlink(outside, src / "sub")
    job = Job(task_id="t-swap", direction="export", directory=directory, bucket=prefix)
    result = apply_step.fn(job, partition(items)[0], ReportDir(reports, "t-swap"))
    assert result.counts == {"rejected": 2}
    assert s3_client.list_objects_v2(Bucket=bucket, Prefix="det/").get("KeyCount", 0) == 0
