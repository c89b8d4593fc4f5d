"""Prefect's temporary local API, set up for small machines: what the CLI, the demo and the
benchmarks use when no `PREFECT_API_URL` points at a running server."""

from __future__ import annotations

import os


def prefect_defaults(console_level: str | None = None) -> None:
    """Settings to make before Prefect is imported: a start timeout for the temporary API that
    fits small machines (it takes 15-30 s here, over Prefect's default 20), no telemetry, and
    optionally a quieter console log. Settings already in the environment win."""
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # heartbeats let a server tell a killed run from a live one (deployments/crashes.py)
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "30")
    if console_level:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", console_level)


def needs_local_api() -> bool:
    """No Prefect API is configured (by the environment or a Prefect profile)."""
    if os.environ.get("PREFECT_API_URL"):
        return False
    from prefect.settings import PREFECT_API_URL

    return not PREFECT_API_URL.value()


def start_local_api() -> None:
    """Start the temporary local API now (Prefect would start it on first use): later flow runs
    in this process reuse it."""
    from prefect.server.api.server import SubprocessASGIServer

    SubprocessASGIServer().start(
        timeout=int(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180"))
    )
