"""Export then import gives back the same tree: bytes, mtimes (to the nanosecond), empty dirs."""

from __future__ import annotations

import os

import pytest
from conftest import manifest_rows

from flows import export_data, import_data, verify_data

pytestmark = pytest.mark.usefixtures("prefect_api")


def snapshot(root) -> dict[str, tuple]:
    """{relative path: (kind, bytes or None, mtime_ns)} of every entry."""
    found = {}
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(base, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if os.path.isdir(path):
                found[rel] = ("dir", None, st.st_mtime_ns if not os.listdir(path) else None)
            else:
                with open(path, "rb") as f:
                    found[rel] = ("file", f.read(), st.st_mtime_ns)
    return found


def test_export_then_import_restores_an_identical_tree(tmp_path, bucket, reports):
    src = tmp_path / "src"
    for i in range(30):
        path = src / f"d{i % 3}" / f"sub{i % 2}" / f"f{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(100 + i))
        os.utime(path, ns=(1_650_000_000_123_456_789 + i, 1_650_000_000_123_456_789 + i))
    (src / "big.bin").write_bytes(os.urandom(33 * 2**20))
    (src / "empty" / "inside").mkdir(parents=True)
    os.utime(src / "empty" / "inside", ns=(1_600_000_000_000_000_001, 1_600_000_000_000_000_001))
    (src / "zero").write_bytes(b"")

    exported = export_data(str(src), f"s3://{bucket}/rt", report_dir=reports, partition_files=7)
    assert exported.ok and exported.counts["ok"] == 33
    imported = import_data(
        f"s3://{bucket}/rt",
        str(tmp_path / "dst"),
        report_dir=reports,
        partition_files=7,
        verify="checksum",
    )
    assert imported.ok and imported.counts["ok"] == 33
    assert all(r["verified"] for r in manifest_rows(imported).values())
    assert snapshot(tmp_path / "dst") == snapshot(src)

    check = verify_data(str(src), str(tmp_path / "dst"), report_dir=reports, verify="checksum")
    assert check.counts == {"ok": 33, "skipped": 0, "rejected": 0, "failed": 0}
