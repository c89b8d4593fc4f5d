"""File modification times, and POSIX attributes, in object metadata. Pure functions.

Export writes the mtime twice: `alihbr-sync-mtime` (whole seconds since the epoch, the key the
seed's data-flow product reads and writes) and `mtime` (float seconds, rclone's key). Import reads
`alihbr-sync-mtime` first, then `mtime`, then the object's LastModified; where both keys are present
and agree to the second, the finer `mtime` is used, so a ferry round trip keeps nanoseconds.
"""

from __future__ import annotations

import os
import stat
from decimal import Decimal, InvalidOperation
from urllib.parse import quote, unquote

SYNC_MTIME_KEY = "alihbr-sync-mtime"
RCLONE_MTIME_KEY = "mtime"
NS = 1_000_000_000

#: POSIX attributes, under the keys AWS FSx for Lustre and DataSync read and write: the mode as
#: octal with the file type ("0100644"), the owner and group ids, and the mtime ("<ns>ns").
PERMISSIONS_KEY, OWNER_KEY, GROUP_KEY = "file-permissions", "file-owner", "file-group"
FSX_MTIME_KEY = "file-mtime"
#: A symbolic link's target (percent-encoded: metadata is ASCII): the link stays an empty
#: object, and an import with `recreate_links` makes it a link again.
LINK_KEY = "ferry-link-target"


#: A user extended attribute `user.NAME` is kept under `ferry-xattr-<NAME as hex>` (metadata
#: keys are case-insensitive ASCII), its value base64.
XATTR_PREFIX = "ferry-xattr-"


def user_xattrs(fd: int) -> dict[str, bytes]:
    """The `user.*` extended attributes of an open file (ferry's own `user.ferry.*` aside)."""
    found = {}
    try:
        names = os.listxattr(fd)
    except OSError:
        return {}
    for name in names:
        if name.startswith("user.") and not name.startswith("user.ferry."):
            try:
                found[name] = os.getxattr(fd, name)
            except OSError:
                continue
    return found


def restored_xattrs(metadata: dict[str, str] | None) -> dict[str, bytes]:
    """The `user.*` extended attributes an object's metadata carries."""
    import base64
    import binascii

    found = {}
    for key, value in (metadata or {}).items():
        if key.lower().startswith(XATTR_PREFIX):
            try:
                name = bytes.fromhex(key[len(XATTR_PREFIX) :]).decode()
                found[name] = base64.b64decode(value, validate=True)
            except (ValueError, binascii.Error, UnicodeDecodeError):
                continue
    return {n: v for n, v in found.items() if n.startswith("user.")}


def file_metadata(
    st: os.stat_result, link_target: str | None = None, xattrs: dict[str, bytes] | None = None
) -> dict[str, str]:
    """Everything export writes about a file besides its bytes: its mtime (ferry's and rclone's
    keys), its POSIX mode, owner and group (FSx's and DataSync's keys), a link's target, and
    with `xattrs` its user extended attributes."""
    meta = mtime_metadata(st.st_mtime_ns)
    meta |= {
        PERMISSIONS_KEY: f"{st.st_mode:07o}",
        OWNER_KEY: str(st.st_uid),
        GROUP_KEY: str(st.st_gid),
        FSX_MTIME_KEY: f"{st.st_mtime_ns}ns",
    }
    if link_target is not None:
        meta[LINK_KEY] = quote(link_target, safe="/._-~+=@,:")
    if xattrs:
        import base64

        for name, value in xattrs.items():
            meta[XATTR_PREFIX + name.encode().hex()] = base64.b64encode(value).decode()
    return meta


def restored_posix(metadata: dict[str, str] | None) -> tuple[int | None, int | None, int | None]:
    """(mode, uid, gid) from an object's metadata, each None when absent or unreadable; the
    mode is its permission bits only (0o7777)."""
    meta = {k.lower(): v for k, v in (metadata or {}).items()}

    def number(key: str, base: int) -> int | None:
        try:
            value = int(meta[key].strip(), base)
        except (KeyError, ValueError, AttributeError):
            return None
        return value if value >= 0 else None

    mode = number(PERMISSIONS_KEY, 8)
    return (
        stat.S_IMODE(mode) if mode is not None else None,
        number(OWNER_KEY, 10),
        number(GROUP_KEY, 10),
    )


def link_target(metadata: dict[str, str] | None, body: bytes = b"") -> str | None:
    """The target of the link an object stands for: ferry's key, or an FSx link (its mode says
    S_IFLNK, and its body is the target); None for anything else."""
    meta = {k.lower(): v for k, v in (metadata or {}).items()}
    if LINK_KEY in meta:
        return unquote(meta[LINK_KEY])
    try:
        mode = int(meta.get(PERMISSIONS_KEY, "").strip(), 8)
    except ValueError:
        return None
    if stat.S_ISLNK(mode) and body:
        return os.fsdecode(bytes(body))
    return None


def mtime_metadata(mtime_ns: int) -> dict[str, str]:
    seconds, fraction = divmod(mtime_ns, NS)
    return {SYNC_MTIME_KEY: str(seconds), RCLONE_MTIME_KEY: f"{seconds}.{fraction:09d}"}


def parse_seconds(value: str | None) -> int | None:
    """'1716487553' or '1716487553.25' → nanoseconds; None for anything unparsable."""
    if value is None:
        return None
    try:
        number = Decimal(value.strip())
    except (InvalidOperation, AttributeError):
        return None
    if not number.is_finite():
        return None
    return int(number * NS)


def restored_mtime(
    metadata: dict[str, str] | None, last_modified_ns: int | None
) -> tuple[int | None, str]:
    """The mtime a file should get from an object, and its source: `alihbr-sync-mtime` (whole
    seconds only), `mtime` (sub-second) or `LastModified`."""
    meta = {k.lower(): v for k, v in (metadata or {}).items()}
    synced = parse_seconds(meta.get(SYNC_MTIME_KEY))
    fine = parse_seconds(meta.get(RCLONE_MTIME_KEY))
    if synced is not None:
        if fine is not None and fine // NS == synced // NS:
            return fine, RCLONE_MTIME_KEY  # the same time, to the nanosecond
        return synced, SYNC_MTIME_KEY
    if fine is not None:
        return fine, RCLONE_MTIME_KEY
    fsx = meta.get(FSX_MTIME_KEY, "").strip()
    if fsx.endswith("ns") and fsx[:-2].isdigit():  # a bucket written by FSx for Lustre
        return int(fsx[:-2]), FSX_MTIME_KEY
    return last_modified_ns, "LastModified"
