"""Endpoints: an fsspec URL plus storage options, resolved into something ferry can list and copy.

A task has two endpoints. One is a directory on a file system (a local disk, a parallel file system
mount); the other is a bucket prefix on an S3-compatible store, reached through s3fs. Credentials
come from the options or from the standard AWS environment variables (`AWS_ENDPOINT_URL` included);
they are kept out of `repr`, logs and manifests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import fsspec
import fsspec.asyn

from tasks.errors import UsageError

#: URL schemes of object stores, and the store each names: S3 (through s3fs, the data plane
#: on obstore), Google Cloud Storage and Azure Blob Storage (through obstore alone).
OBJECT_PROTOCOLS = {"s3": "s3", "s3a": "s3", "gs": "gs", "gcs": "gs", "az": "az", "azure": "az"}
#: The stores reached through obstore alone, with their storage options.
NATIVE_STORES = ("gs", "az")
LOCAL_PROTOCOLS = ("", "file", "local")


@dataclass(frozen=True)
class Directory:
    """A directory on a (local or mounted) file system."""

    url: str
    root: str  # absolute path, no trailing separator

    @property
    def display(self) -> str:
        return self.root

    def join(self, relative: str) -> str:
        return os.path.join(self.root, *relative.split("/")) if relative else self.root


@dataclass(frozen=True)
class BucketPrefix:
    """A prefix in a bucket (an S3-compatible one, a Google Cloud Storage bucket or an Azure Blob
    container). `prefix` is '' or ends with '/'."""

    url: str
    bucket: str
    prefix: str
    options: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    scheme: str = "s3"  # s3, gs or az

    @property
    def display(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.prefix}"

    def url_of(self, key: str) -> str:
        return f"{self.scheme}://{self.bucket}/{key}"

    def key(self, relative: str) -> str:
        return self.prefix + relative

    def relative(self, key: str) -> str | None:
        """The path of `key` below the prefix, or None when the key is outside it."""
        return key[len(self.prefix) :] if key.startswith(self.prefix) else None

    def filesystem(self):
        """The s3fs filesystem for this endpoint (cached by fsspec per options)."""
        return fsspec.filesystem("s3", **s3_options(self.options))

    def run(self, work, *args, **kwargs):
        """Run `await work(client, *args, **kwargs)` on s3fs's event loop with this endpoint's
        client (the bucket's region's, with cache_regions), every request carrying what s3fs
        adds to its own (`Requests`). A Google Cloud Storage or Azure endpoint runs it on
        fsspec's event loop with an obstore client (`tasks.engine.StoreRequests`)."""
        if self.scheme in NATIVE_STORES:
            from tasks.engine import store_requests

            async def native():
                return await work(store_requests(self), *args, **kwargs)

            return fsspec.asyn.sync(fsspec.asyn.get_loop(), native)
        fs = self.filesystem()

        async def call():
            from tasks.engine import BotoData, obstore_data

            await fs.set_session()
            client = await fs.get_s3(self.bucket)
            requests = Requests(fs, client)
            boto = BotoData(requests, self.bucket)
            requests.data = await obstore_data(fs, client, self.bucket, self.options, boto) or boto
            return await work(requests, *args, **kwargs)

        return fsspec.asyn.sync(fs.loop, call)


class Requests:
    """The S3 client ferry's steps call. Each request carries the storage options s3fs applies
    to its own requests — `s3_additional_kwargs` (SSE-KMS, SSE-C, ACLs…) and `requester_pays` —
    filtered, as s3fs does, to the parameters the operation takes; paginators too."""

    def __init__(self, fs, client) -> None:
        self._fs, self._client = fs, client
        #: the data plane (`tasks.engine`): object bytes and metadata, one request a call
        self.data = None

    def with_options(self, method, kwargs: dict) -> dict:
        return self._fs._get_s3_method_kwargs(method, **kwargs)

    def get_paginator(self, operation: str):
        return _Paginator(self, self._client.get_paginator(operation), operation)

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if name.startswith("_") or not callable(attr):
            return attr

        async def call(**kwargs):
            return await attr(**self.with_options(attr, kwargs))

        return call


class _Paginator:
    def __init__(self, requests: Requests, paginator, operation: str) -> None:
        self._requests, self._paginator, self._operation = requests, paginator, operation

    def paginate(self, **kwargs):
        method = getattr(self._requests._client, self._operation)
        return self._paginator.paginate(**self._requests.with_options(method, kwargs))


Endpoint = Directory | BucketPrefix

#: The S3 clients' settings (both engines): seconds to connect and to wait for an answer, and
#: the connections pooled per endpoint (enough for the transfers in flight).
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60
MAX_CONNECTIONS = 128


