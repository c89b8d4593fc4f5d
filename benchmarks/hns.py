"""Benchmark: the hns:// namespace against s3fs on the flat bucket, and conversion throughput.

    uv run python benchmarks/hns.py                      # 10,000-file directory, 100,000 keys
    uv run python benchmarks/hns.py --files 2000 --keys 20000   # a quicker look

In one run on one moto endpoint: rename a directory of N files (hns `mv` vs s3fs `mv`, which copies
and deletes every object), list that directory, `info` of one file, and convert a bucket of M keys
(keys/s, with the per-object tag check the seed's eligibility rules need, and the time of each
step). Ratios above 1.0 mean hns is faster.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from uuid import UUID

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fsspec  # noqa: E402

from flows.local_api import prefect_defaults, start_local_api  # noqa: E402
from flows.local_s3 import DEMO_CREDENTIALS, local_s3  # noqa: E402
from tasks.endpoints import parse_endpoint  # noqa: E402


def fill(bucket: str, keys: list[str]) -> float:
    """Create the objects (1 KiB each) quickly, many at once; returns seconds."""
    prefix = parse_endpoint(f"s3://{bucket}")
    body = os.urandom(1024)

    async def put_all(client):
        await client.create_bucket(Bucket=bucket)
        gate = asyncio.Semaphore(64)

        async def put(key):
            async with gate:
                await client.put_object(Bucket=bucket, Key=key, Body=body)

        await asyncio.gather(*(put(k) for k in keys))

    started = time.perf_counter()
    prefix.run(put_all)
    return time.perf_counter() - started


def flat_rename(fs, src: str, dst: str) -> None:
    """What renaming a "directory" takes on a flat bucket: copy every object, delete the old."""
    sources = fs.find(src)
    fs.copy(sources, [dst + s[len(src) :] for s in sources])
    fs.rm(sources)


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def best_of(n: int, call) -> float:
    return min(timed(call) for _ in range(n))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000, help="files in the renamed directory")
    parser.add_argument("--keys", type=int, default=100_000, help="keys in the converted bucket")
    args = parser.parse_args()
    prefect_defaults("WARNING")
    print("Starting Prefect's temporary local API (not timed)...", flush=True)
    start_local_api()
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows import convert_to_hns

    work = tempfile.mkdtemp(prefix="ferry-hns-bench-")
    reports = os.path.join(work, "reports")
    rows = []
    with local_s3() as endpoint:
        os.environ.update({**DEMO_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint})
        names = [f"datasets/v1/part-{i:05d}.bin" for i in range(args.files)]
        print(
            f"Creating {args.files:,} objects in a flat and a to-be-converted bucket...", flush=True
        )
        fill("flat", names)
        fill("tree", names)
        metadata = f"sqlite:///{os.path.join(work, 'tree.db')}"
        convert_to_hns("s3://tree", metadata=metadata, report_dir=reports)
        flat = fsspec.filesystem("s3", skip_instance_cache=True, use_listings_cache=False)
        hns = fsspec.filesystem("hns", metadata=metadata)
        one = "datasets/v1/part-00000.bin"

        rows.append(
            (
                f"list a directory of {args.files} entries",
                best_of(3, lambda: flat.ls("flat/datasets/v1", refresh=True)),
                best_of(3, lambda: hns.ls("tree/datasets/v1")),
            )
        )
        rows.append(
            (
                "info of one file",
                best_of(5, lambda: flat.info(f"flat/{one}", refresh=True)),
                best_of(5, lambda: hns.info(f"tree/{one}")),
            )
        )
        print("Renaming the directory (s3fs copies and deletes every object)...", flush=True)
        s3fs_mv = timed(lambda: flat_rename(flat, "flat/datasets/v1", "flat/datasets/v2"))
        hns_mv = timed(lambda: hns.mv("tree/datasets/v1", "tree/datasets/v2", recursive=True))
        assert len(hns.ls("tree/datasets/v2")) == args.files
        assert len(flat.ls("flat/datasets/v2", refresh=True)) == args.files
        rows.append((f"rename a directory of {args.files} files", s3fs_mv, hns_mv))

        keys = [f"d{i % 100:02d}/sub{i % 7}/k{i:06d}" for i in range(args.keys)]
        print(f"Creating {args.keys:,} objects to convert...", flush=True)
        fill("big", keys)
        metadata_big = f"sqlite:///{os.path.join(work, 'big.db')}"
        started = time.perf_counter()
        result = convert_to_hns("s3://big", metadata=metadata_big, report_dir=reports)
        seconds = time.perf_counter() - started
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(result.task_id)]))
            )
        steps = sorted((r.start_time, r.name, r.total_run_time.total_seconds()) for r in runs)

    print()
    print(f"{'operation':40} {'s3fs (flat)':>12} {'hns':>12} {'hns ×':>8}")
    for name, flat_s, hns_s in rows:
        print(f"{name:40} {flat_s * 1000:10.1f}ms {hns_s * 1000:10.1f}ms {flat_s / hns_s:8.1f}")
    print()
    print(
        f"convert {args.keys:,} keys: {seconds:.1f} s, {args.keys / seconds:,.0f} keys/s "
        f"(counts {result.counts})"
    )
    for _, name, step_seconds in steps:
        print(f"  {name:32} {step_seconds:8.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
