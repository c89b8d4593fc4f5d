"""Verify: compare what is at the destination with the source.

`verify_copied` checks a finished transfer's rows against a fresh listing of the destination (one
listing, no request per object): size and mtime for files on a file system; size and the ETag the
upload returned for objects (the mtime travels in the same PUT as the bytes, so the same ETag means
the same metadata). With `checksum`, the file's bytes are hashed and compared with the ETag.

`compare_trees` compares two whole trees for `verify_data`, like `rclone check`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from tasks.checksum import file_matches_etag
from tasks.endpoints import BucketPrefix, Directory, Endpoint
from tasks.errors import describe, failure_code
from tasks.job import Job
from tasks.listing import Entry, Filter, list_bucket, list_directory, strip_etag
from tasks.manifest import now
from tasks.metadata import restored_mtime
from tasks.names import key_problem, path_problem
from tasks.retry import retrying
from tasks.rows import Action, Kind, ManifestRow, ReasonCode, Status
from tasks.runlog import bind, run_logger
from tasks.sameness import difference, same_mtime, size_difference

EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
HASH_WORKERS = 4

#: Skipped rows whose entry is at the destination as it should be, and so are verified too.
VERIFIED_SKIPS = frozenset({ReasonCode.UNCHANGED, ReasonCode.EXISTS})


class Check(NamedTuple):
    """What verification found for one entry: whether it is as it should be, and if not (or
    only partly checked) why, with the reason's code."""

    verified: bool
    reason: str | None = None
    reason_code: ReasonCode | None = None


OK = Check(True)


def _index(entries: Iterable[Entry]) -> dict[tuple[str, bool], Entry]:
    return {(e.path, e.kind == "dir"): e for e in entries}


def _hash_all(pairs: list[tuple[str, str, int, str]]) -> dict[str, bool | None]:
    """{path: matches} for (path, local file, size, etag) tuples, hashed on a few threads."""
    with ThreadPoolExecutor(HASH_WORKERS) as pool:
        results = pool.map(lambda p: _safe_match(p[1], p[2], p[3]), pairs)
        return {p[0]: r for p, r in zip(pairs, results, strict=True)}


def _safe_match(path: str, size: int, etag: str) -> bool | None:
    try:
        return file_matches_etag(path, size, etag)
    except OSError:
        return False


def verify_copied(job: Job, rows: list[dict]) -> dict[str, Check]:
    """{path: check} for every ok row of a transfer, and every skipped one that is already at
    the destination (unchanged, or a directory that exists)."""
    todo = [
        r
        for r in rows
        if (r["status"] == Status.OK and r.get("action") != Action.DELETE)
        or (r["status"] == Status.SKIPPED and r["reason_code"] in VERIFIED_SKIPS)
    ]
    if not todo:
        return {}
    if job.direction == "import":
        there = _index(list_directory(job.directory, must_exist=False))
    else:
        there = _index(list_bucket(job.bucket))
    results: dict[str, Check] = {}
    to_hash: list[tuple[str, str, int, str]] = []
    for r in todo:
        is_dir = r["kind"] == "dir"
        entry = there.get((r["path"], is_dir))
        expected_size = r["size"] if r["kind"] == "file" else 0
        if entry is None:
            results[r["path"]] = Check(False, "missing at destination", ReasonCode.VERIFY_MISSING)
        elif is_dir:
            results[r["path"]] = OK
        elif job.direction == "import" and entry.kind == "symlink" and job.options.recreate_links:
            results[r["path"]] = OK  # an object that stands for a link, made a link again
        elif job.direction == "import" and entry.kind != "file":
            results[r["path"]] = Check(
                False, f"destination is a {entry.kind}, not a file", ReasonCode.VERIFY_KIND
            )
        elif size_difference(expected_size, entry.size):
            results[r["path"]] = Check(
                False, size_difference(expected_size, entry.size), ReasonCode.VERIFY_SIZE
            )
        elif job.direction == "import" and difference(
            size=expected_size,
            mtime_ns=r["mtime"],
            found_size=entry.size,
            found_mtime_ns=entry.mtime_ns,
        ):
            results[r["path"]] = Check(
                False, "mtime differs at destination", ReasonCode.VERIFY_MTIME
            )
        elif job.direction == "export" and r["checksum"] and entry.etag != r["checksum"]:
            results[r["path"]] = Check(
                False,
                "object changed after it was written (ETag differs)",
                ReasonCode.VERIFY_ETAG,
            )
        else:
            results[r["path"]] = OK
            if job.options.verify == "checksum":
                etag = r["checksum"] if job.direction == "import" else entry.etag
                local = job.directory.join(r["path"])
                if r["kind"] in ("symlink", "special"):
                    if etag != EMPTY_MD5:
                        results[r["path"]] = Check(
                            False, "object is not empty", ReasonCode.VERIFY_CHECKSUM
                        )
                elif etag:
                    to_hash.append((r["path"], local, expected_size, etag))
    unknown = []
    for path, matches in _hash_all(to_hash).items():
        if matches is False:
            results[path] = Check(
                False, "content differs from the object's ETag", ReasonCode.VERIFY_CHECKSUM
            )
        elif matches is None:
            unknown.append(path)
    if unknown:  # the ETag is not an MD5 (SSE-KMS, an unknown part size): the CRC64NVME
        locals_ = {p: local for p, local, _, _ in to_hash}
        stored = job.bucket.run(_stored_crcs, job, unknown)
        computed = _crc_all({p: locals_[p] for p in unknown if stored.get(p)})
        for path in unknown:
            if not stored.get(path):
                results[path] = Check(
                    True,
                    "size and mtime only: the ETag is not an MD5 and the object has no CRC64NVME",
                    ReasonCode.CHECKSUM_UNAVAILABLE,
                )
            elif computed.get(path) != stored[path]:
                results[path] = Check(
                    False,
                    "content differs from the object's CRC64NVME",
                    ReasonCode.VERIFY_CHECKSUM,
                )
    return results


