"""A throwaway S3 endpoint on loopback: moto's server in a child process.

Used by `ferry demo`, the tests and the benchmarks, so that all of them reach S3 over HTTP exactly
as production code would. Nothing here is used against a real store.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

#: Credentials moto accepts; they open nothing but the local server.
DEMO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "ferry-demo",
    "AWS_SECRET_ACCESS_KEY": "ferry-demo-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_s3(
    *, timeout: float = 60.0, check_credentials: bool = False, server: list[str] | None = None
) -> Iterator[str]:
    """Start moto's S3 server on a free loopback port; yield its endpoint URL; stop it.

    With `check_credentials`, the server refuses keys it does not know, as a real store would.
    `server` is the command that starts it, before its host and port (`python -m moto.server`).
    """
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
    if check_credentials:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
    process = subprocess.Popen(
        [*(server or [sys.executable, "-m", "moto.server"]), "-H", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto's S3 server exited with code {process.returncode}")
            try:
                with urllib.request.urlopen(endpoint + "/moto-api/", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto's S3 server did not start on {endpoint}") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def reset(endpoint: str) -> None:
    """Forget every bucket on the local server."""
    request = urllib.request.Request(endpoint + "/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass
