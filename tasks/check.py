"""The check step: entries the listings alone cannot settle (the same size on both sides, and no
mtime or import state in the listings to compare) are settled by a HEAD of the object, before
anything is copied. Each becomes a skip, unchanged, with the object's ETag and stored mtime, or a
copy; an entry whose HEAD keeps failing is copied (copying the same bytes again is harmless).

Import also looks at the file, and records on an unchanged one which object it matches (the
`user.ferry.state` attribute), so the next import needs no request to know it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import Sequence
from dataclasses import replace

from tasks.beneath import off_loop, opened_dir
from tasks.download import SafeDirectories, set_state
from tasks.job import Job
from tasks.metadata import restored_mtime
from tasks.plan import UNCHANGED, Item
from tasks.retry import retrying
from tasks.rows import Action, ReasonCode
from tasks.run import RunState
from tasks.sameness import difference


async def check_items(client, job: Job, items: Sequence[Item], run: RunState) -> list[Item]:
    """`items` (all `check`) settled as skips or copies, `concurrency` HEADs at a time. Items
    not reached because the task was cancelled stay `check` (the apply step reports them)."""
    dirs = SafeDirectories(job.directory.root)

    async def one(item: Item) -> Item:
        async with run.limits.objects():
            if run.cancelled.is_set():
                return item
            try:
                return await retrying(
                    job.options.retries,
                    lambda: _settle(client, job, item, dirs),
                    f"HEAD of {item.path}",
                )
            except Exception:  # noqa: BLE001 - cannot tell: copying is the safe answer
                return replace(item, action=Action.COPY)

    return list(await asyncio.gather(*(one(i) for i in items)))


def with_settled(items: Sequence[Item], settled: dict[str, Item]) -> list[Item]:
    """The plan with its `check` items replaced by what the check step settled (by path)."""
    return [settled.get(i.path, i) if i.action == Action.CHECK else i for i in items]


async def _same_contents(client, job: Job, key: str, item: Item, head, dirs) -> bool | None:
    """overwrite="checksum": whether the object's CRC64NVME is the local file's (read here:
    nothing is downloaded); None when the object has none."""
    from tasks.checksum import stored_crc
    from tasks.download import MULTIPART_FROM

    if item.kind not in ("file", "object"):
        return None  # a link's or a special file's empty object: size and mtime decide
    expected = stored_crc(head.metadata)
    if expected is None and job.bucket.scheme == "s3" and (head.size or 0) >= MULTIPART_FROM:
        try:
            found = await client.head_object(
                Bucket=job.bucket.bucket, Key=key, ChecksumMode="ENABLED"
            )
        except Exception:  # noqa: BLE001 - not knowable: size and mtime decide
            found = {}
        if found.get("ChecksumType") in (None, "FULL_OBJECT"):
            expected = found.get("ChecksumCRC64NVME")
    if expected is None:
        return None
    try:
        local = await off_loop(_crc_of, dirs.root, item.path)
    except OSError:
        return False  # not readable as a file: copying says what is wrong
    return local == expected


def _crc_of(root: str, relative: str) -> str:
    """The encoded CRC64NVME of the file, reached without following a link."""
    from tasks.beneath import open_file
    from tasks.checksum import BLOCK, crc64, encoded

    fd = open_file(root, relative)
    try:
        crc, offset = 0, 0
        while block := os.pread(fd, BLOCK, offset):
            crc, offset = crc64(block, crc), offset + len(block)
        return encoded(crc)
    finally:
        os.close(fd)


async def _settle(client, job: Job, item: Item, dirs: SafeDirectories) -> Item:
    key = job.bucket.key(item.path)
    parent, _, name = item.path.rpartition("/")
    found = None
    if job.direction == "import":
        found = await off_loop(_lstat, dirs, parent, name)
        if found is None or not stat.S_ISREG(found.st_mode):
            return replace(item, action=Action.COPY)
    head = await client.data.head(key)
    stored, _ = restored_mtime(head.metadata, head.last_modified_ns)
    etag = head.etag
    same = None  # overwrite="checksum": the contents decide, where both sides have a CRC
    if job.options.overwrite == "checksum":
        same = await _same_contents(client, job, key, item, head, dirs)
        if same and job.direction == "import":
            stored = found.st_mtime_ns  # the same bytes, kept with the file's own mtime
    if same is None:  # size and mtime decide
        if job.direction == "import":
            size, mtime = head.size, stored
            found_size, found_mtime = found.st_size, found.st_mtime_ns
        else:
            size, mtime = item.size, item.mtime_ns
            found_size, found_mtime = head.size, stored
        same = not difference(
            size=size, mtime_ns=mtime, found_size=found_size, found_mtime_ns=found_mtime
        )
    if not same:
        return replace(item, action=Action.COPY)
    if job.direction == "import" and not job.options.dry_run:
        await off_loop(_remember, dirs, parent, name, etag, found.st_mtime_ns)
    return replace(
        item,
        action=Action.SKIP,
        reason=UNCHANGED,
        reason_code=ReasonCode.UNCHANGED,
        etag=etag,
        mtime_ns=stored if job.direction == "import" else item.mtime_ns,
    )


def _lstat(dirs: SafeDirectories, parent: str, name: str) -> os.stat_result | None:
    try:
        with opened_dir(dirs.root, parent) as dfd:  # never creates: a check writes nothing
            return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _remember(dirs: SafeDirectories, parent: str, name: str, etag: str | None, mtime_ns: int):
    with contextlib.suppress(OSError), opened_dir(dirs.root, parent) as dfd:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        try:
            set_state(fd, etag, mtime_ns)
        finally:
            os.close(fd)
