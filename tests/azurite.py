"""Azurite, Microsoft's Azure Storage emulator, as a real Azure Blob endpoint on loopback.

Installed from npm on first use into a cache folder (`FERRY_AZURITE_HOME`, default
`~/.cache/ferry/azurite`), then started per test session, in memory, with telemetry off.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from email.utils import formatdate

from flows.local_s3 import free_port

#: Azurite's well-known development account (it opens nothing but the emulator).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_command() -> str:
    home = os.environ.get("FERRY_AZURITE_HOME") or os.path.expanduser("~/.cache/ferry/azurite")
    command = os.path.join(home, "node_modules", ".bin", "azurite-blob")
    if not os.path.exists(command):
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("the Azure tests need Azurite, installed with npm: npm is missing")
        os.makedirs(home, exist_ok=True)
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", home, "azurite"],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            timeout=600,
        )
    return command


@contextlib.contextmanager
def azurite(timeout: float = 60.0) -> Iterator[str]:
    """Start Azurite's blob service on a free loopback port; yield its account endpoint."""
    port = free_port()
    process = subprocess.Popen(
        [
            azurite_command(),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}/{ACCOUNT}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"Azurite exited with code {process.returncode}")
            try:
                urllib.request.urlopen(f"{endpoint}?comp=list", timeout=1)
                break
            except urllib.error.HTTPError:
                break  # it answers (unsigned requests are refused): it is up
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("Azurite did not start") from None
                time.sleep(0.2)
        yield endpoint
    finally:
        process.kill()
        process.wait()


def create_container(endpoint: str, name: str) -> None:
    """Create a container with a SharedKey-signed request (obstore has no call for it)."""
    date, version = formatdate(usegmt=True), "2021-08-06"
    canonical = "\n".join(
        ["PUT", *[""] * 11, f"x-ms-date:{date}", f"x-ms-version:{version}"]
        + [f"/{ACCOUNT}/{ACCOUNT}/{name}\nrestype:container"]
    )
    digest = hmac.new(base64.b64decode(KEY), canonical.encode(), hashlib.sha256).digest()
    request = urllib.request.Request(
        f"{endpoint}/{name}?restype=container",
        method="PUT",
        headers={
            "x-ms-date": date,
            "x-ms-version": version,
            "Content-Length": "0",
            "Authorization": f"SharedKey {ACCOUNT}:{base64.b64encode(digest).decode()}",
        },
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 201, response.status


def options(endpoint: str) -> dict[str, str]:
    """The storage options that reach the emulator's account."""
    return {"account_name": ACCOUNT, "account_key": KEY, "endpoint": endpoint}
