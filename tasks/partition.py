"""Cut a plan into partitions balanced by file count and bytes. Pure: no I/O.

A partition is the unit of Prefect task run, retry and progress. Sizes aim at a few seconds of
work each; when a plan would need more than `max_partitions`, partitions grow to fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tasks.options import DEFAULT_BYTES, DEFAULT_FILES
from tasks.plan import Item

MAX_PARTITIONS = 2000


@dataclass(frozen=True)
class Partition:
    index: int
    items: tuple[Item, ...]

    @property
    def bytes(self) -> int:
        return sum(i.size for i in self.items if i.action != "mkdir")

    def __len__(self) -> int:
        return len(self.items)


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
