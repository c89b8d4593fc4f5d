from __future__ import annotations

import pytest

from tasks.partition import partition
from tasks.plan import Item


def items(sizes):
    return [Item(f"f{i}", "file", "copy", size=s) for i, s in enumerate(sizes)]


def test_partitions_respect_file_and_byte_limits_and_keep_order():
    parts = partition(items([1] * 10), max_files=4, max_bytes=100)
    assert [len(p) for p in parts] == [4, 4, 2]
    parts = partition(items([60, 60, 10, 200, 5]), max_files=100, max_bytes=100)
    assert [[i.size for i in p.items] for p in parts] == [[60], [60, 10], [200], [5]]
    assert [i.path for p in parts for i in p.items] == [f"f{i}" for i in range(5)]


def test_partition_count_is_capped_by_growing_partitions():
    parts = partition(items([1] * 1000), max_files=1, max_bytes=10**9, max_partitions=10)
    assert len(parts) == 10


def test_partition_sizes_must_be_positive():
    with pytest.raises(ValueError):
        partition(items([1]), max_files=0)
