"""Benchmark: how soon an object PUT into a bucket is a file under `stream_import`, driven by the
bucket's events (S3 → SQS) against polling by listing.

    uv run python benchmarks/stream_events.py                 # 20 objects each way, 1 a second
    uv run python benchmarks/stream_events.py --objects 5     # a quicker look

One moto endpoint serves S3 and SQS (moto delivers the bucket's notifications to the queue);
Prefect's temporary local API is started before timing. For each mode a stream import runs
(events: `events_queue`, its listing every 3600 s; polling: `interval_seconds`, 5 s by default,
`--interval`), objects of 64 KiB are PUT one at a time, and the delay of each is from the PUT's
return to the file in place (the destination checked every 5 ms). Prints median, 95th percentile
and maximum per mode.
"""

from __future__ import annotations

import argparse
import os
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


def measure(s3, bucket: str, options: dict, objects: int, pace: float, work: str) -> list[float]:
    from flows.stream_tasks import stream_import

    dst = os.path.join(work, f"dst-{bucket}")
    runner = threading.Thread(
        target=lambda: stream_import(
            f"s3://{bucket}/in", dst, idle_timeout=10, report_dir=os.path.join(work, "r"),
            **options,
        )
    )  # fmt: skip
    runner.start()
    time.sleep(3)  # its first listing
    delays = []
    body = os.urandom(64 * 1024)
    for i in range(objects):
        name = f"obj-{i:04d}"
        s3.put_object(Bucket=bucket, Key=f"in/{name}", Body=body)
        put = time.monotonic()
        while not os.path.exists(os.path.join(dst, name)):
            if time.monotonic() - put > 120:
                raise SystemExit(f"{name} did not arrive in 120 s")
            time.sleep(0.005)
        delays.append(time.monotonic() - put)
        time.sleep(pace)
    runner.join()
    return delays


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=20)
    parser.add_argument("--pace", type=float, default=1.0, help="seconds between two PUTs")
    parser.add_argument("--interval", type=float, default=5.0, help="polling: interval_seconds")
    args = parser.parse_args()
    prefect_defaults("WARNING")
    print("Starting Prefect's temporary local API (not timed)...", flush=True)
    start_local_api()
    work = tempfile.mkdtemp(prefix="ferry-events-bench-")
    results = {}
    with local_s3() as endpoint:
        os.environ.update({**DEMO_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint})
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
        for bucket in ("events", "polling"):
            s3.create_bucket(Bucket=bucket)
        queue = sqs.create_queue(QueueName="events")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
        s3.put_bucket_notification_configuration(
            Bucket="events",
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": arn["Attributes"]["QueueArn"],
                        "Events": ["s3:ObjectCreated:*"],
                    }
                ]
            },
        )
        for mode, bucket, options in [
            ("events", "events", {"events_queue": queue, "interval_seconds": 3600}),
            (f"polling {args.interval:g} s", "polling", {"interval_seconds": args.interval}),
        ]:
            print(f"{mode}: {args.objects} objects, one every {args.pace:g} s...", flush=True)
            results[mode] = measure(s3, bucket, options, args.objects, args.pace, work)
    shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"{'mode':16} {'median s':>9} {'p95 s':>7} {'max s':>7}")
    for mode, delays in results.items():
        delays.sort()
        print(
            f"{mode:16} {statistics.median(delays):9.3f} "
            f"{delays[int(0.95 * (len(delays) - 1))]:7.3f} {delays[-1]:7.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
