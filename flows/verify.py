"""`verify_data`: compare two trees, like `rclone check`, and write a manifest. Copies nothing."""

from __future__ import annotations

import time

from prefect import flow
from prefect.runtime import flow_run

from flows import runview
from flows.credentials import for_url, warn_plain_secrets
from flows.options import Options, takes_options
from flows.result import TaskResult, ends_truthfully, state_message
from flows.workers import check_dask, placement
from tasks.endpoints import Directory, parse_endpoint
from tasks.listing import Filter
from tasks.manifest import ReportDir, check_report_dir
from tasks.preflight import check_bucket, check_directory
from tasks.steps import compare_step, report_step


@flow(name="ferry-verify", log_prints=False)
@ends_truthfully
@takes_options("verify")
def verify_data(source, destination, options: Options) -> TaskResult:
    """Compare a destination tree with its source: every entry present, with the same size and
    mtime (and, with verify='checksum', the same content). Entries only at the destination count
    as differences. Nothing is copied."""
    started = time.monotonic()
    block = options.credentials_block
    warn_plain_secrets(
        source_options=options.source_options, destination_options=options.destination_options
    )
    src = parse_endpoint(source, for_url(source, options.source_options, block))
    dst = parse_endpoint(destination, for_url(destination, options.destination_options, block))
    for side in (src, dst):  # a wrong path or bucket is one line, before any task run
        if isinstance(side, Directory):
            check_directory(side, must_exist=True)
        else:
            check_bucket(side)
    selected = Filter(options.include, options.exclude)
    task_id = str(flow_run.get_id() or "local")
    report = ReportDir(check_report_dir(options.report_dir), task_id)
    check_dask(options)
    with placement(options, 1) as placed:  # on a Dask worker when there is a cluster
        rows = placed.submit(
            compare_step, source=src, destination=dst, options=options, selected=selected
        ).result()
    report.write_part("compare", rows)
    done = report_step(
        report,
        {},
        job="verify",
        source=src.display,
        destination=dst.display,
        seconds=time.monotonic() - started,
    )
    result = done.summary
    runview.publish(done)
    runview.log_summary(done, state_message(result))
    return result
