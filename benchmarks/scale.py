"""Benchmark: how ferry scales: worker processes, a Dask cluster, and plans of millions of entries.

    uv run python benchmarks/scale.py            # every case below at full size (about 30 min)
    uv run python benchmarks/scale.py --small-files 200 --large-files 2 --large-mib 8 \\
        --plan-sizes 100000                      # a quick look at every case
    uv run python benchmarks/scale.py --cases plan           # the plan alone: no servers started
    uv run python benchmarks/scale.py --cases workers,dask --small-files 4000 --large-files 2 \\
        --large-mib 64

Cases (`--cases`, comma-separated; default: all):
  workers   export and import of 20,000 × 4 KiB (--small-files) and 4 × 256 MiB (--large-files,
            --large-mib), each with workers=1 (every partition in the flow's process) and
            workers=2 (Prefect's ProcessPoolTaskRunner: two worker processes).
  dask      the same copies through a two-worker `distributed.LocalCluster` (processes=True, one
            thread a worker), passed as `dask_address`: prefect-dask's DaskTaskRunner.
  plan      plans of 1, 5 and 10 million synthetic entries (--plan-sizes): the tree cut into
            ranges as the flow cuts it, each range planned by `tasks.planner.plan_range` (what
            the flow's plan-range task runs: listing, plan, partition) in one of
            --plan-workers worker processes, its partitions sent back to the parent.
  tree      the same on a real tree of --tree-files files (500,000), listed by ferry's own
            directory lister, against an empty prefix of a moto bucket (export).
Export is directory → bucket, import bucket → directory (what the export just wrote).

Partitions: the small files are cut into at least 4 partitions (`partition_files` = the
smaller of 2,000 and a quarter of the files: 20,000 files make 10), a large file is a partition
of its own (`partition_bytes` = its size), so that two processes always have work to share.

The copies run in this process (`export_data` / `import_data` called here, as ferry-inproc in
benchmarks/transfer.py) against one moto endpoint (flows/local_s3.py) and one Prefect server
(`uv run prefect server start`, its own PREFECT_HOME; PREFECT_API_URL set for this process, its
worker processes and the Dask cluster). Before each copy placement's runs, one untimed export and
import in two partitions loads what a first run loads (modules, S3 client; the Dask workers'
imports); the process pool is started by each copy, so its start-up is in every workers=2 number.
Before every export the server is reset: every run meets the same empty server.

What is measured, per copy:
  wall      from the call to its return.
  CPU       the client's user + system CPU: the whole process tree of this process (every
            thread, every worker process, reaped or still alive: from /proc, to the clock tick)
            minus the trees of the servers it started (moto, the Prefect server). For dask the
            cluster's process tree (scheduler, nannies, workers) is the client's too: it is
            started here in a process of its own and counted with the rest; it runs only during
            the dask runs, and its idle ticking between them is in them.
  CPU/obj   CPU per object copied, ms (small files); CPU/GB  CPU seconds per GB (large files).
  procs     how many processes settled entries (distinct `worker` in the manifest).
  moto/API  CPU of moto and of the Prefect server meanwhile (more task runs cost the API more).
  ×w1       wall and CPU as a ratio to workers=1's in the same case (below 1: less).
Each copy is checked (objects and bytes in the bucket, files and bytes on disk, the counts of
the result); a copy that fails or falls short is marked.

The plan and tree cases run each size in a fresh process (`--plan-child`), whose pool of
worker processes is started (and its imports made) before the clock starts. The synthetic
lister returns what a lister would (directory entries, with their directories, or bucket objects
with ETag and storage class, sorted) for the range's spans; the destination is empty (a first
run: every entry copied). Wall time is from the first range submitted to the last range's
partitions received (and dropped, as copying consumes them); CPU is the ranges' own (in the
workers) and the parent's; memory is the peak resident size of the parent and of the biggest
worker, and "peak" adds the workers' as if each peaked at once (an upper bound).

What bounds each number: on a 2-core machine the S3 emulator (moto, one Python process doing
the storing and hashing) and the Prefect server share the client's cores, so two client processes
compete with them and with each other: wall time of workers=2 and dask is bounded by the cores
left, not by ferry; moto's CPU per request is about the client's. CPU counts every process's start
(a worker process imports Prefect and ferry: about a second each); Dask adds its scheduler's and
workers' heartbeats. The plan numbers are pure Python on the workers' cores, memory the Entry
and Item objects of the ranges being planned and their path strings. The machine's load
average is printed before and after: other work on the machine changes every number here.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.transfer import (  # noqa: E402
    MiB,
    PrefectServer,
    bucket_size,
    child_pid,
    choose,
    load,
    make_tree,
    processes,
    tree_size,
    warm,
    warm_up,
)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CASES = ("workers", "dask", "plan", "tree")
PLACEMENTS = ("workers=1", "workers=2", "dask")
KINDS = ("small", "large")
DIRECTIONS = ("export", "import")


@dataclass
class Copy:
    case: str  # export-small, import-large, ...
    placement: str
    objects: int
    nbytes: int
    partitions: int
    wall: float
    cpu: float
    moto_cpu: float
    api_cpu: float
    procs: int
    ok: bool
    error: str | None = None

    @property
    def per_unit(self) -> float:
        """CPU ms per object (small files), CPU s per GB (large)."""
        if self.case.endswith("small"):
            return self.cpu / max(self.objects, 1) * 1000
        return self.cpu / max(self.nbytes / 1e9, 1e-9)


# -- measuring ----------------------------------------------------------------------------------


def subtree(table: dict[int, tuple[int, float]], root: int) -> set[int]:
    tree, frontier = {root}, {root}
    while frontier:
        frontier = {p for p, (parent, _) in table.items() if parent in frontier} - tree
        tree |= frontier
    return tree & set(table)


def cpu_split(servers: dict[str, int | None]) -> dict[str, float]:
    """CPU seconds so far, from one look at /proc: "client" (this process's tree without the
    servers' trees) and each named server's tree."""
    table = processes()
    mine = subtree(table, os.getpid())
    out = {}
    for name, pid in servers.items():
        theirs = subtree(table, pid) if pid else set()
        out[name] = sum(table[p][1] for p in theirs)
        mine -= theirs
    out["client"] = sum(table[p][1] for p in mine)
    return out


def manifest_workers(result) -> int:
    """Distinct `worker` (host:pid) of the run's manifest: the processes that settled entries."""
    import pandas as pd

    try:
        return int(pd.read_parquet(result.manifest, columns=["worker"])["worker"].nunique())
    except Exception:  # noqa: BLE001 - shown as 0
        return 0


def rss_kib() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process, KiB."""
    found = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                found[key] = int(value.split()[0])
    return found["VmRSS"], found["VmHWM"]


# -- the Dask cluster ---------------------------------------------------------------------------


class DaskCluster:
    """A two-worker `distributed.LocalCluster` (processes=True) in a process of its own
    (`--dask-cluster`), started with this process's environment (S3 endpoint and credentials,
    PREFECT_API_URL); stopped by closing its stdin."""

    def __init__(self, workers: int = 2, timeout: float = 120.0) -> None:
        env = {**os.environ, "PYTHONPATH": ROOT}
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--dask-cluster", str(workers)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        started = time.monotonic()
        line = self.process.stdout.readline().strip()
        if not line.startswith("tcp://") or time.monotonic() - started > timeout:
            self.stop()
            raise RuntimeError(f"the Dask cluster did not start: {line!r}")
        self.address = line

    def stop(self) -> None:
        try:
            self.process.stdin.close()
            self.process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def serve_dask_cluster(workers: int) -> int:
    """The `--dask-cluster` process: the cluster's address on stdout, then wait for stdin's end."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        print(cluster.scheduler_address, flush=True)
        sys.stdin.read()
    return 0


