"""ferry's own local Prefect server, for a machine with no `PREFECT_API_URL`: started once, in the
background, on the first command that needs Prefect; reused by every later command (which then
reaches its first byte in a second or two, not after a 15-30 s temporary API start each time);
stopped with `ferry server stop`.

It is a plain `prefect server start` on 127.0.0.1, with its database and log in ferry's state
directory (`$FERRY_HOME`, else `$XDG_STATE_HOME/ferry`, else `~/.local/state/ferry`), so its UI
shows every run ferry made on this machine. A server another process started concurrently is
found through a lock, never started twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from tasks.errors import UsageError

STATE_FILE = "server.json"
START_TIMEOUT_SECONDS = 180.0


@dataclass(frozen=True)
class LocalServer:
    pid: int
    port: int

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def state_dir() -> Path:
    home = os.environ.get("FERRY_HOME")
    if home:
        return Path(home)
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(state) / "ferry"


def healthy(server: LocalServer, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{server.api_url}/health", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running() -> LocalServer | None:
    """ferry's local server, when one is up and answering."""
    try:
        found = LocalServer(**json.loads((state_dir() / STATE_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return found if _alive(found.pid) and healthy(found) else None


@contextlib.contextmanager
def _locked():
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield folder


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(timeout: float = START_TIMEOUT_SECONDS) -> tuple[LocalServer, bool]:
    """The running local server, started now if there is none: (server, started_now)."""
    with _locked() as folder:
        found = running()
        if found is not None:
            return found, False
        port = _free_port()
        env = {
            **os.environ,
            "PREFECT_HOME": str(folder / "prefect"),
            "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        env.pop("PREFECT_API_URL", None)
        with open(folder / "server.log", "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start"]
                + ["--host", "127.0.0.1", "--port", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # outlives this command, and its Ctrl-C
            )
        server = LocalServer(process.pid, port)
        deadline = time.monotonic() + timeout
        while not healthy(server, timeout=1.0):
            if process.poll() is not None or time.monotonic() > deadline:
                _end(process.pid)
                tail = _log_tail(folder / "server.log")
                raise UsageError(f"ferry's local Prefect server did not start: {tail}")
            time.sleep(0.25)
        (folder / STATE_FILE).write_text(json.dumps(asdict(server)))
        return server, True


def stop() -> LocalServer | None:
    """Stop ferry's local server; the one stopped, or None when none was running."""
    with _locked() as folder:
        try:
            found = LocalServer(**json.loads((folder / STATE_FILE).read_text()))
        except (OSError, ValueError, TypeError):
            return None
        (folder / STATE_FILE).unlink(missing_ok=True)
        if not _alive(found.pid):
            return None
        _end(found.pid)
        return found


def _end(pid: int, grace: float = 10.0) -> None:
    """End the server's process group: SIGTERM, then SIGKILL after `grace` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return " / ".join(lines[-3:])[:300] or "no output"


def use(server: LocalServer) -> None:
    """Point this process's Prefect at the server, in every thread (before or after Prefect is
    imported: its process-wide settings are read again from the environment)."""
    os.environ["PREFECT_API_URL"] = server.api_url
    if "prefect.context" in sys.modules:
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()
