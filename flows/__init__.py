"""ferry's flows: what users call from Python, the CLI and the Prefect UI.

Names are loaded on first use, so the `ferry` command answers a bad argument without waiting for
Prefect to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = ["TaskResult", "convert_to_hns", "export_data", "import_data", "verify_data"]

_WHERE = {
    "TaskResult": "flows.result",
    "convert_to_hns": "flows.convert",
    "export_data": "flows.transfer",
    "import_data": "flows.transfer",
    "verify_data": "flows.verify",
}

if TYPE_CHECKING:
    from flows.convert import convert_to_hns
    from flows.result import TaskResult
    from flows.transfer import export_data, import_data
    from flows.verify import verify_data


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'flows' has no attribute {name!r}")
