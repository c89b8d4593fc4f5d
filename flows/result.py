"""What every ferry task returns."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from flows.exit_codes import EXIT_CANCELLED, EXIT_ENTRIES_FAILED, EXIT_OK
from tasks.errors import FerryError


class TaskResult(BaseModel):
    """The outcome of one ferry task (a flow run)."""

    model_config = ConfigDict(frozen=True)

    task_id: str = Field(description="The Prefect flow run id.")
    job: str = Field(description="export, import, verify or convert.")
    source: str
    destination: str
    counts: dict[str, int] = Field(description="status -> number of entries")
    bytes: int = Field(0, description="Bytes moved.")
    seconds: float = 0.0
    manifest: str = Field(description="Path or URL of the Parquet manifest.")
    dry_run: bool = False
    cancelled: bool = Field(False, description="The task was cancelled before it finished.")

    @property
    def ok(self) -> bool:
        """Every entry ok or skipped."""
        return not (self.counts.get("rejected", 0) or self.counts.get("failed", 0))

    @property
    def exit_code(self) -> int:
        if self.cancelled:
            return EXIT_CANCELLED
        return EXIT_OK if self.ok else EXIT_ENTRIES_FAILED

    @classmethod
    def from_summary(cls, summary) -> TaskResult:
        """From a `tasks.report.Summary`."""
        values = summary.as_dict()
        return cls(**{name: values[name] for name in cls.model_fields if name in values})


class TaskCancelled(FerryError):
    """The task was cancelled (from the UI, `ferry stream stop`, Ctrl-C). `result` holds what it
    did up to then: counts and the manifest, where in-flight entries are `skipped: cancelled`."""

    def __init__(self, result: TaskResult) -> None:
        super().__init__(f"cancelled; manifest: {result.manifest}")
        self.result = result

    def __reduce__(self):
        return (type(self), (self.result,))


def cancelled_state(result: TaskResult):
    """The flow run's final state for a cancelled task: Cancelled in the UI; a Python caller gets
    TaskCancelled (carrying the result)."""
    from prefect.states import Cancelled

    done = result.model_copy(update={"cancelled": True})
    return Cancelled(message=f"cancelled; manifest: {done.manifest}", data=TaskCancelled(done))
