"""A warm start for the `ferry` command: a background process that has Prefect, s3fs, obstore and
pyarrow loaded forks a copy of itself for each job command, so a command reaches its first byte
without paying the 3-5 s of imports again.

- The first job command (`export`, `import`, `verify`, `convert`) runs as usual and then starts
  the warm process in the background; every later one is handed to it: the command's arguments,
  environment, working directory and standard streams go over a Unix socket in ferry's state
  directory (`$FERRY_HOME`, see `flows.local_server`), the warm process forks, and the fork runs
  the command exactly as `ferry` would, writing to the user's own terminal. The `ferry` process
  stays in front: Ctrl-C and other signals reach the fork, its exit code is the command's, and
  when the `ferry` process is killed the fork is killed with it.
- A change to ferry's code or Python makes another socket name, so a stale process is never
  used; a warm process left idle for `IDLE_SECONDS` exits. `ferry server stop` stops it.
- `FERRY_WARM=0` runs every command in its own process, as before.

Only the standard library is imported here before a warm process answers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import time

JOBS = frozenset({"export", "import", "verify", "convert"})
IDLE_SECONDS = 1800.0
_PACKAGES = ("flows", "tasks", "hns", "deployments")
_HEADER = struct.Struct("!I")


def enabled() -> bool:
    return os.environ.get("FERRY_WARM", "1") != "0"


def _state_dir() -> str:
    home = os.environ.get("FERRY_HOME")
    if home:
        return home
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "ferry")


def fingerprint() -> str:
    """What the warm process must share with this command: Python, and every file of ferry's
    code as it is now (a change makes a new name, so old code is never run)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    digest = hashlib.sha1(f"{sys.executable}\0{sys.version}".encode())
    for package in _PACKAGES:
        for folder, _, files in sorted(os.walk(os.path.join(root, package))):
            for name in sorted(files):
                if name.endswith(".py"):
                    st = os.stat(os.path.join(folder, name))
                    digest.update(f"{folder}/{name}\0{st.st_mtime_ns}\0{st.st_size}\0".encode())
    return digest.hexdigest()[:16]


def socket_path(fp: str | None = None) -> str:
    return os.path.join(_state_dir(), f"warm-{fp or fingerprint()}.sock")


# --- the command's side ---------------------------------------------------------------------------


def _send(sock: socket.socket, message: dict, fds=()) -> None:
    data = json.dumps(message).encode()
    payload = _HEADER.pack(len(data)) + data
    if fds:
        socket.send_fds(sock, [payload], list(fds))
    else:
        sock.sendall(payload)


def _lines(sock: socket.socket):
    buffer = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield json.loads(line)


