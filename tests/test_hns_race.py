"""Two processes writing the same new hns:// path at once, round after round, on SQLite and on
PostgreSQL: each write wins or fails with FileExistsError, and the namespace never points at an
object that is gone or at bytes of another size."""

from __future__ import annotations

import multiprocessing
import uuid

import pytest

from hns.filesystem import FRESH_PREFIX, HNSFileSystem
from hns.store import Store

ROUNDS = 40
BODIES = (b"a" * 5000, b"b" * 1000)


def racer(metadata: str, bucket: str, body: bytes, barrier, results) -> None:
    fs = HNSFileSystem(metadata=metadata, skip_instance_cache=True)
    outcomes = []
    for i in range(ROUNDS):
        barrier.wait(timeout=300)
        try:
            fs.pipe(f"{bucket}/race/{i}", body)
            outcomes.append("ok")
        except FileExistsError as exc:
            assert "another writer" in str(exc)
            outcomes.append("lost")
    results.put((body[:1], outcomes))


@pytest.fixture(params=["sqlite", "postgresql"])
def metadata(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ns.db'}"
    url = request.getfixturevalue("postgres_url")
    database = f"race_{uuid.uuid4().hex[:8]}"
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {database}")
    engine.dispose()
    return url.rsplit("/", 1)[0] + "/" + database


def test_concurrent_writers_of_one_new_path_never_lose_the_winner(metadata, s3_client):
    bucket = f"race-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket)
    store = Store(metadata)
    store.activate(
        store.start_building(bucket, source_url=f"s3://{bucket}", conversion_ts=0, task_id="t")
    )
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    workers = [
        ctx.Process(target=racer, args=(metadata, bucket, b, barrier, results)) for b in BODIES
    ]
    for w in workers:
        w.start()
    for w in workers:  # a writer that raised anything but FileExistsError exits non-zero
        w.join(timeout=600)
        assert w.exitcode == 0
    outcomes = dict(results.get(timeout=60) for _ in workers)
    fs = HNSFileSystem(metadata=metadata, skip_instance_cache=True)
    for i in range(ROUNDS):
        mine = (outcomes[b"a"][i], outcomes[b"b"][i])
        assert "ok" in mine, (i, mine)  # somebody won
        data = fs.cat(f"{bucket}/race/{i}")  # the entry points at an object that exists
        assert data in BODIES
        assert fs.info(f"{bucket}/race/{i}")["size"] == len(data)  # of the size it says
        if "lost" in mine:  # the winner's bytes are the ones kept
            assert data == BODIES[mine.index("ok")]
    # no object left behind by a losing or replaced write
    stored = s3_client.list_objects_v2(Bucket=bucket, Prefix=FRESH_PREFIX).get("KeyCount", 0)
    assert stored == ROUNDS


MANY_ROUNDS = 25
ORIGINALS = 8


def mover(metadata: str, bucket: str, src: str, dst: str, barrier, results) -> None:
    """Rename src to dst each round (a directory into a directory goes inside it)."""
    fs = HNSFileSystem(metadata=metadata, skip_instance_cache=True)
    done = 0
    for _ in range(MANY_ROUNDS):
        barrier.wait(timeout=300)
        try:
            fs.mv(f"{bucket}/{src}", f"{bucket}/{dst}", recursive=True)
            done += 1
        except (FileNotFoundError, FileExistsError):
            pass  # the other mover got there first
        except OSError as exc:  # a directory cannot move into itself: refused, nothing changed
            assert "into itself" in str(exc), exc
    results.put(("mover", done))


def cycler(metadata: str, bucket: str, mine: str, other: str, barrier, results) -> None:
    """Move t/mine into t/other and back out, again and again: with the other cycler doing the
    reverse, two moves that both went through would make a cycle."""
    fs = HNSFileSystem(metadata=metadata, skip_instance_cache=True)
    for _ in range(MANY_ROUNDS):
        barrier.wait(timeout=300)
        for _ in range(4):
            try:
                fs.mv(f"{bucket}/t/{mine}", f"{bucket}/t/{other}", recursive=True)
                fs.mv(f"{bucket}/t/{other}/{mine}", f"{bucket}/t/{mine}", recursive=True)
            except FileNotFoundError:
                pass  # inside the other one just now
            except OSError as exc:  # into itself: refused, nothing changed
                assert "into itself" in str(exc), exc
    results.put(("cycler", None))


def churner(metadata: str, bucket: str, barrier, results) -> None:
    """Write new files beside the renamed directories, keep every other one, delete the rest.
    (Not into a or b: writing a path creates its missing directories, as on S3, so a write into
    a just renamed away would make a new a.)"""
    fs = HNSFileSystem(metadata=metadata, skip_instance_cache=True)
    for i in range(MANY_ROUNDS):
        barrier.wait(timeout=300)
        fs.pipe(f"{bucket}/t/c/churn-{i}", b"c" * 10)
        if i % 2:
            fs.rm(f"{bucket}/t/c/churn-{i}")
    results.put(("churner", None))


def reader(metadata: str, bucket: str, barrier, results) -> None:
    """One listing of t, each round: a or b, never both nor neither (no half-done rename)."""
    fs = HNSFileSystem(metadata=metadata, skip_instance_cache=True)
    seen = []
    for _ in range(MANY_ROUNDS):
        barrier.wait(timeout=300)
        for _ in range(3):
            names = {n.rsplit("/", 1)[1] for n in fs.ls(f"{bucket}/t", detail=False)}
            seen.append(tuple(sorted(names & {"a", "b"})))
    results.put(("reader", seen))


def test_processes_renaming_writing_and_deleting_at_once_lose_nothing(metadata, s3_client):
    """Six processes, round after round: two rename t/a and t/b back and forth, two move p into
    q and q into p (each a cycle if both went through), one writes and deletes files in t/c,
    one lists t. No update is lost, no entry is orphaned, no cycle forms, every
    original file stays reachable once, and no listing ever sees a rename half-done."""
    import sqlalchemy as sa

    from hns.store import entries

    bucket = f"many-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket)
    store = Store(metadata)
    store.activate(
        store.start_building(bucket, source_url=f"s3://{bucket}", conversion_ts=0, task_id="t")
    )
    fs = HNSFileSystem(metadata=metadata, skip_instance_cache=True)
    for i in range(ORIGINALS):
        fs.pipe(f"{bucket}/t/a/f{i}", f"original {i}".encode())
    fs.makedirs(f"{bucket}/t/p")
    fs.makedirs(f"{bucket}/t/q")

    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(6), ctx.Queue()
    jobs = [
        (mover, ("t/a", "t/b")),
        (mover, ("t/b", "t/a")),
        (cycler, ("p", "q")),
        (cycler, ("q", "p")),
        (churner, ()),
        (reader, ()),
    ]
    workers = [
        ctx.Process(target=target, args=(metadata, bucket, *args, barrier, results))
        for target, args in jobs
    ]
    for w in workers:
        w.start()
    for w in workers:  # a process that met anything unforeseen exits non-zero
        w.join(timeout=900)
        assert w.exitcode == 0
    outcomes = [results.get(timeout=60) for _ in workers]
    seen = next(value for kind, value in outcomes if kind == "reader")
    assert seen and [names for names in seen if len(names) != 1] == []  # a or b, never both

    with store.reading() as conn:
        ns = store.namespace(conn, bucket)
        rows = conn.execute(sa.select(entries).where(entries.c.namespace_id == ns.id)).all()
    ids = {r.id for r in rows}
    parents = {r.id: r.parent_id for r in rows}
    assert all(r.parent_id in ids for r in rows if r.id != ns.root_id)  # no orphan
    for r in rows:  # every entry reaches the root: no cycle
        current, steps = r.id, 0
        while current != ns.root_id:
            current, steps = parents[current], steps + 1
            assert steps <= len(rows), f"cycle through entry {r.id}"
    files = [p for p in fs.find(f"{bucket}/t") if "/f" in p]
    assert sorted(p.rsplit("/", 1)[1] for p in files) == [f"f{i}" for i in range(ORIGINALS)]
    for path in files:
        assert fs.cat(path) == f"original {path.rsplit('/f', 1)[1]}".encode()
    kept = sorted(int(p.rsplit("-", 1)[1]) for p in fs.find(f"{bucket}/t/c"))
    assert kept == list(range(0, MANY_ROUNDS, 2))  # every write and every delete took effect
    stored = s3_client.list_objects_v2(Bucket=bucket, Prefix=FRESH_PREFIX).get("KeyCount", 0)
    assert stored == ORIGINALS + len(kept)  # a deleted file's object went with it