def s3_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """s3fs constructor arguments: the user's options over the environment's, plus ferry's client
    settings (ferry does its own retries, so botocore makes one attempt; enough pooled connections
    for the transfers in flight)."""
    opts = dict(options or {})
    endpoint = (
        opts.pop("endpoint_url", None)
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or (os.environ.get("AWS_ENDPOINT_URL"))
    )
    if endpoint:
        opts["endpoint_url"] = endpoint
        if endpoint.startswith("http://"):
            opts.setdefault("use_ssl", False)
    config = dict(opts.pop("config_kwargs", None) or {})
    config.setdefault("retries", {"total_max_attempts": 1, "mode": "standard"})
    config.setdefault("max_pool_connections", MAX_CONNECTIONS)
    config.setdefault("connect_timeout", CONNECT_TIMEOUT)
    config.setdefault("read_timeout", READ_TIMEOUT)
    # Content-MD5 already protects every PUT and part: skip botocore's extra CRC trailers, and the
    # SHA-256 of every body that SigV4 payload signing costs on plain-HTTP endpoints.
    config.setdefault("request_checksum_calculation", "when_required")
    config.setdefault("response_checksum_validation", "when_required")
    config.setdefault("s3", {"payload_signing_enabled": False})
    opts["config_kwargs"] = config
    return opts


#: What fsspec's filesystems take besides their own arguments (instance cache, listings cache).
FSSPEC_OPTIONS = frozenset(
    {"skip_instance_cache", "use_listings_cache", "listings_expiry_time", "max_paths"}
)


def storage_option_names() -> frozenset[str]:
    """Every storage option s3fs accepts: its own arguments, fsspec's, and those it hands to
    aiobotocore's session (anything else would fail deep inside the first request)."""
    import inspect

    import s3fs
    from aiobotocore.session import AioSession

    names = set(FSSPEC_OPTIONS)
    for fn in (s3fs.S3FileSystem.__init__, AioSession.__init__):
        names.update(inspect.signature(fn).parameters)
    return frozenset(names - {"self", "kwargs", "args", "asynchronous", "loop", "session"})


#: s3fs options that shape s3fs's own file objects or uploads, which ferry's transfers do not use:
#: refused with the reason, never silently dropped.
NOT_USED = {
    "version_aware": "ferry copies the current version of each object",
    "default_block_size": "it sizes s3fs's file buffers; ferry streams objects itself",
    "default_fill_cache": "it tunes s3fs's file caches; ferry streams objects itself",
    "default_cache_type": "it tunes s3fs's file caches; ferry streams objects itself",
    "fixed_upload_size": "ferry sizes multipart parts itself",
    "max_concurrency": "use ferry's concurrency option (objects in flight)",
}


def check_storage_options(options: dict[str, Any] | None, *, where: str) -> None:
    """A UsageError naming each storage option s3fs does not know, with the likely one meant, or
    that ferry's transfers would not apply."""
    if not options:
        return  # nothing to check, and no need to load s3fs to know it
    import difflib

    known = storage_option_names()
    for name in sorted(options):
        if name in NOT_USED:
            raise UsageError(
                f"storage option {name!r} does not apply to ferry's transfers: {NOT_USED[name]}",
                where=where,
            )
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"unknown storage option {name!r}{hint}", where=where)


def parse_endpoint(url: str, options: dict[str, Any] | None = None) -> Endpoint:
    """Turn a user's URL or path into an endpoint, or raise UsageError saying what is wrong."""
    if not isinstance(url, str) or not url.strip():
        raise UsageError("empty path or URL")
    url = url.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower() if "://" in url else ""
    if scheme in OBJECT_PROTOCOLS:
        store = OBJECT_PROTOCOLS[scheme]
        bucket = parts.netloc
        if not bucket:
            raise UsageError("no bucket in URL", where=url)
        if parts.query or parts.fragment:
            raise UsageError("URL must not have a query or fragment", where=url)
        prefix = parts.path.lstrip("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        if "//" in prefix:
            raise UsageError("URL has an empty path segment ('//')", where=url)
        if store in NATIVE_STORES:
            from tasks.engine import check_store_options

            check_store_options(store, bucket, options, where=url)
        else:
            check_storage_options(options, where=url)
        return BucketPrefix(
            url=url, bucket=bucket, prefix=prefix, options=dict(options or {}), scheme=store
        )
    if scheme in LOCAL_PROTOCOLS:
        if options:
            unknown = ", ".join(sorted(options))
            raise UsageError(f"storage options ({unknown}) do not apply to a local path", where=url)
        path = parts.path if scheme else url
        return Directory(url=url, root=os.path.abspath(os.path.expanduser(path)))
    raise UsageError(
        f"unsupported URL scheme {scheme!r}: use a directory path, s3://bucket/prefix, "
        "gs://bucket/prefix or az://container/prefix",
        where=url,
    )


def transfer_endpoints(
    direction: str, source: str, destination: str, source_options=None, destination_options=None
) -> tuple[Directory, BucketPrefix]:
    """The directory and the bucket prefix of a task, or a UsageError naming the wrong one."""
    src = parse_endpoint(source, source_options)
    dst = parse_endpoint(destination, destination_options)
    if direction == "export":
        if not isinstance(src, Directory):
            raise UsageError("export reads a directory: SOURCE must be a path", where=source)
        if not isinstance(dst, BucketPrefix):
            raise UsageError(
                "export writes to a bucket: DESTINATION must be s3://bucket/prefix (or gs://, az://)",
                where=destination,
            )
        return src, dst
    if not isinstance(src, BucketPrefix):
        raise UsageError(
            "import reads a bucket: SOURCE must be s3://bucket/prefix (or gs://, az://)",
            where=source,
        )
    if not isinstance(dst, Directory):
        raise UsageError("import writes a directory: DESTINATION must be a path", where=destination)
    return dst, src
