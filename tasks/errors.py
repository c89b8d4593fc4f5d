"""ferry's own failures, and the one place where storage errors are translated.

Two kinds of failure exist. A *task failure* (`FerryError` and its subclasses) makes the whole task
meaningless — a missing bucket, bad credentials, a source directory that is not there — and stops it
with a message a user can act on. An *object failure* (one file that cannot be copied) is data: the
transfer code catches it, turns it into a manifest row with `describe()`'s reason, and goes on.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import sys

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from tasks.rows import ReasonCode


class FerryError(Exception):
    """A failure that stops a whole task. `where` names the path or URL it is about."""

    def __init__(self, message: str, *, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def __str__(self) -> str:
        return f"{self.message}: {self.where}" if self.where else self.message


class UsageError(FerryError):
    """An argument or option the user gave cannot work (bad URL, bad glob, bad option value)."""


class SourceMissing(FerryError):
    """The source directory, bucket or prefix does not exist."""


class DestinationUnusable(FerryError):
    """The destination cannot be written (missing bucket, a file where a directory must be...)."""


class AccessDenied(FerryError):
    """The store refused the credentials or the operation."""


class StoreUnreachable(FerryError):
    """The storage endpoint does not answer."""


class NamespaceError(FerryError):
    """A namespace operation that cannot be done (missing path, not empty, already exists ...)."""


class NotEligible(FerryError):
    """The bucket cannot be converted; nothing was changed."""


class ConversionRefused(FerryError):
    """The conversion stopped before its commit; the bucket and the store are as they were."""


class StreamError(FerryError):
    """A data-stream operation that is refused; the message says why."""


class ScheduleError(FerryError):
    """A schedule operation that is refused; the message says why."""


# --- object failures: caught by the copy loop and turned into rows -------------------------------


class OutsideTree(OSError):
    """Following this path would leave the tree (a symbolic link on the way)."""


class FileChanged(OSError):
    """The file changed while it was being read; the upload is retried."""


class ChecksumMismatch(Exception):
    """The bytes received are not those the object's CRC64NVME describes: the file is not put
    in place."""


class PartDamaged(ConnectionError):
    """A part's ETag is not the MD5 of what was sent (transient: it is sent again)."""


# --- object-level errors -------------------------------------------------------------------------

#: S3 error codes worth another try: the store is busy or had a passing fault.
TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "503",
        "500",
        "502",
        "504",
    }
)


def error_code(exc: BaseException) -> str | None:
    """The S3 error code of a botocore ClientError, else None."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) or None
    return None


def http_status(exc: BaseException) -> int | None:
    if isinstance(exc, ClientError):
        return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether an error on one object is worth retrying: 5xx, throttling, dropped connections.

    The single place ferry decides what to retry; everything else fails the object at once.
    """
    if isinstance(exc, ClientError):
        status = http_status(exc) or 0
        return status >= 500 or status == 429 or error_code(exc) in TRANSIENT_CODES
    if isinstance(exc, ConnectionError):  # reset, refused, broken pipe, a damaged part
        return True
    if isinstance(
        exc,
        EndpointConnectionError
        | ConnectionClosedError
        | ReadTimeoutError
        | asyncio.TimeoutError
        | socket.timeout
        | asyncio.IncompleteReadError,
    ):
        return True
    return isinstance(exc, _aiohttp_errors("ClientConnectionError", "ClientPayloadError"))


def _aiohttp_errors(*names: str) -> tuple[type[BaseException], ...]:
    """aiohttp's error classes (what aiobotocore speaks HTTP with), when it is loaded: it is by
    the time a transfer fails, and the command line does not pay its import to answer --help."""
    aiohttp = sys.modules.get("aiohttp")
    return tuple(getattr(aiohttp, n) for n in names) if aiohttp is not None else ()


