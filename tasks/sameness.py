"""Is this the same file? The one rule that planning, the HEAD check before a copy, and both kinds
of verification apply: the same size, and the same mtime at the precision its origin keeps.

A time with no fraction of a second (`alihbr-sync-mtime`, which holds whole seconds; a file system
of one-second granularity) is compared to the second; any other to the microsecond, which every
file system and rclone's float `mtime` key keep. Content is compared by checksum only when asked
(`tasks.checksum`, in verification).
"""

from __future__ import annotations

from tasks.metadata import NS


def same_mtime(a_ns: int | None, b_ns: int | None) -> bool:
    if a_ns is None or b_ns is None:
        return False
    if a_ns % NS == 0 or b_ns % NS == 0:  # one side keeps whole seconds only
        return a_ns // NS == b_ns // NS
    return abs(a_ns - b_ns) < 1000


def size_difference(expected: int | None, found: int | None) -> str | None:
    """None when the sizes agree, else the reason a manifest row gives."""
    if expected == found:
        return None
    return f"size differs: {found} at destination, {expected} expected"


def difference(
    *, size: int | None, mtime_ns: int | None, found_size: int | None, found_mtime_ns: int | None
) -> str | None:
    """None when what was found is the same file as expected; else why not."""
    return size_difference(size, found_size) or (
        None if same_mtime(mtime_ns, found_mtime_ns) else "mtime differs"
    )
