"""Stream tasks: files written while a stream export runs, objects added while a stream import
runs, hand-over of files, and cancellation."""

from __future__ import annotations

import glob
import os
import time

import pandas as pd
import pytest
from conftest import in_thread, manifest_rows
from flaky_proxy import FlakyProxy, TwoAtOnce
from prefect.client.orchestration import get_client
from prefect.states import Cancelling

from flows.stream_tasks import stream_export, stream_import, submit_files

pytestmark = pytest.mark.usefixtures("prefect_api")


def start(target, **kwargs):
    """Run a stream flow in a thread; return (thread, outcome list, task id once running)."""
    thread, outcome = in_thread(target, **kwargs)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        found = glob.glob(os.path.join(kwargs["report_dir"], "*", "manifest.parquet"))
        if found:
            return thread, outcome, os.path.basename(os.path.dirname(found[0]))
        assert thread.is_alive(), f"the stream task ended before it started: {outcome}"
        time.sleep(0.1)
    raise AssertionError("the stream task did not start")


def rows(report_dir) -> pd.DataFrame:
    return pd.read_parquet(glob.glob(os.path.join(report_dir, "*", "manifest.parquet"))[0])


def finish(thread, task_id: str, reports: str, done, seconds: float = 600) -> pd.DataFrame:
    """Wait until the rolling manifest shows `done`, then cancel the task and wait for it to end:
    the test decides when the work is over, not a timer that a busy machine can outrun."""
    deadline = time.monotonic() + seconds
    while not done(manifest := rows(reports)):
        assert thread.is_alive(), f"the stream task ended early:\n{manifest}"
        assert time.monotonic() < deadline, f"not done within {seconds} s:\n{manifest}"
        time.sleep(0.2)
    cancel(task_id)
    thread.join(timeout=seconds)
    assert not thread.is_alive()
    return rows(reports)


def cancel(task_id: str) -> None:
    from uuid import UUID

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(UUID(task_id), Cancelling(), force=True)


def test_stream_export_sends_each_completed_file_once(tmp_path, bucket, s3_client):
    src = tmp_path / "src"
    src.mkdir()
    reports = str(tmp_path / "r")
    thread, _, task_id = start(
        stream_export,
        source_dir=str(src),
        destination=f"s3://{bucket}/ckpt",
        settle_seconds=2,  # longer than this thread can stall between a write and a rename
        report_dir=reports,
    )
    (src / "sub").mkdir()
    for i in range(5):
        path = src / ("sub" if i % 2 else "") / f"step-{i}.pt"
        path.write_bytes(os.urandom(1000 + i))
        os.utime(path, ns=(1_700_000_000_000_000_000 + i,) * 2)
        time.sleep(0.2)
    # the checkpoint pattern: write a temporary, rename it into place
    (src / "latest.tmp").write_bytes(b"final checkpoint")
    os.rename(src / "latest.tmp", src / "latest")
    # a file still being written is not exported until it is complete
    with open(src / "slow.bin", "wb") as f:
        f.write(b"a" * 1000)
        f.flush()
        time.sleep(1.5)
        f.write(b"b" * 1000)
    manifest = finish(thread, task_id, reports, lambda m: len(m) >= 7)
    keys = sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == [
        "ckpt/latest",
        "ckpt/slow.bin",
        "ckpt/step-0.pt",
        "ckpt/step-2.pt",
        "ckpt/step-4.pt",
        "ckpt/sub/step-1.pt",
        "ckpt/sub/step-3.pt",
    ]
    assert s3_client.get_object(Bucket=bucket, Key="ckpt/slow.bin")["Body"].read() == (
        b"a" * 1000 + b"b" * 1000
    )
    head = s3_client.head_object(Bucket=bucket, Key="ckpt/sub/step-3.pt")
    assert head["Metadata"]["mtime"] == "1700000000.000000003"
    assert manifest["path"].value_counts().max() == 1  # each file exactly once
    assert set(manifest["status"]) == {"ok"}


def test_submitted_files_go_even_without_the_watcher(tmp_path, bucket, s3_client):
    src = tmp_path / "src"
    src.mkdir()
    reports = str(tmp_path / "r")
    thread, _, task_id = start(
        stream_export,
        source_dir=str(src),
        destination=f"s3://{bucket}/sub",
        watch=False,
        report_dir=reports,
    )
    (src / "handed.pt").write_bytes(b"handed over")
    (src / "not-handed.pt").write_bytes(b"stays")
    submit_files(task_id, [str(src / "handed.pt")])
    manifest = finish(thread, task_id, reports, lambda m: len(m) >= 1)
    assert list(manifest["path"]) == ["handed.pt"] and list(manifest["status"]) == ["ok"]
    assert s3_client.get_object(Bucket=bucket, Key="sub/handed.pt")["Body"].read() == b"handed over"