# -- the copies ---------------------------------------------------------------------------------


class Transfers:
    def __init__(self, args, work: str, endpoint: str, api: PrefectServer) -> None:
        import boto3

        from flows import export_data, import_data

        self.args = args
        self.work = work
        self.endpoint = endpoint
        self.api = api
        self.export_data, self.import_data = export_data, import_data
        self.s3 = boto3.client("s3", endpoint_url=endpoint)
        self.moto_pid = child_pid("moto.server")
        self.reports = os.path.join(work, "reports")
        self.trees: dict[str, tuple[str, tuple[int, int]]] = {}
        self.copies: list[Copy] = []

    def shape(self, kind: str) -> tuple[int, int]:
        a = self.args
        return (
            (a.small_files, a.small_size) if kind == "small" else (a.large_files, a.large_mib * MiB)
        )

    def partition_options(self, kind: str) -> dict:
        """Small files: at least 4 partitions; large: one file a partition."""
        files, size = self.shape(kind)
        if kind == "small":
            return {"partition_files": max(1, min(2000, math.ceil(files / 4)))}
        return {"partition_bytes": size}

    def partitions(self, kind: str) -> int:
        files, _ = self.shape(kind)
        if kind == "small":
            return math.ceil(files / self.partition_options(kind)["partition_files"])
        return files

    def tree(self, kind: str) -> tuple[str, tuple[int, int]]:
        if kind not in self.trees:
            count, size = self.shape(kind)
            src = os.path.join(self.work, kind, "src")
            print(f"Building {count:,} files of {size:,} bytes in {src}...", flush=True)
            make_tree(src, count, size)
            os.sync()
            warm(src)
            self.trees[kind] = (src, tree_size(src))
        return self.trees[kind]

    def warm_up(self, placement: dict) -> None:
        """One untimed export and import in two partitions (transfer.py's warm-up, with this
        placement's options)."""
        options = {**placement, "partition_files": 1}
        warm_up(
            self.work,
            self.s3,
            self.endpoint,
            functools.partial(self.export_data, **options),
            functools.partial(self.import_data, **options),
            self.reports,
        )

    def servers(self, dask: DaskCluster | None, counted: bool) -> dict[str, int | None]:
        found = {"moto": self.moto_pid, "api": self.api.process.pid}
        if dask is not None and not counted:
            found["dask"] = dask.process.pid
        return found

    def run(self, placement_name: str, placement: dict, dask: DaskCluster | None) -> None:
        for kind in KINDS:
            if self.shape(kind)[0] <= 0:
                continue
            src, expected = self.tree(kind)
            bucket = f"bench-{kind}"
            reset_bucket(self.endpoint, self.s3, bucket)
            options = {**placement, **self.partition_options(kind), "report_dir": self.reports}
            url = f"s3://{bucket}/data"
            self.measure(
                f"export-{kind}", placement_name, kind, expected, dask,
                lambda: self.export_data(src, url, **options),
                lambda: bucket_size(self.s3, bucket),
            )  # fmt: skip
            dest = os.path.join(self.work, kind, "dst")
            shutil.rmtree(dest, ignore_errors=True)
            self.measure(
                f"import-{kind}", placement_name, kind, expected, dask,
                lambda: self.import_data(url, dest, **options),
                lambda: tree_size(dest) if os.path.isdir(dest) else (0, 0),
            )  # fmt: skip
            shutil.rmtree(dest, ignore_errors=True)

    def measure(self, case: str, placement: str, kind: str, expected: tuple[int, int],
                dask: DaskCluster | None, call: Callable[[], object],
                got: Callable[[], tuple[int, int]]) -> None:  # fmt: skip
        servers = self.servers(dask, counted=placement == "dask")
        before = cpu_split(servers)
        started = time.monotonic()
        result = error = None
        try:
            result = call()
        except Exception as exc:  # noqa: BLE001 - shown, and marked in the table
            error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:800]}"
            result = getattr(exc, "result", None)
        wall = time.monotonic() - started
        after = cpu_split(servers)
        found = got()
        counts = getattr(result, "counts", {}) or {}
        ok = error is None and found == expected and counts.get("ok") == expected[0]
        copy = Copy(
            case, placement, *expected, self.partitions(kind), wall,
            after["client"] - before["client"], after["moto"] - before["moto"],
            after["api"] - before["api"], manifest_workers(result) if result else 0, ok, error,
        )  # fmt: skip
        self.copies.append(copy)
        print(
            f"  {case:13} {placement:10} {wall:8.2f} s wall {copy.cpu:7.2f} s CPU "
            f"{copy.procs} processes" + ("" if ok else f"  FAILED: got {found}, counts {counts}"),
            flush=True,
        )
        if error:
            print(f"    error: {error}", flush=True)


