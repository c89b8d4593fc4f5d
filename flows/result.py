"""What every ferry task returns."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import TypeVar

from tasks.errors import FerryError
from tasks.report import TaskResult


class TaskCancelled(FerryError):
    """The task was cancelled (from the UI, `ferry stream stop`, Ctrl-C). `result` holds what it
    did up to then: counts and the manifest, where in-flight entries are `skipped: cancelled`."""

    def __init__(self, result: TaskResult) -> None:
        super().__init__(f"cancelled; manifest: {result.manifest}")
        self.result = result

    def __reduce__(self):
        return (type(self), (self.result,))


class EntriesFailed(FerryError):
    """Some entries failed: the flow run ends Failed (so Prefect's automations and notifications
    fire). `result` holds the counts and the manifest, where each failed row says why."""

    def __init__(self, result: TaskResult) -> None:
        super().__init__(state_message(result))
        self.result = result

    def __reduce__(self):
        return (type(self), (self.result,))


def state_message(result: TaskResult) -> str:
    """The flow run's state message: its counts and manifest, failures first."""
    counts = result.counts
    shown = [
        f"{counts[status]} {status}"
        for status in ("failed", "rejected", "ok", "skipped")
        if counts.get(status)
    ]
    shown += [
        f"{n} {status}"
        for status, n in counts.items()
        if n and status not in ("failed", "rejected", "ok", "skipped")
    ]
    entries = sum(counts.values())
    what = ", ".join(shown) if shown else "nothing to do"
    dry = " (dry run)" if result.dry_run else ""
    return f"{entries} entries{dry}: {what}; manifest: {result.manifest}"


def final_state(result: TaskResult):
    """The flow run's final state, which the Prefect UI, automations and notifications see:
    Failed when any entry failed (a Python caller gets EntriesFailed, carrying the result),
    Cancelled when the task was cancelled, else Completed with the counts as its message
    (rejected entries are named there but do not fail the run)."""
    from prefect.states import Completed, Failed

    if result.cancelled:
        return cancelled_state(result)
    if result.counts.get("failed", 0):
        return Failed(message=state_message(result), data=EntriesFailed(result))
    return Completed(message=state_message(result), data=result)


def cancelled_state(result: TaskResult):
    """The flow run's final state for a cancelled task: Cancelled in the UI; a Python caller gets
    TaskCancelled (carrying the result)."""
    from prefect.states import Cancelled

    done = result.model_copy(update={"cancelled": True})
    return Cancelled(message=f"cancelled; {state_message(done)}", data=TaskCancelled(done))


F = TypeVar("F", bound=Callable)


def ends_truthfully(fn: F) -> F:
    """Wrap a flow function so its run ends in the state that tells the truth: `final_state` of
    the TaskResult it returns; and a ferry error (a missing directory, a wrong bucket) is one
    line in the run's log and the Failed state's message, not a traceback. A Python caller still
    gets the FerryError raised."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        from prefect.states import Failed

        from tasks.runlog import run_logger

        try:
            outcome = fn(*args, **kwargs)
        except FerryError as exc:
            run_logger().error("ferry: %s", exc)
            return Failed(message=str(exc), data=exc)
        return final_state(outcome) if isinstance(outcome, TaskResult) else outcome

    # Prefect builds the parameter model from the wrapper: give it resolved annotations, since
    # the wrapper's module cannot resolve the flow module's names
    run.__annotations__ = typing.get_type_hints(fn, include_extras=True)
    run.__signature__ = inspect.signature(fn, eval_str=True)
    return run  # type: ignore[return-value]
