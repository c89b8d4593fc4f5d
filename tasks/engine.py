"""The data plane: how an object's bytes and metadata travel, one request each.

Two engines speak the same four calls (`put`, `get`, `head`, `open_range`):

- `ObstoreData`, through obstore (Python bindings of the Rust `object_store` crate that Apache
  Arrow uses): about a quarter of aiobotocore's client CPU per request. It is the engine whenever
  every storage option of the endpoint has an obstore equivalent.
- `BotoData`, through s3fs's aiobotocore client: the engine when an option has none (an ACL, a
  storage class, a botocore `config_kwargs` of the user's…), so that no option is ever dropped.

Both send one request per call and retry nothing: ferry's own retries (`tasks.retry`) count every
attempt. Errors leave an engine as botocore's `ClientError` (a refusal, with the store's code and
HTTP status) or as a `ConnectionError` (the request did not complete), whichever engine raised
them, so `tasks.errors` has one set of rules. The control plane (listing, bucket checks, multipart
uploads with per-part checksums, tagging) stays on s3fs.

`FERRY_ENGINE=boto` (or `obstore`) forces an engine, for measuring one against the other.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

from tasks.endpoints import CONNECT_TIMEOUT, MAX_CONNECTIONS, READ_TIMEOUT
from tasks.listing import strip_etag

#: Attributes obstore returns that are HTTP headers, not the object's user metadata.
HEADER_ATTRIBUTES = frozenset(
    {"Content-Type", "Content-Encoding", "Content-Disposition", "Content-Language", "Cache-Control"}
)


class Meta(NamedTuple):
    """What a GET or HEAD tells about an object."""

    size: int
    etag: str | None  # without quotes
    last_modified_ns: int | None
    metadata: dict[str, str]


def _ns(value) -> int | None:
    return int(value.timestamp() * 1e9) if value is not None else None


# --- aiobotocore --------------------------------------------------------------------------------


class BotoData:
    """The data plane on s3fs's aiobotocore client (`tasks.endpoints.Requests`)."""

    name = "boto"

    def __init__(self, requests, bucket: str) -> None:
        self._client, self._bucket = requests, bucket

    async def put(self, key: str, body: bytes, metadata: dict[str, str], md5: bytes) -> str | None:
        import base64

        response = await self._client.put_object(
            Bucket=self._bucket,
            Key=key,
            Body=body,
            Metadata=metadata,
            ContentMD5=base64.b64encode(md5).decode(),
        )
        return strip_etag(response.get("ETag"))

    async def get(self, key: str, etag: str | None = None) -> tuple[bytes, Meta]:
        response = await self._client.get_object(Bucket=self._bucket, Key=key, **_if_match(etag))
        async with response["Body"] as body:
            data = await body.read()
        return data, _boto_meta(response, len(data))

    async def head(self, key: str) -> Meta:
        return _boto_meta(await self._client.head_object(Bucket=self._bucket, Key=key))

    @contextlib.asynccontextmanager
    async def open_range(
        self, key: str, start: int, end: int, etag: str | None, chunk: int
    ) -> AsyncIterator[tuple[Meta, AsyncIterator[bytes]]]:
        """Bytes `start`..`end` (inclusive) of the object, as (its Meta, chunks)."""
        response = await self._client.get_object(
            Bucket=self._bucket, Key=key, Range=f"bytes={start}-{end}", **_if_match(etag)
        )
        async with response["Body"] as body:

            async def chunks():
                while piece := await body.read(chunk):
                    yield piece

            yield _boto_meta(response), chunks()


def _if_match(etag: str | None) -> dict:
    return {"IfMatch": f'"{etag}"'} if etag else {}


def _boto_meta(response, size: int | None = None) -> Meta:
    return Meta(
        size if size is not None else int(response.get("ContentLength", 0)),
        strip_etag(response.get("ETag")),
        _ns(response.get("LastModified")),
        dict(response.get("Metadata") or {}),
    )


# --- obstore -----------------------------------------------------------------------------------


#: What obstore's paths cannot hold: a control character, an empty, '.' or '..' segment, or a
#: trailing '/' (a directory marker). Such keys travel through aiobotocore, unchanged.
_UNFIT = re.compile(r"[\x00-\x1f\x7f]|(^|/)\.{0,2}(/|$)")


def fits_obstore(key: str) -> bool:
    return not _UNFIT.search(key)


