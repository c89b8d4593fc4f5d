"""Checks that make a task fail at once, with one clear line, instead of entry by entry."""

from __future__ import annotations

import os

from tasks.endpoints import BucketPrefix, Directory
from tasks.errors import (
    AccessDenied,
    DestinationUnusable,
    SourceMissing,
    UsageError,
    task_error,
)


def check_directory(directory: Directory, *, must_exist: bool) -> None:
    root = directory.root
    if os.path.isdir(root):
        if must_exist:
            try:
                with os.scandir(root) as entries:
                    next(entries, None)
            except PermissionError:
                raise AccessDenied(
                    "permission denied by the file system: cannot read this directory", where=root
                ) from None
        return
    if os.path.lexists(root):
        raise (SourceMissing if must_exist else DestinationUnusable)("not a directory", where=root)
    if must_exist:
        raise SourceMissing("directory does not exist", where=root)
    parent = os.path.dirname(root)
    while parent and not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise DestinationUnusable("a file is in the way of the destination directory", where=parent)


def check_bucket(prefix: BucketPrefix, *, must_hold_objects: bool = False) -> None:
    """The bucket exists and the credentials may list it; with `must_hold_objects`, something
    is stored under the prefix (an import of an empty prefix is most often a mistyped one)."""

    async def probe(client):
        if prefix.scheme != "s3":  # obstore lists by pages of its own choosing
            return bool(await client.data.any_object(prefix.prefix))
        found = await client.list_objects_v2(Bucket=prefix.bucket, Prefix=prefix.prefix, MaxKeys=1)
        return bool(found.get("KeyCount"))

    try:
        holds_objects = prefix.run(probe)
    except Exception as exc:
        raise task_error(exc, where=prefix.display) from exc
    if must_hold_objects and not holds_objects:
        raise empty_source(prefix)


def whole_bucket(url: str, options: dict | None) -> BucketPrefix:
    """The bucket a conversion takes: a whole S3 bucket, or a UsageError saying so."""
    from tasks.endpoints import parse_endpoint

    bucket = parse_endpoint(url, options)
    if not isinstance(bucket, BucketPrefix) or bucket.prefix or bucket.scheme != "s3":
        raise UsageError("convert takes a whole bucket: s3://bucket", where=url)
    return bucket


def empty_source(prefix: BucketPrefix) -> SourceMissing:
    return SourceMissing(
        "no object under this prefix (mistyped? allow_empty / --allow-empty imports it anyway)",
        where=prefix.display,
    )


def check_metadata_url(url: str) -> None:
    """A metadata store URL that parses, whose SQLite folder exists or whose server answers;
    else a UsageError naming it (its password hidden)."""
    import sqlalchemy

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except Exception:  # noqa: BLE001 - any parse failure means the same to the user
        raise UsageError("not an SQLAlchemy URL (try sqlite:////path/ns.db)", where=url) from None
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite":
        folder = os.path.dirname(os.path.abspath(parsed.database or ""))
        if parsed.database and not os.path.isdir(folder):
            raise UsageError("the metadata store's folder does not exist", where=folder)
        return
    try:
        engine = sqlalchemy.create_engine(parsed)
        with engine.connect():
            pass
        engine.dispose()
    except ModuleNotFoundError as exc:
        raise UsageError(
            f"the driver {exc.name!r} is not installed (pip install 'ferry[postgres]')", where=shown
        ) from None
    except Exception as exc:  # noqa: BLE001 - a store that cannot be opened, for any reason
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise UsageError(f"cannot open the metadata store ({reason})", where=shown) from None
