"""One manifest row: its type, and the enums of its `status`, `action`, `kind` and `reason_code`.

The columns, in order, are `tasks.manifest.MANIFEST_SCHEMA`; `ManifestRow` has exactly those
fields (a test holds the two together). The enums are `StrEnum`s, so a manifest stores plain
strings and its readers see no difference. Pure: no I/O.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """What happened to an entry."""

    #: Copied (or written, or compared equal); for conversion: kept at its own key.
    OK = "ok"
    #: Left as it was: unchanged, already there, a dry run, or cancelled before it was copied.
    SKIPPED = "skipped"
    #: Refused before any write: a name the destination cannot carry, an archived object, a
    #: write that would leave the destination.
    REJECTED = "rejected"
    #: Tried and failed, or failed verification; `reason` says why.
    FAILED = "failed"
    #: Conversion only: the object is reachable under `new_path`, by the rule in `rule`.
    RENAMED = "renamed"
    #: Conversion only: a zero-byte `dir/` marker became a directory.
    DIRECTORY = "directory"


#: Every task's statuses.
TASK_STATUSES = (Status.OK, Status.SKIPPED, Status.REJECTED, Status.FAILED)
#: Conversion's own statuses, besides ok, rejected and failed.
CONVERSION_STATUSES = (Status.RENAMED, Status.DIRECTORY)


class Action(StrEnum):
    """What was planned (or, once settled, done) for an entry."""

    COPY = "copy"  # copy the bytes: a file to an object, or an object to a file
    MKDIR = "mkdir"  # an empty directory and its `dir/` marker object
    CHECK = "check"  # the same size on both sides: the stored mtime decides copy or skip
    SKIP = "skip"  # nothing to do
    REJECT = "reject"  # refused by the plan
    COMPARE = "compare"  # verify_data: compared, nothing copied
    CONVERT = "convert"  # conversion: placed in the namespace, nothing copied
    DELETE = "delete"  # delete_extra: at the destination, not at the source


class Kind(StrEnum):
    """What an entry is. A bucket's object is a `file`; a `dir/` marker is a `dir`."""

    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"  # exported as an empty object, never followed
    SPECIAL = "special"  # socket, FIFO or device: exported as an empty object


class ReasonCode(StrEnum):
    """Why, for programs: every row with a `reason` (the text, for people) has one of these."""

    # -- skipped
    #: Source and destination already hold the same file (size and mtime).
    UNCHANGED = "unchanged"
    #: The directory (or its `dir/` marker) is already at the destination.
    EXISTS = "exists"
    #: The destination has an entry of that name and overwrite is `never`.
    NOT_OVERWRITTEN = "not_overwritten"
    #: A dry run: the entry would have been copied.
    DRY_RUN = "dry_run"
    #: The task was cancelled before the entry was copied; the destination is as it was.
    CANCELLED = "cancelled"
    #: delete_extra: more deletions than max_delete allows, so none was made.
    OVER_MAX_DELETE = "over_max_delete"
    #: delete_extra: an entry failed to copy, so nothing was deleted (as a mirror that lost
    #: a copy must not lose its old version too).
    COPY_FAILED = "copy_failed"
    #: delete_extra: a directory that still holds entries the task keeps (excluded ones).
    NOT_EMPTY = "not_empty"
    #: delete_extra: the destination entry is no longer what was listed (changed or replaced),
    #: so it is kept.
    CHANGED_SINCE_LISTED = "changed_since_listed"

    # -- rejected (and conversion's renames)
    #: The name cannot exist at the destination (too long, `..`, `.`, `//`, a backslash, NUL,
    #: not UTF-8, an object key over 1,024 bytes).
    NAME_NOT_PORTABLE = "name_not_portable"
    #: A key ending in `/` holds data (import rejects it; conversion renames it `.slash.<ts>`).
    MARKER_WITH_DATA = "marker_with_data"
    #: A file and a directory share a name (import rejects the file; conversion renames it).
    FILE_DIRECTORY_CLASH = "file_directory_clash"
    #: The object is in an archive storage class and must be restored first.
    ARCHIVED = "archived"
    #: The source directory could not be read.
    UNREADABLE = "unreadable"
    #: The write would pass through a symbolic link and leave the destination.
    OUTSIDE_TREE = "outside_tree"

    # -- failed
    #: Conversion: two keys would end at the same path, or no free name was left for a rename.
    NAME_TAKEN = "name_taken"
    #: The file was removed after it was listed.
    VANISHED = "vanished"
    #: The file changed since it was listed, or while it was read.
    FILE_CHANGED = "file_changed"
    #: The object was replaced since it was listed (its ETag no longer matches).
    OBJECT_CHANGED = "object_changed"
    #: The bytes read from the store are not those its CRC64NVME describes (the file is not
    #: put in place).
    CHECKSUM_MISMATCH = "checksum_mismatch"
    #: A multipart upload's part kept arriving damaged.
    PART_DAMAGED = "part_damaged"
    #: The store's ETag of a completed upload is not the one its parts make.
    ETAG_MISMATCH = "etag_mismatch"
    #: A directory where a file goes, or a file where a directory goes.
    IN_THE_WAY = "in_the_way"
    #: The store or the file system refused the operation (permissions, credentials).
    ACCESS_DENIED = "access_denied"
    #: The store answered with an error (after the retries, when it was transient).
    STORE_ERROR = "store_error"
    #: The connection to the store broke or timed out (after the retries).
    CONNECTION_ERROR = "connection_error"
    #: The local file system failed a read or a write.
    FILESYSTEM_ERROR = "filesystem_error"
    #: An error ferry did not foresee; the reason names it.
    UNEXPECTED = "unexpected"
    #: The whole partition failed (its machinery, not one object): every entry of it fails.
    PARTITION_FAILED = "partition_failed"

    # -- verification (a failed row, or a verify_data row)
    #: Not at the destination.
    VERIFY_MISSING = "verify_missing"
    #: Only at the destination (verify_data).
    VERIFY_EXTRA = "verify_extra"
    #: At the destination, but not a file.
    VERIFY_KIND = "verify_kind"
    #: The sizes differ.
    VERIFY_SIZE = "verify_size"
    #: The mtimes differ.
    VERIFY_MTIME = "verify_mtime"
    #: The object's ETag is not the one its upload returned: it was written again since.
    VERIFY_ETAG = "verify_etag"
    #: The content differs (checksum verification).
    VERIFY_CHECKSUM = "verify_checksum"
    #: Conversion: the key is not reachable at exactly its planned path with its size and ETag.
    VERIFY_NAMESPACE = "verify_namespace"

    # -- notes on an ok row
    #: Verified by size and mtime only: the object's ETag is not an MD5 to hash against.
    CHECKSUM_UNAVAILABLE = "checksum_unavailable"
    #: The PUT landed, whole, just as the task was cancelled: the object is there.
    LANDED_WHEN_CANCELLED = "landed_when_cancelled"


