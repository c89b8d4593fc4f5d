"""The hns:// filesystem: its own behaviours, and fsspec's conformance suite."""

from __future__ import annotations

import contextlib
import threading
import uuid

import fsspec
import pandas as pd
import pytest
from fsspec.tests.abstract import (
    AbstractCopyTests,
    AbstractFixtures,
    AbstractGetTests,
    AbstractOpenTests,
    AbstractPipeTests,
    AbstractPutTests,
)

from hns.filesystem import HNSFileSystem
from hns.store import Store


def new_namespace(s3_client, metadata: str) -> str:
    """An empty bucket with an active (empty) namespace, as a conversion of it leaves."""
    bucket = f"hns-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket)
    store = Store(metadata)
    ns_id = store.start_building(
        bucket, source_url=f"s3://{bucket}", conversion_ts=0, task_id="test"
    )
    store.activate(ns_id)
    return bucket


@pytest.fixture
def metadata(tmp_path):
    return f"sqlite:///{tmp_path / 'ns.db'}"


@pytest.fixture
def hns(s3_client, metadata):
    bucket = new_namespace(s3_client, metadata)
    return fsspec.filesystem("hns", metadata=metadata), bucket


def test_registered_under_the_hns_protocol(metadata):
    assert isinstance(fsspec.filesystem("hns", metadata=metadata), HNSFileSystem)


def test_write_read_ls_info(hns, s3_client):
    fs, b = hns
    fs.pipe(f"hns://{b}/data/part-0.bin", b"0123456789")
    assert fs.cat(f"{b}/data/part-0.bin") == b"0123456789"
    assert fs.cat_file(f"{b}/data/part-0.bin", start=2, end=5) == b"234"
    with fs.open(f"{b}/data/part-0.bin", "rb") as f:
        f.seek(7)
        assert f.read() == b"789"
    assert fs.ls(f"{b}/data", detail=False) == [f"{b}/data/part-0.bin"]
    info = fs.info(f"{b}/data/part-0.bin")
    assert info["type"] == "file" and info["size"] == 10
    assert fs.info(f"{b}/data")["type"] == "directory"
    assert s3_client.get_object(Bucket=b, Key=info["object_key"])["Body"].read() == b"0123456789"


def test_ls_and_info_never_call_the_bucket(hns, s3_client):
    fs, b = hns
    fs.pipe(f"{b}/d/f", b"x")
    s3_client.delete_object(Bucket=b, Key=fs.info(f"{b}/d/f")["object_key"])
    s3_client.delete_bucket(Bucket=b)  # the bucket is gone; the namespace still answers
    assert fs.ls(f"{b}/d", detail=False) == [f"{b}/d/f"]
    assert fs.info(f"{b}/d/f")["size"] == 1


def test_mv_of_a_directory_is_one_rename(hns, s3_client):
    fs, b = hns
    for i in range(50):
        fs.pipe(f"{b}/datasets/v1/part-{i}", b"p")
    keys_before = sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket=b)["Contents"])
    fs.mv(f"{b}/datasets/v1", f"{b}/datasets/v2", recursive=True)
    assert not fs.exists(f"{b}/datasets/v1")
    assert len(fs.ls(f"{b}/datasets/v2")) == 50
    keys_after = sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket=b)["Contents"])
    assert keys_after == keys_before  # no object copied or deleted
    with pytest.raises(OSError, match="into itself"):
        fs.mv(f"{b}/datasets", f"{b}/datasets/v2/inner")


def test_mv_into_an_existing_directory_and_over_a_file(hns):
    fs, b = hns
    fs.pipe(f"{b}/a.txt", b"a")
    fs.pipe(f"{b}/b.txt", b"b")
    fs.makedirs(f"{b}/dir")
    fs.mv(f"{b}/a.txt", f"{b}/dir")
    assert fs.cat(f"{b}/dir/a.txt") == b"a"
    fs.mv(f"{b}/b.txt", f"{b}/dir/a.txt")
    assert fs.cat(f"{b}/dir/a.txt") == b"b"


def test_rm_recursive_is_atomic_and_deletes_objects_after(hns, s3_client):
    fs, b = hns
    for i in range(20):
        fs.pipe(f"{b}/tmp/x/{i}", b"1")
    fs.pipe(f"{b}/keep", b"k")
    with pytest.raises(IsADirectoryError):
        fs.rm(f"{b}/tmp")
    fs.rm(f"{b}/tmp", recursive=True)
    assert not fs.exists(f"{b}/tmp")
    remaining = [o["Key"] for o in s3_client.list_objects_v2(Bucket=b)["Contents"]]
    assert remaining == [fs.info(f"{b}/keep")["object_key"]]


