"""Plan a flat bucket's conversion into a directory tree: the seed's rules, in listing order.
Pure: no I/O.

- A zero-byte key ending in `/` becomes a directory (`a/b/` → directory `a/b`).
- A key ending in `/` that holds data becomes the file `a/b.slash.<ts>`.
- A file and a directory may not share a name; the directory wins and the file becomes
  `a/b.file.<ts>`. If that name is taken too, numeric suffixes are tried: once when the directory
  is created over an existing file (the seed's Scenario I), up to three times when the file is
  created over an existing directory (Scenario II).
- ferry never overwrites: two keys that would end at the same path, or a rename with no free name
  left, make an unresolvable conflict, and the conversion stops before it commits.

`<ts>` is the conversion's start time in epoch seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from tasks.archive import ARCHIVE_CLASSES
from tasks.rows import ReasonCode, Status

#: Numeric suffixes tried after `<name>.file.<ts>` is taken.
SUFFIX_TRIES_DIRECTORY_OVER_FILE = 1  # Scenario I
SUFFIX_TRIES_FILE_OVER_DIRECTORY = 3  # Scenario II


@dataclass(frozen=True)
class SourceObject:
    key: str
    size: int
    etag: str | None = None
    mtime_ns: int | None = None
    storage_class: str | None = None


@dataclass
class Decision:
    """What becomes of one source key. `status`: ok (kept at its key), renamed, directory,
    rejected (cannot be a path), failed (unresolvable conflict). A `reason` comes with its
    `reason_code`."""

    key: str
    size: int
    etag: str | None
    mtime_ns: int | None
    new_path: str | None
    rule: str
    status: Status | str
    reason: str | None = None
    reason_code: ReasonCode | None = None

    def settle(
        self,
        status: Status,
        rule: str,
        reason: str | None = None,
        code: ReasonCode | None = None,
    ) -> None:
        self.status, self.rule, self.reason, self.reason_code = status, rule, reason, code


@dataclass
class ConversionPlan:
    ts: int
    decisions: list[Decision] = field(default_factory=list)
    directories: set[str] = field(default_factory=set)

    @property
    def problems(self) -> list[Decision]:
        return [d for d in self.decisions if d.status in (Status.REJECTED, Status.FAILED)]

    def tree(self) -> list[tuple[str, str, str | None, int, str | None, int | None]]:
        """Every entry of the namespace, parents before children:
        (path, kind, object_key, size, etag, mtime_ns)."""
        rows = [(d, "dir", None, 0, None, None) for d in self.directories if d]
        rows += [
            (d.new_path, "file", d.key, d.size, d.etag, d.mtime_ns)
            for d in self.decisions
            if d.status in (Status.OK, Status.RENAMED)
        ]
        rows.sort(key=lambda r: (r[0].count("/"), r[0]))
        return rows


def namespace_path_problem(path: str) -> str | None:
    """Why a key cannot be a path in a namespace (empty segments, `.` and `..`), or None."""
    if not path:
        return "empty name"
    for segment in path.split("/"):
        if segment == "":
            return "empty path segment ('//') cannot be a directory entry"
        if segment in (".", ".."):
            return f"'{segment}' cannot be a directory entry"
    return None


def plan_conversion(objects: Iterable[SourceObject], ts: int) -> ConversionPlan:
    plan = ConversionPlan(ts=ts)
    nodes: dict[str, str] = {"": "dir"}  # path -> "dir" | "file"
    file_at: dict[str, Decision] = {}

    def free_name(base: str, tries: int) -> str | None:
        for candidate in [base, *(f"{base}.{n}" for n in range(1, tries + 1))]:
            if candidate not in nodes:
                return candidate
        return None

    def ensure_dir(path: str) -> str | None:
        """Create `path` and its parents; rename files in the way. Returns a conflict or None."""
        if nodes.get(path) == "dir":
            return None
        parent = path.rpartition("/")[0]
        problem = ensure_dir(parent)
        if problem:
            return problem
        if nodes.get(path) == "file":  # Scenario I: the directory wins over an existing file
            blocked = file_at.pop(path)
            del nodes[path]
            new = free_name(f"{path}.file.{ts}", SUFFIX_TRIES_DIRECTORY_OVER_FILE)
            if new is None:
                blocked.new_path = None
                blocked.settle(
                    Status.FAILED,
                    "conflict",
                    f"directory {path} needs the name of {blocked.key!r}, and "
                    f"{path}.file.{ts} and its numbered variants are all taken",
                    ReasonCode.NAME_TAKEN,
                )
                nodes[path] = "dir"
                plan.directories.add(path)
                return blocked.reason
            blocked.new_path = new
            blocked.settle(
                Status.RENAMED,
                "file-then-directory",
                f"a directory {path} was created over it",
                ReasonCode.FILE_DIRECTORY_CLASH,
            )
            nodes[new] = "file"
            file_at[new] = blocked
        nodes[path] = "dir"
        plan.directories.add(path)
        return None

    def place_file(path: str, decision: Decision, rule: str) -> None:
        problem = ensure_dir(path.rpartition("/")[0])
        if problem:
            decision.settle(Status.FAILED, "conflict", problem, ReasonCode.NAME_TAKEN)
            return
        if nodes.get(path) == "dir":  # Scenario II: a directory already has this name
            new = free_name(f"{path}.file.{ts}", SUFFIX_TRIES_FILE_OVER_DIRECTORY)
            if new is None:
                decision.settle(
                    Status.FAILED,
                    "conflict",
                    f"directory {path} exists, and {path}.file.{ts} and its "
                    "numbered variants are all taken",
                    ReasonCode.NAME_TAKEN,
                )
                return
            decision.new_path = new
            decision.settle(
                Status.RENAMED,
                "directory-then-file",
                f"a directory {path} exists",
                ReasonCode.FILE_DIRECTORY_CLASH,
            )
            path = new
        elif nodes.get(path) == "file":
            other = file_at[path]
            decision.settle(
                Status.FAILED,
                "conflict",
                f"{path} is already taken by key {other.key!r}",
                ReasonCode.NAME_TAKEN,
            )
            return
        else:
            decision.new_path = path
            if rule == "slash":
                decision.settle(
                    Status.RENAMED,
                    "slash",
                    "a key ending in '/' holds data",
                    ReasonCode.MARKER_WITH_DATA,
                )
            else:
                decision.settle(Status.OK, "kept")
        nodes[path] = "file"
        file_at[path] = decision

    for obj in objects:
        decision = Decision(obj.key, obj.size, obj.etag, obj.mtime_ns, None, "", "")
        plan.decisions.append(decision)
        marker = obj.key.endswith("/")
        path = obj.key[:-1] if marker else obj.key
        problem = namespace_path_problem(path)
        if problem:
            decision.settle(Status.REJECTED, "invalid-name", problem, ReasonCode.NAME_NOT_PORTABLE)
            continue
        if obj.storage_class in ARCHIVE_CLASSES:
            decision.settle(
                Status.FAILED,
                "archived",
                f"archived object (storage class {obj.storage_class})",
                ReasonCode.ARCHIVED,
            )
            continue
        if marker and obj.size == 0:
            conflict = ensure_dir(path)
            decision.new_path = path
            if conflict:
                decision.settle(Status.FAILED, "directory", conflict, ReasonCode.NAME_TAKEN)
            else:
                decision.settle(Status.DIRECTORY, "directory")
            continue
        place_file(
            f"{path}.slash.{ts}" if marker else path, decision, "slash" if marker else "kept"
        )
    return plan
