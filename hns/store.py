"""The namespace's metadata store: a directory tree of entries over a bucket's objects.

SQLAlchemy Core over SQLite by default, PostgreSQL when several machines share a namespace (the
schema uses nothing else). Each entry is a row (parent, name, kind, object key, size, etag, mtime),
so renaming or deleting a directory touches one row or one subtree, in one transaction.

A conversion builds its namespace under state `building` and flips it to `active` in the commit:
readers only ever see active namespaces, so a crash leaves nothing half-built.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from tasks.errors import FerryError, NamespaceError  # noqa: F401 - NamespaceError is imported from here too

metadata_obj = sa.MetaData()

namespaces = sa.Table(
    "ferry_namespaces",
    metadata_obj,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("bucket", sa.String(255), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # building, active
    sa.Column("source_url", sa.String(1024), nullable=False),
    sa.Column("conversion_ts", sa.BigInteger, nullable=False),  # <ts> of the renames
    sa.Column("converted_at", sa.Float),  # epoch seconds of the commit
    sa.Column("task_id", sa.String(64)),
    sa.Column("root_id", sa.BigInteger),
)
sa.Index("ferry_namespaces_active", namespaces.c.bucket, namespaces.c.state)

entries = sa.Table(
    "ferry_entries",
    metadata_obj,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("namespace_id", sa.Integer, sa.ForeignKey("ferry_namespaces.id"), nullable=False),
    sa.Column("parent_id", sa.BigInteger),  # null for the root
    sa.Column("name", sa.String(1024), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),  # dir, file
    sa.Column("object_key", sa.String(1024)),
    sa.Column("size", sa.BigInteger, nullable=False, default=0),
    sa.Column("etag", sa.String(128)),
    sa.Column("mtime_ns", sa.BigInteger),
    sa.UniqueConstraint("namespace_id", "parent_id", "name", name="ferry_entries_unique_name"),
)
sa.Index("ferry_entries_object", entries.c.namespace_id, entries.c.object_key)


@dataclass(frozen=True)
class NamespaceEntry:
    """One row of the namespace's tree: a directory, or a file over an object. (A listing's entry
    is `tasks.listing.Entry`.)"""

    id: int
    parent_id: int | None
    name: str
    kind: str
    object_key: str | None = None
    size: int = 0
    etag: str | None = None
    mtime_ns: int | None = None


@dataclass(frozen=True)
class Namespace:
    id: int
    bucket: str
    state: str
    source_url: str
    conversion_ts: int
    converted_at: float | None
    task_id: str | None
    root_id: int


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


#: The PostgreSQL advisory lock that writers of namespaces take in turn (any constant that no
#: other application of the database uses).
WRITER_LOCK = 0x6665727279  # "ferry"


def engine_for(url: str) -> Engine:
    """One engine per URL per process; tables created on first use."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            kwargs = {}
            if url.startswith("sqlite"):
                kwargs["connect_args"] = {"timeout": 60, "check_same_thread": False}
            engine = sa.create_engine(url, **kwargs)
            if url.startswith("sqlite"):
                sa.event.listen(engine, "connect", _sqlite_pragmas)
            metadata_obj.create_all(engine)
            _engines[url] = engine
        return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _entry(row) -> NamespaceEntry:
    return NamespaceEntry(
        row.id,
        row.parent_id,
        row.name,
        row.kind,
        row.object_key,
        row.size or 0,
        row.etag,
        row.mtime_ns,
    )


def split(path: str) -> tuple[str, list[str]]:
    """'bucket/a/b' → ('bucket', ['a', 'b'])."""
    parts = [p for p in path.strip("/").split("/") if p]
    if not parts:
        raise NamespaceError("no bucket in path", where=path)
    return parts[0], parts[1:]