def test_rmdir_and_mkdir(hns):
    fs, b = hns
    fs.mkdir(f"{b}/one/two")
    assert fs.isdir(f"{b}/one/two")
    with pytest.raises(FileExistsError):
        fs.makedirs(f"{b}/one/two")
    fs.pipe(f"{b}/one/two/f", b"1")
    with pytest.raises(OSError, match="not empty"):
        fs.rmdir(f"{b}/one/two")
    fs.rm(f"{b}/one/two/f")
    fs.rmdir(f"{b}/one/two")
    assert fs.ls(f"{b}/one") == []


def test_find_walk_glob_du(hns):
    fs, b = hns
    for path in ("x/1.csv", "x/y/2.csv", "x/y/3.txt"):
        fs.pipe(f"{b}/{path}", b"12345")
    assert fs.find(f"{b}/x") == [f"{b}/x/1.csv", f"{b}/x/y/2.csv", f"{b}/x/y/3.txt"]
    assert sorted(fs.glob(f"{b}/x/**/*.csv")) == [f"{b}/x/1.csv", f"{b}/x/y/2.csv"]
    assert fs.du(f"{b}/x") == 15
    assert [root for root, _, _ in fs.walk(f"{b}/x")] == [f"{b}/x", f"{b}/x/y"]


def test_a_reader_never_sees_half_a_rename(hns):
    fs, b = hns
    for i in range(30):
        fs.pipe(f"{b}/src/d{i}/f", b"1")
    seen_tops, seen_sizes = set(), set()
    stop, reading = threading.Event(), threading.Event()

    def watch():
        reader = fsspec.filesystem("hns", metadata=fs.metadata, skip_instance_cache=True)
        while not stop.is_set():
            seen_tops.add(tuple(reader.ls(b, detail=False)))  # one call: one snapshot
            for name in ("src", "dst"):
                # renamed away between two calls is fine: each call is one snapshot
                with contextlib.suppress(FileNotFoundError):
                    seen_sizes.add(len(reader.ls(f"{b}/{name}")))
            reading.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert reading.wait(timeout=300), "the reader read nothing"  # it reads while renames run
    try:
        for i in range(10):
            src, dst = (f"{b}/src", f"{b}/dst") if i % 2 == 0 else (f"{b}/dst", f"{b}/src")
            fs.mv(src, dst, recursive=True)
    finally:
        stop.set()
        watcher.join()
    assert seen_tops <= {(f"{b}/src",), (f"{b}/dst",)}
    assert seen_sizes == {30}


def test_pandas_reads_and_writes_parquet_through_hns(hns, metadata):
    fs, b = hns
    frame = pd.DataFrame({"x": range(100), "y": ["v"] * 100})
    frame.to_parquet(f"hns://{b}/tables/t.parquet", storage_options={"metadata": metadata})
    back = pd.read_parquet(f"hns://{b}/tables/t.parquet", storage_options={"metadata": metadata})
    pd.testing.assert_frame_equal(back, frame)


def test_writing_never_overwrites_an_object_it_does_not_own(hns, s3_client):
    fs, b = hns
    s3_client.put_object(Bucket=b, Key="stray", Body=b"not in the namespace")
    fs.pipe(f"{b}/stray", b"new file")
    assert s3_client.get_object(Bucket=b, Key="stray")["Body"].read() == b"not in the namespace"
    assert fs.cat(f"{b}/stray") == b"new file"


@pytest.fixture(scope="module")
def conformance_namespace(s3_client, tmp_path_factory):
    metadata = f"sqlite:///{tmp_path_factory.mktemp('conformance') / 'ns.db'}"
    return fsspec.filesystem("hns", metadata=metadata), new_namespace(s3_client, metadata)


class HNSFixtures(AbstractFixtures):
    """fsspec's own conformance suite, run on one namespace."""

    @pytest.fixture
    def fs(self, conformance_namespace):
        return conformance_namespace[0]

    @pytest.fixture
    def fs_path(self, conformance_namespace):
        return f"{conformance_namespace[1]}/root-{uuid.uuid4().hex[:8]}"

    @pytest.fixture
    def supports_empty_directories(self):
        return True


class TestHNSCopy(AbstractCopyTests, HNSFixtures):
    pass


class TestHNSGet(AbstractGetTests, HNSFixtures):
    pass


class TestHNSPut(AbstractPutTests, HNSFixtures):
    pass


class TestHNSPipe(AbstractPipeTests, HNSFixtures):
    pass


class TestHNSOpen(AbstractOpenTests, HNSFixtures):
    pass