def describe(exc: BaseException) -> str:
    """A one-line reason for a manifest row: what failed, never a credential or a traceback."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code") or http_status(exc)
        message = err.get("Message") or ""
        return f"{code}: {message}".strip(": ") if message else f"store error {code}"
    if isinstance(exc, OSError) and exc.errno is not None:
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        return f"{name}: {exc.strerror}" + (f" ({exc.filename})" if exc.filename else "")
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


#: S3 error codes of a refusal: credentials or permissions.
DENIED_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "403"}
)


def failure_code(exc: BaseException) -> ReasonCode:
    """The reason code of a manifest row whose reason is `describe(exc)`."""
    if isinstance(exc, FileChanged):
        return ReasonCode.FILE_CHANGED
    if isinstance(exc, ChecksumMismatch):
        return ReasonCode.CHECKSUM_MISMATCH
    if isinstance(exc, PartDamaged):
        return ReasonCode.PART_DAMAGED
    if isinstance(exc, OutsideTree):
        return ReasonCode.OUTSIDE_TREE
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in ("PreconditionFailed", "412"):  # a GET conditional on the listed ETag
            return ReasonCode.OBJECT_CHANGED
        if code in DENIED_CODES or http_status(exc) == 403:
            return ReasonCode.ACCESS_DENIED
        return ReasonCode.STORE_ERROR
    if is_transient(exc):  # a dropped connection or a timeout, after its retries
        return ReasonCode.CONNECTION_ERROR
    if isinstance(exc, PermissionError):
        return ReasonCode.ACCESS_DENIED
    if isinstance(exc, IsADirectoryError | NotADirectoryError | FileExistsError):
        return ReasonCode.IN_THE_WAY
    if isinstance(exc, FileNotFoundError):
        return ReasonCode.VANISHED
    if isinstance(exc, OSError):
        return ReasonCode.FILESYSTEM_ERROR
    if isinstance(exc, BotoCoreError):
        return ReasonCode.STORE_ERROR
    return ReasonCode.UNEXPECTED


def endpoint_of(url: str) -> str:
    """scheme://host:port of a request URL: never the path or a signed query string."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}" if parts.netloc else url


def task_error(exc: BaseException, *, where: str) -> FerryError:
    """Translate an error met while opening an endpoint (listing, bucket check) into a task
    failure."""
    if isinstance(exc, FerryError):
        return exc
    code = error_code(exc)
    if code in {"NoSuchBucket", "ContainerNotFound"}:
        noun = "container" if code == "ContainerNotFound" else "bucket"
        return SourceMissing(f"{noun} does not exist", where=where)
    if isinstance(exc, NoCredentialsError):
        return AccessDenied(
            "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or pass key and "
            "secret storage options) for",
            where=where,
        )
    if isinstance(exc, PermissionError):  # the file system's permissions, not the store's
        return AccessDenied(
            "permission denied by the file system (check its permissions)", where=where
        )
    if code in {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "ExpiredToken",
        "InvalidToken",
        "AuthorizationFailure",
        "AuthenticationFailed",
        "403",
    }:
        detail = f" ({code})" if code else ""
        return AccessDenied(f"access denied{detail}; check the credentials for", where=where)
    unreachable = (
        EndpointConnectionError,
        ConnectionError,
        *_aiohttp_errors("ClientConnectionError"),
    )
    if isinstance(exc, unreachable):
        url = getattr(exc, "kwargs", {}).get("endpoint_url")
        at = f" at {endpoint_of(url)}" if url else ""
        store = "S3" if where.startswith("s3://") or "://" not in where else "object store's"
        return StoreUnreachable(f"cannot reach the {store} endpoint{at} for", where=where)
    if isinstance(exc, FileNotFoundError):
        return SourceMissing("does not exist", where=where)
    if isinstance(exc, ClientError | BotoCoreError | OSError):
        return FerryError(describe(exc), where=where)
    raise exc  # not a storage error: a fault ferry did not foresee, reported as such
