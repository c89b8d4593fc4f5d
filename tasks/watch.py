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


#: statfs f_type of the file systems many machines mount at once, whose writes by other machines
#: are never inotify events here (linux/magic.h and the file systems' own sources).
SHARED_FILE_SYSTEMS = {
    0x6969: "nfs",
    0x0BD00BD0: "lustre",
    0x47504653: "gpfs",
    0x19830326: "beegfs",
    0xFF534D42: "cifs",
    0xFE534D42: "smb2",
    0x00C36400: "ceph",
    0x65735546: "fuse",  # CPFS, JuiceFS, s3fs-fuse, sshfs... mount through FUSE
    0x01021997: "9p",
    0x5346414F: "afs",
    0x013111A8: "ibrix",
    0x2BAD1DEA: "panfs",
}


def shared_mount(path: str) -> str | None:
    """The name of the shared file system `path` lies on (statfs's f_type), or None for a
    local one (or where statfs cannot be asked)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    buf = ctypes.create_string_buffer(256)  # struct statfs: f_type first (a long)
    if libc.statfs(os.fsencode(path), buf) != 0:
        return None
    f_type = ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF
    return SHARED_FILE_SYSTEMS.get(f_type)


class Watcher:
    """Feeds a `Pending` from inotify events, from polling where inotify is not available, and
    with `scan_seconds`, from an interval scan besides (a shared mount's files written by other
    machines: `shared_mount`). A scan finds every file whose size or mtime changed since the
    last; the settle rule then takes it once it stops changing."""

    def __init__(
        self,
        root: str,
        pending: Pending,
        *,
        use_inotify: bool = True,
        scan_seconds: float | None = None,
    ) -> None:
        self.root = root
        self.pending = pending
        self.inotify = INotify() if (use_inotify and INotify is not None) else None
        self.scan_seconds = scan_seconds
        self._dirs: dict[int, str] = {}
        self._seen: dict[str, tuple[int, int]] = {}
        self._scanned = time.monotonic()
        if self.inotify is not None:
            for base, _dirs, _files in os.walk(root):
                self._add_watch(base)
        if self.inotify is None or scan_seconds is not None:
            self._seen = self._scan()

    @property
    def kind(self) -> str:
        if self.inotify is None:
            return "scan" if self.scan_seconds is not None else "polling"
        return "inotify + scan" if self.scan_seconds is not None else "inotify"

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

    def _rescan(self) -> None:
        now = self._scan()
        for path, sig in now.items():
            if self._seen.get(path) != sig:
                self.pending.touch(path)
        self._seen = now
        self._scanned = time.monotonic()

    def poll(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for changes and pass them to `pending`."""
        if self.inotify is None:
            time.sleep(timeout)
            if self.scan_seconds is None or time.monotonic() - self._scanned >= self.scan_seconds:
                self._rescan()
            return
        if self.scan_seconds is not None and time.monotonic() - self._scanned >= self.scan_seconds:
            self._rescan()
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
