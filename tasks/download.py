"""Import one entry: an object becomes a file, a directory marker a directory.

A file is written under a temporary name in its final directory, given its mtime, and renamed into
place only when complete: no partial file ever carries a final name. Large objects are read in
parallel byte ranges written with `pwrite`. Every GET is conditional on the ETag seen when listing,
so an object overwritten mid-copy is reported instead of mixed. No write leaves the destination:
directories are created one level at a time and a symbolic link on the way is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import stat

from tasks.beneath import OutsideTree, all_or_none, off_loop, open_dir, opened_dir
from tasks.checksum import combine, crc64, encoded, stored_crc
from tasks.errors import ChecksumMismatch
from tasks.job import Job
from tasks.limits import TaskLimits
from tasks.listing import RANGES_XATTR, STATE_XATTR, hold, resumable_name, temporary_name
from tasks.metadata import link_target, restored_mtime, restored_posix, restored_xattrs
from tasks.outcome import Outcome
from tasks.plan import Item
from tasks.retry import retrying

PART_SIZE = 16 * 2**20
PARALLEL_THRESHOLD = 32 * 2**20
#: Byte ranges read at once from one large object, shared by the large objects read together
#: (moto reads a whole object per ranged GET: 4 x 256 MiB read as 4 ranges each made it read
#: 4 GiB; shared, ferry in-process 0.94-1.19x rclone, benchmarks/transfer.py).
STREAMS = 4
CHUNK = 2**20  # 1 MiB: receiving and writing overlap (8 MiB: 0.76x rclone, 1 MiB: 1.12x)


#: Writing here would leave the destination directory (a symbolic link on the way).
OutsideDestination = OutsideTree


class SafeDirectories:
    """Directories below a root, made and opened without ever following a symbolic link, so a
    directory swapped for a link mid-run cannot send a write outside the destination."""

    def __init__(self, root: str) -> None:
        self.root = root

    def opened(self, relative_dir: str):
        """Context manager: a descriptor of `root/relative_dir`, created as needed."""
        return opened_dir(self.root, relative_dir, create=True)

    def open(self, relative_dir: str) -> int:
        """A descriptor of `root/relative_dir` (the caller closes it), created as needed."""
        return open_dir(self.root, relative_dir, create=True)


def set_state(fd: int, etag: str | None, mtime_ns: int) -> None:
    if not etag:
        return
    with contextlib.suppress(OSError):  # no user xattrs here: reruns ask the store instead
        os.setxattr(fd, STATE_XATTR, f"{etag} {mtime_ns}".encode())


async def import_item(
    client, job: Job, limits: TaskLimits, item: Item, dirs: SafeDirectories
) -> Outcome:
    key = job.bucket.key(item.path)
    parent_rel, _, name = item.path.rpartition("/")
    if item.action == "mkdir":
        head = await client.data.head(key + "/")
        mtime, _ = restored_mtime(head.metadata, head.last_modified_ns)
        await off_loop(_make_dir, dirs, item.path, mtime)
        return Outcome("ok", mtime_ns=mtime, action="mkdir")
    if item.size < PARALLEL_THRESHOLD:
        return await _download_whole(client, job, limits, key, item, dirs)
    dfd = await off_loop(dirs.open, parent_rel, discard=os.close)
    try:
        return await _download(client, job, limits, key, item, dfd, name)
    finally:
        os.close(dfd)


async def _download_whole(client, job: Job, limits: TaskLimits, key, item: Item, dirs) -> Outcome:
    """A small object: read whole, then written, dated and renamed into place in one trip off
    the event loop (nothing is on disk until the bytes are here)."""
    await limits.bandwidth.acquire(item.size)
    data, meta = await client.data.get(key, item.etag)
    if len(data) != meta.size:
        raise asyncio.IncompleteReadError(data, meta.size)
    mtime, _ = restored_mtime(meta.metadata, meta.last_modified_ns)
    etag = meta.etag or item.etag
    expected = await _expected_crc(client, job, key, meta)
    if expected is not None and encoded(await off_loop(crc64, data)) != expected:
        raise ChecksumMismatch(
            f"the bytes read are not those the object's CRC64NVME {expected} describes"
        )
    target = link_target(meta.metadata, data) if job.options.recreate_links else None
    if target is not None:  # a link exported as an empty object (or FSx's): a link again
        await off_loop(_write_link, dirs, item.path, target, mtime, finish_on_cancel=True)
        return Outcome("ok", bytes=0, checksum=etag, mtime_ns=mtime, action="copy")
    posix = _posix(job, meta.metadata)
    # the rename is the commit: once under way it finishes, and the row says it landed
    await off_loop(_write_whole, dirs, item.path, data, mtime, etag, posix, finish_on_cancel=True)
    limits.count(0, len(data))
    return Outcome("ok", bytes=len(data), checksum=etag, mtime_ns=mtime, action="copy")


#: Objects from this size may be multipart uploads, whose CRC64NVME is S3's own (a HEAD in
#: checksum mode tells it) rather than ferry's metadata.
MULTIPART_FROM = 5 * 2**20


async def _expected_crc(client, job: Job, key: str, meta) -> str | None:
    """The CRC64NVME the object's bytes must have: ferry's metadata, else (an S3 object large
    enough to be a multipart upload) S3's full-object checksum; None when it has neither."""
    found = stored_crc(meta.metadata)
    if found is not None or job.bucket.scheme != "s3" or (meta.size or 0) < MULTIPART_FROM:
        return found
    try:
        head = await client.head_object(Bucket=job.bucket.bucket, Key=key, ChecksumMode="ENABLED")
    except Exception:  # noqa: BLE001 - not knowable: the copy stands on its ETag checks
        return None
    if head.get("ChecksumType") not in (None, "FULL_OBJECT"):
        return None
    return head.get("ChecksumCRC64NVME")