class ObstoreData:
    """The data plane on an obstore store, and for the keys obstore's paths cannot hold
    (`fits_obstore`), on aiobotocore (`fallback`). A PUT carries the body's SHA-256 in its
    signature (SigV4 signed payload), which the store checks on arrival as it would a
    Content-MD5."""

    name = "obstore"

    def __init__(self, store, fallback: BotoData | None, scheme: str = "s3") -> None:
        self._store, self.fallback, self.scheme = store, fallback, scheme

    def _other(self, key: str) -> BotoData:
        """The engine for a key obstore's paths cannot hold: aiobotocore on S3; elsewhere none."""
        if self.fallback is None and key.endswith("/"):
            raise UnfitKey(
                f"an empty directory cannot be kept on {self.scheme}://: obstore's paths (ferry's "
                f"way to {self.scheme}://) cannot end with '/' ({key!r})"
            )
        if self.fallback is None:
            raise UnfitKey(
                f"{self.scheme}:// keys cannot hold a control character, an empty, '.' or '..' "
                f"segment, or end with '/' (ferry reaches {self.scheme}:// through obstore): "
                f"{key!r}"
            )
        return self.fallback

    def _metadata(self, metadata: dict[str, str]) -> dict[str, str]:
        if self.scheme == "az":  # Azure's metadata names are identifiers: no '-'
            return {k: v for k, v in metadata.items() if k.isidentifier()}
        return metadata

    async def put(self, key: str, body: bytes, metadata: dict[str, str], md5: bytes) -> str | None:
        import obstore

        if not fits_obstore(key):
            return await self._other(key).put(key, body, metadata, md5)
        with _translated(key):
            result = await obstore.put_async(
                self._store, key, body, attributes=self._metadata(metadata), use_multipart=False
            )
        return strip_etag(result.get("e_tag"))

    async def put_stream(
        self, key: str, parts, metadata: dict[str, str], part_size: int, concurrency: int
    ) -> str | None:
        """A multipart upload of the async iterator `parts` (each `part_size` but the last);
        aborted by obstore when the iterator raises."""
        import obstore

        if not fits_obstore(key):
            self._other(key)  # S3 uploads large files through aiobotocore, never here
        with _translated(key):
            result = await obstore.put_async(
                self._store,
                key,
                parts,
                attributes=self._metadata(metadata),
                use_multipart=True,
                chunk_size=part_size,
                max_concurrency=concurrency,
            )
        return strip_etag(result.get("e_tag"))

    async def any_object(self, prefix: str) -> bool:
        """Whether anything is stored below `prefix` (one listing request)."""
        import obstore

        with _translated(prefix):
            async for chunk in obstore.list(self._store, prefix or None, chunk_size=1):
                return bool(chunk)
        return False

    async def delete(self, key: str) -> None:
        """Delete one object (a store without a batch delete of its own: GCS, Azure)."""
        import obstore

        with _translated(key):
            await obstore.delete_async(self._store, key)

    async def list(self, prefix: str) -> list[dict]:
        """Every object below `prefix` ('' or ending in '/'): obstore's ObjectMeta dicts."""
        import obstore

        entries: list[dict] = []
        with _translated(prefix):
            async for chunk in obstore.list(self._store, prefix or None, chunk_size=1000):
                entries.extend(chunk)
        return entries

    async def get(self, key: str, etag: str | None = None) -> tuple[bytes, Meta]:
        import obstore

        if not fits_obstore(key):
            return await self._other(key).get(key, etag)
        with _translated(key):
            result = await obstore.get_async(self._store, key, options=_conditions(etag))
            data = await result.bytes_async()
        return data, _obstore_meta(result)

    async def head(self, key: str) -> Meta:
        import obstore

        if not fits_obstore(key):
            return await self._other(key).head(key)
        with _translated(key):
            result = await obstore.get_async(self._store, key, options={"head": True})
        return _obstore_meta(result)

    @contextlib.asynccontextmanager
    async def open_range(
        self, key: str, start: int, end: int, etag: str | None, chunk: int
    ) -> AsyncIterator[tuple[Meta, AsyncIterator[bytes]]]:
        import obstore

        if not fits_obstore(key):
            async with self._other(key).open_range(key, start, end, etag, chunk) as opened:
                yield opened
            return
        options = {**_conditions(etag), "range": (start, end + 1)}
        with _translated(key):
            result = await obstore.get_async(self._store, key, options=options)

        async def chunks():
            with _translated(key):
                async for piece in result.stream(min_chunk_size=chunk):
                    yield piece

        yield _obstore_meta(result), chunks()


def _conditions(etag: str | None) -> dict:
    return {"if_match": f'"{etag}"'} if etag else {}


