"""Cut a plan into partitions balanced by file count and bytes. Pure: no I/O.

A partition is the unit of Prefect task run, retry and progress. Sizes aim at a few seconds of
work each; when a plan would need more than `max_partitions`, partitions grow to fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import fields
from operator import attrgetter

from tasks.options import DEFAULT_BYTES, DEFAULT_FILES
from tasks.plan import Item

MAX_PARTITIONS = 2000


#: An item's fields in the order `Item` takes them: what a partition travels as.
_FIELDS = tuple(f.name for f in fields(Item))


class Partition:
    """A run of a plan's items: its `index` across the task, its `items`, and their `bytes`.

    It travels between processes (a worker that planned it, the flow, the worker that copies
    it) as one list per field of its items, which pickle as plain values and hold a fraction of
    the memory of the items themselves; the items are made again where they are used."""

    __slots__ = ("_columns", "_items", "_len", "bytes", "index")

    def __init__(self, index: int, items: Sequence[Item] = ()) -> None:
        self.index = index
        self._items: tuple[Item, ...] | None = tuple(items)
        self._columns: tuple[list, ...] | None = None
        self._len = len(self._items)
        self.bytes = sum(i.size for i in self._items if i.action != "mkdir")

    @property
    def items(self) -> tuple[Item, ...]:
        if self._items is None:
            self._items = tuple(map(Item, *self._columns))
            self._columns = None
        return self._items

    def __len__(self) -> int:
        return self._len

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Partition):
            return NotImplemented
        return (self.index, self.items) == (other.index, other.items)

    def __repr__(self) -> str:
        return f"Partition(index={self.index}, {self._len} items, {self.bytes} bytes)"

    def columns(self) -> tuple[list, ...]:
        if self._columns is not None:
            return self._columns
        return tuple(list(map(attrgetter(name), self._items)) for name in _FIELDS)

    def renumbered(self, index: int) -> Partition:
        """The same items as partition `index` (partitions are numbered across the task)."""
        return _rebuilt(index, self._len, self.bytes, self.columns(), self._items)

    def __reduce__(self):
        return _rebuilt, (self.index, self._len, self.bytes, self.columns())


def _rebuilt(index, length, nbytes, columns, items=None) -> Partition:
    part = Partition.__new__(Partition)
    part.index, part._len, part.bytes = index, length, nbytes
    part._items, part._columns = items, None if items is not None else columns
    return part


def partition(
    items: Sequence[Item],
    *,
    max_files: int = DEFAULT_FILES,
    max_bytes: int = DEFAULT_BYTES,
    max_partitions: int = MAX_PARTITIONS,
) -> list[Partition]:
    """Consecutive runs of items (listing order keeps directories together), each at most
    `max_files` items and `max_bytes` bytes; an item larger than `max_bytes` goes alone."""
    if max_files < 1 or max_bytes < 1:
        raise ValueError("partition sizes must be positive")
    total_bytes = sum(i.size for i in items)
    if len(items) > max_files * max_partitions:
        max_files = math.ceil(len(items) / max_partitions)
    if total_bytes > max_bytes * max_partitions:
        max_bytes = math.ceil(total_bytes / max_partitions)
    partitions: list[Partition] = []
    current: list[Item] = []
    current_bytes = 0
    for item in items:
        if current and (len(current) >= max_files or current_bytes + item.size > max_bytes):
            partitions.append(Partition(len(partitions), tuple(current)))
            current, current_bytes = [], 0
        current.append(item)
        current_bytes += item.size
    if current:
        partitions.append(Partition(len(partitions), tuple(current)))
    return partitions