def _posix(job: Job, metadata) -> tuple:
    """The mode, owner and group to give a file, from its object (FSx's and DataSync's keys),
    and with the xattrs option its user extended attributes."""
    found = restored_posix(metadata) if job.options.restore_posix else (None, None, None)
    return (*found, restored_xattrs(metadata) if job.options.xattrs else {})


def _set_posix(fd: int, posix: tuple) -> None:
    """User extended attributes; owner and group (a chown clears set-id bits), then the mode.
    The owner is changed only where this process may (root, or a group it belongs to); else the
    file keeps the importing user's, as `cp -p` without privileges does."""
    mode, uid, gid, xattrs = posix
    for name, value in xattrs.items():
        with contextlib.suppress(OSError):  # a file system without user attributes
            os.setxattr(fd, name, value)
    if uid is not None or gid is not None:
        try:
            os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        except PermissionError:
            with contextlib.suppress(PermissionError):
                if gid is not None:
                    os.fchown(fd, -1, gid)  # a group of the importing user's own
    if mode is not None:
        with contextlib.suppress(PermissionError):
            os.fchmod(fd, mode)


def _write_link(dirs: SafeDirectories, path: str, target: str, mtime: int | None) -> None:
    """A symbolic link to `target`, made under a temporary name and renamed into place."""
    parent_rel, _, name = path.rpartition("/")
    with dirs.opened(parent_rel) as dfd:
        temporary = temporary_name()
        os.symlink(target, temporary, dir_fd=dfd)
        try:
            if mtime is not None:
                os.utime(temporary, ns=(mtime, mtime), dir_fd=dfd, follow_symlinks=False)
            with contextlib.suppress(FileNotFoundError):
                there = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                if stat.S_ISDIR(there.st_mode):
                    raise IsADirectoryError(f"a directory at the destination is in the way: {path}")
            os.replace(temporary, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            temporary = None
        finally:
            if temporary is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary, dir_fd=dfd)


def _write_whole(
    dirs: SafeDirectories, path: str, data: bytes, mtime: int, etag: str | None, posix=None
) -> None:
    parent_rel, _, name = path.rpartition("/")
    dfd = dirs.open(parent_rel)
    temporary = temporary_name()
    try:
        fd = _create(temporary, TEMPORARY_FLAGS, dfd)
        try:
            _write_all(fd, data)
        except BaseException:
            os.close(fd)
            raise
        _land(fd, dfd, temporary, name, path, mtime, etag, posix)
        temporary = None
    finally:
        if temporary is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary, dir_fd=dfd)
        os.close(dfd)