def reset_bucket(endpoint: str, s3, bucket: str) -> None:
    from flows.local_s3 import reset

    reset(endpoint)
    s3.create_bucket(Bucket=bucket)


# -- the plan -----------------------------------------------------------------------------------


#: The synthetic tree: files of 1,000 a directory, directories 100 a parent, under top-level
#: directories of 100,000 files each (10 million entries: 100 top-level directories).
PER_DIR, PER_TOP = 1000, 100_000


class SyntheticTree:
    """A tree of `n` files as a lister would return it, a range at a time: for export the
    directory lister's entries (files, and the directories' own entries), for import the bucket
    lister's objects (ETag, storage class); the destination is empty (a first run, every entry
    copied). Its levels are what `tasks.ranges.expand` reads of a real tree."""

    def __init__(self, n: int) -> None:
        self.n = n

    def levels(self, paths):
        tops = math.ceil(self.n / PER_TOP)
        found = []
        for path in paths:
            if path == "":
                found.append([f"t{t:04d}" for t in range(tops)])
            elif "/" not in path:
                top = int(path[1:])
                mids = math.ceil(min(PER_TOP, self.n - top * PER_TOP) / PER_DIR)
                found.append([f"{path}/m{m:02d}" for m in range(mids)])
            else:
                found.append([])
        return found

    def files(self, span) -> range:
        """The numbers of the files a span holds."""
        parts = span.path.split("/") if span.path else []
        if not parts:
            return range(self.n if span.deep else 0)
        top = int(parts[0][1:])
        start = top * PER_TOP
        if len(parts) == 1:
            return range(start, min(start + PER_TOP, self.n)) if span.deep else range(0)
        start += int(parts[1][1:]) * PER_DIR
        return range(start, min(start + PER_DIR, self.n))

    def sides(self, job, rng, requests):
        from tasks.listing import Entry

        export = job.direction == "export"
        entries = []
        base = 1_700_000_000_000_000_000
        for span in rng.spans:
            if export and span.path:
                entries.append(Entry(path=span.path, kind="dir"))
            numbers = self.files(span)
            if export and span.deep and span.path.count("/") == 0 and span.path:
                for m in range(0, len(numbers), PER_DIR):
                    entries.append(Entry(path=f"{span.path}/m{m // PER_DIR:02d}", kind="dir"))
            for i in numbers:
                top, mid = i // PER_TOP, (i // PER_DIR) % 100
                path = f"t{top:04d}/m{mid:02d}/file-{i:09d}.dat"
                size = 4096 + (i * 7919) % 65536
                if export:
                    entries.append(Entry(path=path, kind="file", size=size, mtime_ns=base + i))
                else:
                    entries.append(
                        Entry(
                            path=path,
                            kind="object",
                            size=size,
                            mtime_ns=base + i,
                            etag=f"{i:032x}",
                            storage_class="STANDARD",
                        )  # fmt: skip
                    )
        entries.sort(key=lambda e: e.path)
        return entries, []


