"""List a tree — a directory or a bucket prefix — into entries, one per file, object or directory.

Listing never follows symbolic links and never opens a file. A bucket prefix is listed in parallel:
the first level of sub-prefixes is found with one delimited request, then each is listed on its own.
"""

from __future__ import annotations

import asyncio
import errno
import fnmatch
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from tasks.endpoints import BucketPrefix, Directory
from tasks.errors import DestinationUnusable, SourceMissing, UsageError, task_error

#: Extended attribute where import records the ETag and mtime it wrote, so a rerun can skip an
#: unchanged file without asking the store for the object's metadata.
STATE_XATTR = "user.ferry.source"


@dataclass(frozen=True, slots=True)
class Entry:
    path: str  # relative, '/'-separated, no trailing '/'
    kind: str  # file, dir, symlink, special (local); object, dir (bucket)
    size: int = 0
    mtime_ns: int | None = None
    etag: str | None = None
    link_target: str | None = None  # a symbolic link's target
    empty: bool = False  # a directory with nothing below it
    state: str | None = None  # import's record on a destination file: "<etag> <mtime_ns>"
    storage_class: str | None = None
    holds_data: bool = False  # a key ending in '/' whose object is not empty
    unreadable: str | None = None  # a directory that could not be read: the error


class Filter:
    """include/exclude globs. A pattern without '/' matches a name in any directory; one with '/'
    matches the whole relative path ('*' crosses directories)."""

    def __init__(self, include: Sequence[str] | None, exclude: Sequence[str] | None) -> None:
        for pattern in [*(include or []), *(exclude or [])]:
            if not isinstance(pattern, str) or not pattern.strip():
                raise UsageError(f"empty include/exclude pattern {pattern!r}")
        self.include = [p.strip().lstrip("/") for p in include or []]
        self.exclude = [p.strip().lstrip("/") for p in exclude or []]

    @staticmethod
    def _match(path: str, pattern: str) -> bool:
        if "/" not in pattern.rstrip("/"):
            return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern)
        return fnmatch.fnmatchcase(path, pattern.rstrip("/")) or fnmatch.fnmatchcase(
            path, pattern.rstrip("/") + "/*"
        )

    def __call__(self, path: str) -> bool:
        if self.include and not any(self._match(path, p) for p in self.include):
            return False
        return not any(self._match(path, p) for p in self.exclude)