def _make_dir(dirs: SafeDirectories, relative: str, mtime: int | None) -> None:
    with dirs.opened(relative) as dfd:
        if mtime is not None and not os.listdir(dfd):
            os.utime(dfd, ns=(mtime, mtime))


TEMPORARY_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


async def _download(client, job, limits, key, item, dfd: int, name: str) -> Outcome:
    """Write a large object, in byte ranges, under a temporary name in its directory (`dfd`),
    then rename it into place: every step relative to the directory's descriptor, no link
    followed."""
    temporary = resumable_name(name, item.etag) if item.etag else temporary_name()

    def discard(opened) -> None:  # cancelled as it was opened: leave nothing new behind
        if opened[0] >= 0:
            os.close(opened[0])

    fd, done = await off_loop(_open_resumable, temporary, dfd, item.size, discard=discard)
    if fd < 0:  # another live import holds that name: a temporary of this run's own
        temporary = temporary_name()
        fd, done = await off_loop(_open_resumable, temporary, dfd, item.size, discard=discard)
    try:
        meta, crc = await _ranged(client, job, limits, key, item, fd, done)
        expected = await _expected_crc(client, job, key, meta)
        if expected is not None and encoded(crc) != expected:
            raise ChecksumMismatch(
                f"the bytes read are not those the object's CRC64NVME {expected} describes"
            )
        mtime, _ = restored_mtime(meta.metadata, meta.last_modified_ns)
        etag = meta.etag or item.etag
        posix = _posix(job, meta.metadata)
        landing, fd = fd, -1  # _land closes it, whatever happens
        # the rename is the commit: once under way it finishes, and the row says it landed
        await off_loop(
            _land, landing, dfd, temporary, name, item.path, mtime, etag, posix,
            finish_on_cancel=True,
        )  # fmt: skip
        temporary = None
        return Outcome("ok", bytes=item.size, checksum=etag, mtime_ns=mtime, action="copy")
    finally:
        if fd >= 0:
            os.close(fd)
        if temporary is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary, dir_fd=dfd)


