"""Named schedules of ferry's jobs: an export, import, verify or conversion with its parameters,
run on a cron expression or an interval by `ferry serve`.

A schedule is a Prefect deployment schedule (slug = its name) on the job's deployment
(`ferry-export/export`, ...), carrying the flow's parameters, so the runs it makes bind, and the
UI shows it on the deployment beside any a user adds there. `ferry serve` keeps them all: it
never sends a deployment's schedules when it registers it.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from tasks.errors import FerryError, ScheduleError  # noqa: F401

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def job_flows() -> dict[str, Any]:
    """job → its flow, whose deployment (named after the job) carries the schedules."""
    from flows import convert_to_hns, export_data, import_data, verify_data

    return {
        "export": export_data,
        "import": import_data,
        "verify": verify_data,
        "convert": convert_to_hns,
    }


def job_deployment(job: str):
    """The job's RunnerDeployment, as `ferry serve` serves it: it never sends schedules (nor a
    paused flag), so those added by `ferry schedule` or in the UI, and a pause made in the UI,
    survive a restart of `ferry serve`."""
    extra = {}
    if job == "convert":  # irreversible: the form starts as a check
        extra = {
            "parameters": {"check_only": True},
            "description": "Convert a flat bucket into a hierarchical namespace. The form starts "
            "as a check-only run (eligibility and every rename, nothing changed); a real run "
            "(check_only off) is irreversible: the namespace cannot be converted back.",
        }
    deployment = job_flows()[job].to_deployment(name=job, tags=["ferry"], **extra)
    return keeping_schedules(deployment)


def keeping_schedules(deployment, *, keep_paused: bool = True):
    """Registering `deployment` leaves its schedules on the server as they are (Prefect sends
    what is in the fields set, and an empty schedule list deletes every unnamed schedule)."""
    deployment.__pydantic_fields_set__.discard("schedules")
    if keep_paused:
        deployment.__pydantic_fields_set__.discard("paused")
    return deployment


def _deployment_id(client, job: str, *, create: bool):
    flow = job_flows()[job]
    try:
        return client.read_deployment_by_name(f"{flow.name}/{job}").id
    except ObjectNotFound:
        if not create:
            return None
    return job_deployment(job).apply()


def schedule_of(cron: str | None, interval: float | None, timezone: str | None):
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule

    if (cron is None) == (interval is None):
        raise ScheduleError("give exactly one of --cron EXPRESSION and --interval SECONDS")
    try:
        if cron is not None:
            return CronSchedule(cron=cron, timezone=timezone or "UTC")
        if interval <= 0:
            raise ScheduleError("the interval must be more than 0 seconds")
        return IntervalSchedule(interval=timedelta(seconds=interval), timezone=timezone or "UTC")
    except ValueError as exc:
        first = str(exc).strip().splitlines()
        detail = next((line for line in first if "Value error" in line), first[-1])
        detail = detail.split("Value error, ")[-1].split(" [type=")[0]
        raise ScheduleError(
            f"not a valid schedule: {detail}",
            where=cron if cron is not None else str(interval),
        ) from None


def check_parameters(job: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """The parameters as the flow validates them (types, bounds); a wrong one is a one-line
    ScheduleError naming it."""
    from prefect.exceptions import ParameterTypeError

    flow = job_flows()[job]
    try:
        flow.validate_parameters(parameters)
    except ParameterTypeError as exc:
        raise ScheduleError(f"invalid parameters for {job}: {exc}") from None
    return parameters


def create_schedule(
    name: str,
    job: str,
    parameters: dict[str, Any],
    *,
    cron: str | None = None,
    interval: float | None = None,
    timezone: str | None = None,
) -> dict[str, Any]:
    """Store a named schedule of `job` with these parameters; `ferry serve` runs it."""
    from prefect.client.schemas.actions import DeploymentScheduleCreate

    if job not in job_flows():
        raise ScheduleError(f"a schedule runs one of {', '.join(job_flows())}", where=job)
    if not NAME.match(name or ""):
        raise ScheduleError(
            "a schedule name is 1-63 lowercase letters, digits and dashes", where=str(name)
        )
    schedule = schedule_of(cron, interval, timezone)
    parameters = {k: v for k, v in parameters.items() if v is not None}
    check_parameters(job, parameters)
    if any(s["name"] == name for s in list_schedules()):
        raise ScheduleError("a schedule of this name exists", where=name)
    with get_client(sync_client=True) as client:
        deployment_id = _deployment_id(client, job, create=True)
        client.create_deployment_schedules(
            deployment_id,
            [
                DeploymentScheduleCreate(
                    schedule=schedule, active=True, parameters=parameters, slug=name
                )
            ],
        )
    return next(s for s in list_schedules() if s["name"] == name)


def list_schedules() -> list[dict[str, Any]]:
    """Every schedule of ferry's job deployments, named or added in the UI (shown by id)."""
    found = []
    with get_client(sync_client=True) as client:
        for job in job_flows():
            deployment_id = _deployment_id(client, job, create=False)
            if deployment_id is None:
                continue
            deployment = client.read_deployment(deployment_id)
            for s in client.read_deployment_schedules(deployment_id):
                found.append(
                    {
                        "name": s.slug or f"(UI) {s.id}",
                        "job": job,
                        "schedule": describe(s.schedule),
                        "active": bool(s.active),
                        "deployment_paused": bool(deployment.paused),
                        "parameters": {**(deployment.parameters or {}), **(s.parameters or {})},
                        "schedule_parameters": dict(s.parameters or {}),
                        "id": str(s.id),
                        "deployment_id": str(deployment_id),
                    }
                )
    return sorted(found, key=lambda s: s["name"])


def describe(schedule) -> str:
    cron = getattr(schedule, "cron", None)
    if cron:
        return f"cron {cron} ({schedule.timezone or 'UTC'})"
    interval = getattr(schedule, "interval", None)
    if interval is not None:
        return f"every {interval.total_seconds():g} s"
    return str(schedule)


def _find(name: str) -> dict[str, Any]:
    for s in list_schedules():
        if s["name"] == name or s["id"] == name:
            return s
    raise ScheduleError("no such schedule (see `ferry schedule list`)", where=name)


def set_active(name: str, active: bool) -> dict[str, Any]:
    """Pause (active=False) or resume a schedule; its future runs go or come back."""
    from uuid import UUID

    found = _find(name)
    with get_client(sync_client=True) as client:
        # the server's PATCH empties a schedule's parameters unless they are sent again
        client.update_deployment_schedule(
            UUID(found["deployment_id"]),
            UUID(found["id"]),
            active=active,
            parameters=found["schedule_parameters"],
        )
    return {**found, "active": active}


def delete_schedule(name: str) -> None:
    from uuid import UUID

    found = _find(name)
    with get_client(sync_client=True) as client:
        client.delete_deployment_schedule(UUID(found["deployment_id"]), UUID(found["id"]))
