"""ferry's local Prefect server: with no PREFECT_API_URL, the first command that needs Prefect
starts it in the background; later commands reuse it (no temporary API start each time);
`ferry server stop` stops it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request

import pytest


def ferry(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )


@pytest.fixture
def home(tmp_path, s3_endpoint):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["FERRY_HOME"] = str(tmp_path / "ferry-home")
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    yield env
    ferry(env, "server", "stop")


def flow_runs(api: str) -> list[dict]:
    request = urllib.request.Request(
        f"{api}/flow_runs/filter",
        data=b"{}",
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def test_the_first_command_starts_the_server_and_the_next_reuses_it(tmp_path, bucket, home):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"1")
    reports = str(tmp_path / "r")
    assert ferry(home, "server", "status").returncode == 1  # none yet

    first = ferry(home, "export", str(src), f"s3://{bucket}/one", "--report-dir", reports)
    assert first.returncode == 0, first.stderr
    assert "started a local Prefect server; its UI is at http://127.0.0.1:" in first.stderr
    status = ferry(home, "server", "status")
    assert status.returncode == 0, status.stdout
    api = re.search(r"API (http://127\.0\.0\.1:\d+/api)", status.stdout).group(1)

    second = ferry(home, "export", str(src), f"s3://{bucket}/two", "--report-dir", reports)
    assert second.returncode == 0, second.stderr
    assert "started" not in second.stderr and "temporary" not in second.stderr
    # both runs are in the one server, whose UI shows them
    exports = [r for r in flow_runs(api) if r["state_type"] == "COMPLETED"]
    assert len(exports) == 2

    stopped = ferry(home, "server", "stop")
    assert stopped.returncode == 0 and "stopped ferry's local Prefect server" in stopped.stdout
    assert ferry(home, "server", "status").returncode == 1
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{api}/health", timeout=5)


def test_serve_uses_the_local_server_only_when_it_runs(home):
    refused = ferry(home, "serve")
    assert refused.returncode == 2
    assert "`ferry server start` starts ferry's own" in refused.stderr
    started = ferry(home, "server", "start")
    assert started.returncode == 0, started.stderr
    assert "running: UI http://127.0.0.1:" in started.stdout
    again = ferry(home, "server", "start")  # idempotent: the same server
    assert again.stdout == started.stdout
