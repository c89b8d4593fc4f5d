"""POSIX fidelity: mode, owner and group travel in object metadata under the keys FSx for Lustre
and DataSync read (file-permissions, file-owner, file-group, file-mtime) and come back on import
where the importing user may set them; a link's target is kept, and `recreate_links` makes it a
link again. A bucket written the FSx way imports with its permissions."""

from __future__ import annotations

import os
import stat

import pytest
from conftest import write_file

from flows import export_data, import_data

T = 1_600_000_000_123_456_789


def _tree(src) -> None:
    write_file(str(src / "a" / "private"), b"secret", T)
    write_file(str(src / "a" / "tool"), b"#!/bin/sh\n", T)
    os.chmod(src / "a" / "private", 0o640)
    os.chmod(src / "a" / "tool", 0o755)
    os.chown(src / "a" / "private", 1234, 2345)
    os.symlink("a/tool", src / "link")


def test_mode_owner_group_and_links_make_the_round_trip(tmp_path, s3_client, bucket, reports):
    src, back, flat = tmp_path / "src", tmp_path / "back", tmp_path / "flat"
    _tree(src)
    export_data(str(src), f"s3://{bucket}/p", report_dir=reports)
    meta = s3_client.head_object(Bucket=bucket, Key="p/a/private")["Metadata"]
    assert (meta["file-permissions"], meta["file-owner"], meta["file-group"]) == (
        "0100640", "1234", "2345",
    )  # fmt: skip
    assert meta["file-mtime"] == f"{T}ns"
    link = s3_client.head_object(Bucket=bucket, Key="p/link")
    assert link["ContentLength"] == 0 and link["Metadata"]["ferry-link-target"] == "a/tool"
    assert link["Metadata"]["file-permissions"].startswith("0120")

    import_data(f"s3://{bucket}/p", str(back), recreate_links=True, report_dir=reports)
    private = os.stat(back / "a" / "private")
    assert (stat.S_IMODE(private.st_mode), private.st_uid, private.st_gid) == (0o640, 1234, 2345)
    assert stat.S_IMODE(os.stat(back / "a" / "tool").st_mode) == 0o755
    assert private.st_mtime_ns == T
    assert os.readlink(back / "link") == "a/tool"

    import_data(f"s3://{bucket}/p", str(flat), restore_posix=False, report_dir=reports)
    assert os.stat(flat / "a" / "private").st_uid == os.getuid()  # not asked: not restored
    assert stat.S_ISREG(os.lstat(flat / "link").st_mode)  # links opt in; else an empty file
    assert os.path.getsize(flat / "link") == 0


def test_a_bucket_written_by_fsx_imports_with_its_permissions(tmp_path, s3_client, bucket, reports):
    fsx = {"file-permissions": "0100600", "file-owner": "1500", "file-group": "1600"}
    s3_client.put_object(
        Bucket=bucket, Key="fsx/data.bin", Body=b"x" * 10,
        Metadata={**fsx, "file-mtime": "1500000000000000001ns"},
    )  # fmt: skip
    s3_client.put_object(  # FSx keeps a link as an object whose body is its target
        Bucket=bucket, Key="fsx/current", Body=b"data.bin",
        Metadata={"file-permissions": "0120777", "file-owner": "0", "file-group": "0"},
    )  # fmt: skip
    import_data(f"s3://{bucket}/fsx", str(tmp_path / "d"), recreate_links=True, report_dir=reports)
    got = os.stat(tmp_path / "d" / "data.bin")
    assert (stat.S_IMODE(got.st_mode), got.st_uid, got.st_gid) == (0o600, 1500, 1600)
    assert got.st_mtime_ns == 1_500_000_000_000_000_001
    assert os.readlink(tmp_path / "d" / "current") == "data.bin"