def run_warm(argv: list[str]) -> int | None:
    """Hand the command to a warm process; its exit code, or None when there is none to take it
    (the caller then runs the command itself)."""
    path = socket_path()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    with sock:
        request = {"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()}
        _send(sock, request, fds=(0, 1, 2))
        replies = _lines(sock)
        try:
            started = next(replies)
        except (StopIteration, OSError, ValueError):
            return None  # it closed without starting the command: run it here
        pid = started["pid"]

        def forward(signum, _frame):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(signum, forward)
        try:
            for reply in replies:
                if "exit" in reply:
                    code = reply["exit"]
                    return code if code >= 0 else 128 - code
        except OSError:
            pass
    print("ferry: error: the warm ferry process ended before the command did", file=sys.stderr)
    return 1


def _answers(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def start_in_background() -> None:
    """Start a warm process for the next commands, unless one is running or starting."""
    import subprocess

    fp = fingerprint()
    path = socket_path(fp)
    starting = path + ".starting"
    if _answers(path):
        return
    with contextlib.suppress(OSError):
        if time.time() - os.path.getmtime(starting) < 120:
            return  # another command is starting it
    with contextlib.suppress(OSError):
        os.unlink(path)  # a socket nobody answers on: its process died
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(starting, "w") as marker:
            marker.write(str(os.getpid()))
        subprocess.Popen(
            [sys.executable, "-m", "flows.warm", "serve", fp],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            cwd="/",
        )
    except OSError:
        pass  # a warm start is an optimisation: the next command runs as this one did


def running() -> list[tuple[int, int]]:
    """(pid, commands it ran) of each warm process of this state directory that is alive."""
    import glob

    found = []
    for pid_file in sorted(glob.glob(os.path.join(_state_dir(), "warm-*.pid"))):  # noqa: PTH207
        try:
            with open(pid_file) as f:
                pid = int(f.read().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            continue
        try:
            with open(pid_file[: -len(".pid")] + ".log") as log:
                served = sum(1 for _ in log)
        except OSError:
            served = 0
        found.append((pid, served))
    return found


def stop_all() -> int:
    """Stop every warm process of this state directory; how many there were."""
    import glob

    stopped = 0
    for pid_file in glob.glob(os.path.join(_state_dir(), "warm-*.pid")):  # noqa: PTH207
        try:
            with open(pid_file) as f:
                os.kill(int(f.read().strip()), signal.SIGTERM)
            stopped += 1
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                os.unlink(pid_file)
    return stopped


def main() -> None:
    """The `ferry` command: a job goes to the warm process when one runs; everything else (and
    a job when none runs) runs here."""
    argv = sys.argv[1:]
    job = bool(argv) and argv[0] in JOBS and enabled()
    if job:
        code = run_warm(argv)
        if code is not None:
            sys.exit(code)
    from flows.cli import main as cli_main

    code = cli_main(argv)
    if job:
        start_in_background()
    sys.exit(code)


# --- the warm process -----------------------------------------------------------------------------


#: What a job command loads before its first byte (none of it starts a thread). What a command
#: loads beyond this is learned: the fork writes the names down, and the warm process loads them
#: while idle, before the next command (`_learn`).
PRELOAD = (
    "obstore.store",
    "pyarrow.parquet",
    "s3fs",
    "fastapi.encoders",
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.utilities.visualization",
    "flows.cli",
    "flows.console",
    "flows.convert",
    "flows.local_server",
    "flows.transfer",
    "flows.verify",
)


def _preload(names) -> None:
    import importlib

    for name in names:
        with contextlib.suppress(Exception):  # a module that does not load is loaded later
            importlib.import_module(name)


def _learn(path: str) -> bool:
    """Load what the last commands loaded that this process had not; False when doing so
    started a thread (forking would no longer be safe)."""
    import threading

    try:
        with open(path) as f:
            names = [n for n in f.read().split() if n and n not in sys.modules]
    except OSError:
        return True
    _preload(names)
    return threading.active_count() == 1


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    if len(data) < _HEADER.size:
        raise ConnectionError("short request")
    (length,) = _HEADER.unpack(data[: _HEADER.size])
    body = data[_HEADER.size :]
    while len(body) < length:
        chunk = conn.recv(length - len(body))
        if not chunk:
            raise ConnectionError("short request")
        body += chunk
    return json.loads(body), fds


def _child(request: dict, fds: list[int], keep_closed: list, learned: str) -> None:
    """In the fork: become the command, run it, exit with its code. Never returns."""
    import atexit
    import io

    loaded = set(sys.modules)
    code = 1
    try:
        for item in keep_closed:
            item.close()
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        sys.stdout = io.TextIOWrapper(
            io.FileIO(1, "w", closefd=False), line_buffering=os.isatty(1), write_through=True
        )
        sys.stderr = io.TextIOWrapper(
            io.FileIO(2, "w", closefd=False), errors="backslashreplace", write_through=True
        )
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["ferry", *request["argv"]]
        import prefect.context

        prefect.context.refresh_global_settings_context()
        from flows.cli import main as cli_main

        code = cli_main(request["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - the fork must end here, whatever happened
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            with contextlib.suppress(OSError), open(learned, "a") as f:
                f.write("".join(f"{name}\n" for name in set(sys.modules) - loaded))
            atexit._run_exitfuncs()  # the command's own (Prefect's log and event workers)
            for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
                if stream is not None:
                    stream.flush()
        finally:
            os._exit(code)


def serve(fp: str) -> None:
    """The warm process: load, listen, fork a child per command, until idle for IDLE_SECONDS."""
    import selectors
    import threading

    path = socket_path(fp)
    _preload(PRELOAD)
    learned = path[: -len(".sock")] + ".modules"
    if not _learn(learned) or threading.active_count() != 1:
        return  # forking with threads alive is not safe: no warm start here
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if _answers(path):
        return  # another warm process answers there
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    pid_file = path[: -len(".sock")] + ".pid"
    with open(pid_file, "w") as f:  # before the socket: whoever sees the socket finds the pid
        f.write(str(os.getpid()))
    listener.bind(path)
    ours = os.stat(path).st_ino
    listener.listen(16)
    with contextlib.suppress(OSError):
        os.unlink(path + ".starting")
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}
    commands: dict[int, str] = {}
    log_file = path[: -len(".sock")] + ".log"
    last = checked = time.monotonic()
    stale = False
    try:
        while children or not (stopping or stale or time.monotonic() - last >= IDLE_SECONDS):
            if not stale and time.monotonic() - checked > 5:
                checked = time.monotonic()
                if not os.path.exists(path) or fingerprint() != fp:
                    # the socket was removed, or the code changed: this process is stale. It
                    # takes no new command, and ends once the commands it runs have ended.
                    stale = True
                    selector.unregister(listener)
                    listener.close()
            for key, _ in selector.select(timeout=0.2):
                if key.fileobj is listener:
                    conn, _ = listener.accept()
                    try:
                        request, fds = _receive(conn)
                    except (OSError, ValueError):
                        conn.close()
                        continue
                    pid = os.fork()
                    if pid == 0:
                        _child(request, fds, [listener, *children.values()], learned)
                    for fd in fds:
                        os.close(fd)
                    conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
                    children[pid] = conn
                    commands[pid] = request["argv"][0]
                    selector.register(conn, selectors.EVENT_READ, pid)
                    last = time.monotonic()
                else:  # the command's process closed its end: it was killed
                    conn = key.fileobj
                    try:
                        gone = not conn.recv(1)
                    except OSError:
                        gone = True
                    if gone:
                        selector.unregister(conn)
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(key.data, signal.SIGKILL)
            while children:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                conn = children.pop(pid, None)
                if conn is None:
                    continue
                code = os.waitstatus_to_exitcode(status)
                with open(log_file, "a") as log:  # what it ran, for `ferry server status`
                    log.write(
                        f"{time.strftime('%FT%T')} {commands.pop(pid)} pid {pid} exit {code}\n"
                    )
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps({"exit": code}).encode() + b"\n")
                with contextlib.suppress(KeyError, ValueError):
                    selector.unregister(conn)
                conn.close()
                last = time.monotonic()
                if not children and not _learn(learned):
                    return  # a module started a thread: stop forking (the finally cleans up)
    finally:
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == ours:  # not a newer warm process's socket
                os.unlink(path)
        with contextlib.suppress(OSError):
            os.unlink(pid_file)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        main()
