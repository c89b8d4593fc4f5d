"""ferry's flows: what users call from Python, the CLI and the Prefect UI."""

from flows.result import TaskResult
from flows.transfer import export_data, import_data
from flows.verify import verify_data

__all__ = ["TaskResult", "export_data", "import_data", "verify_data"]
