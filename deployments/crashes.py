"""Runs whose process died (kill -9, a lost machine) do not stay Running for ever.

Prefect's own mechanism: a flow run sends a heartbeat event every `HEARTBEAT_SECONDS` (ferry sets
PREFECT_FLOWS_HEARTBEAT_FREQUENCY to Prefect's minimum, 30 s, in `flows.local_api`), and an
automation that ferry installs marks a run Crashed when no event of it follows a heartbeat within
`SILENCE_SECONDS` (Prefect evaluates proactive triggers every 5 s, so 15-50 s after the kill).
A Crashed run's global-concurrency slots are not released by the state change: they come back
when their lease expires (`concurrency(..., lease_duration=60)`, the least the server accepts,
plus the repossessor's 15 s pass), so about 60-75 s after the kill.
"""

from __future__ import annotations

from datetime import timedelta

AUTOMATION_NAME = "ferry: mark runs whose heartbeat stopped as Crashed"
HEARTBEAT_SECONDS = 30
SILENCE_SECONDS = 45


def ensure_crash_automation() -> None:
    """Install the automation once per Prefect server (idempotent)."""
    from prefect.automations import Automation, ChangeFlowRunState, EventTrigger, Posture
    from prefect.client.schemas.objects import StateType

    try:
        Automation.read(name=AUTOMATION_NAME)
        return
    except ValueError:  # Prefect's "automation not found"
        pass
    Automation(
        name=AUTOMATION_NAME,
        description="Installed by ferry: a flow run that stopped sending heartbeats (its process "
        f"was killed) is set Crashed {SILENCE_SECONDS} s after its last heartbeat.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.*"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=SILENCE_SECONDS),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {SILENCE_SECONDS} s: the process running it died",
            )
        ],
    ).create()