def _plan_one(n: int, direction: str, rng, report_url: str, tree: str | None = None):
    """One range planned in a worker process, by `tasks.planner.plan_range` (what the flow's
    plan-range task runs) with the synthetic lister: the partitions travel back to the parent
    (pickled, as a process pool returns them). Returns (plan, seconds, CPU seconds)."""
    from tasks.endpoints import parse_endpoint
    from tasks.job import Job
    from tasks.manifest import ReportDir
    from tasks.options import Options
    from tasks.planner import plan_range
    from tasks.run import RunState

    started, cpu = time.perf_counter(), time.process_time()
    from tasks.planner import list_sides

    job = Job(
        "bench", direction, parse_endpoint(tree or "/nonexistent/ferry-bench"),
        parse_endpoint("s3://bench/data"), Options(),
    )  # fmt: skip
    plan = plan_range(
        job, rng, ReportDir(report_url, "bench"), RunState.of(job),
        lister=list_sides if tree else SyntheticTree(n).sides,
    )  # fmt: skip
    return plan, time.perf_counter() - started, time.process_time() - cpu


def _max_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def plan_child(n: int, direction: str, workers: int, tree: str | None = None) -> int:
    """One size of the plan case, in a process of its own: the tree cut into ranges as the flow
    cuts it, each range planned by `plan_range` in one of `workers` worker processes, the
    partitions received here and dropped (as copying consumes them). Times, CPU and peak
    resident memory of this process and of the biggest worker, as JSON."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from flows.transfer import RANGES_PER_PROCESS
    from tasks.ranges import expand, group

    out = {"entries": n, "direction": direction, "workers": workers, "base_kib": rss_kib()[0]}
    reports = tempfile.mkdtemp(prefix="ferry-plan-")
    started = time.perf_counter()
    from tasks.ranges import directory_levels

    levels = directory_levels(tree) if tree else SyntheticTree(n).levels
    ranges = group(expand(levels), RANGES_PER_PROCESS * max(2, workers))
    out["ranges"] = len(ranges)
    files = parts = 0
    busiest = 0.0
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        pool.submit(_max_rss_kib).result()  # started: its start-up is not the plan's
        started = time.perf_counter()
        mine = time.process_time()
        futures = {pool.submit(_plan_one, n, direction, r, reports, tree) for r in ranges}
        ranges_cpu = 0.0
        for future in as_completed(futures):
            futures.discard(future)  # what it holds is let go once received, as the flow does
            plan, seconds, cpu = future.result()
            ranges_cpu += cpu
            if out.get("first_s") is None:
                out["first_s"] = time.perf_counter() - started
            files += plan.files
            parts += len(plan.parts)
            busiest = max(busiest, seconds)
            del plan
        out["wall_s"] = time.perf_counter() - started
        out["flow_cpu_s"] = time.process_time() - mine
        out["ranges_cpu_s"] = ranges_cpu
    shutil.rmtree(reports, ignore_errors=True)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    me = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_s"] = out["flow_cpu_s"] + out["ranges_cpu_s"]  # the plan's, not the start-ups'
    out["parent_kib"] = me.ru_maxrss
    out["worker_kib"] = children.ru_maxrss  # the biggest of the workers (all ended)
    out["planned"] = files
    out["partitions"] = parts
    out["slowest_range_s"] = busiest
    print(json.dumps(out), flush=True)
    return 0


def plan_case(
    sizes: list[int], directions: list[str], workers: int, tree: str | None = None
) -> list[dict]:
    rows = []
    for direction in directions:
        for n in sizes:
            print(f"  plan {direction} {n:,} entries on {workers} workers (a fresh process)...",
                  flush=True)  # fmt: skip
            done = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--plan-child", str(n), direction,
                 str(workers)] + (["--plan-tree", tree] if tree else []),
                capture_output=True,
                text=True,
                cwd=ROOT,
            )  # fmt: skip
            if done.returncode != 0:
                print(f"    failed ({done.returncode}): {done.stderr[-1500:]}", flush=True)
                rows.append({"entries": n, "direction": direction, "failed": True})
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row["tree"] = bool(tree)
            rows.append(row)
            print(
                f"    {row['wall_s']:.1f} s ({row['ranges_cpu_s']:.1f} s CPU in the ranges, "
                f"{row['flow_cpu_s']:.1f} s here), first range "
                f"{row['first_s']:.1f} s; peak {row['parent_kib'] / 1024:,.0f} MiB here + "
                f"{row['worker_kib'] / 1024:,.0f} MiB a worker",
                flush=True,
            )
    return rows


def tree_case(files: int, workers: int, work: str) -> list[dict]:
    """The plan case on a real tree of `files` files (1,000 a directory, 50 directories a
    parent), listed by ferry's own lister, against an empty prefix of a moto bucket."""
    from flows.local_s3 import DEMO_CREDENTIALS, local_s3

    root = os.path.join(work, "tree")
    print(f"Writing a tree of {files:,} files (not timed)...", flush=True)
    for i in range(files):
        if i % PER_DIR == 0:
            folder = os.path.join(root, f"t{i // 50_000:03d}", f"m{(i // PER_DIR) % 50:02d}")
            os.makedirs(folder)
        with open(os.path.join(folder, f"file-{i:07d}.dat"), "wb") as f:
            f.write(b"%d" % i)
    with local_s3() as endpoint:
        os.environ.update({**DEMO_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint})
        import boto3

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
            Bucket="bench"
        )
        print("Plan of the real tree...", flush=True)
        return plan_case([files], ["export"], workers, root)


