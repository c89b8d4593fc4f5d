"""File modification times in object metadata. Pure functions.

Export writes the mtime twice: `alihbr-sync-mtime` (whole seconds since the epoch, the key the
seed's data-flow product reads and writes) and `mtime` (float seconds, rclone's key). Import reads
`alihbr-sync-mtime` first, then `mtime`, then the object's LastModified; where both keys are present
and agree to the second, the finer `mtime` is used, so a ferry round trip keeps nanoseconds.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

SYNC_MTIME_KEY = "alihbr-sync-mtime"
RCLONE_MTIME_KEY = "mtime"
NS = 1_000_000_000


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
    return last_modified_ns, "LastModified"
