"""What every ferry task returns."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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

    @property
    def ok(self) -> bool:
        """Every entry ok or skipped."""
        return not (self.counts.get("rejected", 0) or self.counts.get("failed", 0))

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    @classmethod
    def from_summary(cls, summary) -> TaskResult:
        """From a `tasks.report.Summary`."""
        values = summary.as_dict()
        return cls(**{name: values[name] for name in cls.model_fields})