def kind_of(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "special"  # socket, FIFO, block or character device


def list_directory(
    directory: Directory,
    *,
    must_exist: bool,
    read_state: bool = False,
    clean_temporaries: bool = False,
    spans=None,
    unknown_subtrees: bool = False,
    resumables: list[str] | None = None,
) -> list[Entry]:
    """Every entry below `directory.root` (or in its `spans`, `tasks.ranges`), depth first,
    links not followed, sorted by path. ferry's own temporary files are never listed; with
    `clean_temporaries` (an import's destination), those that no live import holds are removed.
    With `unknown_subtrees`, a shallow span's subdirectories that are not spans of their own
    (found only on this side) are listed whole with it (a mirror's destination). With
    `resumables` (a list), the temporaries a rerun may resume are kept, their paths added to it:
    the caller removes those it does not resume."""
    root = directory.root
    if not os.path.lexists(root):
        if must_exist:
            raise SourceMissing("directory does not exist", where=root)
        return []
    if not os.path.isdir(root):
        error = SourceMissing if must_exist else DestinationUnusable
        raise error("not a directory", where=root)
    entries: list[Entry] = []
    for span in spans or [None]:
        _list_span(root, span, entries, read_state, clean_temporaries, unknown_subtrees, resumables)
    entries.sort(key=lambda e: e.path)
    return entries


def _list_span(
    root: str,
    span,
    entries: list[Entry],
    read_state: bool,
    clean: bool,
    unknown: bool = False,
    resumables: list[str] | None = None,
) -> None:
    """The entries of one span (None: the whole tree) appended to `entries`."""
    deep = span is None or span.deep
    known = set(span.children) if span is not None and unknown else None
    relative_start = span.path if span is not None else ""
    start = os.path.join(root, relative_start) if relative_start else root
    if relative_start:
        try:
            st = os.stat(start, follow_symlinks=False)
        except FileNotFoundError:
            return  # gone since the tree was cut into spans
        if not stat.S_ISDIR(st.st_mode):  # no longer a directory: listed as what it now is
            found = _entry(relative_start, start, st, read_state)
            if found is not None and found.kind != "dir":
                entries.append(found)
            return
    stack = [(relative_start, start)]
    while stack:
        relative_dir, absolute_dir = stack.pop()
        try:
            with os.scandir(absolute_dir) as it:
                children = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if not relative_dir:
                raise task_error(exc, where=root) from exc
            entries.append(Entry(path=relative_dir, kind="dir", unreadable=str(exc)))
            continue
        if relative_dir:
            entries.append(Entry(path=relative_dir, kind="dir", empty=not children))
        for child in reversed(children):
            name = child.name
            if is_temporary(name):  # ferry's own: never part of the tree
                if clean:
                    keep = resumables is not None
                    removed = remove_if_abandoned(child.path, keep_resumable=keep)
                    if keep and not removed and is_resumable(child.path):
                        resumables.append(child.path)
                continue
            relative = f"{relative_dir}/{name}" if relative_dir else name
            try:
                st = child.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # gone between readdir and stat: it is not part of the tree
            found = _entry(relative, child.path, st, read_state)
            if found is None:
                continue
            if found.kind == "dir":
                if deep or (known is not None and relative not in known):
                    stack.append((relative, child.path))
                continue  # a shallow span's subdirectory is a span of its own
            entries.append(found)


def _entry(relative: str, path: str, st: os.stat_result, read_state: bool) -> Entry | None:
    """The entry of what `st` says is at `path` (None: gone since it was listed). A directory's
    is only its kind: the walk lists it, entry and contents."""
    kind = kind_of(st.st_mode)
    link_target = None
    if kind == "symlink":
        try:
            st, kind, link_target = _as_link(path, st)
        except FileNotFoundError:
            return None  # gone since it was listed
    if kind == "dir":
        return Entry(path=relative, kind="dir")
    return Entry(
        path=relative,
        kind=kind,
        size=st.st_size if kind == "file" else 0,
        mtime_ns=st.st_mtime_ns,
        link_target=link_target,
        state=_read_state(path) if read_state and kind == "file" else None,
    )


def entries_at(directory: Directory, paths) -> list[Entry]:
    """The entries at these relative paths of a local tree, as its listing would have them
    (import state included); paths where nothing is are left out."""
    found = []
    for path in paths:
        full = os.path.join(directory.root, path)
        try:
            st = os.stat(full, follow_symlinks=False)
        except OSError:
            continue
        entry = _entry(path, full, st, read_state=True)
        if entry is not None:
            found.append(entry)
    return found


def _as_link(path: str, st: os.stat_result) -> tuple[os.stat_result, str, str | None]:
    """A link's stat, kind and target. A link swapped for something else between the stat and
    the readlink (readlink then says EINVAL) is listed as what it has become."""
    try:
        return st, "symlink", os.readlink(path)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
    st = os.stat(path, follow_symlinks=False)
    kind = kind_of(st.st_mode)
    return st, kind, os.readlink(path) if kind == "symlink" else None


#: Import writes `<dir>/.ferry-<hex>.part`, holding an exclusive flock on it while it writes.
TEMPORARY_PREFIX, TEMPORARY_SUFFIX = ".ferry-", ".part"
#: A temporary file younger than this is left alone even when unlocked (its writer may be
#: between creating and locking it).
TEMPORARY_GRACE_SECONDS = 1


def is_temporary(name: str) -> bool:
    return name.startswith(TEMPORARY_PREFIX) and name.endswith(TEMPORARY_SUFFIX)


def temporary_name() -> str:
    import uuid

    return f"{TEMPORARY_PREFIX}{uuid.uuid4().hex}{TEMPORARY_SUFFIX}"


def hold(fd: int) -> None:
    """Mark a temporary file as in use for as long as `fd` is open (released by the kernel
    however the process ends, kill -9 included)."""
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


#: Extended attribute of a large import's temporary file: the byte ranges written so far, with
#: their CRC64NVME, so that a run killed mid-file is resumed by the next (tasks.download).
RANGES_XATTR = "user.ferry.ranges"


def resumable_name(name: str, etag: str) -> str:
    """The temporary name of a large import of object version `etag` to the file `name`: the
    same in every run, so a rerun finds what a killed one wrote."""
    import hashlib

    digest = hashlib.sha1(f"{name}\0{etag}".encode("utf-8", "surrogateescape")).hexdigest()
    return f"{TEMPORARY_PREFIX}{digest[:32]}{TEMPORARY_SUFFIX}"


def is_resumable(path: str) -> bool:
    try:
        os.getxattr(path, RANGES_XATTR, follow_symlinks=False)
    except OSError:
        return False
    return True


def remove_if_abandoned(path: str, *, keep_resumable: bool = False) -> bool:
    """Remove a temporary file of ferry's own that no live process holds (left by a killed
    import). Never follows a link; a file someone holds, or a young one, stays; with
    `keep_resumable`, so does one a rerun may resume (its ranges recorded)."""
    import fcntl
    import time

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or time.time() - st.st_mtime < TEMPORARY_GRACE_SECONDS:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live import is writing it
        if keep_resumable and is_resumable(path):
            return False
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _read_state(path: str) -> str | None:
    try:
        return os.getxattr(path, STATE_XATTR, follow_symlinks=False).decode()
    except OSError:
        return None


def strip_etag(etag: str | None) -> str | None:
    return etag.strip('"') if etag else None


#: Pages read one after another before a listing fans out by sub-prefix.
FLAT_PAGES = 5


async def list_prefix(
    client,
    prefix: BucketPrefix,
    *,
    spans=None,
    unknown_subtrees: bool = False,
    requests=None,
    concurrency: int = 16,
    flat_pages: int = FLAT_PAGES,
    page_size: int = 1000,
) -> list[Entry]:
    """Every object below the prefix (or in its `spans`, `tasks.ranges`; latest versions only),
    as entries relative to it, sorted by path.

    `requests` (a Counter), when given, counts the LIST requests made.
    With `unknown_subtrees`, a shallow span's sub-prefixes that are not spans of their own
    (found only on this side) are listed whole with it (a mirror's destination).

    A small prefix is read page by page (a request per 1,000 keys). When it is still going after
    `flat_pages` pages, the rest is listed in parallel: one delimited request finds the
    sub-prefixes after the last key seen, and each is listed on its own from that key on.
    """
    spans = spans or [None]
    if prefix.scheme != "s3":
        return await _list_store(client, prefix, spans)
    entries: list[Entry] = []

    async def pages(**kwargs):
        while True:
            if requests is not None:
                requests["LIST"] += 1
            out = await client.list_objects_v2(Bucket=prefix.bucket, MaxKeys=page_size, **kwargs)
            yield out
            if not out.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = out["NextContinuationToken"]

    def add(obj) -> None:
        relative = prefix.relative(obj["Key"])
        if relative is None or relative == "":
            return  # the prefix's own marker object
        size = int(obj.get("Size", 0))
        is_marker = relative.endswith("/")
        modified = obj.get("LastModified")
        entries.append(
            Entry(
                path=relative[:-1] if is_marker else relative,
                kind="dir" if is_marker and size == 0 else "object",
                size=size,
                mtime_ns=int(modified.timestamp() * 1e9) if modified is not None else None,
                etag=strip_etag(obj.get("ETag")),
                storage_class=obj.get("StorageClass"),
                holds_data=is_marker and size > 0,
            )
        )

    async def below(within: str) -> None:
        last_key = None
        count = 0
        async for page in pages(Prefix=within):
            for obj in page.get("Contents", []):
                add(obj)
                last_key = obj["Key"]
            count += 1
            if count >= flat_pages and page.get("IsTruncated"):
                break
        else:
            last_key = None  # listed to the end
        if last_key is not None:
            await _fan_out(pages, add, within, last_key, concurrency)

    async def level(within: str, span) -> None:
        unknown = []
        async for page in pages(Prefix=within, Delimiter="/"):
            for obj in page.get("Contents", []):
                add(obj)
            if unknown_subtrees:
                known = {prefix.prefix + c + "/" for c in span.children}
                unknown += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
                unknown = [p for p in unknown if p not in known]
        for sub in unknown:
            await below(sub)

    try:
        for span in spans:
            if span is not None and not _is_key(span.path):
                continue  # a local name that is not UTF-8: no key can be under it
            within = prefix.prefix + (f"{span.path}/" if span is not None and span.path else "")
            await (below(within) if span is None or span.deep else level(within, span))
    except Exception as exc:
        raise task_error(exc, where=prefix.display) from exc
    entries.sort(key=lambda e: (e.path, e.kind != "dir"))
    return entries


async def _list_store(client, prefix: BucketPrefix, spans) -> list[Entry]:
    """A Google Cloud Storage or Azure prefix, listed through obstore (a request per page)."""
    found = []
    try:
        for span in spans:
            path = span.path if span is not None else ""
            if not _is_key(path):
                continue  # a local name that is not UTF-8: no key can be under it
            within = prefix.prefix + (f"{path}/" if path else "")
            listed = await client.data.list(within)
            if span is not None and not span.deep:  # its level only
                listed = [m for m in listed if "/" not in m["path"][len(within) :]]
            found.extend(listed)
    except Exception as exc:
        raise task_error(exc, where=prefix.display) from exc
    entries = []
    for meta in found:
        relative = prefix.relative(meta["path"])
        if not relative:
            continue
        modified = meta.get("last_modified")
        entries.append(
            Entry(
                path=relative,
                kind="object",
                size=int(meta["size"]),
                mtime_ns=int(modified.timestamp() * 1e9) if modified is not None else None,
                etag=strip_etag(meta.get("e_tag")),
            )
        )
    entries.sort(key=lambda e: e.path)
    return entries


def _is_key(path: str) -> bool:
    try:
        path.encode()
    except UnicodeEncodeError:
        return False
    return True


async def _fan_out(pages, add, prefix: str, after: str, concurrency: int) -> None:
    """List every key below `prefix` that sorts after `after`, in parallel by sub-prefix."""
    subprefixes: list[str] = []
    head, slash, _ = after[len(prefix) :].partition("/")
    if slash:  # the sub-prefix holding `after` (not every store rolls it up after StartAfter)
        subprefixes.append(prefix + head + "/")
    async for page in pages(Prefix=prefix, Delimiter="/", StartAfter=after):
        for obj in page.get("Contents", []):
            add(obj)
        subprefixes.extend(
            p["Prefix"] for p in page.get("CommonPrefixes", []) if p["Prefix"] not in subprefixes
        )
    gate = asyncio.Semaphore(concurrency)

    async def list_all(sub: str) -> None:
        async with gate:
            async for page in pages(Prefix=sub, StartAfter=after):
                for obj in page.get("Contents", []):
                    add(obj)

    await asyncio.gather(*(list_all(sub) for sub in subprefixes))


def list_bucket(
    prefix: BucketPrefix, spans=None, unknown_subtrees: bool = False, requests=None
) -> list[Entry]:
    """`list_prefix`, called from synchronous code."""
    return prefix.run(
        list_prefix, prefix, spans=spans, unknown_subtrees=unknown_subtrees, requests=requests
    )


def without_reports(entries, directory: Directory, report_dir: str | None):
    """The listing without ferry's own report directory, when it lies inside the exported tree
    (the default ./ferry-reports of an export run from inside the tree)."""
    from tasks.manifest import local_report_root

    reports = local_report_root(report_dir)
    if reports is None:
        return entries
    inside = os.path.relpath(reports, directory.root)
    if inside == "." or inside.startswith(".."):
        return entries
    inside = inside.replace(os.sep, "/")
    return [e for e in entries if e.path != inside and not e.path.startswith(inside + "/")]
