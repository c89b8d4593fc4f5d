"""Plan a transfer: join the source and destination listings and decide an action per entry.

Pure: no I/O. Actions are `copy`, `mkdir` (a directory, or its marker object), `check` (same size:
the store must be asked for the object's stored mtime: the check step, `tasks.check`, does it
before anything is copied), `skip` and `reject`; a
skip or a reject carries its reason and the reason's code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from tasks.archive import ARCHIVE_CLASSES
from tasks.listing import Entry, Filter
from tasks.names import key_problem, key_too_long, path_problem
from tasks.rows import Action, ReasonCode, Status
from tasks.sameness import size_difference

Direction = Literal["export", "import"]
Overwrite = Literal["changed", "always", "never", "checksum"]

#: The reason of a skip because source and destination already match (its code:
#: `ReasonCode.UNCHANGED`).
UNCHANGED = "unchanged"

#: Actions that need the apply step; `skip` and `reject` are final when planned.
APPLY_ACTIONS = frozenset({Action.COPY, Action.MKDIR, Action.CHECK})


@dataclass(frozen=True, slots=True)
class Item:
    path: str
    kind: str
    action: Action
    size: int = 0
    mtime_ns: int | None = None
    etag: str | None = None  # the source object's ETag (import)
    reason: str | None = None
    link_target: str | None = None
    reason_code: ReasonCode | None = None  # with `reason`, always


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
            if entry.unreadable is not None:
                reason = f"unreadable: {entry.unreadable}"
                items.append(_item(entry, Action.REJECT, reason, ReasonCode.UNREADABLE))
            continue
        problem = path_problem(entry.path) or key_too_long(
            prefix + entry.path + ("/" if entry.kind == "dir" else "")
        )
        if problem:
            items.append(_item(entry, Action.REJECT, problem, ReasonCode.NAME_NOT_PORTABLE))
            continue
        if entry.kind == "dir":
            there = existing.get((entry.path, True))
            if there is not None and overwrite != "always":
                items.append(_item(entry, Action.SKIP, "marker exists", ReasonCode.EXISTS))
            else:
                items.append(_item(entry, Action.MKDIR))
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
    directories: Iterable[str] = (),
) -> list[Item]:
    """Objects → files. Keys that cannot be files are rejected with the rule they break
    (`directories`: paths known to be directories in the bucket beyond `source`'s own)."""
    existing = {e.path: e for e in destination}
    directories = set(directories)
    for entry in source:
        parts = entry.path.split("/")
        directories.update("/".join(parts[:i]) for i in range(1, len(parts)))
        if entry.kind == "dir":
            directories.add(entry.path)
    items: list[Item] = []
    for entry in source:
        if selected is not None and not selected(entry.path):
            continue
        problem = _import_problem(entry, directories)
        if problem:
            items.append(_item(entry, Action.REJECT, *problem))
            continue
        there = existing.get(entry.path)
        if entry.kind == "dir":
            if there is not None and there.kind == "dir":
                items.append(_item(entry, Action.SKIP, "exists", ReasonCode.EXISTS))
            else:
                items.append(_item(entry, Action.MKDIR))
            continue
        if there is not None and there.kind != "file":
            items.append(_item(entry, Action.COPY))  # the apply step reports what is in the way
            continue
        items.append(_decide(entry, there, overwrite, state_matches=_state_matches(entry, there)))
    return items


def _import_problem(entry: Entry, directories: set[str]) -> tuple[str, ReasonCode] | None:
    """Why an object cannot become a file (the reason and its code), or None."""
    relative = entry.path + ("/" if entry.kind == "dir" or entry.holds_data else "")
    problem = key_problem(relative)
    if problem is not None:
        return problem, ReasonCode.NAME_NOT_PORTABLE
    if entry.holds_data:
        return "key ends with '/' but holds data", ReasonCode.MARKER_WITH_DATA
    if entry.kind == "object" and entry.path in directories:
        return (
            "a directory of the same name exists in the bucket",
            ReasonCode.FILE_DIRECTORY_CLASH,
        )
    if entry.storage_class in ARCHIVE_CLASSES:
        return (
            f"archived object (storage class {entry.storage_class}): restore it first",
            ReasonCode.ARCHIVED,
        )
    return None


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
        return _item(entry, Action.COPY)
    if overwrite == "never":
        reason = "exists at destination (overwrite=never)"
        return _item(entry, Action.SKIP, reason, ReasonCode.NOT_OVERWRITTEN)
    if size_difference(entry.size, there.size):
        return _item(entry, Action.COPY)  # differs for sure; the same size is checked by HEAD
    if state_matches and overwrite != "checksum":  # import: an earlier import wrote it as is
        skip = _item(entry, Action.SKIP, UNCHANGED, ReasonCode.UNCHANGED)
        return replace(skip, mtime_ns=there.mtime_ns)
    return _item(entry, Action.CHECK)


def _item(
    entry: Entry, action: Action, reason: str | None = None, code: ReasonCode | None = None
) -> Item:
    return Item(
        path=entry.path,
        kind=entry.kind,
        action=action,
        size=entry.size,
        mtime_ns=entry.mtime_ns,
        etag=entry.etag,
        reason=reason,
        link_target=entry.link_target,
        reason_code=code,
    )


def final_status(item: Item) -> Status:
    """The status of an entry the plan settled (a skip or a reject)."""
    return {Action.SKIP: Status.SKIPPED, Action.REJECT: Status.REJECTED}[item.action]