async def _stored_crcs(client, job: Job, paths: list[str]) -> dict[str, str | None]:
    """Each object's CRC64NVME (ferry's metadata, else S3's own), by a HEAD each: nothing is
    downloaded."""
    import asyncio

    from tasks.checksum import stored_crc

    gate = asyncio.Semaphore(job.options.concurrency)

    async def one(path: str) -> str | None:
        key = job.bucket.key(path)
        async with gate:
            try:
                head = await client.data.head(key)
                found = stored_crc(head.metadata)
                if found is None and job.bucket.scheme == "s3":
                    full = await client.head_object(
                        Bucket=job.bucket.bucket, Key=key, ChecksumMode="ENABLED"
                    )
                    if full.get("ChecksumType") in (None, "FULL_OBJECT"):
                        found = full.get("ChecksumCRC64NVME")
                return found
            except Exception:  # noqa: BLE001 - not knowable: the row says so
                return None

    found = await asyncio.gather(*(one(p) for p in paths))
    return dict(zip(paths, found, strict=True))


def _crc_all(files: dict[str, str]) -> dict[str, str | None]:
    """{path: the local file's encoded CRC64NVME}, read on a few threads."""
    from tasks.checksum import crc64_file

    def one(local: str) -> str | None:
        try:
            return crc64_file(local)
        except OSError:
            return None

    with ThreadPoolExecutor(HASH_WORKERS) as pool:
        return dict(zip(files, pool.map(one, files.values()), strict=True))


# --- verify_data: two whole trees ---------------------------------------------------------------


def snapshot(endpoint: Endpoint) -> list[Entry]:
    if isinstance(endpoint, Directory):
        return list_directory(endpoint, must_exist=True)
    return list_bucket(endpoint)


def _comparable(entries: list[Entry], *, is_bucket: bool) -> dict[tuple[str, bool], Entry]:
    """Entries that stand for something on the other side: files, links, special files, objects,
    and directories that are empty (or markers)."""
    keep = {}
    for e in entries:
        if e.kind == "dir" and not is_bucket and not e.empty:
            continue
        keep[(e.path, e.kind == "dir")] = e
    return keep


def compare_trees(
    source: Endpoint,
    destination: Endpoint,
    *,
    mode: str,
    selected: Filter,
    concurrency: int,
    retries: int,
) -> list[ManifestRow]:
    """One row per entry of either tree: ok when the destination matches the source."""
    src_entries = _comparable(snapshot(source), is_bucket=isinstance(source, BucketPrefix))
    dst_entries = _comparable(
        snapshot(destination), is_bucket=isinstance(destination, BucketPrefix)
    )
    started = now()
    rows: list[dict] = []
    pending: list[tuple[dict, Entry, Entry]] = []
    for key, src in sorted(src_entries.items()):
        path, is_dir = key
        if not selected(path):
            continue
        row = _row(source, destination, src, started)
        problem = _name_problem(source, destination, src)
        dst = dst_entries.get(key)
        if problem:
            row.update(
                status=Status.REJECTED, reason=problem, reason_code=ReasonCode.NAME_NOT_PORTABLE
            )
        elif dst is None:
            row.update(_differs("missing at destination", ReasonCode.VERIFY_MISSING))
        elif is_dir:
            row.update(status=Status.OK, verified=True)
        elif _size(src) != _size(dst):
            row.update(
                _differs(
                    f"size differs: {_size(dst)} at destination, {_size(src)} at source",
                    ReasonCode.VERIFY_SIZE,
                )
            )
        else:
            pending.append((row, src, dst))
        rows.append(row)
    if pending:
        _compare_contents(
            source, destination, pending, mode=mode, concurrency=concurrency, retries=retries
        )
    for key, dst in sorted(dst_entries.items()):
        if key not in src_entries and selected(key[0]):
            row = _row(source, destination, dst, started, only_destination=True)
            row.update(_differs("only at destination", ReasonCode.VERIFY_EXTRA))
            rows.append(row)
    finished = now()
    return [ManifestRow(**row, finished_at=finished) for row in rows]


