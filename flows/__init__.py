"""ferry's flows: what users call from Python, the CLI and the Prefect UI.

Names are loaded on first use, so the `ferry` command answers a bad argument without waiting for
Prefect to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_WHERE = {
    "TaskResult": "flows.result",
    "TaskCancelled": "flows.result",
    "EntriesFailed": "flows.result",
    "convert_to_hns": "flows.convert",
    "export_data": "flows.transfer",
    "import_data": "flows.transfer",
    "verify_data": "flows.verify",
    "stream_export": "flows.stream_tasks",
    "stream_import": "flows.stream_tasks",
    # every option of every job, defined once; and a manifest row
    "Options": "tasks.options",
    "ManifestRow": "tasks.rows",
    # the failures a caller can catch (FerryError is the base of them all)
    "FerryError": "tasks.errors",
    "UsageError": "tasks.errors",
    "SourceMissing": "tasks.errors",
    "DestinationUnusable": "tasks.errors",
    "AccessDenied": "tasks.errors",
    "StoreUnreachable": "tasks.errors",
    "NamespaceError": "tasks.errors",
    "NotEligible": "tasks.errors",
    "ConversionRefused": "tasks.errors",
    "StreamError": "tasks.errors",
    "ScheduleError": "tasks.errors",
}
__all__ = [
    "AccessDenied",
    "ConversionRefused",
    "NamespaceError",
    "NotEligible",
    "ScheduleError",
    "StreamError",
    "DestinationUnusable",
    "EntriesFailed",
    "FerryError",
    "ManifestRow",
    "Options",
    "SourceMissing",
    "StoreUnreachable",
    "TaskCancelled",
    "TaskResult",
    "UsageError",
    "convert_to_hns",
    "export_data",
    "import_data",
    "stream_export",
    "stream_import",
    "verify_data",
]
assert set(__all__) == set(_WHERE)

if TYPE_CHECKING:
    from flows.convert import convert_to_hns
    from flows.result import EntriesFailed, TaskCancelled, TaskResult
    from flows.stream_tasks import stream_export, stream_import
    from flows.transfer import export_data, import_data
    from flows.verify import verify_data
    from tasks.errors import (
        AccessDenied,
        ConversionRefused,
        DestinationUnusable,
        FerryError,
        NamespaceError,
        NotEligible,
        ScheduleError,
        SourceMissing,
        StoreUnreachable,
        StreamError,
        UsageError,
    )
    from tasks.options import Options
    from tasks.rows import ManifestRow


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'flows' has no attribute {name!r}")