def test_a_checkpoint_of_large_files_is_written_back_by_all_workers(tmp_path, bucket, s3_client):
    """A batch of 64 MiB or more is split among the workers, balanced by bytes: shards of 20,
    19, 18 and 17 MiB make {20, 17} and {19, 18}. A proxy holds the uploads of the first of
    the two partitions until the other's begin, so both workers write at once, however late
    the second starts."""
    import re

    from tasks.rows import worker_id

    def partition(method: str, path: str) -> int | None:
        found = re.search(r"/ckpt/shard-(\d)\.pt", path)
        if method not in ("PUT", "POST") or found is None:
            return None
        return int(found.group(1)) in (1, 2)

    src = tmp_path / "src"
    src.mkdir()
    reports = str(tmp_path / "r")
    gate = TwoAtOnce(partition)
    with FlakyProxy(os.environ["AWS_ENDPOINT_URL"], {}, on_request=gate) as proxy:
        thread, _, task_id = start(
            stream_export,
            source_dir=str(src),
            destination=f"s3://{bucket}/ckpt",
            destination_options={"endpoint_url": proxy.url},
            watch=False,
            workers=2,
            report_dir=reports,
        )
        shards = {f"shard-{i}.pt": os.urandom((20 - i) * 2**20) for i in range(4)}
        for name, data in shards.items():
            (src / name).write_bytes(data)
        submit_files(task_id, [str(src / name) for name in shards])
        manifest = finish(thread, task_id, reports, lambda m: len(m) >= 4)
    assert gate.together.is_set(), "the two partitions were not written at once"
    assert set(manifest.status) == {"ok"}
    workers = set(manifest.worker)
    assert len(workers) == 2 and worker_id() not in workers, workers
    for name, data in shards.items():
        assert s3_client.get_object(Bucket=bucket, Key=f"ckpt/{name}")["Body"].read() == data


def test_cancelling_abandons_in_flight_files_and_leaves_no_partial_upload(
    tmp_path, bucket, s3_client
):
    from flows.result import TaskCancelled

    src = tmp_path / "src"
    src.mkdir()
    reports = str(tmp_path / "r")
    thread, outcome, task_id = start(
        stream_export,
        source_dir=str(src),
        destination=f"s3://{bucket}/c",
        settle_seconds=0.2,
        bandwidth_mbps=0.25,
        report_dir=reports,
    )
    (src / "big.bin").write_bytes(os.urandom(40 * 2**20))  # 168 s at 0.25 MB/s
    deadline = time.monotonic() + 600
    while not s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads"):  # in flight
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.1)
    cancel(task_id)
    asked = time.monotonic()
    thread.join(timeout=600)
    assert not thread.is_alive()
    # abandoned, not finished: far sooner than the 168 s the upload needs
    # (the bound leaves room for a slow API: the cancel is read once a second)
    took = time.monotonic() - asked
    print(f"cancelled run ended {took:.1f} s after Cancelling was set")
    assert took < 120
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    with get_client(sync_client=True) as client:
        from uuid import UUID

        assert client.read_flow_run(UUID(task_id)).state.type.value == "CANCELLED"
    (row,) = rows(reports).to_dict("records")
    assert (row["path"], row["status"]) == ("big.bin", "skipped")
    assert row["reason"].startswith("cancelled")
    # a Python caller learns it was cancelled, with what was done up to then
    assert isinstance(outcome[0], TaskCancelled) and outcome[0].result.cancelled
    assert {k: n for k, n in outcome[0].result.counts.items() if n} == {"skipped": 1}
    assert outcome[0].result.exit_code == 3


def test_stream_import_picks_up_objects_added_after_it_started(tmp_path, bucket, s3_client):
    s3_client.put_object(Bucket=bucket, Key="feed/first", Body=b"1")
    reports = str(tmp_path / "r")
    dest = tmp_path / "dest"
    thread, _, task_id = start(
        stream_import,
        source=f"s3://{bucket}/feed",
        destination_dir=str(dest),
        interval_seconds=0.5,
        report_dir=reports,
    )
    time.sleep(1.0)
    s3_client.put_object(Bucket=bucket, Key="feed/later/second", Body=b"2")
    s3_client.put_object(Bucket=bucket, Key="feed/../evil", Body=b"x")
    manifest = finish(thread, task_id, reports, lambda m: len(m) >= 3)
    assert (dest / "first").read_bytes() == b"1"
    assert (dest / "later" / "second").read_bytes() == b"2"
    assert manifest["path"].value_counts().max() == 1
    assert sorted(manifest["status"]) == ["ok", "ok", "rejected"]
    assert not [n for n in os.listdir(dest) if n.startswith(".ferry-")]