def _obstore_meta(result) -> Meta:
    meta = result.meta
    metadata = {k: v for k, v in result.attributes.items() if k not in HEADER_ATTRIBUTES}
    return Meta(
        int(meta["size"]), strip_etag(meta.get("e_tag")), _ns(meta["last_modified"]), metadata
    )


_STATUS = re.compile(r"status(?: code)?:? (\d{3})(?: ([A-Za-z][A-Za-z' -]*[A-Za-z]))?")
_XML = re.compile(r"<(Code|Message)>([^<]*)</\1>")


@contextlib.contextmanager
def _translated(key: str):
    """obstore's errors as the ones ferry's rules know: a store's refusal as a ClientError with
    its code and status, a request that did not complete as a ConnectionError."""
    import obstore.exceptions as ox

    try:
        yield
    except (ox.BaseError, FileNotFoundError, ValueError) as exc:  # obstore's, or a key it refused
        raise store_error(exc, key) from None


def store_error(exc: Exception, key: str) -> Exception:
    import obstore.exceptions as ox
    from botocore.exceptions import ClientError

    text = str(exc)
    found = dict(_XML.findall(text))
    status = _STATUS.search(text)
    code = found.get("Code")
    if isinstance(exc, ValueError) and not isinstance(exc, ox.BaseError):
        return UnfitKey(f"{text.strip().splitlines()[0] if text.strip() else 'bad key'}: {key!r}")
    if isinstance(exc, ox.NotFoundError | FileNotFoundError):
        code, status_code = code or "NoSuchKey", 404
    elif isinstance(exc, ox.PreconditionError):
        code, status_code = code or "PreconditionFailed", 412
    elif status is not None:
        status_code = int(status.group(1))
        code = code or str(status_code)
    elif isinstance(exc, ox.PermissionDeniedError | ox.UnauthenticatedError):
        code, status_code = code or "AccessDenied", 403
    else:  # no answer from the store: refused, reset, timed out
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        return ConnectionError(f"{first} ({key})")
    phrase = status.group(2) if status is not None else None  # a HEAD's answer has no body
    message = found.get("Message") or phrase or text.strip().splitlines()[0]
    message = message.replace("\\n", "\n").splitlines()[0]  # Azure adds its request id
    error = {"Code": code, "Message": message, "Key": key}
    metadata = {"HTTPStatusCode": status_code}
    return ClientError({"Error": error, "ResponseMetadata": metadata}, "obstore")


class UnfitKey(ValueError):
    """A key the engine cannot address (obstore's paths are stricter than S3's keys)."""


# --- Google Cloud Storage and Azure ------------------------------------------------------------

#: obstore's HTTP client settings: a storage option of one of these names goes to them; any
#: other is the store's own configuration (`google_*`, `azure_*` or their short forms).
CLIENT_OPTIONS = frozenset(
    {
        "allow_http",
        "allow_invalid_certificates",
        "connect_timeout",
        "default_content_type",
        "default_headers",
        "http1_only",
        "http2_only",
        "pool_idle_timeout",
        "pool_max_idle_per_host",
        "proxy_url",
        "proxy_ca_certificate",
        "proxy_excludes",
        "randomize_addresses",
        "read_timeout",
        "root_certificate",
        "timeout",
        "user_agent",
    }
)

_stores: dict[tuple, Any] = {}


def native_store(scheme: str, bucket: str, options: dict[str, Any] | None):
    """The obstore store of a `gs://` bucket or an `az://` container, made once per bucket and
    options (so its connections are reused). Credentials come from the options or from the
    environment variables obstore reads (`GOOGLE_*`, `AZURE_*`)."""
    import json

    cache_key = (scheme, bucket, json.dumps(options or {}, sort_keys=True, default=str))
    store = _stores.get(cache_key)
    if store is not None:
        return store
    import obstore.store as st

    config = dict(options or {})
    client = {
        "connect_timeout": f"{CONNECT_TIMEOUT}s",
        "timeout": f"{READ_TIMEOUT}s",
        "pool_max_idle_per_host": str(MAX_CONNECTIONS),
    }
    client.update({k: config.pop(k) for k in list(config) if k in CLIENT_OPTIONS})
    endpoint = str(config.get("endpoint") or config.get("base_url") or "")
    if endpoint.startswith("http://"):
        client.setdefault("allow_http", True)
    kind = st.GCSStore if scheme == "gs" else st.AzureStore
    store = kind(bucket, client_options=client, retry_config={"max_retries": 0}, **config)
    _stores[cache_key] = store
    return store


def check_store_options(scheme: str, bucket: str, options: dict[str, Any] | None, *, where: str):
    """A UsageError naming a storage option the store does not know or a value it refuses."""
    from tasks.errors import UsageError

    try:
        native_store(scheme, bucket, options)
    except Exception as exc:  # noqa: BLE001 - obstore's configuration errors, of every kind
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UsageError(f"bad storage options for {scheme}:// ({first})", where=where) from None


