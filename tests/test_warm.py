"""The warm start of the `ferry` command (`flows.warm`): after the first job command, the next
ones are run by a fork of a process that has everything loaded, and behave exactly as before:
same output, same exit codes, Ctrl-C cancels, and killing the command kills its work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from flows import warm


@pytest.fixture
def warm_home(tmp_path, monkeypatch, prefect_api):
    """A state directory of the test's own, warm starts on, and the API of the test session."""
    from prefect.settings import PREFECT_API_URL

    home = tmp_path / "home"
    monkeypatch.setenv("FERRY_HOME", str(home))
    monkeypatch.setenv("FERRY_WARM", "1")
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    yield home
    warm.stop_all()


def ferry(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "flows.warm", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
        **kwargs,
    )


def wait_for_warm(deadline: float = 300) -> None:
    end = time.monotonic() + deadline
    while not os.path.exists(warm.socket_path()):
        assert time.monotonic() < end, "the warm process did not start"
        time.sleep(0.5)


def log_path() -> str:
    return warm.socket_path()[: -len(".sock")] + ".log"


def served() -> list[str]:
    with open(log_path()) as f:
        return f.read().splitlines()


def test_the_second_command_runs_warm_with_the_same_output_and_exit_codes(
    warm_home, tmp_path, bucket, s3_client
):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"data")
    first = ferry("export", str(src), f"s3://{bucket}/one", "--report-dir", str(tmp_path / "r"))
    assert first.returncode == 0, first.stderr
    assert not os.path.exists(log_path())  # the first one ran on its own
    wait_for_warm()

    second = ferry("export", str(src), f"s3://{bucket}/two", "--report-dir", str(tmp_path / "r"))
    assert second.returncode == 0, second.stderr
    assert "1 ok · 0 skipped · 0 rejected · 0 failed" in second.stdout
    assert s3_client.get_object(Bucket=bucket, Key="two/f")["Body"].read() == b"data"
    assert len(served()) == 1 and " export pid " in served()[0] and served()[0].endswith("exit 0")

    wrong = ferry("import", "s3://no-such-bucket-here/x", str(tmp_path / "d"))
    assert wrong.returncode == 2
    assert (
        wrong.stderr.strip() == "ferry: error: bucket does not exist: s3://no-such-bucket-here/x/"
    )
    assert served()[-1].endswith("exit 2")

    status = ferry("server", "status")
    assert f"ferry's warm process is running: pid {warm.running()[0][0]}, 2 commands run" in (
        status.stdout
    )


def _slow_export(tmp_path, bucket, mbps: float):
    """An export of 60 files of 100 kB: 12 s at 0.5 MB/s, 2 minutes at 0.05."""
    src = tmp_path / "slow"
    src.mkdir()
    for i in range(60):
        (src / f"f{i:02d}").write_bytes(b"x" * 100_000)
    return subprocess.Popen(
        [sys.executable, "-m", "flows.warm", "export", str(src), f"s3://{bucket}/c"]
        + ["--bandwidth-mbps", str(mbps), "--report-dir", str(tmp_path / "r")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def _until_copying(proc, s3_client, bucket) -> None:
    deadline = time.monotonic() + 600
    while not s3_client.list_objects_v2(Bucket=bucket).get("KeyCount", 0):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)


def _start_warm() -> None:
    subprocess.Popen(
        [sys.executable, "-m", "flows.warm", "serve", warm.fingerprint()],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for_warm()


def test_ctrl_c_reaches_the_warm_command(warm_home, tmp_path, bucket, s3_client):
    _start_warm()
    proc = _slow_export(tmp_path, bucket, 0.05)  # still copying when Ctrl-C lands
    _until_copying(proc, s3_client, bucket)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 3, err
    assert "cancelling" in err and "manifest: " in out
    assert served()[-1].endswith("exit 3")


def test_killing_the_command_kills_its_warm_work(warm_home, tmp_path, bucket, s3_client):
    _start_warm()
    proc = _slow_export(tmp_path, bucket, 0.1)  # a file a second: 3 s would show more
    _until_copying(proc, s3_client, bucket)
    proc.kill()  # kill -9: no chance to forward anything
    proc.wait()
    deadline = time.monotonic() + 300
    while not (os.path.exists(log_path()) and served()):
        assert time.monotonic() < deadline, "the warm work outlived its command"
        time.sleep(0.2)
    assert served()[-1].endswith(f"exit -{signal.SIGKILL.value}")
    copied = s3_client.list_objects_v2(Bucket=bucket)["KeyCount"]
    time.sleep(3)  # nothing more is written once the work is gone
    assert s3_client.list_objects_v2(Bucket=bucket)["KeyCount"] == copied < 60


def test_a_change_to_the_code_or_python_changes_the_warm_process(monkeypatch):
    before = warm.fingerprint()
    monkeypatch.setattr(sys, "executable", sys.executable + "-other")
    assert warm.fingerprint() != before


def test_a_socket_left_by_a_dead_warm_process_is_replaced(warm_home, tmp_path, bucket):
    """A warm process killed outright leaves its socket: the next command runs on its own, and
    starts a new warm process in its place."""
    import socket

    os.makedirs(warm_home, exist_ok=True)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(warm.socket_path())  # bound, never listening: nothing answers
    dead.close()
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"1")
    first = ferry("export", str(src), f"s3://{bucket}/x", "--report-dir", str(tmp_path / "r"))
    assert first.returncode == 0, first.stderr
    deadline = time.monotonic() + 300
    while not warm.running():
        assert time.monotonic() < deadline, "no warm process replaced the dead one"
        time.sleep(0.5)


def test_a_warm_process_gone_stale_finishes_the_commands_it_runs(
    warm_home, tmp_path, bucket, s3_client
):
    """The code changed (here: its socket removed, the other sign of a stale warm process) while
    a command ran: it takes no new command, but the running one ends as it would have."""
    _start_warm()
    pid_file = warm.socket_path()[: -len(".sock")] + ".pid"
    with open(pid_file) as f:
        warm_pid = int(f.read())
    proc = _slow_export(tmp_path, bucket, 0.5)  # all 60 files are to arrive
    _until_copying(proc, s3_client, bucket)
    os.unlink(warm.socket_path())
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "60 ok · 0 skipped · 0 rejected · 0 failed" in out
    assert s3_client.list_objects_v2(Bucket=bucket)["KeyCount"] == 60
    deadline = time.monotonic() + 60
    while os.path.exists(f"/proc/{warm_pid}") and "zombie" not in _state(warm_pid):
        assert time.monotonic() < deadline, "the stale warm process did not end"
        time.sleep(0.2)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/status") as f:
            return f.read().lower()
    except OSError:
        return "zombie"