# -- the report ---------------------------------------------------------------------------------


def shape_text(files: int, size: int) -> str:
    unit = f"{size / MiB:,.0f} MiB" if size >= MiB else f"{size / 1024:,.0f} KiB"
    return f"{files:,} × {unit} ({files * size / 1e6:,.1f} MB)"


def ratio(value: float, base: float | None) -> str:
    return "-" if not base else f"{value / base:.2f}"


def report(copies: list[Copy], plans: list[dict]) -> None:
    print()
    for case in dict.fromkeys(c.case for c in copies):
        group = [c for c in copies if c.case == case]
        first = group[0]
        unit = "CPU/obj ms" if case.endswith("small") else "CPU/GB s"
        print(f"{case}: {shape_text(first.objects, first.nbytes // max(first.objects, 1))}, "
              f"{first.partitions} partitions")  # fmt: skip
        print(
            f"  {'placement':10} {'wall s':>8} {'CPU s':>7} {unit:>10} {'procs':>5} "
            f"{'moto s':>7} {'API s':>6} {'wall ×w1':>8} {'CPU ×w1':>8}"
        )
        base = next((c for c in group if c.placement == "workers=1" and c.ok), None)
        for c in group:
            print(
                f"  {c.placement:10} {c.wall:8.2f} {c.cpu:7.2f} {c.per_unit:10.3f} {c.procs:5} "
                f"{c.moto_cpu:7.2f} {c.api_cpu:6.2f} "
                f"{ratio(c.wall, base and base.wall) if c.ok else '-':>8} "
                f"{ratio(c.cpu, base and base.cpu) if c.ok else '-':>8}"
                + ("" if c.ok else "  (FAILED)")
            )
        print()
    if plans:
        print("plan: a synthetic tree cut into ranges, each listed, planned against an empty "
              "destination and partitioned by plan_range in a worker process; the partitions "
              "sent back (each size in a fresh process)")  # fmt: skip
        print(
            f"  {'direction':9} {'entries':>11} {'workers':>7} {'ranges':>6} {'wall s':>7} "
            f"{'first s':>7} {'CPU s':>7} {'µs CPU/entry':>12} {'parts':>6} "
            f"{'flow MiB':>8} {'worker MiB':>10} {'peak MiB':>8}"
        )
        for r in plans:
            if r.get("failed"):
                print(f"  {r['direction']:9} {r['entries']:>11,} FAILED")
                continue
            peak = (r["parent_kib"] + r["workers"] * r["worker_kib"]) / 1024
            print(
                f"  {r['direction'] + (' tree' if r.get('tree') else ''):9} "
                f"{r['entries']:>11,} {r['workers']:7} {r['ranges']:6} "
                f"{r['wall_s']:7.1f} {r['first_s']:7.1f} {r['cpu_s']:7.1f} "
                f"{r['cpu_s'] * 1e6 / r['entries']:12.1f} {r['partitions']:6} "
                f"{r['parent_kib'] / 1024:8,.0f} {r['worker_kib'] / 1024:10,.0f} {peak:8,.0f}"
            )
        print("  peak: this process's peak plus each worker's at the biggest worker's peak "
              "(an upper bound of the memory in use at once)")  # fmt: skip
        print()