class StoreRequests:
    """The client of a Google Cloud Storage or Azure endpoint: obstore's data plane, which also
    lists (`ObstoreData.list`)."""

    def __init__(self, data: ObstoreData) -> None:
        self.data = data


def store_requests(prefix) -> StoreRequests:
    store = native_store(prefix.scheme, prefix.bucket, prefix.options)
    return StoreRequests(ObstoreData(store, None, prefix.scheme))


# --- choosing ------------------------------------------------------------------------------------

#: s3fs's `s3_additional_kwargs` that obstore applies to every request, by its config key.
SSE_CONFIG = {
    "ServerSideEncryption": "server_side_encryption",
    "SSEKMSKeyId": "sse_kms_key_id",
    "BucketKeyEnabled": "sse_bucket_key_enabled",
}

#: Storage options the obstore engine takes from the live client instead (endpoint, region,
#: credentials) or that shape only s3fs itself.
FROM_CLIENT = frozenset(
    {
        "key",
        "secret",
        "token",
        "anon",
        "endpoint_url",
        "use_ssl",
        "client_kwargs",
        "skip_instance_cache",
        "use_listings_cache",
        "listings_expiry_time",
        "max_paths",
        "cache_regions",
        "profile",
        "asynchronous",
        "requester_pays",
        "s3_additional_kwargs",
        "config_kwargs",
    }
)


def obstore_config(options: dict[str, Any]) -> dict[str, Any] | None:
    """The obstore S3 config of what a user's storage options add to a request, or None when
    one of them has no obstore equivalent (then aiobotocore carries every request)."""
    if os.environ.get("FERRY_ENGINE") == "boto":
        return None
    if set(options) - FROM_CLIENT:
        return None
    config: dict[str, Any] = {}
    extra = dict(options.get("s3_additional_kwargs") or {})
    for name, key in SSE_CONFIG.items():
        if name in extra:
            value = extra.pop(name)
            config[key] = value if not isinstance(value, bool) else str(value).lower()
    if extra:
        return None
    if options.get("requester_pays"):
        config["request_payer"] = True
    if options.get("config_kwargs"):  # botocore's own settings: no obstore equivalent
        return None
    if set(options.get("client_kwargs") or {}) - {"region_name", "endpoint_url"}:
        return None  # a CA bundle, a proxy, TLS verification off…: no obstore equivalent here
    return config


def _import_obstore():
    try:
        import obstore.store
    except ImportError:  # pragma: no cover - obstore is a dependency; a trimmed install
        return None
    return obstore.store


async def obstore_data(
    fs, client, bucket: str, options: dict[str, Any], fallback: BotoData
) -> ObstoreData | None:
    """An obstore engine speaking to the same endpoint, region and credentials as s3fs's
    `client`, or None; its store is made once per s3fs filesystem, bucket and credentials, so
    its connections are reused."""
    config = obstore_config(options)
    store_module = _import_obstore() if config is not None else None
    if store_module is None:
        return None
    credentials = await _credentials(client)
    cache = fs.__dict__.setdefault("_ferry_obstore", {})
    found = cache.get(bucket)
    if found is not None and found[0] == credentials:
        return ObstoreData(found[1], fallback)
    endpoint = client.meta.endpoint_url
    region = client.meta.region_name or "us-east-1"
    if credentials is None:
        config["skip_signature"] = True
    else:
        config["access_key_id"], config["secret_access_key"], token = credentials
        if token:
            config["session_token"] = token
    store = store_module.S3Store(
        bucket,
        endpoint=endpoint,
        region=region,
        virtual_hosted_style_request=False,
        client_options={
            "allow_http": endpoint.startswith("http://"),
            "connect_timeout": f"{CONNECT_TIMEOUT}s",
            "timeout": f"{READ_TIMEOUT}s",
            "pool_max_idle_per_host": str(MAX_CONNECTIONS),
        },
        retry_config={"max_retries": 0},
        **config,
    )
    cache[bucket] = (credentials, store)
    return ObstoreData(store, fallback)


async def _credentials(client) -> tuple[str, str, str | None] | None:
    """The access key, secret and token the client signs with now; None when it does not sign."""
    signer = getattr(client, "_request_signer", None)
    credentials = getattr(signer, "_credentials", None)
    if credentials is None:
        return None
    frozen = await credentials.get_frozen_credentials()
    return frozen.access_key, frozen.secret_key, frozen.token