def test_a_data_stream_runs_stream_tasks_outside_its_four_batch_slots(tmp_path, s3_client):
    import uuid

    from deployments.streams import create_stream, limit_name
    from flows.streams import stream_task

    bucket = f"st-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=bucket)
    s3_client.put_bucket_tagging(
        Bucket=bucket, Tagging={"TagSet": [{"Key": "ferry-dataflow", "Value": "true"}]}
    )
    name = f"st-{uuid.uuid4().hex[:8]}"
    (tmp_path / "dir").mkdir()
    create_stream(name, str(tmp_path / "dir"), f"s3://{bucket}/x")
    with get_client(sync_client=True) as client:  # all four batch slots taken
        from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

        client.update_global_concurrency_limit(
            limit_name(name), GlobalConcurrencyLimitUpdate(limit=0)
        )
    reports = str(tmp_path / "r")
    thread, _, task_id = start(stream_task, stream=name, job="stream-export", report_dir=reports)
    (tmp_path / "dir" / "ckpt").write_bytes(b"through the stream")
    manifest = finish(thread, task_id, reports, lambda m: len(m) >= 1)
    assert list(manifest["status"]) == ["ok"]
    assert s3_client.get_object(Bucket=bucket, Key="x/ckpt")["Body"].read() == b"through the stream"


def test_a_stream_task_with_nothing_to_do_ends_after_its_idle_timeout(tmp_path, bucket):
    (tmp_path / "src").mkdir()
    started = time.monotonic()
    result = stream_export(
        source_dir=str(tmp_path / "src"),
        destination=f"s3://{bucket}/idle",
        idle_timeout=1,
        report_dir=str(tmp_path / "r"),
    )
    assert result.ok and sum(result.counts.values()) == 0
    assert time.monotonic() - started >= 1  # a lower bound only: never before the timeout


def test_cli_submit_refuses_missing_files_and_bad_ids(tmp_path, capsys):
    from flows.cli import main

    assert main(["stream", "submit", "not-a-uuid", str(tmp_path / "nope")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "f").write_bytes(b"1")
    assert main(["stream", "submit", "not-a-uuid", str(tmp_path / "f")]) == 2
    assert "a UUID" in capsys.readouterr().err


def test_a_batch_with_a_failed_entry_shows_on_the_run_and_fails_it(tmp_path, bucket, s3_client):
    from conftest import flow_run_of, run_logs

    from flows import EntriesFailed

    dest = tmp_path / "dst"
    dest.mkdir()
    (dest / "blocked").write_bytes(b"a file where a directory must go")
    s3_client.put_object(Bucket=bucket, Key="in/blocked/x", Body=b"x")
    s3_client.put_object(Bucket=bucket, Key="in/fine", Body=b"y")
    with pytest.raises(EntriesFailed) as failed:
        stream_import(
            source=f"s3://{bucket}/in",
            destination_dir=str(dest),
            interval_seconds=0.5,
            idle_timeout=3,  # ends by itself: the failed object is not tried over and over
            report_dir=str(tmp_path / "r"),
        )
    result = failed.value.result
    assert result.counts["failed"] == 1 and result.counts["ok"] == 1
    assert len(rows(str(tmp_path / "r"))) == 2  # one row each, however many polls
    assert flow_run_of(result).state.type.value == "FAILED"
    logs = run_logs(result.task_id)
    assert any(lv == "WARNING" and m.startswith("batch 1: 1 failed, 1 ok; ") for lv, m in logs)
    assert any(lv == "WARNING" and m.startswith("  failed blocked/x: ") for lv, m in logs)
    assert (dest / "fine").read_bytes() == b"y"


def test_the_polling_watcher_takes_a_file_once_it_stops_changing(tmp_path):
    """Where inotify cannot watch (another machine's writes on a shared mount), the watcher
    polls: a new file, in a new subdirectory too, is taken once it has stopped changing for
    settle_seconds, a file still growing waits, and each is taken once."""
    from tasks.watch import Pending, Watcher

    pending = Pending(settle_seconds=5)  # "later" is given explicitly: nothing sleeps
    watcher = Watcher(str(tmp_path), pending, use_inotify=False)
    assert watcher.kind == "polling"
    (tmp_path / "sub").mkdir()
    done, growing = tmp_path / "sub" / "done.pt", tmp_path / "growing.pt"
    done.write_bytes(b"complete")
    growing.write_bytes(b"part 1")
    watcher.poll(0.01)
    assert pending.ready() == []  # seen just now: not settled yet
    later = time.monotonic() + 10  # past the settle time, without sleeping
    with open(growing, "ab") as f:
        f.write(b", part 2")  # it changed since it was seen
    assert pending.ready(later) == [str(done)]
    watcher.poll(0.01)
    assert pending.ready() == []  # the growing one waits a settle time again
    assert pending.ready(time.monotonic() + 20) == [str(growing)]
    watcher.poll(0.01)
    assert pending.ready(time.monotonic() + 30) == []  # each file is taken once


def test_a_stream_import_over_files_of_the_same_size_settles_them_by_head(
    tmp_path, bucket, s3_client
):
    """A file already there, of the object's size but with no record of which object it is (no
    xattr state): the check step settles it (unchanged: skipped) and the batch, with nothing to
    copy, ends without error."""
    import os

    from tasks.metadata import mtime_metadata

    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "same").write_bytes(b"abc")
    mtime = os.stat(dest / "same").st_mtime_ns
    s3_client.put_object(Bucket=bucket, Key="s/same", Body=b"abc", Metadata=mtime_metadata(mtime))
    result = stream_import(
        source=f"s3://{bucket}/s",
        destination_dir=str(dest),
        interval_seconds=0.2,
        idle_timeout=1,
        report_dir=str(tmp_path / "r"),
    )
    rows = manifest_rows(result)
    assert result.ok and rows["same"]["status"] == "skipped"
    assert rows["same"]["reason_code"] == "unchanged"