def _create(temporary: str, flags: int, dfd: int) -> int:
    fd = os.open(temporary, flags, 0o666, dir_fd=dfd)
    try:
        hold(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _land(
    fd: int,
    dfd: int,
    temporary: str,
    name: str,
    path: str,
    mtime: int,
    etag: str | None,
    posix=None,
) -> None:
    """Give the complete temporary file its owner and mode (`posix`), mtime and state, close
    it, and rename it into place (unless a directory is in the way)."""
    try:
        with contextlib.suppress(OSError):
            os.removexattr(fd, RANGES_XATTR)  # complete: nothing to resume
        if posix is not None:
            _set_posix(fd, posix)
        os.utime(fd, ns=(mtime, mtime))
        set_state(fd, etag, mtime)
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        there = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if stat.S_ISDIR(there.st_mode):
            raise IsADirectoryError(f"a directory at the destination is in the way: {path}")
    os.replace(temporary, name, src_dir_fd=dfd, dst_dir_fd=dfd)


def _write_all(fd: int, data: bytes, offset: int = 0) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _open_resumable(temporary: str, dfd: int, size: int) -> tuple[int, dict[int, list[int]]]:
    """The temporary file of a large import, held (flock) for as long as it is open: the one a
    killed run left under this name, with the ranges it wrote whose bytes still have their
    recorded CRC64NVME (start → [position, crc]), or a new one. (-1, {}) when a live import
    holds the name."""
    import json

    try:
        fd = os.open(temporary, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    except FileNotFoundError:
        fd = _create(temporary, TEMPORARY_FLAGS, dfd)
        _record(fd, size, {})
        return fd, {}
    try:
        hold(fd)
    except BlockingIOError:
        os.close(fd)
        return -1, {}
    try:
        record = json.loads(os.getxattr(fd, RANGES_XATTR))
        ranges = {int(k): v for k, v in record["ranges"].items()} if record["size"] == size else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        ranges = {}
    verified = {}
    for start, (position, crc) in ranges.items():
        if start < position <= size and _crc_between(fd, start, position) == crc:
            verified[start] = [position, crc]
    _record(fd, size, verified)
    return fd, verified


def _crc_between(fd: int, start: int, end: int) -> int:
    crc, offset = 0, start
    while offset < end and (block := os.pread(fd, min(4 * CHUNK, end - offset), offset)):
        crc, offset = crc64(block, crc), offset + len(block)
    return crc


def _record(fd: int, size: int, ranges: dict) -> None:
    """What the temporary file holds, in its extended attribute (none where the file system
    has no user attributes: then a killed import starts over)."""
    import json

    with contextlib.suppress(OSError):
        os.setxattr(fd, RANGES_XATTR, json.dumps({"size": size, "ranges": ranges}).encode())


async def _ranged(client, job: Job, limits: TaskLimits, key: str, item: Item, fd: int, done=None):
    """Read a large object as a few long byte ranges at once (like rclone's multi-thread
    streams), each streamed to its place in the file in CHUNK pieces; a range that breaks off is
    resumed where it stopped, and so is one a killed run wrote part of (`done`: start →
    [position, crc], verified). The Meta of the first range, and the CRC64NVME of the whole."""
    size = item.size
    await off_loop(os.ftruncate, fd, size)
    async with limits.large_object(STREAMS) as streams:
        return await _ranges(client, job, limits, key, item, fd, streams, done or {})


async def _ranges(
    client, job: Job, limits: TaskLimits, key: str, item: Item, fd: int, streams, done
):
    size = item.size
    span = max(PART_SIZE, math.ceil(size / streams))
    first: list = []
    crcs: dict[int, tuple[int, int]] = {}  # each range's CRC64NVME and length, by its start
    written = dict(done)  # what the temporary file holds, as recorded

    def remember(start: int, position: int, crc: int) -> None:
        written[start] = [position, crc]
        _record(fd, size, written)

    async def fetch(start: int, end: int) -> None:
        position, crc = start, 0
        if start in done and done[start][0] <= end + 1:
            position, crc = done[start]  # written by a killed run, and verified
            limits.count(0, position - start)

        async def rest() -> None:  # from where the last try broke off
            nonlocal position, crc
            if position > end:  # all written by a killed run: only its metadata is needed
                if start == 0 and not first:
                    first.append(await client.data.head(key))
                return
            async with client.data.open_range(key, position, end, item.etag, CHUNK) as opened:
                meta, chunks = opened
                if start == 0 and not first:
                    first.append(meta)

                def progress(at: int, crc_so_far: int) -> None:
                    remember(start, at, crc_so_far)

                position, crc = await _stream(chunks, fd, position, limits, crc, progress)
            if position <= end:
                raise asyncio.IncompleteReadError(b"", end - position + 1)

        async with limits.parts():
            await retrying(job.options.retries, rest, f"bytes {start}-{end} of {key}")
        crcs[start] = (crc, end - start + 1)

    await all_or_none(
        *(fetch(start, min(start + span, size) - 1) for start in range(0, size, span))
    )
    whole = 0
    for start in sorted(crcs):
        whole = combine(whole, *crcs[start])
    return first[0], whole


async def _stream(
    chunks, fd: int, position: int, limits: TaskLimits, crc: int = 0, progress=None
) -> tuple[int, int]:
    """Write a range's chunks into the file from `position`; return the position after them
    and the CRC64NVME of the range so far (`crc` continued: as it is written). `progress`
    (position, crc) is told after every write."""
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        if len(buffer) >= CHUNK:
            position, crc = await _flush(buffer, fd, position, limits, crc)
            buffer = bytearray()
            if progress is not None:
                progress(position, crc)
    if buffer:
        position, crc = await _flush(buffer, fd, position, limits, crc)
        if progress is not None:
            progress(position, crc)
    return position, crc


async def _flush(
    buffer: bytearray, fd: int, position: int, limits: TaskLimits, crc: int
) -> tuple[int, int]:
    await limits.bandwidth.acquire(len(buffer))
    crc = await off_loop(_write_counted, fd, buffer, position, crc)
    limits.count(0, len(buffer))
    return position + len(buffer), crc


def _write_counted(fd: int, buffer: bytearray, position: int, crc: int) -> int:
    _write_all(fd, buffer, position)
    return crc64(buffer, crc)
