"""`ferry demo`: the whole round trip on embedded defaults, with nothing running beforehand.

Starts moto's S3 server on a free loopback port, builds a small sample tree (nested directories,
an empty one, a symbolic link, a FIFO, a file of tens of MB), exports it, imports it into a second
directory, and verifies the round trip, all through Prefect's temporary local API.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile

from flows.local_s3 import DEMO_CREDENTIALS, local_s3
from tasks.errors import UsageError

BUCKET = "ferry-demo"
BIG_FILE_BYTES = 48 * 2**20


def build_sample_tree(root: str) -> None:
    """A tree with every kind of entry export handles."""
    os.makedirs(os.path.join(root, "datasets", "images", "train"), exist_ok=True)
    os.makedirs(os.path.join(root, "datasets", "images", "val"), exist_ok=True)
    os.makedirs(os.path.join(root, "checkpoints"), exist_ok=True)
    os.makedirs(os.path.join(root, "scratch", "empty"), exist_ok=True)
    for split, count in (("train", 120), ("val", 30)):
        for i in range(count):
            path = os.path.join(root, "datasets", "images", split, f"img-{i:04d}.bin")
            with open(path, "wb") as f:
                f.write(os.urandom(4096 + 37 * i))
    with open(os.path.join(root, "checkpoints", "model-step-1000.pt"), "wb") as f:
        for _ in range(BIG_FILE_BYTES // 2**20):
            f.write(os.urandom(2**20))
    with open(os.path.join(root, "README.txt"), "w") as f:
        f.write("A sample tree exported and imported by `ferry demo`.\n")
    os.symlink("checkpoints/model-step-1000.pt", os.path.join(root, "latest.pt"))
    os.mkfifo(os.path.join(root, "scratch", "pipe"))


def run_demo(console, *, keep: str | None = None) -> int:
    if not _have("moto"):  # the emulator is an extra, not a dependency
        raise UsageError(
            "ferry demo runs on moto's S3 server, which is not installed: "
            "pip install 'ferry[demo]' (from a clone, `uv run ferry demo` has it)"
        )
    from flows import export_data, import_data, verify_data

    workdir = os.path.abspath(keep) if keep else tempfile.mkdtemp(prefix="ferry-demo-")
    source = os.path.join(workdir, "source")
    restored = os.path.join(workdir, "restored")
    reports = os.path.join(workdir, "reports")
    if os.path.exists(source):
        console.err.print(f"ferry demo: {source} exists already; pick an empty --keep directory")
        return 2
    build_sample_tree(source)
    console.err.print(f"Sample tree: {source}")
    saved = {k: os.environ.get(k) for k in [*DEMO_CREDENTIALS, "AWS_ENDPOINT_URL"]}
    with local_s3() as endpoint:
        os.environ.update({**DEMO_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint})
        try:
            _create_bucket(endpoint, BUCKET)
            console.err.print(f"Local S3 endpoint: {endpoint}, bucket s3://{BUCKET}")
            console.waiting_for_prefect()
            url = f"s3://{BUCKET}/demo/run1"
            results = []
            for title, call in (
                ("export", lambda: export_data(source, url, report_dir=reports)),
                ("import", lambda: import_data(url, restored, report_dir=reports)),
                ("verify", lambda: verify_data(source, restored, report_dir=reports)),
            ):
                result = console.run(title, call)
                console.summary(result)
                results.append(result)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    console.out.print(f"\nThe demo's files and manifests are in {workdir}")
    return max(r.exit_code for r in results)


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def _create_bucket(endpoint: str, name: str) -> None:
    from tasks.endpoints import parse_endpoint

    async def create(client):
        await client.create_bucket(Bucket=name)

    parse_endpoint(f"s3://{name}", {"endpoint_url": endpoint}).run(create)