# -- main ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", default="all", help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--small-files", type=int, default=20000)
    parser.add_argument("--small-size", type=int, default=4096, help="bytes of a small file")
    parser.add_argument("--large-files", type=int, default=4)
    parser.add_argument("--large-mib", type=int, default=256, help="MiB of a large file")
    parser.add_argument(
        "--plan-sizes", default="1000000,5000000,10000000", help="entries, comma-separated"
    )
    parser.add_argument(
        "--plan-directions", default="all", help="comma-separated, of export, import"
    )
    parser.add_argument("--workdir", default=None, help="where the trees go (default: a temp dir)")
    parser.add_argument(
        "--plan-workers", type=int, default=2, help="worker processes that plan the ranges"
    )
    parser.add_argument(
        "--tree-files", type=int, default=500_000, help="files of the real tree (case tree)"
    )
    parser.add_argument("--plan-tree", help=argparse.SUPPRESS)
    parser.add_argument("--plan-child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--dask-cluster", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plan_child:
        n, direction, workers = args.plan_child
        return plan_child(int(n), direction, int(workers), args.plan_tree)
    if args.dask_cluster:
        return serve_dask_cluster(args.dask_cluster)
    cases = choose(args.cases, CASES, CASES, "cases")
    sizes = [int(s) for s in args.plan_sizes.split(",") if s.strip()]

    work = args.workdir or tempfile.mkdtemp(prefix="ferry-scale-")
    os.makedirs(work, exist_ok=True)
    print(f"Working in {work}", flush=True)
    print(
        f"Load average before: {load()} ({os.cpu_count()} cores; on a 2-core machine the S3 "
        "emulator and the Prefect server share the cores with ferry's processes)",
        flush=True,
    )
    copies: list[Copy] = []
    plans: list[dict] = []
    try:
        if set(cases) & {"workers", "dask"}:
            copies = run_copies(args, cases, work)
        if "plan" in cases:
            print("Plan and partition of synthetic listings...", flush=True)
            directions = choose(args.plan_directions, DIRECTIONS, DIRECTIONS, "plans")
            plans = plan_case(sizes, directions, args.plan_workers)
        if "tree" in cases:
            plans += tree_case(args.tree_files, args.plan_workers, work)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"Load average after: {load()}", flush=True)
    report(copies, plans)
    failed = [c for c in copies if not c.ok] + [p for p in plans if p.get("failed")]
    return 1 if failed else 0


