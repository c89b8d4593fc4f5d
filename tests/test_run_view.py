"""What a user sees of a run in the Prefect UI, read back through the real Prefect API: the flow
run's final state and message, its log lines, its progress artifact while data moves, and the
summary, counts and failures artifacts attached to the flow run itself."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
from conftest import flow_run_of, run_logs
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)

from flows import export_data, import_data
from tasks.errors import SourceMissing

pytestmark = pytest.mark.usefixtures("prefect_api")


def artifacts_of(flow_run_id) -> dict[str, object]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


def test_only_rejected_entries_complete_with_a_message_saying_how_many(tmp_path, bucket, reports):
    src = tmp_path / "src"
    src.mkdir()
    (src / "fine.txt").write_bytes(b"fine")
    with open(os.fsencode(str(src)) + b"/caf\xe9.txt", "wb") as f:
        f.write(b"latin-1 name")
    state = export_data(str(src), f"s3://{bucket}/r", report_dir=reports, return_state=True)
    result = state.result()
    assert result.counts["rejected"] == 1 and result.counts["ok"] == 1
    run = flow_run_of(result)
    assert run.state.type.value == "COMPLETED"
    assert run.state.message == f"2 entries: 1 rejected, 1 ok; manifest: {result.manifest}"
    # the summary, counts and failures artifacts belong to the flow run, not to a task run
    artifacts = artifacts_of(run.id)
    for key in ("ferry-export-summary", "ferry-export-counts", "ferry-export-failures"):
        assert artifacts[key].task_run_id is None, key
    failures = json.loads(artifacts["ferry-export-failures"].data)
    assert [(f["path"], f["status"]) for f in failures] == [("caf\\xe9.txt", "rejected")]
    assert artifacts["ferry-export-progress"].task_run_id is None
    assert artifacts["ferry-export-progress"].data == 100.0
    logs = run_logs(run.id)
    assert (
        "INFO",
        "plan (export): 2 entries (16 B) listed: 1 to copy, 1 to reject; "
        "will copy 1 entries (4 B) in 1 partitions",
    ) in logs
    assert any(m.startswith("partition 1 of 1: 1 ok; 4 B in ") for _, m in logs)
    assert ("WARNING", "rejected caf\\xe9.txt: " + result_reason(result, "caf\\xe9.txt")) in logs


def result_reason(result, path: str) -> str:
    from conftest import manifest_rows

    return manifest_rows(result)[path]["reason"]


def test_a_user_error_is_one_log_line_and_the_state_message(tmp_path, reports):
    state = export_data(
        str(tmp_path / "missing"), "s3://any-bucket/x", report_dir=reports, return_state=True
    )
    assert state.is_failed()
    message = f"directory does not exist: {tmp_path / 'missing'}"
    assert state.message == message
    with pytest.raises(SourceMissing, match="does not exist"):
        state.result()
    logs = run_logs(state.state_details.flow_run_id)
    assert [m for level, m in logs if level == "ERROR"] == [f"ferry: {message}"]
    assert not any("Traceback" in m for _, m in logs)


def test_progress_moves_by_files_and_bytes_while_one_partition_copies(
    tmp_path, bucket, s3_client, reports
):
    """One partition of 40 files at 0.25 MB/s takes about 16 s, a progress update a second
    (however slow the API is, a dozen or more): the flow run's progress artifact shows the files
    and bytes done while it runs, not 0 % then 100 %."""
    from prefect.types._datetime import now

    for i in range(40):
        s3_client.put_object(Bucket=bucket, Key=f"p/{i:02d}", Body=os.urandom(100_000))
    since = now("UTC")
    outcome = []

    def run():
        outcome.append(
            import_data(
                f"s3://{bucket}/p", str(tmp_path / "dst"), bandwidth_mbps=0.25, report_dir=reports
            )
        )

    worker = threading.Thread(target=run)
    worker.start()
    seen: list[tuple[float, str]] = []
    with get_client(sync_client=True) as client:
        while worker.is_alive():
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=["ferry-import-progress"])
                )
            )
            seen += [(a.data, a.description) for a in found if a.created > since]
            time.sleep(0.2)
    worker.join()
    result = outcome[0]
    assert result.counts["ok"] == 40
    partial = {d for p, d in seen if 0 < p < 100}
    assert len(partial) >= 2, seen  # it moved in steps while the partition ran
    assert all(" of 40 entries, " in d and " of 3.8 MiB" in d for d in partial), partial
    final = artifacts_of(result.task_id)["ferry-import-progress"]
    assert (final.data, final.description) == (100.0, "40 of 40 entries, 3.8 MiB of 3.8 MiB")
