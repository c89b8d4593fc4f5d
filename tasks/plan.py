"""Plan a transfer: join the source and destination listings and decide an action per entry.

Pure: no I/O. Actions are `copy`, `mkdir` (a directory, or its marker object), `check` (same size:
the store must be asked for the object's stored mtime before deciding), `skip` and `reject`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from tasks.listing import Entry, Filter
from tasks.names import key_problem, key_too_long, path_problem
from tasks.sameness import size_difference

Direction = Literal["export", "import"]
Overwrite = Literal["changed", "always", "never"]

ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE", "Archive", "ColdArchive"})

#: The reason of a skip because source and destination already match.
UNCHANGED = "unchanged"

#: Actions that need the apply step; `skip` and `reject` are final when planned.
APPLY_ACTIONS = frozenset({"copy", "mkdir", "check"})


@dataclass(frozen=True, slots=True)
class Item:
    path: str
    kind: str
    action: str
    size: int = 0
    mtime_ns: int | None = None
    etag: str | None = None  # the source object's ETag (import)
    reason: str | None = None
    link_target: str | None = None


def plan_export(
    source: Sequence[Entry],
    destination: Sequence[Entry],
    *,
    prefix: str,
    overwrite: Overwrite = "changed",
    selected: Filter | None = None,
) -> list[Item]:
    """Directory entries → objects under `prefix`. Empty directories become `dir/` markers."""
    existing = {(e.path, e.kind == "dir"): e for e in destination}
    items: list[Item] = []
    for entry in source:
        if selected is not None and not selected(entry.path):
            continue
        if entry.kind == "dir" and not entry.empty:
            if entry.link_target:  # an unreadable directory
                items.append(_item(entry, "reject", entry.link_target))
            continue
        problem = path_problem(entry.path) or key_too_long(
            prefix + entry.path + ("/" if entry.kind == "dir" else "")
        )
        if problem:
            items.append(_item(entry, "reject", problem))
            continue
        if entry.kind == "dir":
            there = existing.get((entry.path, True))
            action = "skip" if there is not None and overwrite != "always" else "mkdir"
            items.append(_item(entry, action, "marker exists" if action == "skip" else None))
            continue
        there = existing.get((entry.path, False))
        items.append(_decide(entry, there, overwrite))
    return items


def plan_import(
    source: Sequence[Entry],
    destination: Sequence[Entry],
    *,
    overwrite: Overwrite = "changed",
    selected: Filter | None = None,
) -> list[Item]:
    """Objects → files. Keys that cannot be files are rejected with the rule they break."""
    existing = {e.path: e for e in destination}
    directories: set[str] = set()
    for entry in source:
        parts = entry.path.split("/")
        directories.update("/".join(parts[:i]) for i in range(1, len(parts)))
        if entry.kind == "dir":
            directories.add(entry.path)
    items: list[Item] = []
    for entry in source:
        if selected is not None and not selected(entry.path):
            continue
        relative = entry.path + ("/" if entry.kind == "dir" or entry.holds_data else "")
        problem = key_problem(relative)
        if problem is None and entry.holds_data:
            problem = "key ends with '/' but holds data"
        if problem is None and entry.kind == "object" and entry.path in directories:
            problem = "a directory of the same name exists in the bucket"
        if problem is None and entry.storage_class in ARCHIVE_CLASSES:
            problem = f"archived object (storage class {entry.storage_class}): restore it first"
        if problem:
            items.append(_item(entry, "reject", problem))
            continue
        there = existing.get(entry.path)
        if entry.kind == "dir":
            done = there is not None and there.kind == "dir"
            items.append(_item(entry, "skip" if done else "mkdir", "exists" if done else None))
            continue
        if there is not None and there.kind != "file":
            items.append(_item(entry, "copy"))  # the apply step reports what is in the way
            continue
        items.append(_decide(entry, there, overwrite, state_matches=_state_matches(entry, there)))
    return items


def _state_matches(source: Entry, there: Entry | None) -> bool:
    """Import's own record on the destination file says it is this object, untouched since."""
    if there is None or not there.state:
        return False
    etag, _, mtime = there.state.partition(" ")
    return etag == source.etag and mtime == str(there.mtime_ns)


def _decide(
    entry: Entry, there: Entry | None, overwrite: Overwrite, *, state_matches: bool = False
) -> Item:
    if there is None or overwrite == "always":
        return _item(entry, "copy")
    if overwrite == "never":
        return _item(entry, "skip", "exists at destination (overwrite=never)")
    if size_difference(entry.size, there.size):
        return _item(entry, "copy")  # differs for sure; the same size is checked by HEAD
    if state_matches:  # import: the file is what an earlier import wrote, with its mtime
        return replace(_item(entry, "skip", UNCHANGED), mtime_ns=there.mtime_ns)
    return _item(entry, "check")


def _item(entry: Entry, action: str, reason: str | None = None) -> Item:
    return Item(
        path=entry.path,
        kind=entry.kind,
        action=action,
        size=entry.size,
        mtime_ns=entry.mtime_ns,
        etag=entry.etag,
        reason=reason,
        link_target=entry.link_target,
    )


def final_status(item: Item) -> str:
    return {"skip": "skipped", "reject": "rejected"}[item.action]
