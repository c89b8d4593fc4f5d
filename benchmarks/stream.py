"""Benchmark: how soon a closed file is readable in the bucket under `stream_export`.

    uv run python benchmarks/stream.py                         # 200 files of 1-64 MiB, 2 files/s
    uv run python benchmarks/stream.py --files 50 --rate 4     # a quicker look

A writer closes files of 1-64 MiB (sizes spread evenly on a log scale, fixed seed) at a steady
rate into a watched directory, one at a time, the way a training job writes checkpoints (write
`name.tmp`, rename to `name`). ferry's stream export runs on one moto endpoint against Prefect's
temporary local API (started before timing). The delay of a file is from its rename into place
to the end of its upload (the manifest's `finished_at`: from then on a GET returns it). Prints the
median and 95th percentile delay, and the sustained rate.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import boto3  # noqa: E402

from flows.local_api import prefect_defaults, start_local_api  # noqa: E402
from flows.local_s3 import DEMO_CREDENTIALS, local_s3  # noqa: E402

MiB = 2**20


def sizes(count: int, seed: int = 7) -> list[int]:
    rng = random.Random(seed)
    return [int(math.exp(rng.uniform(math.log(MiB), math.log(64 * MiB)))) for _ in range(count)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--rate", type=float, default=2.0, help="files closed per second")
    parser.add_argument("--settle", type=float, default=0.5, help="stream_export settle_seconds")
    args = parser.parse_args()
    prefect_defaults("WARNING")
    print("Starting Prefect's temporary local API (not timed)...", flush=True)
    start_local_api()
    import pandas as pd

    from flows.stream_tasks import stream_export

    work = tempfile.mkdtemp(prefix="ferry-stream-bench-")
    watched = os.path.join(work, "ckpt")
    os.makedirs(watched)
    reports = os.path.join(work, "reports")
    block = os.urandom(MiB)
    plan = sizes(args.files)
    closed: dict[str, float] = {}
    with local_s3() as endpoint:
        os.environ.update({**DEMO_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint})
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="stream")
        outcome = []
        runner = threading.Thread(
            target=lambda: outcome.append(
                stream_export(
                    watched,
                    "s3://stream/ckpt",
                    settle_seconds=args.settle,
                    idle_timeout=10,
                    report_dir=reports,
                )
            )
        )
        runner.start()
        while not glob.glob(os.path.join(reports, "*", "manifest.parquet")):
            time.sleep(0.1)
        print(
            f"Writing {args.files} files ({sum(plan) / 1e9:.1f} GB) at {args.rate:g} files/s",
            flush=True,
        )
        started = time.time()
        for i, size in enumerate(plan):
            due = started + i / args.rate
            time.sleep(max(0.0, due - time.time()))
            final = os.path.join(watched, f"step-{i:05d}.pt")
            with open(final + ".tmp", "wb") as f:
                written = 0
                while written < size:
                    chunk = block[: size - written]
                    f.write(chunk)
                    written += len(chunk)
            os.rename(final + ".tmp", final)
            closed[f"step-{i:05d}.pt"] = time.time()
        runner.join()
    manifest = pd.read_parquet(glob.glob(os.path.join(reports, "*", "manifest.parquet"))[0])
    done = manifest[manifest["status"] == "ok"]
    delays = sorted(
        row.finished_at.timestamp() - closed[row.path]
        for row in done.itertuples()
        if row.path in closed
    )
    span = max(r.finished_at.timestamp() for r in done.itertuples()) - started
    print()
    print(
        f"files exported: {len(done)} of {args.files} (rows: {len(manifest)}, "
        f"statuses: {dict(manifest['status'].value_counts())})"
    )
    print(
        f"delay from close to readable: median {statistics.median(delays):.2f} s, "
        f"p95 {delays[int(0.95 * (len(delays) - 1))]:.2f} s, max {delays[-1]:.2f} s"
    )
    print(
        f"sustained: {done['bytes'].sum() / 1e6 / span:.1f} MB/s, {len(done) / span:.2f} files/s "
        f"over {span:.1f} s (offered {sum(plan) / 1e6 / (args.files / args.rate):.1f} MB/s)"
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0 if len(done) == args.files else 1


if __name__ == "__main__":
    sys.exit(main())
