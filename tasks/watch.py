"""Which files of a directory are complete, as they become so.

On Linux, inotify tells when a file is closed after writing (IN_CLOSE_WRITE) or renamed into place
(IN_MOVED_TO); elsewhere, or for trees inotify cannot watch, a file counts as complete once its
size and mtime stay the same for `settle_seconds`. Either way a candidate waits `settle_seconds`
and must still exist unchanged: a `ckpt.tmp` renamed to `ckpt` in the meantime is never taken,
only `ckpt` is. Subdirectories created later are watched too. Pure bookkeeping plus os calls.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field

try:
    from inotify_simple import INotify
    from inotify_simple import flags as F
except ImportError:  # not Linux
    INotify = None


def _not_regular(path: str) -> bool:
    try:
        return not stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


@dataclass
class Pending:
    """Files seen changing, each with when it may be taken and what it looked like then."""

    settle_seconds: float
    due: dict[str, tuple[float, tuple[int, int]]] = field(default_factory=dict)

    def touch(self, path: str, now: float | None = None) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            self.due.pop(path, None)
            return
        if stat.S_ISDIR(st.st_mode):
            return
        now = time.monotonic() if now is None else now
        self.due[path] = (now + self.settle_seconds, (st.st_size, st.st_mtime_ns))

    def ready(self, now: float | None = None) -> list[str]:
        """Paths whose settle time has passed and that have not changed since; files that
        vanished (renamed away, deleted) are dropped, changed ones wait again."""
        now = time.monotonic() if now is None else now
        found = []
        for path, (when, seen) in list(self.due.items()):
            if when > now:
                continue
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                del self.due[path]
                continue
            if (st.st_size, st.st_mtime_ns) != seen:
                self.due[path] = (now + self.settle_seconds, (st.st_size, st.st_mtime_ns))
                continue
            del self.due[path]
            found.append(path)
        return sorted(found)


class Watcher:
    """Feeds a `Pending` from inotify events, or from polling where inotify is not available."""

    def __init__(self, root: str, pending: Pending, *, use_inotify: bool = True) -> None:
        self.root = root
        self.pending = pending
        self.inotify = INotify() if (use_inotify and INotify is not None) else None
        self._dirs: dict[int, str] = {}
        self._seen: dict[str, tuple[int, int]] = {}
        if self.inotify is not None:
            for base, _dirs, _files in os.walk(root):
                self._add_watch(base)
        else:
            self._seen = self._scan()

    @property
    def kind(self) -> str:
        return "inotify" if self.inotify is not None else "polling"

    def _add_watch(self, path: str) -> None:
        mask = F.CLOSE_WRITE | F.MOVED_TO | F.CREATE | F.DELETE_SELF
        try:
            wd = self.inotify.add_watch(path, mask)
        except OSError:
            return
        self._dirs[wd] = path

    def _scan(self) -> dict[str, tuple[int, int]]:
        found = {}
        for base, _dirs, files in os.walk(self.root):
            for name in files:
                path = os.path.join(base, name)
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                found[path] = (st.st_size, st.st_mtime_ns)
        return found

    def poll(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for changes and pass them to `pending`."""
        if self.inotify is None:
            time.sleep(timeout)
            now = self._scan()
            for path, sig in now.items():
                if self._seen.get(path) != sig:
                    self.pending.touch(path)
            self._seen = now
            return
        for event in self.inotify.read(timeout=int(timeout * 1000)):
            base = self._dirs.get(event.wd)
            if base is None or not event.name:
                continue
            path = os.path.join(base, event.name)
            if event.mask & F.ISDIR:
                if event.mask & (F.CREATE | F.MOVED_TO):
                    self._add_watch(path)
                    for sub, _dirs, files in os.walk(path):  # files made before the watch
                        self._add_watch(sub)
                        for name in files:
                            self.pending.touch(os.path.join(sub, name))
                continue
            completed = event.mask & (F.CLOSE_WRITE | F.MOVED_TO)
            # links and FIFOs are never "closed after writing": they count once created
            if completed or (event.mask & F.CREATE and _not_regular(path)):
                self.pending.touch(path)

    def close(self) -> None:
        if self.inotify is not None:
            self.inotify.close()