def _differs(reason: str, code: ReasonCode) -> dict:
    return {"status": Status.FAILED, "verified": False, "reason": reason, "reason_code": code}


def _size(e: Entry) -> int:
    return e.size if e.kind in ("file", "object") else 0


def _name_problem(source: Endpoint, destination: Endpoint, e: Entry) -> str | None:
    if isinstance(source, BucketPrefix) and isinstance(destination, Directory):
        return key_problem(e.path + ("/" if e.kind == "dir" else ""))
    if isinstance(source, Directory) and isinstance(destination, BucketPrefix):
        return path_problem(e.path)
    return None


def _url(endpoint: Endpoint, path: str, is_dir: bool) -> str:
    if isinstance(endpoint, Directory):
        return endpoint.join(path)
    return endpoint.url_of(endpoint.key(path) + ("/" if is_dir else ""))


def _row(source, destination, e: Entry, started, *, only_destination: bool = False) -> dict:
    is_dir = e.kind == "dir"
    return {
        "path": e.path,
        "source": None if only_destination else _url(source, e.path, is_dir),
        "destination": _url(destination, e.path, is_dir),
        "kind": Kind.FILE if e.kind == "object" else Kind(e.kind),
        "size": _size(e),
        "mtime": e.mtime_ns,
        "action": Action.COMPARE,
        "bytes": 0,
        "checksum": e.etag,
        "attempts": 1,
        "started_at": started,
    }


def _compare_contents(
    source, destination, pending, *, mode: str, concurrency: int, retries: int
) -> None:
    """Fill in status for entries present on both sides with the same size."""
    sides = [(source, [p[1] for p in pending]), (destination, [p[2] for p in pending])]
    mtimes: list[list[tuple[int | None, tuple[str, ReasonCode] | None]]] = []
    for endpoint, entries in sides:
        if isinstance(endpoint, Directory):
            mtimes.append([(e.mtime_ns, None) for e in entries])
        else:
            mtimes.append(
                _stored_mtimes(endpoint, entries, concurrency, retries)
                if mode != "none"
                else [(None, None)] * len(entries)
            )
    hashes: dict[str, bool | None] = {}
    if mode == "checksum":
        hashes = _content_matches(source, destination, pending)
    for i, (row, src, _dst) in enumerate(pending):
        (src_mtime, src_problem), (dst_mtime, dst_problem) = mtimes[0][i], mtimes[1][i]
        if src_problem or dst_problem:
            row.update(_differs(*(src_problem or dst_problem)))
        elif mode != "none" and src.kind not in ("dir",) and not same_mtime(src_mtime, dst_mtime):
            row.update(_differs("mtime differs", ReasonCode.VERIFY_MTIME))
        elif hashes.get(src.path) is False:
            row.update(_differs("content differs", ReasonCode.VERIFY_CHECKSUM))
        else:
            row.update(status=Status.OK, verified=True)
        row["mtime"] = src_mtime


def _stored_mtimes(prefix: BucketPrefix, entries: list[Entry], concurrency: int, retries: int):
    """[(stored mtime, problem)] of the entries' objects, a problem being (reason, its code)."""
    log = run_logger()  # the retries of these HEADs go to the run's log

    async def heads(client):
        bind(log)
        gate = asyncio.Semaphore(concurrency)

        async def one(e: Entry):
            if e.kind == "dir":
                return (e.mtime_ns, None)
            key = prefix.key(e.path)
            try:
                async with gate:
                    head = await retrying(retries, lambda: client.data.head(key), f"HEAD of {key}")
            except Exception as exc:  # noqa: BLE001 - one object's failure is its row's
                reason = f"cannot read the object's metadata: {describe(exc)}"
                return (None, (reason, failure_code(exc)))
            mtime, _ = restored_mtime(head.metadata, e.mtime_ns)
            return (mtime, None)

        return await asyncio.gather(*(one(e) for e in entries))

    return prefix.run(heads)


def _content_matches(source, destination, pending) -> dict[str, bool | None]:
    to_hash = []
    results: dict[str, bool | None] = {}
    for _, src, dst in pending:
        if src.kind == "dir":
            continue
        local, remote = (src, dst) if isinstance(source, Directory) else (dst, src)
        local_ep = source if isinstance(source, Directory) else destination
        if isinstance(source, Directory) and isinstance(destination, Directory):
            results[src.path] = _local_equal(source.join(src.path), destination.join(src.path))
        elif isinstance(source, BucketPrefix) and isinstance(destination, BucketPrefix):
            results[src.path] = src.etag == dst.etag
        elif local.kind in ("symlink", "special"):
            results[src.path] = strip_etag(remote.etag) == EMPTY_MD5
        elif remote.etag:
            to_hash.append((src.path, local_ep.join(src.path), _size(local), remote.etag))
    results.update(_hash_all(to_hash))
    return results


def _local_equal(a: str, b: str) -> bool:
    if os.path.islink(a) or os.path.islink(b):
        return os.path.islink(a) and os.path.islink(b) and os.readlink(a) == os.readlink(b)
    from tasks.checksum import md5_file

    return md5_file(a) == md5_file(b)
