"""Where a task's reports go: the report directory, checked writable before any data moves.
(Apart from `tasks.manifest` so the command line checks it without loading pyarrow.)"""

from __future__ import annotations

import os
import uuid

import fsspec

__all__ = ["check_report_dir", "default_report_dir", "local_report_root"]


def default_report_dir() -> str:
    return os.environ.get("FERRY_REPORT_DIR") or os.path.abspath("ferry-reports")


def check_report_dir(url: str | None) -> str:
    """Make sure reports can be written under `url` (default: `default_report_dir()`) before any
    data moves: create it and write and remove a probe file. Returns the URL; raises
    DestinationUnusable with one line saying why not."""
    from tasks.errors import DestinationUnusable

    url = url or default_report_dir()
    try:
        fs, root = fsspec.core.url_to_fs(url.rstrip("/"))
        fs.makedirs(root, exist_ok=True)
        probe = f"{root}/_ferry-probe-{uuid.uuid4().hex[:8]}"
        fs.pipe_file(probe, b"")
        fs.rm_file(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, FileExistsError | NotADirectoryError):
            reason = "a file is in the way"
        raise DestinationUnusable(
            f"cannot write reports in the report directory ({reason})", where=url
        ) from None
    return url


def local_report_root(url: str | None) -> str | None:
    """The absolute local path of a report directory, or None when it is a remote URL."""
    fs, root = fsspec.core.url_to_fs((url or default_report_dir()).rstrip("/"))
    return os.path.abspath(root) if "file" in fs.protocol else None
