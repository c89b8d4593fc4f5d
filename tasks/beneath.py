"""Open files and directories below a root without ever following a symbolic link on the way.

Every path component is opened relative to its parent's descriptor with O_NOFOLLOW (`openat`), so
a directory swapped for a link while a task runs cannot send a read or a write outside the tree:
the open fails instead, whatever changes under the run. (Linux's openat2 RESOLVE_BENEATH does the
same in one call, but Python's `os` does not expose it.)
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator

from tasks.errors import OutsideTree

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _step(fd: int, name: str, relative: str) -> int:
    try:
        return os.open(name, DIR_FLAGS, dir_fd=fd)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            raise OutsideTree(f"a symbolic link is in the way: {relative}") from None
        raise NotADirectoryError(f"a file is in the way of directory {relative}") from None


def open_dir(root: str, relative_dir: str, *, create: bool = False) -> int:
    """A descriptor of `root/relative_dir`, reached one component at a time without following
    links; with `create`, missing directories are made on the way."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    walked = []
    try:
        for name in relative_dir.split("/") if relative_dir else []:
            walked.append(name)
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, dir_fd=fd)
            child = _step(fd, name, "/".join(walked))
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


@contextlib.contextmanager
def opened_dir(root: str, relative_dir: str, *, create: bool = False) -> Iterator[int]:
    fd = open_dir(root, relative_dir, create=create)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def opened_dir_at(dfd: int, name: str) -> Iterator[int]:
    """The directory `name` inside the directory `dfd`, not followed if it is a link."""
    fd = _step(dfd, name, name)
    try:
        yield fd
    finally:
        os.close(fd)


def open_file(root: str, relative: str) -> int:
    """A read-only descriptor of the file `root/relative`; no component is followed if it is a
    link (the file itself included: a link there fails with OutsideTree)."""
    parent, _, name = relative.rpartition("/")
    with opened_dir(root, parent) as dfd:
        try:
            flags = (
                os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            )  # a FIFO never blocks
            return os.open(name, flags, dir_fd=dfd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OutsideTree(f"became a symbolic link: {relative}") from None
            raise


async def off_loop(call, *args, finish_on_cancel: bool = False, discard=None):
    """`call(*args)`, a blocking file-system call, in a worker thread, so a slow mount (a parallel
    file system, NFS) never stalls the event loop every transfer shares. A cancellation waits
    for the call to end, since a descriptor it uses must not be closed under it; then it goes on
    as a cancellation (`discard(result)` releasing what the call opened), or, with
    `finish_on_cancel` (a rename that has landed), returns the call's result."""
    import asyncio

    future = asyncio.ensure_future(asyncio.to_thread(call, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():  # a second cancellation must not leave the thread behind
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(future)
        if future.exception() is not None:
            raise asyncio.CancelledError from None  # the cancellation is what the caller sees
        if finish_on_cancel:
            return future.result()
        if discard is not None:
            discard(future.result())
        raise


async def all_or_none(*awaitables):
    """`asyncio.gather` of the awaitables, except that when one fails the others are cancelled
    and waited for before the error goes on: none is left writing to (or reading from) a
    descriptor the caller is about to close."""
    import asyncio

    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
