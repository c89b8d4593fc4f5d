"""Export one entry: a file, link, special file or empty directory becomes one object.

Runs on s3fs's event loop through aiobotocore. Files under the `multipart_threshold` option (16 MiB
unless set) go in one PUT with Content-MD5; larger ones in a multipart upload of 8 MiB parts, read
with `pread` and sent concurrently, each with a CRC32 the store checks and an ETag checked against
the part's MD5. The file's mtime travels in the object's user metadata (see `tasks.metadata`). A
file that changes while it is read is not uploaded half-old, half-new: the attempt fails and is
retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import stat
from dataclasses import dataclass

from tasks.beneath import all_or_none, off_loop, open_file, opened_dir, opened_dir_at
from tasks.checksum import CRC_KEY, combine, crc64, encoded
from tasks.errors import FileChanged, PartDamaged
from tasks.job import Job
from tasks.limits import TaskLimits
from tasks.listing import strip_etag
from tasks.metadata import file_metadata, user_xattrs
from tasks.outcome import Outcome
from tasks.plan import Item
from tasks.retry import retrying
from tasks.rows import ReasonCode

PART_SIZE = 8 * 2**20
MAX_PARTS = 10_000


async def export_item(client, job: Job, limits: TaskLimits, item: Item) -> Outcome:
    key = job.bucket.key(item.path)
    path = job.directory.join(item.path)
    # Everything is read relative to the walked directories, no link followed: a directory
    # swapped for a link mid-run cannot make the export read outside the source tree.
    try:
        found = await off_loop(
            _look,
            job.directory.root,
            item.path,
            path,
            job.options.multipart_threshold,
            job.options.xattrs,
            discard=_Found.close,
        )
    except FileNotFoundError:
        return _failed("vanished: the file was removed after it was listed", ReasonCode.VANISHED)
    st = found.st
    if item.action == "mkdir" or stat.S_ISDIR(st.st_mode):
        if not found.empty:
            reason = "changed since listing: no longer an empty directory"
            return _failed(reason, ReasonCode.FILE_CHANGED)
        etag = await _put(client, job, key + "/", b"", st)
        return Outcome("ok", bytes=0, checksum=etag, mtime_ns=st.st_mtime_ns, action="mkdir")
    if not stat.S_ISREG(st.st_mode):  # symbolic link (never followed), socket, FIFO, device
        target = item.link_target if stat.S_ISLNK(st.st_mode) else None
        etag = await _put(client, job, key, b"", st, target=target)
        return Outcome("ok", bytes=0, checksum=etag, mtime_ns=st.st_mtime_ns, size=0, action="copy")
    if found.fd is None and found.data is None:
        return _failed("changed since listing: no longer a regular file", ReasonCode.FILE_CHANGED)
    if found.data is not None:
        return await _upload_small(client, job, limits, key, found)
    try:
        if job.bucket.scheme != "s3":
            return await _upload_streamed(client, job, limits, key, path, found.fd)
        return await _upload_multipart(client, job, limits, key, path, found.fd, found.xattrs)
    finally:
        os.close(found.fd)


@dataclass
class _Found:
    """An entry to export as the file system showed it: its lstat; for a directory whether it is
    empty; for a regular file its bytes and MD5 (small) or an open descriptor (multipart)."""

    st: os.stat_result
    empty: bool = False
    data: bytes | None = None
    digest: bytes | None = None
    fd: int | None = None
    xattrs: dict[str, bytes] | None = None  # with the xattrs option: its user.* attributes

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)


def _look(
    root: str, relative: str, path: str, multipart_threshold: int, xattrs: bool = False
) -> _Found:
    """Everything an export needs from the file system for one entry, in one trip off the event
    loop, every component reached without following a link."""
    parent, _, name = relative.rpartition("/")
    with opened_dir(root, parent) as dfd:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            with opened_dir_at(dfd, name) as fd:
                return _Found(st, empty=not os.listdir(fd))
    if not stat.S_ISREG(st.st_mode):
        return _Found(st)
    fd = open_file(root, relative)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return _Found(st)  # neither data nor descriptor: no longer a regular file
        attributes = user_xattrs(fd) if xattrs else None
        if st.st_size >= multipart_threshold:
            return _Found(st, fd=fd, xattrs=attributes)
        data, after, digest = _read_all(path, fd)
        os.close(fd)
        return _Found(after, data=data, digest=digest, xattrs=attributes)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise


def _failed(reason: str, code: ReasonCode, **kwargs) -> Outcome:
    return Outcome("failed", reason, reason_code=code, **kwargs)


async def _put(
    client,
    job: Job,
    key: str,
    body: bytes,
    st: os.stat_result,
    digest: bytes | None = None,
    *,
    target: str | None = None,
    crc: str | None = None,
    xattrs: dict[str, bytes] | None = None,
) -> str | None:
    """One PUT (through the endpoint's engine, `tasks.engine`); the object's ETag. `crc`: the
    body's CRC64NVME, kept in the object's metadata."""
    metadata = file_metadata(st, target, xattrs)
    if crc is not None:
        metadata[CRC_KEY] = crc
    return await client.data.put(key, body, metadata, digest or hashlib.md5(body).digest())


def _read_all(path: str, fd: int) -> tuple[bytes, os.stat_result, bytes]:
    """The whole file, its stat and its MD5; fails if the file changes while it is read."""
    before = os.fstat(fd)
    chunks, offset = [], 0
    while chunk := os.pread(fd, max(before.st_size - offset, 0) + 1, offset):
        chunks.append(chunk)
        offset += len(chunk)
    data = b"".join(chunks)
    after = os.fstat(fd)
    unchanged = (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns)
    if not unchanged or len(data) != after.st_size:
        raise FileChanged(f"file changed while being read ({path})")
    return data, after, hashlib.md5(data).digest()


async def _upload_small(client, job: Job, limits: TaskLimits, key: str, found: _Found) -> Outcome:
    data, st, digest = found.data, found.st, found.digest
    await limits.bandwidth.acquire(len(data))
    crc = await off_loop(crc64, data)  # releases the GIL: the bytes are read once
    etag = await _put(client, job, key, data, st, digest, crc=encoded(crc), xattrs=found.xattrs)
    limits.count(0, len(data))
    return Outcome(
        "ok", bytes=len(data), checksum=etag, mtime_ns=st.st_mtime_ns, size=len(data), action="copy"
    )


async def _upload_multipart(
    client, job: Job, limits: TaskLimits, key: str, path: str, fd: int, xattrs=None
) -> Outcome:
    """Parts read from `fd` (owned by the caller)."""
    bucket = job.bucket.bucket
    upload_id = None
    try:
        before = os.fstat(fd)
        size = before.st_size
        part_size = max(PART_SIZE, math.ceil(size / MAX_PARTS))
        upload_id, stored = await _resumable(client, bucket, key, before)
        if upload_id is None:
            started = await client.create_multipart_upload(
                Bucket=bucket,
                Key=key,
                Metadata=file_metadata(before, xattrs=xattrs),
                # Each part carries its CRC64NVME, which the store checks on arrival, and the
                # upload the whole file's (combined from the parts'), which it checks on complete.
                ChecksumAlgorithm="CRC64NVME",
                ChecksumType="FULL_OBJECT",
            )
            upload_id = started["UploadId"]

        async def send(number: int, offset: int) -> tuple[dict, bytes]:
            length = min(part_size, size - offset)
            async with limits.parts():
                data, digest, crc = await off_loop(_read_part, fd, length, offset)
                if len(data) != length:
                    raise FileChanged(f"file shrank while being read ({path})")
                kept = stored.get(number)
                if kept is not None and _same_part(kept, length, encoded(crc), digest.hex()):
                    # stored by a run that was killed: the same bytes, not sent again
                    limits.count(0, length)
                    part = {"PartNumber": number, "ETag": f'"{digest.hex()}"',
                            "ChecksumCRC64NVME": encoded(crc)}  # fmt: skip
                    return part, digest, crc, length
                await limits.bandwidth.acquire(length)

                async def once():
                    # The part's ETag is its MD5: checked here, before `complete` makes the
                    # object visible, so a part damaged on the way is sent again.
                    response = await client.upload_part(
                        Bucket=bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=data,
                        ChecksumCRC64NVME=encoded(crc),
                    )
                    if strip_etag(response.get("ETag")) != digest.hex():
                        raise PartDamaged(f"part {number} of {path} arrived damaged")
                    return response

                response = await retrying(job.options.retries, once, f"part {number} of {path}")
                limits.count(0, length)
                part = {
                    "PartNumber": number,
                    "ETag": response["ETag"],
                    "ChecksumCRC64NVME": encoded(crc),
                }
                return part, digest, crc, length

        offsets = range(0, size, part_size)
        results = await all_or_none(*(send(n + 1, off) for n, off in enumerate(offsets)))
        after = os.fstat(fd)
        if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
            raise FileChanged(f"file changed while being read ({path})")
        whole = 0
        for _, _, crc, length in results:
            whole = combine(whole, crc, length)
        response = await client.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [part for part, *_ in results]},
            ChecksumCRC64NVME=encoded(whole),
            ChecksumType="FULL_OBJECT",
        )
        upload_id = None
        expected = hashlib.md5(b"".join(d for _, d, *_ in results)).hexdigest() + f"-{len(results)}"
        etag = strip_etag(response.get("ETag"))
        if etag and etag != expected:
            reason = f"store reported ETag {etag}, expected {expected}"
            return _failed(reason, ReasonCode.ETAG_MISMATCH, bytes=size)
        return Outcome(
            "ok", bytes=size, checksum=etag, mtime_ns=before.st_mtime_ns, size=size, action="copy"
        )
    finally:
        if upload_id is not None:
            await asyncio.shield(_abort(client, bucket, key, upload_id))


def _same_part(kept: tuple[int, str | None, str], length: int, crc: str, md5: str) -> bool:
    """A stored part holds these bytes: its size, its ETag (the part's MD5) and, where the
    store lists it, its CRC64NVME all match."""
    size, stored_crc, etag = kept
    return size == length and etag == md5 and stored_crc in (None, crc)


async def _resumable(
    client, bucket: str, key: str, before: os.stat_result
) -> tuple[str | None, dict[int, tuple[int, str, str]]]:
    """The multipart upload a killed export left for this key, to be resumed: one started after
    the file was last changed, made as ferry makes them (CRC64NVME, full object); with its
    stored parts (number → size, CRC64NVME where the store lists it, MD5). Any other upload
    left for the key is aborted. (None, {}) when there is none to resume."""
    try:
        listed = await client.list_multipart_uploads(Bucket=bucket, Prefix=key)
    except Exception:  # noqa: BLE001 - not knowable: start over
        return None, {}
    uploads = sorted(
        (u for u in listed.get("Uploads", []) if u["Key"] == key),
        key=lambda u: u["Initiated"],
        reverse=True,
    )
    chosen, parts = None, {}
    changed = before.st_mtime_ns / 1e9
    for upload in uploads:
        if chosen is None and upload["Initiated"].timestamp() > changed:
            try:
                found = await client.list_parts(
                    Bucket=bucket, Key=key, UploadId=upload["UploadId"], MaxParts=MAX_PARTS
                )
            except Exception:  # noqa: BLE001 - gone, or not listable: not resumed
                found = {}
            listed_parts = found.get("Parts", [])
            if listed_parts and upload.get("ChecksumAlgorithm") == "CRC64NVME":
                chosen = upload["UploadId"]
                parts = {
                    p["PartNumber"]: (p["Size"], p.get("ChecksumCRC64NVME"), strip_etag(p["ETag"]))
                    for p in listed_parts
                }
                continue
        await _abort(client, bucket, key, upload["UploadId"])
    return chosen, parts


async def _upload_streamed(
    client, job: Job, limits: TaskLimits, key: str, path: str, fd: int
) -> Outcome:
    """A large file to Google Cloud Storage or Azure: obstore's multipart upload, fed parts read
    from `fd` (owned by the caller). A file that changes while it is read fails the upload before
    it completes (obstore aborts it), so no object is made half-old, half-new."""
    before = os.fstat(fd)
    size = before.st_size
    part_size = max(PART_SIZE, math.ceil(size / MAX_PARTS))

    async def parts():
        for offset in range(0, size, part_size):
            length = min(part_size, size - offset)
            data = await off_loop(os.pread, fd, length, offset)
            if len(data) != length:
                raise FileChanged(f"file shrank while being read ({path})")
            await limits.bandwidth.acquire(length)
            if offset + length >= size:  # the last part: the file must be as it was
                after = os.fstat(fd)
                if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
                    raise FileChanged(f"file changed while being read ({path})")
            yield data
            limits.count(0, length)

    etag = await client.data.put_stream(
        key, parts(), file_metadata(before), part_size, concurrency=4
    )
    return Outcome(
        "ok", bytes=size, checksum=etag, mtime_ns=before.st_mtime_ns, size=size, action="copy"
    )


def _read_part(fd: int, length: int, offset: int) -> tuple[bytes, bytes, int]:
    """A part, its MD5 and its CRC64NVME, off the event loop (both release the GIL)."""
    data = os.pread(fd, length, offset)
    return data, hashlib.md5(data).digest(), crc64(data)


async def _abort(client, bucket: str, key: str, upload_id: str) -> None:
    # Best effort: without `complete` the object never appears anyway.
    with contextlib.suppress(Exception):
        await client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


async def abandoned_uploads(
    client, bucket: str, prefix: str, older_than
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The multipart uploads under `prefix`, in one listing: those started before `older_than`
    (an aware datetime), and the others, each as key → upload ids (none when the store or the
    credentials do not allow listing them)."""
    old: dict[str, list[str]] = {}
    young: dict[str, list[str]] = {}
    paginator = client.get_paginator("list_multipart_uploads")
    try:
        async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for upload in page.get("Uploads", []):
                side = old if upload["Initiated"] < older_than else young
                side.setdefault(upload["Key"], []).append(upload["UploadId"])
    except Exception:  # noqa: BLE001 - best effort: credentials may not allow listing uploads
        return {}, {}
    return old, young


async def abort_uploads(client, bucket: str, uploads: dict[str, list[str]]) -> int:
    """Abort these uploads (key → upload ids); how many."""
    aborted = 0
    for key, ids in uploads.items():
        for upload_id in ids:
            try:
                await _abort(client, bucket, key, upload_id)
            except Exception:  # noqa: BLE001 - best effort, as the listing is
                continue
            aborted += 1
    return aborted
