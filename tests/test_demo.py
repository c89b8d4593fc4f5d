"""The README's first command, `ferry demo`, as a newcomer runs it: nothing running beforehand,
no PREFECT_API_URL, no AWS settings."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd


def test_ferry_demo_exports_imports_and_verifies_its_sample_tree(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AWS_", "FERRY_"))}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    env["FERRY_HOME"] = str(tmp_path / "ferry-home")  # where ferry's local server keeps its state
    work = tmp_path / "demo"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "flows.cli", "demo", "--keep", str(work)],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            stdin=subprocess.DEVNULL,
        )
    finally:
        stopped = subprocess.run(
            [sys.executable, "-m", "flows.cli", "server", "stop"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    # no Prefect server was configured: the demo started ferry's own, said where its UI is,
    # and `ferry server stop` stopped it
    assert "started a local Prefect server; its UI is at http://127.0.0.1:" in done.stderr
    assert "stopped ferry's local Prefect server" in stopped.stdout
    source, restored = work / "source", work / "restored"
    # the round trip: every file's bytes, the link as an empty file (links travel as empty
    # objects), the empty directory
    big = "checkpoints/model-step-1000.pt"
    assert (restored / big).read_bytes() == (source / big).read_bytes()
    assert len(list((restored / "datasets" / "images" / "train").iterdir())) == 120
    assert (restored / "scratch" / "empty").is_dir()
    manifests = sorted((work / "reports").glob("*/manifest.parquet"))
    assert len(manifests) == 3  # export, import, verify
    for manifest in manifests:
        statuses = set(pd.read_parquet(manifest)["status"])
        assert statuses <= {"ok", "skipped"}, (manifest, statuses)
