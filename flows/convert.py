"""`convert_to_hns`: turn a flat bucket into a hierarchical namespace, metadata only.

Eligibility first (nothing changes when it fails), then the plan (the seed's renaming rules, in
listing order), the namespace built unseen in the metadata store, a second listing that proves
nobody wrote to the bucket meanwhile, the commit that makes the namespace visible all at once, and
a verification that every object is reachable at exactly one path. No object is copied, rewritten
or deleted.
"""

from __future__ import annotations

import time

from prefect import flow
from prefect.runtime import flow_run

from flows import runview
from flows.credentials import for_url, warn_plain_secrets
from flows.options import Options, takes_options
from flows.result import TaskResult, ends_truthfully, state_message
from flows.workers import check_dask, placement
from hns.convert import changes, converted_message, examples, manifest_rows
from hns.store import Store
from tasks.archive import ARCHIVE_CLASSES
from tasks.convert_steps import (
    build_step,
    commit_step,
    eligibility_step,
    list_step,
    plan_step,
    tags_step,
    verify_namespace_step,
)
from tasks.endpoints import BucketPrefix
from tasks.errors import ConversionRefused, NotEligible
from tasks.manifest import ReportDir, check_report_dir
from tasks.preflight import check_bucket, check_metadata_url, whole_bucket
from tasks.steps import report_step


@flow(name="ferry-convert", log_prints=False)
@ends_truthfully
@takes_options("convert")
def convert_to_hns(bucket_url, *, metadata, options: Options) -> TaskResult:
    """Convert a flat bucket into a hierarchical namespace kept in the `metadata` store (an
    SQLAlchemy URL: sqlite:////path/bucket.db, or postgresql://...). Metadata only: no object is
    copied, rewritten or deleted, and the conversion cannot be undone. With check_only, run the
    eligibility check and the plan, and report every rename that would happen, changing nothing."""
    started = time.monotonic()
    warn_plain_secrets(storage_options=options.storage_options)
    bucket = whole_bucket(
        bucket_url, for_url(bucket_url, options.storage_options, options.credentials_block)
    )
    check_bucket(bucket)  # a wrong bucket or key is one line, before any task run
    check_dask(options)
    check_metadata_url(metadata)
    store = Store(metadata)
    done = converted_message(store, bucket.bucket)
    if done:
        raise ConversionRefused(done, where=bucket.display)
    task_id = str(flow_run.get_id() or "local")
    report = ReportDir(check_report_dir(options.report_dir), task_id)
    ts = int(time.time())

    objects = list_step(bucket)
    problems = eligibility_step(bucket, objects, False, options.retries)
    tagged = _tagged(bucket, objects, options) if options.check_tags else []
    if tagged:
        problems.append(f"{len(tagged)} objects carry tags: {examples(tagged)}")
    if problems:
        raise NotEligible(
            "not eligible for conversion (nothing was changed): " + "; ".join(problems),
            where=bucket.display,
        )
    plan = plan_step(objects, ts)
    verified = None
    if plan.problems and not options.check_only:
        report.write_part("plan", manifest_rows(bucket, plan))
        summary = _report(report, bucket, started).summary
        shown = "; ".join(f"{d.key!r}: {d.reason}" for d in plan.problems[:5])
        more = f" (and {len(plan.problems) - 5} more)" if len(plan.problems) > 5 else ""
        raise ConversionRefused(
            f"{len(plan.problems)} keys cannot be placed, so nothing was converted: {shown}"
            f"{more}; see {summary.manifest}",
            where=bucket.display,
        )
    if not options.check_only:
        ns_id = build_step(store, bucket, plan, task_id)
        after = list_step(bucket)
        moved = changes(objects, after)
        archived = [o.key for o in after if o.storage_class in ARCHIVE_CLASSES]
        if moved or archived:
            store.discard_building(bucket.bucket)
            what = (
                f"the bucket changed during the conversion: {examples(moved)}"
                if moved
                else f"archived objects appeared: {examples(archived)}"
            )
            raise ConversionRefused(
                f"{what}; the namespace was not activated", where=bucket.display
            )
        commit_step(store, ns_id)
        verified = verify_namespace_step(store, bucket, plan)
    report.write_part("plan", manifest_rows(bucket, plan, verified))
    done = _report(report, bucket, started, dry_run=options.check_only)
    result = done.summary
    runview.publish(done)
    runview.log_summary(done, state_message(result))
    return result


#: Keys per partition of the tag check (one request each: seconds of work per partition).
TAG_PARTITION = 5000


def _tagged(bucket: BucketPrefix, objects, options: Options) -> list[str]:
    """The tagged keys, checked in partitions where `flows.workers.placement` puts them."""
    keys = [o.key for o in objects if o.storage_class not in ARCHIVE_CLASSES]
    chunks = [tuple(keys[i : i + TAG_PARTITION]) for i in range(0, len(keys), TAG_PARTITION)]
    if not chunks:
        return []
    with placement(options, len(chunks), files=len(keys)) as placed:
        futures = [
            placed.submit(tags_step, bucket=bucket, keys=c, retries=options.retries, index=i)
            for i, c in enumerate(chunks)
        ]
        return [key for future in futures for key in future.result()]


def _report(report: ReportDir, bucket: BucketPrefix, started: float, dry_run: bool = False):
    return report_step(
        report,
        {},
        job="convert",
        source=bucket.display,
        destination=f"hns://{bucket.bucket}",
        seconds=time.monotonic() - started,
        dry_run=dry_run,
    )
