"""Deployments: the flows users trigger from the Prefect UI, and each data stream's own.

`ferry serve` serves, in one process: `ferry-export`, `ferry-import`, `ferry-verify` and
`ferry-convert` (parameter forms with every option explained), and for each stream its `import`
and `export` deployments, plus an interval schedule importing its auto-update prefixes when the
stream has automatic update on. A stopped stream's deployments are served paused.
"""

from __future__ import annotations

from datetime import timedelta

from deployments.streams import all_streams
from flows.streams import stream_tag, stream_task


def stream_deployments(name: str, stream) -> list:
    """The deployments of one stream."""
    paused = stream.state != "enabled"
    tags = [stream_tag(name), "ferry"]
    found = [
        stream_task.to_deployment(
            name=f"{name}-{job}",
            parameters={"stream": name, "job": job},
            tags=tags,
            paused=paused,
            description=f"Batch {job} on data stream {name}: {stream.description}".strip(": "),
        )
        for job in ("import", "export")
    ]
    if stream.auto_update and stream.refresh_minutes:
        found.append(
            stream_task.to_deployment(
                name=f"{name}-auto-update",
                parameters={"stream": name, "job": "import", "auto_update": True},
                interval=timedelta(minutes=stream.refresh_minutes),
                tags=tags,
                paused=paused,
                description=f"Imports {', '.join(stream.prefixes)} of data stream {name} every "
                f"{stream.refresh_minutes:g} minutes.",
            )
        )
    return found


def all_deployments() -> list:
    from flows import convert_to_hns, export_data, import_data, verify_data

    found = [
        export_data.to_deployment(name="export", tags=["ferry"]),
        import_data.to_deployment(name="import", tags=["ferry"]),
        verify_data.to_deployment(name="verify", tags=["ferry"]),
        convert_to_hns.to_deployment(name="convert", tags=["ferry"]),
    ]
    for name, stream in all_streams().items():
        found += stream_deployments(name, stream)
    return found


def serve() -> None:
    """Serve every deployment until interrupted."""
    from prefect import serve as prefect_serve

    prefect_serve(*all_deployments(), print_starting_message=True)
