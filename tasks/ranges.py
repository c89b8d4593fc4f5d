"""Cut a task's tree into ranges, so that it is listed, planned and copied a range at a time.

A span is a part of the tree named by a directory's relative path ('' is the root): a deep span is
the directory and everything below it; a shallow one is the directory's own entry and those of
its entries that are not directories, each of its subdirectories being a span of its own. The
spans are found by reading the tree's first levels (a scandir, or a delimited LIST of at most a
few pages, per directory: `expand`) until there are enough of them; a directory too large to read
cheaply stays one deep span. Spans cover the tree exactly once, so each range (a run of
consecutive spans) is listed on both sides and planned on its own, on any worker, and copying
starts as soon as the first range is planned.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tasks.listing import FLAT_PAGES, is_temporary


@dataclass(frozen=True, slots=True)
class Span:
    path: str  # a directory's path relative to the task's root; '' is the root
    deep: bool = True
    #: a shallow span's subdirectories (each a span of its own), so that an object of the same
    #: name as one of them is known to clash with it
    children: tuple[str, ...] = ()


#: The whole tree: the span a task is listed as when it is not cut.
WHOLE = (Span(""),)


@dataclass(frozen=True)
class Range:
    index: int
    spans: tuple[Span, ...]

    @property
    def directories(self) -> set[str]:
        """The subdirectories the range's shallow spans know of (import's clash rule)."""
        return {c for s in self.spans for c in s.children}


#: How many deep spans `expand` aims at before it stops reading levels.
TARGET_SPANS = 64
#: How deep `expand` reads at most.
MAX_DEPTH = 4
#: A directory holding more entries than this is not read by `expand` (it stays a deep span,
#: listed in parallel by sub-prefix as any listing is): the same as FLAT_PAGES pages of a LIST.
LEVEL_ENTRIES = FLAT_PAGES * 1000

#: `levels(paths)`: for each path, its subdirectories (relative paths), or None when that level
#: cannot be read cheaply (too large, unreadable, no longer a directory).
Levels = Callable[[Sequence[str]], list[list[str] | None]]


def expand(levels: Levels, *, target: int = TARGET_SPANS, max_depth: int = MAX_DEPTH) -> list[Span]:
    """The tree's spans, in path order: levels are read, breadth first, while fewer than
    `target` deep spans are known."""
    spans: list[Span] = []
    frontier = [""]
    for _ in range(max_depth):
        if not frontier or len(frontier) >= target:
            break
        deeper: list[str] = []
        for path, children in zip(frontier, levels(frontier), strict=True):
            if children is None:
                spans.append(Span(path))
            else:
                spans.append(Span(path, deep=False, children=tuple(children)))
                deeper.extend(children)
        frontier = deeper
    spans.extend(Span(p) for p in frontier)
    spans.sort(key=lambda s: s.path)
    return spans


def group(spans: Sequence[Span], count: int) -> list[Range]:
    """`count` ranges at most, of consecutive spans, as even in spans as they can be."""
    count = max(1, min(count, len(spans)))
    size, extra = divmod(len(spans), count)
    ranges, start = [], 0
    for index in range(count):
        end = start + size + (index < extra)
        ranges.append(Range(index, tuple(spans[start:end])))
        start = end
    return ranges


def directory_levels(root: str) -> Levels:
    """`Levels` of a local tree: a scandir each, links never followed."""

    def one(path: str) -> list[str] | None:
        children = []
        try:
            with os.scandir(os.path.join(root, path) if path else root) as found:
                for n, child in enumerate(found):
                    if n >= LEVEL_ENTRIES:
                        return None
                    if not is_temporary(child.name) and child.is_dir(follow_symlinks=False):
                        children.append(f"{path}/{child.name}" if path else child.name)
        except OSError:
            return None  # listed (and reported) as a deep span
        return sorted(children)

    return lambda paths: [one(p) for p in paths]


def bucket_levels(prefix, requests=None) -> Levels:
    """`Levels` of a bucket prefix: a delimited LIST each (FLAT_PAGES pages at most), all of a
    level at once. Only S3 is read; any other store is listed whole (one span). `requests` (a
    Counter), when given, counts the LISTs."""
    import asyncio

    async def one(client, path: str) -> list[str] | None:
        within = prefix.prefix + (f"{path}/" if path else "")
        children: list[str] = []
        kwargs: dict = {}
        for _ in range(FLAT_PAGES):
            if requests is not None:
                requests["LIST"] += 1
            out = await client.list_objects_v2(
                Bucket=prefix.bucket, Prefix=within, Delimiter="/", MaxKeys=1000, **kwargs
            )
            for common in out.get("CommonPrefixes", []):
                name = common["Prefix"][len(within) : -1]
                if not name or "/" in name:
                    return None  # an empty name ("a//"): the whole level is listed as one
                children.append(f"{path}/{name}" if path else name)
            if not out.get("IsTruncated"):
                return children
            kwargs = {"ContinuationToken": out["NextContinuationToken"]}
        return None

    async def all_of(client, paths):
        return await asyncio.gather(*(one(client, p) for p in paths))

    def levels(paths: Sequence[str]) -> list[list[str] | None]:
        if prefix.scheme != "s3":
            return [None] * len(paths)
        try:
            return prefix.run(all_of, list(paths))
        except Exception:  # noqa: BLE001 - not cut: the listing proper reports what is wrong
            return [None] * len(paths)

    return levels