_ENUMS: dict[str, type[StrEnum]] = {
    "status": Status,
    "action": Action,
    "kind": Kind,
    "reason_code": ReasonCode,
}


def declared(column: str, value: Any) -> Any:
    """`value` as the enum of `column` (status, action, kind, reason_code; others unchanged).
    A value that is not declared is a bug, and raises."""
    enum = _ENUMS.get(column)
    if enum is None or (value is None and column != "status"):
        return value
    try:
        return enum(value)
    except ValueError:
        raise ValueError(f"manifest row has an undeclared {column}: {value!r}") from None


_HOST = socket.gethostname()


def worker_id() -> str:
    """Where an entry was settled: `host:pid` of this process (a worker process or a Dask
    worker's, or the flow's own)."""
    return f"{_HOST}:{os.getpid()}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ManifestRow:
    """One manifest row: exactly the columns of `MANIFEST_SCHEMA`, in its order. A field whose
    type admits None is a nullable column. Built only through its constructor, which checks that
    each enum column holds a declared value and that a `reason` comes with its `reason_code`."""

    path: str  # relative to the task's roots
    source: str | None = None  # full source path or URL
    destination: str | None = None  # full destination path or URL
    kind: Kind | None = None
    size: int | None = None  # source size in bytes
    mtime: int | datetime | None = None  # source mtime: nanoseconds since the epoch, or aware
    action: Action | None = None
    status: Status
    reason: str | None = None  # why, for people
    bytes: int | None = None  # bytes moved
    checksum: str | None = None  # ETag / MD5 compared, where known
    verified: bool | None = None  # None when not verified
    attempts: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    partition: int | None = None
    new_path: str | None = None  # conversion only
    rule: str | None = None  # conversion only
    reason_code: ReasonCode | None = None  # why, for programs
    worker: str | None = None  # host:pid of the process that settled the entry (this one)

    def __post_init__(self) -> None:
        if self.worker is None:
            object.__setattr__(self, "worker", worker_id())
        for name in _ENUMS:
            object.__setattr__(self, name, declared(name, getattr(self, name)))
        if (self.reason is None) != (self.reason_code is None):
            raise ValueError(
                f"manifest row of {self.path!r} has a reason without its code, or a code "
                f"without its reason: {self.reason!r}, {self.reason_code!r}"
            )

    def values(self) -> tuple:
        """The column values, in the schema's order."""
        return tuple(getattr(self, name) for name in ROW_FIELDS)


#: The manifest's columns, in order, as the row type has them.
ROW_FIELDS = tuple(f.name for f in fields(ManifestRow))
