"""The metadata store runs the same on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import fsspec
import pytest

from hns.store import NamespaceError, Store


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ns.db'}"
    return request.getfixturevalue("postgres_url")


def build(store: Store, bucket: str):
    ns_id = store.start_building(bucket, source_url=f"s3://{bucket}", conversion_ts=1, task_id="t")
    store.fill(
        ns_id,
        [
            ("a", "dir", None, 0, None, None),
            ("a/b", "dir", None, 0, None, None),
            ("a/b/f", "file", "a/b/f", 3, "e1", 10),
            ("a/g", "file", "a/g", 4, "e2", 11),
        ],
    )
    return ns_id


def test_a_namespace_is_invisible_until_activated(store_url):
    store = Store(store_url)
    bucket = f"b-{abs(hash(store_url)) % 10**8}-inv"
    ns_id = build(store, bucket)
    with store.begin() as conn, pytest.raises(NamespaceError):
        store.lookup(conn, f"{bucket}/a")
    store.activate(ns_id)
    with store.begin() as conn:
        _, entry = store.lookup(conn, f"{bucket}/a/b/f")
        assert entry.object_key == "a/b/f" and entry.size == 3
    with pytest.raises(NamespaceError, match="already converted"):
        store.start_building(bucket, source_url="x", conversion_ts=2, task_id="t2")


def test_rename_and_subtree_delete(store_url):
    store = Store(store_url)
    bucket = f"b-{abs(hash(store_url)) % 10**8}-ops"
    store.activate(build(store, bucket))
    with store.begin() as conn:
        ns, a = store.lookup(conn, f"{bucket}/a")
        _, b = store.lookup(conn, f"{bucket}/a/b")
        root = store.root(conn, ns)
        store.move(conn, b, root, "moved")
    with store.begin() as conn:
        _, f = store.lookup(conn, f"{bucket}/moved/f")
        assert f is not None and store.lookup(conn, f"{bucket}/a/b")[1] is None
        gone = store.subtree(conn, ns, a)
        assert sorted(e.name for e in gone) == ["a", "g"]
        store.delete(conn, [e.id for e in gone])
    with store.begin() as conn:
        assert store.lookup(conn, f"{bucket}/a")[1] is None
        assert [e.name for e in store.children(conn, ns, store.root(conn, ns))] == ["moved"]


def test_hns_filesystem_on_postgresql(postgres_url, s3_client):
    from test_hns_filesystem import new_namespace

    bucket = new_namespace(s3_client, postgres_url)
    fs = fsspec.filesystem("hns", metadata=postgres_url)
    fs.pipe(f"{bucket}/x/y/z.txt", b"on postgres")
    fs.mv(f"{bucket}/x", f"{bucket}/w", recursive=True)
    assert fs.cat(f"{bucket}/w/y/z.txt") == b"on postgres"
    fs.rm(f"{bucket}/w", recursive=True)
    assert fs.ls(bucket) == []
