"""The Prefect tasks of a conversion to a hierarchical namespace (the flow, `flows/convert.py`,
only orchestrates them): list, check eligibility, plan, build unseen, commit, verify."""

from __future__ import annotations

from prefect import task

from hns.convert import eligibility_problems, list_objects, tagged_keys, verify_namespace
from hns.plan import ConversionPlan, plan_conversion
from hns.store import Store
from tasks.endpoints import BucketPrefix
from tasks.steps import STEP


@task(name="list-objects", **STEP)
def list_step(bucket: BucketPrefix):
    return bucket.run(list_objects, bucket)


@task(name="check-eligibility", **STEP)
def eligibility_step(bucket: BucketPrefix, objects, check_tags: bool, retries: int) -> list[str]:
    return bucket.run(
        eligibility_problems, bucket.bucket, objects, check_tags=check_tags, retries=retries
    )


@task(name="check-tags", task_run_name="check-tags-{index}", **STEP)
def tags_step(bucket: BucketPrefix, keys: tuple[str, ...], retries: int, index: int = 0):
    """The keys among `keys` whose objects carry tags (one request each): a partition of the
    eligibility check, which may run on a worker process or a Dask worker."""
    return bucket.run(tagged_keys, bucket.bucket, keys, retries)


@task(name="plan-conversion", **STEP)
def plan_step(objects, ts: int) -> ConversionPlan:
    return plan_conversion(objects, ts)


@task(name="build-namespace", **STEP)
def build_step(store: Store, bucket: BucketPrefix, plan: ConversionPlan, task_id: str) -> int:
    ns_id = store.start_building(
        bucket.bucket, source_url=bucket.display, conversion_ts=plan.ts, task_id=task_id
    )
    store.fill(ns_id, plan.tree())
    return ns_id


@task(name="commit-namespace", **STEP)
def commit_step(store: Store, ns_id: int) -> float:
    return store.activate(ns_id)


@task(name="verify-namespace", **STEP)
def verify_namespace_step(store: Store, bucket: BucketPrefix, plan: ConversionPlan):
    return verify_namespace(store, bucket.bucket, plan)