class Store:
    """All reads and writes of namespaces. Every method is one transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = engine_for(url)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction that may write: writers of one metadata store take turns, so what a
        writer read (a path's entry, a directory's subtree, whether a move makes a cycle) still
        holds when it writes. Several processes writing, renaming and deleting at once lose no
        update and leave no orphan entry. On PostgreSQL a transaction-scoped advisory lock; on
        SQLite the write lock, taken before the first read (a read-then-write transaction would
        otherwise fail when another writer commits in between)."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITER_LOCK})
            elif conn.dialect.name == "sqlite":
                conn.execute(namespaces.update().where(sa.false()).values(state="active"))
            yield conn

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read-only transaction: no turn to wait for. A rename changes one row, so a reader
        sees a path before or after it, never half-done."""
        with self.engine.begin() as conn:
            yield conn

    # --- namespaces -----------------------------------------------------------------------------

    def active(self, conn: Connection, bucket: str) -> Namespace | None:
        row = conn.execute(
            sa.select(namespaces).where(
                namespaces.c.bucket == bucket, namespaces.c.state == "active"
            )
        ).first()
        return Namespace(**row._mapping) if row else None

    def active_buckets(self, conn: Connection) -> list[str]:
        return sorted(
            conn.execute(
                sa.select(namespaces.c.bucket).where(namespaces.c.state == "active")
            ).scalars()
        )

    def namespace(self, conn: Connection, bucket: str) -> Namespace:
        found = self.active(conn, bucket)
        if found is None:
            raise NamespaceError(
                "no hierarchical namespace for this bucket (convert it first)", where=bucket
            )
        return found

    def start_building(
        self, bucket: str, *, source_url: str, conversion_ts: int, task_id: str | None
    ) -> int:
        """A fresh `building` namespace (discarding any left by a crashed conversion)."""
        with self.begin() as conn:
            if self.active(conn, bucket) is not None:
                raise NamespaceError("already converted", where=bucket)
            self._discard_building(conn, bucket)
            ns_id = conn.execute(
                namespaces.insert().values(
                    bucket=bucket,
                    state="building",
                    source_url=source_url,
                    conversion_ts=conversion_ts,
                    task_id=task_id,
                )
            ).inserted_primary_key[0]
            root = conn.execute(
                entries.insert().values(
                    namespace_id=ns_id, parent_id=None, name="", kind="dir", size=0
                )
            ).inserted_primary_key[0]
            conn.execute(namespaces.update().where(namespaces.c.id == ns_id).values(root_id=root))
            return ns_id

    def _discard_building(self, conn: Connection, bucket: str) -> None:
        stale = [
            r.id
            for r in conn.execute(
                sa.select(namespaces.c.id).where(
                    namespaces.c.bucket == bucket, namespaces.c.state == "building"
                )
            )
        ]
        if stale:
            conn.execute(entries.delete().where(entries.c.namespace_id.in_(stale)))
            conn.execute(namespaces.delete().where(namespaces.c.id.in_(stale)))

    def discard_building(self, bucket: str) -> None:
        with self.begin() as conn:
            self._discard_building(conn, bucket)

    def fill(
        self, ns_id: int, tree: Iterable[tuple[str, str, str | None, int, str | None, int | None]]
    ) -> None:
        """Insert a whole tree, parents first: (path, kind, object_key, size, etag, mtime_ns)."""
        with self.begin() as conn:
            root = conn.execute(
                sa.select(namespaces.c.root_id).where(namespaces.c.id == ns_id)
            ).scalar_one()
            ids: dict[str, int] = {"": root}
            batch: list[dict] = []

            def flush() -> None:
                if batch:
                    conn.execute(entries.insert(), batch)
                    batch.clear()

            for path, kind, key, size, etag, mtime in tree:
                parent, _, name = path.rpartition("/")
                row = {
                    "namespace_id": ns_id,
                    "parent_id": ids[parent],
                    "name": name,
                    "kind": kind,
                    "object_key": key,
                    "size": size,
                    "etag": etag,
                    "mtime_ns": mtime,
                }
                if kind == "dir":
                    flush()
                    ids[path] = conn.execute(entries.insert().values(**row)).inserted_primary_key[0]
                else:
                    batch.append(row)
                    if len(batch) >= 5000:
                        flush()
            flush()

    def activate(self, ns_id: int) -> float:
        """The commit: the namespace becomes visible, all at once."""
        with self.begin() as conn:
            row = conn.execute(sa.select(namespaces).where(namespaces.c.id == ns_id)).first()
            if row is None or row.state != "building":
                raise NamespaceError("namespace is not being built", where=str(ns_id))
            if self.active(conn, row.bucket) is not None:
                raise NamespaceError("already converted", where=row.bucket)
            when = time.time()
            conn.execute(
                namespaces.update()
                .where(namespaces.c.id == ns_id)
                .values(state="active", converted_at=when)
            )
            return when

    # --- paths ----------------------------------------------------------------------------------

    def lookup(self, conn: Connection, path: str) -> tuple[Namespace, NamespaceEntry | None]:
        """The namespace of `bucket/...` and the entry at the path (None when missing)."""
        bucket, parts = split(path)
        ns = self.namespace(conn, bucket)
        entry = self.root(conn, ns)
        for name in parts:
            if entry.kind != "dir":
                return ns, None
            found = conn.execute(
                sa.select(entries).where(
                    entries.c.namespace_id == ns.id,
                    entries.c.parent_id == entry.id,
                    entries.c.name == name,
                )
            ).first()
            if found is None:
                return ns, None
            entry = _entry(found)
        return ns, entry

    def root(self, conn: Connection, ns: Namespace) -> NamespaceEntry:
        return _entry(conn.execute(sa.select(entries).where(entries.c.id == ns.root_id)).one())

    def children(
        self, conn: Connection, ns: Namespace, entry: NamespaceEntry
    ) -> list[NamespaceEntry]:
        rows = conn.execute(
            sa.select(entries)
            .where(entries.c.namespace_id == ns.id, entries.c.parent_id == entry.id)
            .order_by(entries.c.name)
        )
        return [_entry(r) for r in rows]

    def subtree(
        self, conn: Connection, ns: Namespace, entry: NamespaceEntry
    ) -> list[NamespaceEntry]:
        """The entry and everything below it (a recursive query, SQLite and PostgreSQL alike)."""
        tree = sa.select(entries.c.id).where(entries.c.id == entry.id).cte("tree", recursive=True)
        tree = tree.union_all(sa.select(entries.c.id).where(entries.c.parent_id == tree.c.id))
        rows = conn.execute(sa.select(entries).where(entries.c.id.in_(sa.select(tree.c.id))))
        return [_entry(r) for r in rows]

    def is_ancestor(
        self, conn: Connection, ancestor: NamespaceEntry, entry: NamespaceEntry
    ) -> bool:
        current: int | None = entry.id
        while current is not None:
            if current == ancestor.id:
                return True
            current = conn.execute(
                sa.select(entries.c.parent_id).where(entries.c.id == current)
            ).scalar_one_or_none()
        return False

    def add(
        self,
        conn: Connection,
        ns: Namespace,
        parent: NamespaceEntry,
        name: str,
        kind: str,
        *,
        object_key: str | None = None,
        size: int = 0,
        etag: str | None = None,
        mtime_ns: int | None = None,
    ) -> NamespaceEntry:
        new_id = conn.execute(
            entries.insert().values(
                namespace_id=ns.id,
                parent_id=parent.id,
                name=name,
                kind=kind,
                object_key=object_key,
                size=size,
                etag=etag,
                mtime_ns=mtime_ns,
            )
        ).inserted_primary_key[0]
        return NamespaceEntry(new_id, parent.id, name, kind, object_key, size, etag, mtime_ns)

    def move(
        self, conn: Connection, entry: NamespaceEntry, new_parent: NamespaceEntry, new_name: str
    ) -> None:
        """Rename: one row, whatever is below it."""
        conn.execute(
            entries.update()
            .where(entries.c.id == entry.id)
            .values(parent_id=new_parent.id, name=new_name)
        )

    def delete(self, conn: Connection, ids: list[int]) -> None:
        for start in range(0, len(ids), 5000):
            conn.execute(entries.delete().where(entries.c.id.in_(ids[start : start + 5000])))

    def references(self, conn: Connection, ns: Namespace, object_key: str) -> int:
        return conn.execute(
            sa.select(sa.func.count())
            .select_from(entries)
            .where(entries.c.namespace_id == ns.id, entries.c.object_key == object_key)
        ).scalar_one()

    def all_files(
        self, conn: Connection, ns: Namespace
    ) -> dict[str, list[tuple[str, NamespaceEntry]]]:
        """{object_key: [(path, entry)]} for every file, by walking the tree once."""
        rows = [
            _entry(r)
            for r in conn.execute(sa.select(entries).where(entries.c.namespace_id == ns.id))
        ]
        by_id = {e.id: e for e in rows}
        paths: dict[int, str] = {ns.root_id: ""}

        def path_of(e: NamespaceEntry) -> str:
            if e.id in paths:
                return paths[e.id]
            parent = path_of(by_id[e.parent_id])
            paths[e.id] = f"{parent}/{e.name}" if parent else e.name
            return paths[e.id]

        found: dict[str, list[tuple[str, NamespaceEntry]]] = {}
        for e in rows:
            if e.kind == "file" and e.object_key is not None:
                found.setdefault(e.object_key, []).append((path_of(e), e))
        return found