def test_without_the_right_to_chown_the_mode_is_restored_and_the_owner_is_the_importer(
    tmp_path, s3_client, bucket, reports
):
    """The import's copy step runs in a process that dropped root for `nobody` (forked, then
    setuid; aiobotocore only: a forked process cannot use the parent's obstore runtime). It
    cannot give a file another owner: the file is nobody's, with its mode and mtime, and the
    entry is ok."""
    import pathlib
    import shutil
    import tempfile
    import time

    src = tmp_path / "src"
    _tree(src)
    export_data(str(src), f"s3://{bucket}/n", report_dir=reports)
    place = pathlib.Path(tempfile.mkdtemp(prefix="ferry-nobody-"))  # a place nobody can reach
    os.chmod(place, 0o777)
    nobody = 65534
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            os.environ["FERRY_ENGINE"] = "boto"
            os.setgid(nobody)
            os.setgroups([])
            os.setuid(nobody)
            from tasks.apply import apply_partition
            from tasks.endpoints import parse_endpoint
            from tasks.job import Job
            from tasks.listing import list_bucket
            from tasks.manifest import ReportDir
            from tasks.partition import Partition
            from tasks.plan import APPLY_ACTIONS, plan_import

            prefix = parse_endpoint(f"s3://{bucket}/n")
            job = Job("nobody", "import", parse_endpoint(str(place / "d")), prefix)
            work = [i for i in plan_import(list_bucket(prefix), []) if i.action in APPLY_ACTIONS]
            os.makedirs(place / "d")
            done = apply_partition(job, Partition(0, work), ReportDir(str(place / "r"), "n"))
            os.write(writing, repr(done.counts).encode())
            code = 0
        except BaseException as exc:  # noqa: BLE001 - said to the parent
            os.write(writing, f"{type(exc).__name__}: {exc}".encode()[:4000])
        finally:
            os._exit(code)
    os.close(writing)
    deadline = time.monotonic() + 300
    while (ended := os.waitpid(child, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(child, 9)
            os.waitpid(child, 0)
            raise AssertionError("the import as nobody did not end in 300 s")
        time.sleep(0.1)
    said = os.read(reading, 8192).decode()
    os.close(reading)
    assert os.waitstatus_to_exitcode(ended[1]) == 0, said
    assert said == "{'ok': 3}", said
    private = os.stat(place / "d" / "a" / "private")
    assert (private.st_uid, private.st_gid) == (nobody, nobody)
    assert stat.S_IMODE(private.st_mode) == 0o640
    assert private.st_mtime_ns == T
    shutil.rmtree(place)


def test_user_extended_attributes_travel_when_asked(tmp_path, s3_client, bucket, reports):
    src = tmp_path / "src"
    write_file(str(src / "small"), b"s" * 10, T)
    write_file(str(src / "large"), os.urandom(6 * 2**20), T)  # a multipart upload
    for name in ("small", "large"):
        os.setxattr(src / name, "user.comment", "ünïcode ok".encode())
        os.setxattr(src / name, "user.Mixed.Case", b"\x00\xff binary")
    export_data(
        str(src), f"s3://{bucket}/x", xattrs=True, multipart_threshold="5MiB", report_dir=reports
    )
    meta = s3_client.head_object(Bucket=bucket, Key="x/small")["Metadata"]
    assert any(k.startswith("ferry-xattr-") for k in meta)
    back, plain = tmp_path / "back", tmp_path / "plain"
    import_data(f"s3://{bucket}/x", str(back), xattrs=True, report_dir=reports)
    for name in ("small", "large"):
        assert os.getxattr(back / name, "user.comment") == "ünïcode ok".encode()
        assert os.getxattr(back / name, "user.Mixed.Case") == b"\x00\xff binary"
    import_data(f"s3://{bucket}/x", str(plain), report_dir=reports)  # not asked: not set
    assert "user.comment" not in os.listxattr(plain / "small")


@pytest.mark.usefixtures("prefect_api")
def test_the_command_line_recreates_links_and_carries_xattrs(tmp_path, s3_client, bucket):
    from flows.cli import main

    src = tmp_path / "src"
    _tree(src)
    os.setxattr(src / "a" / "tool", "user.origin", b"cli")
    reports = ["--report-dir", str(tmp_path / "r")]
    assert main(["export", str(src), f"s3://{bucket}/cli", "--xattrs", *reports]) == 0
    back = tmp_path / "back"
    command = ["import", f"s3://{bucket}/cli", str(back), "--recreate-links", "--xattrs"]
    assert main([*command, *reports]) == 0
    assert os.readlink(back / "link") == "a/tool"
    assert os.getxattr(back / "a" / "tool", "user.origin") == b"cli"
