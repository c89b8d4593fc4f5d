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
