"""What every partition of one transfer task needs to know: the two endpoints and the options."""

from __future__ import annotations

from dataclasses import dataclass

from tasks.endpoints import BucketPrefix, Directory
from tasks.options import Options

# A transfer's outcomes and rows live in tasks.outcome; imported from here too.
from tasks.outcome import Outcome, decided_row, row  # noqa: F401
from tasks.plan import Direction


@dataclass(frozen=True)
class Job:
    task_id: str
    direction: Direction
    directory: Directory  # the file-system side
    bucket: BucketPrefix  # the object-store side
    options: Options = Options()

    def source(self, path: str, kind: str) -> str:
        return (
            self._bucket_url(path, kind)
            if self.direction == "import"
            else self.directory.join(path)
        )

    def destination(self, path: str, kind: str) -> str:
        return (
            self.directory.join(path)
            if self.direction == "import"
            else self._bucket_url(path, kind)
        )

    def _bucket_url(self, path: str, kind: str) -> str:
        key = self.bucket.key(path) + ("/" if kind == "dir" else "")
        return self.bucket.url_of(key)