def run_copies(args, cases: list[str], work: str) -> list[Copy]:
    from flows.local_api import prefect_defaults
    from flows.local_s3 import DEMO_CREDENTIALS, local_s3

    os.environ["PREFECT_HOME"] = os.path.join(work, "prefect-home")
    prefect_defaults("WARNING")
    print("Starting a Prefect server (uv run prefect server start; not timed)...", flush=True)
    started = time.monotonic()
    api = PrefectServer(os.environ["PREFECT_HOME"])
    print(f"  up at {api.api_url} after {time.monotonic() - started:.1f} s", flush=True)
    os.environ["PREFECT_API_URL"] = api.api_url
    placements = [p for p in PLACEMENTS if ("dask" if p == "dask" else "workers") in cases]
    try:
        with local_s3() as endpoint:
            print(f"moto at {endpoint}", flush=True)
            os.environ.update({**DEMO_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint})
            bench = Transfers(args, work, endpoint, api)
            for name in placements:
                dask = None
                try:
                    if name == "dask":
                        print("Starting a two-worker Dask LocalCluster (not timed)...", flush=True)
                        dask = DaskCluster()
                        print(f"  scheduler at {dask.address}", flush=True)
                        placement = {"dask_address": dask.address}
                    else:
                        placement = {"workers": int(name.split("=")[1])}
                    print(f"Warming up {name} (not timed)...", flush=True)
                    try:
                        bench.warm_up(placement)
                    except Exception as exc:  # noqa: BLE001 - the timed runs show it again
                        print(f"  warm-up failed: {type(exc).__name__}: {exc}", flush=True)
                        shutil.rmtree(os.path.join(work, "warm-up"), ignore_errors=True)
                    bench.run(name, placement, dask)
                finally:
                    if dask is not None:
                        dask.stop()
            return bench.copies
    finally:
        api.stop()


if __name__ == "__main__":
    sys.exit(main())