def test_the_scan_mode_exports_what_another_process_writes_with_inotify_off(
    tmp_path, bucket, s3_client
):
    """A shared mount's files written by another machine are never inotify events here: the
    scan mode finds them by an interval scan and the settle rule alone (inotify off, as the run
    says). The files are written by another process, as another node would."""
    import subprocess
    import sys
    from uuid import UUID

    from conftest import run_logs

    src = tmp_path / "src"
    (src / "node-2").mkdir(parents=True)
    reports = str(tmp_path / "r")
    thread, _, task_id = start(
        stream_export,
        source_dir=str(src),
        destination=f"s3://{bucket}/shared",
        watch_mode="scan",
        scan_seconds=0.2,
        settle_seconds=3,  # longer than the writer can stall between a write and a rename
        report_dir=reports,
    )
    writer = (
        "import os, sys\n"
        "root = sys.argv[1]\n"
        "for i in range(3):\n"
        "    path = os.path.join(root, 'node-2', f'rank-{i}.pt')\n"
        "    with open(path + '.tmp', 'wb') as f:\n"
        "        f.write(bytes([65 + i]) * (1000 + i))\n"
        "    os.rename(path + '.tmp', path)\n"
        "with open(os.path.join(root, 'done.json'), 'wb') as f:\n"
        "    f.write(b'{}')\n"
    )
    subprocess.run([sys.executable, "-c", writer, str(src)], check=True)
    manifest = finish(thread, task_id, reports, lambda m: len(m) >= 4)
    assert sorted(manifest["path"]) == [
        "done.json", "node-2/rank-0.pt", "node-2/rank-1.pt", "node-2/rank-2.pt",
    ]  # fmt: skip
    assert set(manifest["status"]) == {"ok"}
    body = s3_client.get_object(Bucket=bucket, Key="shared/node-2/rank-2.pt")["Body"].read()
    assert body == b"C" * 1002
    said = [m for _, m in run_logs(UUID(task_id)) if m.startswith("watching ")]
    assert said == [f"watching {src} by scan every 0.2 s"], said


def test_the_watch_mode_decides_how_files_are_found(tmp_path):
    """`auto` on a local disk is inotify alone; on a shared mount (statfs: NFS, Lustre, GPFS,
    BeeGFS, FUSE...) it adds the interval scan; `scan` never uses inotify; `both` uses both."""
    from flows.stream_tasks import _watcher
    from tasks.options import Options
    from tasks.watch import Pending, shared_mount

    assert shared_mount(str(tmp_path)) is None  # this machine's own disk
    kinds = {}
    for mode in ("auto", "events", "scan", "both"):
        watcher = _watcher(str(tmp_path), Pending(0.5), Options(watch_mode=mode))
        kinds[mode] = watcher.kind
        watcher.close()
    assert kinds == {
        "auto": "inotify", "events": "inotify", "scan": "scan", "both": "inotify + scan",
    }  # fmt: skip


