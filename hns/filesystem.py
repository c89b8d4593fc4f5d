"""`hns://`: an fsspec filesystem over a converted bucket's namespace.

Paths are `bucket/dir/file`. Listing and `info` read only the metadata store, never the bucket.
File contents live in the bucket's objects: reads are (ranged) GETs of the entry's object; a write
goes to a new object first and the entry appears (or is swapped) in one metadata transaction
afterwards. Renaming or deleting a directory is one transaction however large the directory; the
objects of deleted files leave the bucket only after that transaction commits.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import uuid
from typing import Any

import fsspec
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem
from sqlalchemy.exc import IntegrityError

from hns.store import NamespaceEntry, NamespaceError, Store, split
from tasks.endpoints import s3_options

#: Where the bytes of files written through hns:// go, each under a key of its own.
FRESH_PREFIX = ".ferry-hns/"


class HNSFileSystem(AbstractFileSystem):
    """fsspec.filesystem("hns", metadata="sqlite:////var/lib/ferry/bucket.db")"""

    protocol = "hns"
    root_marker = ""

    def __init__(self, metadata: str, storage_options: dict | None = None, **kwargs: Any) -> None:
        super().__init__(metadata=metadata, storage_options=storage_options, **kwargs)
        self.metadata = metadata
        self.bucket_options = dict(storage_options or {})
        self.store = Store(metadata)

    # --- plumbing -------------------------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path):
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = str(path)
        if path.startswith("hns://"):
            path = path[len("hns://") :]
        return path.strip("/")

    @property
    def objects(self):
        """The bucket's s3fs filesystem (botocore's own retries, unlike ferry's transfers)."""
        options = dict(self.bucket_options)
        config = dict(options.pop("config_kwargs", None) or {})
        config.setdefault("retries", {"mode": "standard", "max_attempts": 5})
        return fsspec.filesystem("s3", **s3_options({**options, "config_kwargs": config}))

    def _lookup(self, conn, path: str):
        try:
            return self.store.lookup(conn, path)
        except NamespaceError as exc:
            raise FileNotFoundError(str(exc)) from exc

    def _entry(self, conn, path: str) -> tuple[Any, NamespaceEntry]:
        ns, entry = self._lookup(conn, path)
        if entry is None:
            raise FileNotFoundError(path)
        return ns, entry

    @staticmethod
    def _info(path: str, entry: NamespaceEntry) -> dict:
        kind = "directory" if entry.kind == "dir" else "file"
        info = {"name": path, "size": entry.size if kind == "file" else 0, "type": kind}
        if kind == "file":
            info.update(
                etag=entry.etag, mtime=(entry.mtime_ns or 0) / 1e9, object_key=entry.object_key
            )
        return info

    # --- reading the tree -----------------------------------------------------------------------

    def ls(self, path, detail=True, **kwargs):
        path = self._strip_protocol(path)
        with self.store.reading() as conn:
            if not path:
                names = self.store.active_buckets(conn)
                out = [{"name": n, "size": 0, "type": "directory"} for n in names]
                return out if detail else [o["name"] for o in out]
            ns, entry = self._entry(conn, path)
            if entry.kind == "dir":
                children = self.store.children(conn, ns, entry)
                out = [self._info(f"{path}/{c.name}", c) for c in children]
            else:
                out = [self._info(path, entry)]
        return out if detail else [o["name"] for o in out]

    def info(self, path, **kwargs):
        path = self._strip_protocol(path)
        if not path:
            return {"name": "", "size": 0, "type": "directory"}
        with self.store.reading() as conn:
            _, entry = self._entry(conn, path)
        return self._info(path, entry)

    def exists(self, path, **kwargs):
        try:
            self.info(path)
            return True
        except FileNotFoundError:
            return False

    def created(self, path):
        return self.modified(path)

    def modified(self, path):
        from datetime import UTC, datetime

        info = self.info(path)
        return datetime.fromtimestamp(info.get("mtime", 0), UTC)

    # --- directories ----------------------------------------------------------------------------

    def _makedirs(self, conn, path: str, *, exist_ok: bool) -> NamespaceEntry:
        bucket, parts = split(path)
        ns = self.store.namespace(conn, bucket)
        entry = self.store.root(conn, ns)
        created = False
        for i, name in enumerate(parts):
            _, child = self._lookup(conn, "/".join([bucket, *parts[: i + 1]]))
            if child is None:
                child = self.store.add(conn, ns, entry, name, "dir", mtime_ns=time.time_ns())
                created = True
            elif child.kind != "dir":
                raise NotADirectoryError(f"{bucket}/{'/'.join(parts[: i + 1])} is a file")
            entry = child
        if not created and not exist_ok and parts:
            raise FileExistsError(path)
        return entry

    def mkdir(self, path, create_parents=True, **kwargs):
        path = self._strip_protocol(path)
        with self.store.begin() as conn:
            if not create_parents:
                parent = path.rpartition("/")[0]
                _, entry = self._lookup(conn, parent)
                if entry is None:
                    raise FileNotFoundError(parent)
            _, existing = self._lookup(conn, path)
            if existing is not None:
                raise FileExistsError(path)
            self._makedirs(conn, path, exist_ok=True)

    def makedirs(self, path, exist_ok=False):
        path = self._strip_protocol(path)
        with self.store.begin() as conn:
            self._makedirs(conn, path, exist_ok=exist_ok)

    def rmdir(self, path):
        path = self._strip_protocol(path)
        with self.store.begin() as conn:
            ns, entry = self._entry(conn, path)
            if entry.kind != "dir":
                raise NotADirectoryError(path)
            if self.store.children(conn, ns, entry):
                raise OSError(39, "Directory not empty", path)
            if entry.parent_id is None:
                raise PermissionError("the namespace root cannot be removed")
            self.store.delete(conn, [entry.id])

    # --- removing and moving --------------------------------------------------------------------

    def rm(self, path, recursive=False, maxdepth=None):
        """Remove files, or whole directories with recursive=True: one transaction each, then
        the objects no entry refers to any more."""
        paths = path if isinstance(path, list) else [path]
        doomed: list[tuple[str, str]] = []
        for p in paths:
            p = self._strip_protocol(p)
            with self.store.begin() as conn:
                ns, entry = self._entry(conn, p)
                if entry.kind == "dir":
                    if not recursive:
                        raise IsADirectoryError(f"{p} is a directory (use recursive=True)")
                    if entry.parent_id is None:
                        raise PermissionError("the namespace root cannot be removed")
                    gone = self.store.subtree(conn, ns, entry)
                else:
                    gone = [entry]
                self.store.delete(conn, [e.id for e in gone])
                keys = {e.object_key for e in gone if e.kind == "file" and e.object_key}
                doomed += [(ns.bucket, k) for k in keys if not self.store.references(conn, ns, k)]
        self._delete_objects(doomed)

    def rm_file(self, path):
        self.rm(path)

    def _rm(self, path):
        self.rm(path)

    def _delete_objects(self, doomed: list[tuple[str, str]]) -> None:
        if doomed:
            self.objects.rm([f"{bucket}/{key}" for bucket, key in doomed])

    def mv(self, path1, path2, recursive=False, maxdepth=None, **kwargs):
        """Rename a file or a whole directory: one row changes, in one transaction. Moving into an
        existing directory puts the source inside it; a directory cannot move into itself."""
        src = self._strip_protocol(path1)
        dst = self._strip_protocol(path2)
        doomed: list[tuple[str, str]] = []
        with self.store.begin() as conn:
            ns, entry = self._entry(conn, src)
            if entry.parent_id is None:
                raise PermissionError("the namespace root cannot be moved")
            dst_bucket, _ = split(dst)
            if dst_bucket != ns.bucket:
                raise OSError(18, "cannot move between namespaces (buckets)", dst)
            _, there = self._lookup(conn, dst)
            if there is not None and there.kind == "dir":
                dst = f"{dst}/{entry.name}"
                _, there = self._lookup(conn, dst)
            parent_path, _, name = dst.rpartition("/")
            parent = self._makedirs(conn, parent_path, exist_ok=True)
            if entry.kind == "dir" and self.store.is_ancestor(conn, entry, parent):
                raise OSError(22, "cannot move a directory into itself", dst)
            if there is not None:
                if there.id == entry.id:
                    return
                if there.kind == "dir" or entry.kind == "dir":
                    raise FileExistsError(dst)
                self.store.delete(conn, [there.id])
                if there.object_key and not self.store.references(conn, ns, there.object_key):
                    doomed.append((ns.bucket, there.object_key))
            self.store.move(conn, entry, parent, name)
        self._delete_objects(doomed)

    def rename(self, path1, path2, **kwargs):
        self.mv(path1, path2, **kwargs)

    # --- contents -------------------------------------------------------------------------------

    def _object_path(self, path: str) -> tuple[str, NamespaceEntry]:
        with self.store.reading() as conn:
            ns, entry = self._entry(conn, path)
        if entry.kind != "file":
            raise IsADirectoryError(path)
        return f"{ns.bucket}/{entry.object_key}", entry

    def cat_file(self, path, start=None, end=None, **kwargs):
        target, entry = self._object_path(self._strip_protocol(path))
        if entry.size == 0:
            return b""
        return self.objects.cat_file(target, start=start, end=end)

    def get_file(self, rpath, lpath, callback=None, **kwargs):
        rpath = self._strip_protocol(rpath)
        if self.isdir(rpath):
            os.makedirs(lpath, exist_ok=True)
            return
        target, _ = self._object_path(rpath)
        if os.path.dirname(lpath):
            os.makedirs(os.path.dirname(lpath), exist_ok=True)
        self.objects.get_file(target, lpath)

    def _open(
        self, path, mode="rb", block_size=None, autocommit=True, cache_options=None, **kwargs
    ):
        path = self._strip_protocol(path)
        if mode == "rb":
            target, entry = self._object_path(path)
            if entry.size == 0:
                return HNSEmptyFile(self, path)
            return self.objects.open(
                target, "rb", block_size=block_size, size=entry.size, cache_options=cache_options
            )
        if mode in ("wb", "xb"):
            if mode == "xb" and self.exists(path):
                raise FileExistsError(path)
            f = HNSWriteFile(self, path, mode="wb", block_size=block_size or 5 * 2**20)
            f.exclusive = mode == "xb"
            return f
        raise NotImplementedError(f"hns:// files open as 'rb', 'wb' or 'xb', not {mode!r}")

    def pipe_file(self, path, value, mode="overwrite", **kwargs):
        path = self._strip_protocol(path)
        if mode == "create" and self.exists(path):
            raise FileExistsError(path)
        with tempfile.NamedTemporaryFile() as f:
            f.write(value)
            f.flush()
            self.put_file(f.name, path, mode=mode)

    def put_file(self, lpath, rpath, callback=None, mode="overwrite", **kwargs):
        rpath = self._strip_protocol(rpath)
        if os.path.isdir(lpath):
            self.makedirs(rpath, exist_ok=True)
            return
        key = self._fresh_key(rpath)
        bucket, _ = split(rpath)
        self.objects.put_file(lpath, f"{bucket}/{key}")
        self._link(rpath, key, exclusive=mode == "create")

    def cp_file(self, path1, path2, **kwargs):
        path1, path2 = self._strip_protocol(path1), self._strip_protocol(path2)
        if self.isdir(path1):
            self.makedirs(path2, exist_ok=True)
            return
        source, _ = self._object_path(path1)
        key = self._fresh_key(path2)
        bucket, _ = split(path2)
        self.objects.copy(source, f"{bucket}/{key}")
        self._link(path2, key)

    def _fresh_key(self, path: str) -> str:
        """The object key for a new file's bytes: a key of its own, used by no other write.
        Two writers of one path never share an object, so the one that loses the race for the
        entry can drop its object without touching the winner's."""
        _, parts = split(path)
        return f"{FRESH_PREFIX}{uuid.uuid4().hex}/{parts[-1]}"

    def _link(self, path: str, key: str, *, exclusive: bool = False) -> None:
        """Make `path` name the object `key`: the new entry appears (or replaces the old file)
        in one transaction; a replaced file's object is deleted after it."""
        bucket, parts = split(path)
        info = self.objects.info(f"{bucket}/{key}")
        etag = str(info.get("ETag", "")).strip('"') or None
        doomed = []
        try:
            with self.store.begin() as conn:
                ns = self.store.namespace(conn, bucket)
                parent = self._makedirs(conn, "/".join([bucket, *parts[:-1]]), exist_ok=True)
                _, there = self._lookup(conn, path)
                if there is not None:
                    if there.kind == "dir":
                        raise IsADirectoryError(path)
                    if exclusive:
                        raise FileExistsError(path)
                    self.store.delete(conn, [there.id])
                    if (
                        there.object_key
                        and there.object_key != key
                        and not self.store.references(conn, ns, there.object_key)
                    ):
                        doomed.append((bucket, there.object_key))
                self.store.add(
                    conn,
                    ns,
                    parent,
                    parts[-1],
                    "file",
                    object_key=key,
                    size=int(info.get("size", 0)),
                    etag=etag,
                    mtime_ns=time.time_ns(),
                )
        except BaseException as exc:
            with contextlib.suppress(Exception):  # the entry never appeared: drop its object
                self.objects.rm_file(f"{bucket}/{key}")
            if isinstance(exc, IntegrityError):
                raise FileExistsError(
                    f"{path}: another writer created it at the same moment; this write was not kept"
                ) from None
            raise
        self._delete_objects(doomed)


class HNSEmptyFile(AbstractBufferedFile):
    """Reading an empty file needs no request."""

    def __init__(self, fs, path):
        super().__init__(fs, path, mode="rb", size=0, cache_type="none")

    def _fetch_range(self, start, end):
        return b""


class HNSWriteFile(AbstractBufferedFile):
    """Buffers to a local temporary file; on close uploads a new object, then links the entry."""

    def _initiate_upload(self):
        # closed in _upload_chunk(final=True) or discard(): it outlives this call
        self._spool = tempfile.NamedTemporaryFile(prefix="ferry-hns-", delete=False)  # noqa: SIM115

    def _upload_chunk(self, final=False):
        self.buffer.seek(0)
        self._spool.write(self.buffer.read())
        if final:
            self._spool.close()
            try:
                mode = "create" if getattr(self, "exclusive", False) else "overwrite"
                self.fs.put_file(self._spool.name, self.path, mode=mode)
            finally:
                os.unlink(self._spool.name)
        return True

    def discard(self):
        spool = getattr(self, "_spool", None)
        if spool is not None:
            spool.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(spool.name)
