"""The conversion's I/O: the bucket listing, the eligibility check, the no-writes check, building
and committing the namespace, and verifying it. Nothing here writes to the bucket."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from hns.plan import ConversionPlan, SourceObject
from hns.store import Store
from tasks.archive import ARCHIVE_CLASSES
from tasks.endpoints import BucketPrefix
from tasks.errors import ConversionRefused, FerryError, NotEligible, task_error  # noqa: F401
from tasks.listing import list_prefix
from tasks.manifest import now
from tasks.retry import retrying
from tasks.rows import Action, Kind, ManifestRow, ReasonCode, Status

EXAMPLES = 5
TAG_CHECK_CONCURRENCY = 64


def examples(keys: Sequence[str]) -> str:
    shown = ", ".join(repr(k) for k in keys[:EXAMPLES])
    more = f" and {len(keys) - EXAMPLES} more" if len(keys) > EXAMPLES else ""
    return f"{shown}{more}"


async def list_objects(client, bucket: BucketPrefix) -> list[SourceObject]:
    """Every key of the bucket in listing order, with size, ETag, LastModified, storage class."""
    found = []
    for e in await list_prefix(client, bucket):
        key = e.path + ("/" if e.kind == "dir" or e.holds_data else "")
        found.append(SourceObject(key, e.size, e.etag, e.mtime_ns, e.storage_class))
    found.sort(key=lambda o: o.key.encode("utf-8"))
    return found


async def eligibility_problems(
    client, bucket: str, objects: Sequence[SourceObject], *, check_tags: bool, retries: int
) -> list[str]:
    """Every reason the bucket cannot be converted, each with example keys."""
    problems = []
    try:
        versioning = await client.get_bucket_versioning(Bucket=bucket)
    except Exception as exc:
        raise task_error(exc, where=f"s3://{bucket}") from exc
    status = versioning.get("Status")
    if status in ("Enabled", "Suspended"):
        problems.append(
            f"versioning is {status.lower()} (a bucket that has had versioning cannot be converted)"
        )
    archived = [o.key for o in objects if o.storage_class in ARCHIVE_CLASSES]
    if archived:
        problems.append(
            f"{len(archived)} objects in an archive storage class: {examples(archived)}"
        )
    if check_tags:
        readable = [o.key for o in objects if o.storage_class not in ARCHIVE_CLASSES]
        tagged = await tagged_keys(client, bucket, readable, retries)
        if tagged:
            problems.append(f"{len(tagged)} objects carry tags: {examples(tagged)}")
    return problems


async def tagged_keys(client, bucket: str, keys: Sequence[str], retries: int) -> list[str]:
    """Keys whose objects have tags (S3 only tells per object: one request each, many at once)."""
    gate = asyncio.Semaphore(TAG_CHECK_CONCURRENCY)

    async def has_tags(key: str) -> bool:
        async with gate:
            response = await retrying(
                retries, lambda: client.get_object_tagging(Bucket=bucket, Key=key)
            )
        return bool(response.get("TagSet"))

    flags = await asyncio.gather(*(has_tags(k) for k in keys))
    return [k for k, flag in zip(keys, flags, strict=True) if flag]


def changes(before: Sequence[SourceObject], after: Sequence[SourceObject]) -> list[str]:
    """Keys created, changed or deleted between two listings, each with what happened."""
    old = {o.key: o for o in before}
    new = {o.key: o for o in after}
    found = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key), new.get(key)
        if a is None:
            found.append(f"{key} (created)")
        elif b is None:
            found.append(f"{key} (deleted)")
        elif (a.etag, a.size, a.mtime_ns) != (b.etag, b.size, b.mtime_ns):
            found.append(f"{key} (changed)")
    return found


def converted_message(store: Store, bucket: str) -> str | None:
    with store.begin() as conn:
        ns = store.active(conn, bucket)
    if ns is None:
        return None
    when = datetime.fromtimestamp(ns.converted_at or 0, UTC).isoformat(timespec="seconds")
    return f"already converted on {when} (conversion is irreversible)"


def verify_namespace(store: Store, bucket: str, plan: ConversionPlan) -> dict[str, str | None]:
    """{key: problem or None} for every key placed in the namespace: reachable at exactly one
    path, the planned one, with the listed size and ETag."""
    with store.begin() as conn:
        ns = store.namespace(conn, bucket)
        files = store.all_files(conn, ns)
    results: dict[str, str | None] = {}
    for d in plan.decisions:
        if d.status not in (Status.OK, Status.RENAMED):
            continue
        places = files.get(d.key, [])
        if len(places) != 1:
            results[d.key] = f"reachable at {len(places)} paths"
            continue
        path, entry = places[0]
        if path != d.new_path:
            results[d.key] = f"found at {path}, planned {d.new_path}"
        elif entry.size != d.size or entry.etag != d.etag:
            results[d.key] = "size or ETag differs from the listing"
        else:
            results[d.key] = None
    return results


def manifest_rows(
    bucket: BucketPrefix,
    plan: ConversionPlan,
    verified: Mapping[str, str | None] | None = None,
) -> list[ManifestRow]:
    """The conversion's manifest: one row per key, with `new_path` and `rule`. `verified` is
    `verify_namespace`'s answer, once the namespace is committed: a key it finds a problem with
    is failed."""
    stamp = now()
    rows = []
    for d in plan.decisions:
        checked = verified is not None and d.key in verified
        problem = verified.get(d.key) if checked else None
        status, reason, code = d.status, d.reason, d.reason_code
        if problem:
            status, reason = Status.FAILED, f"verification failed: {problem}"
            code = ReasonCode.VERIFY_NAMESPACE
        rows.append(
            ManifestRow(
                path=d.key,
                source=f"s3://{bucket.bucket}/{d.key}",
                destination=f"hns://{bucket.bucket}/{d.new_path}" if d.new_path else None,
                kind=Kind.DIR if d.status == Status.DIRECTORY else Kind.FILE,
                size=d.size,
                mtime=d.mtime_ns,
                action=Action.CONVERT,
                status=status,
                reason=reason,
                bytes=0,
                checksum=d.etag,
                verified=(problem is None) if checked else None,
                attempts=1,
                started_at=stamp,
                finished_at=stamp,
                new_path=d.new_path,
                rule=d.rule,
                reason_code=code,
            )
        )
    return rows
