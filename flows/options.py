"""The options users pass to ferry's flows: types, limits and help text, defined once.

Each option is an `Annotated` type carrying its pydantic constraints and its description. Prefect
validates flow parameters against the constraints; `described` copies the descriptions into the
flow's docstring, where Prefect's UI form and `ferry --help` read them.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BeforeValidator, Field, WithJsonSchema
from pydantic.fields import FieldInfo

Url = Annotated[
    str,
    Field(min_length=1, description="A directory path, or an S3 URL (`s3://bucket/prefix`)."),
]
DirectoryPath = Annotated[
    str,
    Field(min_length=1, description="A directory: a local path or a mounted file system."),
]
BucketUrl = Annotated[
    str,
    Field(min_length=1, description="A bucket prefix: `s3://bucket/prefix` (or `s3://bucket`)."),
]
WholeBucket = Annotated[
    str,
    Field(min_length=1, description="A whole bucket, `s3://bucket`, with no prefix."),
]
StorageOptions = Annotated[
    dict[str, Any] | None,
    Field(
        description="fsspec/s3fs storage options for this side (endpoint_url, key, secret, "
        "use_ssl, ...). Without them S3 settings come from the standard AWS environment "
        "variables, AWS_ENDPOINT_URL included. Prefer the environment or a Prefect block for "
        "secrets: flow parameters are stored by the Prefect API."
    ),
]
CredentialsBlock = Annotated[
    str | None,
    Field(
        description="Name of a ferry-s3-credentials block holding the bucket's access key "
        "(Prefect masks it everywhere). The way to pass credentials: storage options given as "
        "parameters are stored with the run in clear. Default: the standard AWS environment."
    ),
]
Globs = Annotated[
    list[str] | None,
    Field(
        description="Glob patterns. A pattern without '/' matches a name in any directory "
        "(`*.bin`); one with '/' matches the path from the root (`ckpt/*/model.pt`)."
    ),
]
Overwrite = Annotated[
    Literal["changed", "always", "never"],
    Field(
        description="When to replace an entry that exists at the destination: 'changed' (the "
        "default) copies unless size and mtime match; 'always' copies everything; 'never' keeps "
        "what is there."
    ),
]
VerifyMode = Annotated[
    Literal["size-mtime", "checksum", "none"],
    Field(
        description="How to check the destination after copying: 'size-mtime' (default), "
        "'checksum' (also hash file contents against the objects' ETags) or 'none'."
    ),
]
Bandwidth = Annotated[
    float | None,
    Field(
        gt=0,
        description="Cap on the whole task's transfer rate, in MB/s (10^6 bytes). Default: no cap.",
    ),
]
Concurrency = Annotated[
    int,
    Field(ge=1, le=4096, description="Objects in flight at once across the task (per process)."),
]
PartitionFiles = Annotated[
    int,
    Field(ge=1, description="Most entries in one partition (one Prefect task run)."),
]


def parse_size(value: Any) -> Any:
    """'2000', '512M', '2G', '1.5GiB' → bytes (an int passes through; bounds are checked after)."""
    if not isinstance(value, str):
        return value
    units = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
    units |= {"ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
    text = value.strip().lower().removesuffix("b")
    number = text.rstrip("kmgti")
    unit = text[len(number) :]
    try:
        return int(float(number) * units[unit])
    except (KeyError, ValueError):
        raise ValueError(f"not a size: {value!r} (try 512M or 2GiB)") from None


PartitionBytes = Annotated[
    int,
    BeforeValidator(parse_size),
    # the form takes a number of bytes or a size with its unit
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string"}]}),
    Field(
        ge=1,
        description="Most bytes in one partition (one Prefect task run): a number of bytes, or "
        "a size such as `512M` or `2GiB`.",
    ),
]
ReportDirOption = Annotated[
    str | None,
    Field(
        description="Where to write the manifest and summary (a path or fsspec URL); each run "
        "writes below it in a folder named after its id. Default: $FERRY_REPORT_DIR or "
        "./ferry-reports."
    ),
]
AllowEmpty = Annotated[
    bool,
    Field(
        description="Import even when nothing is stored under the source prefix (by default "
        "that stops the task: a mistyped prefix is the commonest import mistake)."
    ),
]
DryRun = Annotated[bool, Field(description="Plan and write the manifest, but copy nothing.")]
Retries = Annotated[
    int,
    Field(
        ge=1,
        le=20,
        description="Attempts per object for transient errors (5xx, throttling, "
        "dropped connections).",
    ),
]

MetadataUrl = Annotated[
    str,
    Field(
        min_length=1,
        description="SQLAlchemy URL of the namespace's metadata store: sqlite:////path/bucket.db "
        "(one machine) or postgresql+psycopg://user:password@host/db (several machines; "
        "`pip install ferry[postgres]`).",
    ),
]
StreamName = Annotated[
    str,
    Field(
        min_length=1,
        description="The data stream's name (`ferry stream list` shows them): its directory, "
        "bucket prefix, credentials and bandwidth are used.",
    ),
]
StreamJob = Annotated[
    Literal["import", "export", "stream-import", "stream-export"],
    Field(
        description="import (bucket prefix → directory) or export (directory → bucket prefix), "
        "batch tasks of which four run at once per stream; or stream-import / stream-export, "
        "which run until stopped."
    ),
]
AutoUpdate = Annotated[
    bool,
    Field(
        description="Import only the stream's auto-update prefixes (what its schedule runs); "
        "for a batch import."
    ),
]
CheckOnly = Annotated[
    bool,
    Field(
        description="Run the eligibility check and the plan; report every rename that would "
        "happen; change nothing."
    ),
]
CheckTags = Annotated[
    bool,
    Field(
        description="Look for object tags, which make a bucket ineligible (one request per object)."
    ),
]

SettleSeconds = Annotated[
    float,
    Field(
        ge=0,
        description="Seconds a file must stay unchanged after it is closed or renamed "
        "into place before it is exported (a `x.tmp` renamed meanwhile is never taken).",
    ),
]
BatchSeconds = Annotated[
    float, Field(gt=0, description="How often ready files are gathered into a batch, seconds.")
]
IntervalSeconds = Annotated[
    float, Field(gt=0, description="Seconds between two looks at the bucket prefix.")
]
MaxRuntime = Annotated[
    float | None, Field(gt=0, description="Stop after this many seconds. Default: never.")
]
IdleTimeout = Annotated[
    float | None,
    Field(gt=0, description="Stop after this many seconds with nothing to do. Default: never."),
]
WatchFiles = Annotated[
    bool,
    Field(
        description="Watch the directory; off: export only the files handed over with "
        "`ferry stream submit`."
    ),
]

F = TypeVar("F", bound=Callable[..., Any])


def descriptions(fn: Callable[..., Any]) -> dict[str, str]:
    """{parameter: description} from the Annotated Field metadata of `fn`'s signature."""
    hints = typing.get_type_hints(fn, include_extras=True)
    found = {}
    for name in inspect.signature(fn).parameters:
        for meta in getattr(hints.get(name), "__metadata__", ()):
            if isinstance(meta, FieldInfo) and meta.description:
                found[name] = meta.description
    return found


def described(fn: F) -> F:
    """Append an `Args:` section built from the option descriptions to `fn`'s docstring."""
    lines = [f"    {name}: {text}" for name, text in descriptions(fn).items()]
    doc = inspect.cleandoc(fn.__doc__ or "")
    fn.__doc__ = doc + "\n\nArgs:\n" + "\n".join(lines) + "\n"
    return fn
