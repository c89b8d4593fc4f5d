"""What a task would cost, told by its dry run: requests by kind (PUT, POST, GET, HEAD, LIST) and
bytes each way, from the plan, by the same rules the copies follow (`tasks.upload`,
`tasks.download`). The LIST and HEAD requests are the ones the dry run itself made (a real run
makes the same to plan); PUT, POST and GET are the copies'."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from tasks.plan import Item
from tasks.rows import Action


def copy_requests(
    direction: str, items: Iterable[Item], multipart_threshold: int, *, s3: bool = True
) -> Counter:
    """Requests, and bytes `up` (export) or `down` (import), of copying `items` (the plan's
    copy and mkdir items)."""
    from tasks.download import MULTIPART_FROM, PARALLEL_THRESHOLD, STREAMS
    from tasks.download import PART_SIZE as RANGE_SIZE
    from tasks.upload import MAX_PARTS, PART_SIZE

    cost: Counter = Counter()
    for item in items:
        if direction == "export":
            if item.action == Action.MKDIR or item.kind != "file":
                cost["PUT"] += 1  # a marker, or the empty object of a link or special file
            elif item.size >= multipart_threshold:
                part = max(PART_SIZE, math.ceil(item.size / MAX_PARTS))
                cost["PUT"] += math.ceil(item.size / part)
                cost["POST"] += 2  # create, complete
                cost["bytes_up"] += item.size
            else:
                cost["PUT"] += 1
                cost["bytes_up"] += item.size
            continue
        if item.action == Action.MKDIR:
            cost["HEAD"] += 1  # the marker's mtime
            continue
        if item.size >= MULTIPART_FROM and s3:
            cost["HEAD"] += 1  # at most: a multipart upload's CRC64NVME is S3's, read by a HEAD
        if item.size >= PARALLEL_THRESHOLD:
            span = max(RANGE_SIZE, math.ceil(item.size / STREAMS))
            cost["GET"] += math.ceil(item.size / span)
        else:
            cost["GET"] += 1
        cost["bytes_down"] += item.size
    return cost


#: The order an estimate is shown in.
KINDS = ("LIST", "HEAD", "PUT", "POST", "GET", "DELETE")


def describe(estimate: dict[str, int]) -> str:
    """'1,204 PUT · 3 LIST …; 48.2 MB up, 0 B down'."""
    from tasks.runlog import size

    requests = " · ".join(f"{estimate.get(k, 0):,} {k}" for k in KINDS if estimate.get(k))
    return (
        f"{requests or 'no'} requests; {size(estimate.get('bytes_up', 0))} up, "
        f"{size(estimate.get('bytes_down', 0))} down"
    )