def _events_queue(s3_client, bucket: str, prefix: str, suffix: str) -> tuple:
    """An SQS queue receiving the bucket's ObjectCreated events of keys `prefix*suffix`."""
    import boto3

    sqs = boto3.client("sqs", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
    url = sqs.create_queue(QueueName=f"events-{bucket}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    rules = [{"Name": "prefix", "Value": prefix}, {"Name": "suffix", "Value": suffix}]
    s3_client.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": arn["QueueArn"],
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": rules}},
                }
            ]
        },
    )
    return sqs, url


def _drained(sqs, url: str, thread) -> None:
    """Wait until the stream has read and deleted every message (S3's test event first): its
    first listing is over."""
    deadline = time.monotonic() + 120
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    while True:
        found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        if not any(int(found[n]) for n in names):
            return
        assert thread.is_alive() and time.monotonic() < deadline, found
        time.sleep(0.1)


def test_stream_import_driven_by_bucket_events(tmp_path, bucket, s3_client):
    """With the bucket's events (S3 → SQS), objects are imported as their events arrive: the
    listing runs once here (interval 3600 s), so every object comes by its event."""
    from uuid import UUID

    from conftest import run_logs

    sqs, url = _events_queue(s3_client, bucket, "ev/", ".pt")
    dst, reports = tmp_path / "dst", str(tmp_path / "r")
    thread, _, task_id = start(
        stream_import,
        source=f"s3://{bucket}/ev",
        destination_dir=str(dst),
        events_queue=url,
        interval_seconds=3600,
        report_dir=reports,
    )
    _drained(sqs, url, thread)
    put_at = {}
    for name in ["a.pt", "sub/b.pt", "sub/deeper/c.pt"]:
        put_at[name] = time.monotonic()
        s3_client.put_object(Bucket=bucket, Key=f"ev/{name}", Body=name.encode() * 100)
    seen = {}
    deadline = time.monotonic() + 120
    while len(seen) < 3:
        for name in put_at:
            if name not in seen and (dst / name).exists():
                seen[name] = time.monotonic() - put_at[name]
        assert thread.is_alive() and time.monotonic() < deadline, seen
        time.sleep(0.02)
    print("PUT-to-file seconds by bucket events:", seen)
    manifest = finish(thread, task_id, reports, lambda m: len(m) >= 3)
    assert sorted(manifest["path"]) == ["a.pt", "sub/b.pt", "sub/deeper/c.pt"]
    assert set(manifest["status"]) == {"ok"}
    assert (dst / "sub" / "deeper" / "c.pt").read_bytes() == b"sub/deeper/c.pt" * 100
    imported = sum(
        int(m.split()[2]) for _, m in run_logs(UUID(task_id)) if m.startswith("bucket events:")
    )
    assert imported == 3  # each by its event, none by a listing


def test_the_listing_reconciles_what_the_events_missed(tmp_path, bucket, s3_client):
    """An object whose event never comes (the notification covers *.pt only) is imported by the
    periodic listing; a malformed queue URL is one clear error."""
    from tasks.errors import UsageError

    sqs, url = _events_queue(s3_client, bucket, "rc/", ".pt")
    dst, reports = tmp_path / "dst", str(tmp_path / "r")
    thread, _, task_id = start(
        stream_import,
        source=f"s3://{bucket}/rc",
        destination_dir=str(dst),
        events_queue=url,
        interval_seconds=1,
        report_dir=reports,
    )
    _drained(sqs, url, thread)
    s3_client.put_object(Bucket=bucket, Key="rc/notes.txt", Body=b"no event for me")
    s3_client.put_object(Bucket=bucket, Key="rc/x.pt", Body=b"an event")
    manifest = finish(thread, task_id, reports, lambda m: len(m) >= 2)
    assert sorted(manifest["path"]) == ["notes.txt", "x.pt"]
    assert (dst / "notes.txt").read_bytes() == b"no event for me"
    with pytest.raises(UsageError, match="not an SQS queue URL"):
        stream_import(f"s3://{bucket}/rc", str(dst), events_queue="queue-please")
    with pytest.raises(UsageError, match="cannot read the events queue"):
        stream_import(f"s3://{bucket}/rc", str(dst), events_queue=url + "-missing")


@pytest.mark.parametrize(
    ("flag", "value", "said"),
    [
        ("--watch-mode", "sometimes", "invalid choice: 'sometimes'"),
        ("--scan-seconds", "0", "--scan-seconds"),
        ("--events-queue", "", "--events-queue"),
    ],
)
def test_the_stream_flags_are_checked_before_anything_runs(flag, value, said, capsys):
    from flows.cli import main

    assert main(["stream", "run", "no-such-stream", "stream-export", flag, value]) == 2
    assert said in capsys.readouterr().err
