"""The options of ferry's tasks, defined once: `Options`, a frozen pydantic model.

Each field carries its name, type, default, bounds and description, which flows to the tasks with
it (`Job`, the stream tasks), the flows' parameters and UI forms (`flows.options.takes_options`),
deployments and the command line (`flows.cli`). Adding an option is adding one field here: its
`For(...)` marker says which jobs take it, its optional `Cli(...)` marker how the command line
spells it when the field's own name and type are not the right shape for a flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic.fields import FieldInfo

Url = Annotated[
    str,
    Field(
        min_length=1,
        description="A directory path, or a bucket URL (`s3://`, `gs://` or `az://bucket/prefix`).",
    ),
]
DirectoryPath = Annotated[
    str,
    Field(min_length=1, description="A directory: a local path or a mounted file system."),
]
BucketUrl = Annotated[
    str,
    Field(
        min_length=1,
        description="A bucket prefix: `s3://bucket/prefix` (or `s3://bucket`; `gs://`, `az://`).",
    ),
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
    Literal["changed", "always", "never", "checksum"],
    Field(
        description="When to replace an entry that exists at the destination: 'changed' (the "
        "default) copies unless size and mtime match; 'checksum' copies unless the contents "
        "match (the object's CRC64NVME against the file's, read locally: nothing is downloaded; "
        "size and mtime decide where the object has none); 'always' copies everything; 'never' "
        "keeps what is there."
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
    Field(
        ge=1,
        le=4096,
        description="Objects in flight at once across the whole task (shared by its workers).",
    ),
]
Workers = Annotated[
    int | None,
    Field(
        ge=1,
        le=1024,
        description="Processes that run the task's partitions at once, each with its own event "
        "loop and storage client. Default: the machine's cores, as many as the task's work pays "
        "for (one per 10,000 files or 8 GiB: a worker costs seconds to start); 1 runs every "
        "partition in the flow's own process. The bandwidth cap and concurrency are the task's: "
        "the workers share them.",
    ),
]
DaskAddress = Annotated[
    str | None,
    Field(
        description="Address of an existing Dask scheduler (tcp://host:8786): the partitions "
        "run on its workers, through prefect-dask. Default: $FERRY_DASK_ADDRESS, else this "
        "machine's worker processes.",
    ),
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


#: A number of bytes, or a size with its unit (`512M`, `2GiB`), in the UI form too.
Size = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string"}]}),
]
PartitionBytes = Annotated[
    Size,
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
RestorePosix = Annotated[
    bool,
    Field(
        description="Give each imported file the mode, owner and group its object's metadata "
        "records (file-permissions, file-owner, file-group: FSx for Lustre's and DataSync's "
        "keys, which export writes); the owner only where the importing user may set it."
    ),
]
RecreateLinks = Annotated[
    bool,
    Field(
        description="Import an object that stands for a symbolic link (exported by ferry, or "
        "by FSx for Lustre) as that link, instead of an empty file."
    ),
]
S3_STORAGE_CLASSES = (
    "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
    "GLACIER", "DEEP_ARCHIVE", "GLACIER_IR", "OUTPOSTS", "SNOW", "EXPRESS_ONEZONE",
)  # fmt: skip


def parse_storage_class(value: Any) -> Any:
    if value is None:
        return None
    text = str(value).strip().upper().replace("-", "_")
    if text not in S3_STORAGE_CLASSES:
        raise ValueError(
            f"storage_class must be one of {', '.join(S3_STORAGE_CLASSES)}, not {value!r}"
        )
    return text


StorageClass = Annotated[
    str | None,
    BeforeValidator(parse_storage_class),
    Field(
        description="The S3 storage class of the objects this export writes (STANDARD_IA, "
        "INTELLIGENT_TIERING, GLACIER_IR, ...). Default: the bucket's (STANDARD)."
    ),
]
SseKmsKeyId = Annotated[
    str | None,
    Field(
        min_length=1,
        description="Encrypt the objects this export writes with this AWS KMS key (an ARN, a "
        "key id or an alias: SSE-KMS). Default: the bucket's own encryption.",
    ),
]
DeleteExtra = Annotated[
    bool,
    Field(
        description="Mirror: delete what the destination holds and the source does not (objects "
        "under the prefix on export, files and directories under the directory on import), "
        "after the copies, never outside the prefix or directory, never what include/exclude "
        "leave out; nothing is deleted when an entry failed to copy or more would go than "
        "max_delete allows. Each deletion is a manifest row with action `delete`."
    ),
]


def parse_max_delete(value: Any) -> Any:
    """A count ('100', 100) or a percentage of the destination's entries ('10%') → '100' or
    '10%'; anything else is refused with what is expected."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip()
    percent = text.endswith("%")
    number = text.removesuffix("%").strip()
    try:
        amount = float(number) if percent else int(number)
    except ValueError:
        raise ValueError(
            f"max_delete takes a count (100) or a percentage (10%), not {value!r}"
        ) from None
    if amount < 0 or (percent and amount > 100):
        raise ValueError(f"max_delete must be a count ≥ 0 or a percentage 0-100%, not {value!r}")
    return f"{amount:g}%" if percent else str(amount)


MaxDelete = Annotated[
    str | None,
    BeforeValidator(parse_max_delete),
    Field(
        description="With delete_extra: the most deletions a task may make, a count (100) or a "
        "percentage of the entries the destination holds (10%). Above it nothing is deleted, "
        "and the task says why. Default: no limit."
    ),
]
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
EventsQueue = Annotated[
    str | None,
    Field(
        min_length=1,
        description="The SQS queue URL that receives the bucket's event notifications "
        "(s3:ObjectCreated:*): each object is imported within a second of landing, and the "
        "listing every interval_seconds becomes the reconcile that catches what the events "
        "missed. Default: listing alone.",
    ),
]
WatchMode = Annotated[
    Literal["auto", "events", "scan", "both"],
    Field(
        description="How a stream export finds complete files: `events` (inotify: writes made "
        "through this machine), `scan` (an interval scan every scan_seconds: files whose size and "
        "mtime stopped changing, whoever wrote them), `both`; `auto`: events, and the scan too "
        "when the directory is on a shared mount (NFS, Lustre, GPFS, BeeGFS, CIFS, Ceph, FUSE: "
        "other machines' writes are never inotify events here)."
    ),
]
ScanSeconds = Annotated[
    float,
    Field(gt=0, le=3600, description="Seconds between two scans of the directory (watch_mode)."),
]
WatchFiles = Annotated[
    bool,
    Field(
        description="Watch the directory; off: export only the files handed over with "
        "`ferry stream submit`."
    ),
]


@dataclass(frozen=True)
class For:
    """Which jobs take an option (the flows' names without `ferry-`)."""

    jobs: frozenset[str]

    def __init__(self, *jobs: str) -> None:
        object.__setattr__(self, "jobs", frozenset(jobs))


@dataclass(frozen=True)
class Cli:
    """How the command line spells an option whose field is not a flag as it stands: `flag` (a
    repeatable KEY=VALUE pair for a dict of storage options, or the negation of a default-true
    switch when `negate`), its metavar and short help."""

    flag: str
    metavar: str | None = None
    help: str | None = None
    negate: bool = False


TRANSFERS = ("export", "import")
STREAMS = ("stream-export", "stream-import")
COPIES = TRANSFERS + STREAMS
CHECKED = ("verify", "convert")
#: Every job that writes a manifest.
REPORTED = COPIES + CHECKED + ("stream-task",)

DEFAULT_FILES = 2000
DEFAULT_BYTES = 2 * 2**30


#: Each job's endpoints, its parameters before the options: the flow's positional parameters
#: (convert's metadata store is a required keyword, `--metadata` on the command line).
ENDPOINTS: dict[str, dict[str, Any]] = {
    "export": {"source": DirectoryPath, "destination": BucketUrl},
    "import": {"source": BucketUrl, "destination": DirectoryPath},
    "verify": {"source": Url, "destination": Url},
    "convert": {"bucket_url": WholeBucket, "metadata": MetadataUrl},
    "stream-export": {"source_dir": Url, "destination": Url},
    "stream-import": {"source": Url, "destination_dir": Url},
    "stream-task": {"stream": StreamName, "job": StreamJob},
}
KEYWORD_ENDPOINTS = frozenset({"metadata"})


class Options(BaseModel):
    """Every option of every ferry job, validated once, frozen and picklable (it travels with each
    partition to whichever process runs it). A job reads only the fields its `For` names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    credentials_block: Annotated[CredentialsBlock, For(*TRANSFERS, *CHECKED)] = None
    source_options: Annotated[
        StorageOptions,
        For(*TRANSFERS, "verify", "stream-import"),
        Cli(
            "--source-option",
            "KEY=VALUE",
            "a storage option for the source (s3fs: endpoint_url, use_ssl, ...)",
        ),
    ] = None
    destination_options: Annotated[
        StorageOptions,
        For(*TRANSFERS, "verify", "stream-export"),
        Cli(
            "--destination-option",
            "KEY=VALUE",
            "a storage option for the destination (s3fs: endpoint_url, use_ssl, ...)",
        ),
    ] = None
    storage_options: Annotated[
        StorageOptions,
        For("convert"),
        Cli(
            "--option",
            "KEY=VALUE",
            "a storage option for the bucket (s3fs: endpoint_url, use_ssl, ...)",
        ),
    ] = None
    include: Annotated[Globs, For(*COPIES, "verify"), Cli("--include", "GLOB")] = None
    exclude: Annotated[Globs, For(*COPIES, "verify"), Cli("--exclude", "GLOB")] = None
    overwrite: Annotated[Overwrite, For(*TRANSFERS)] = "changed"
    verify: Annotated[VerifyMode, For(*TRANSFERS, "verify")] = "size-mtime"
    bandwidth_mbps: Annotated[Bandwidth, For(*COPIES), Cli("--bandwidth-mbps", "MB/S")] = None
    concurrency: Annotated[Concurrency, For(*COPIES, "verify")] = 32
    workers: Annotated[Workers, For(*COPIES, *CHECKED)] = None
    dask_address: Annotated[DaskAddress, For(*COPIES, *CHECKED), Cli("--dask", "ADDRESS")] = None
    partition_files: Annotated[PartitionFiles, For(*TRANSFERS)] = DEFAULT_FILES
    partition_bytes: Annotated[PartitionBytes, For(*TRANSFERS)] = DEFAULT_BYTES
    report_dir: Annotated[ReportDirOption, For(*REPORTED)] = None
    dry_run: Annotated[DryRun, For(*TRANSFERS)] = False
    storage_class: Annotated[
        StorageClass, For("export", "stream-export"), Cli("--storage-class", "CLASS")
    ] = None
    sse_kms_key_id: Annotated[
        SseKmsKeyId, For("export", "stream-export"), Cli("--sse-kms-key-id", "KEY")
    ] = None
    delete_extra: Annotated[DeleteExtra, For(*TRANSFERS)] = False
    max_delete: Annotated[MaxDelete, For(*TRANSFERS), Cli("--max-delete", "N|P%")] = None
    retries: Annotated[Retries, For(*COPIES, *CHECKED)] = 5
    abandoned_upload_hours: Annotated[
        float,
        Field(
            ge=0,
            description="An export aborts the multipart uploads under its prefix started more "
            "than this many hours ago, whatever their key (a killed run's leftovers, which the "
            "store bills); younger ones to a file it writes are resumed or aborted.",
        ),
        For("export"),
    ] = 168.0
    multipart_threshold: Annotated[
        Size,
        Field(
            ge=5 * 2**20,
            le=5 * 2**30,
            description="Files from this size up are exported as a multipart upload, 8 MiB parts "
            "sent in parallel; smaller ones in one PUT. A number of bytes or a size such as "
            "`64M` (5 MiB to 5 GiB).",
        ),
        For("export", "stream-export"),
    ] = 16 * 2**20
    allow_empty: Annotated[AllowEmpty, For("import")] = False
    restore_posix: Annotated[RestorePosix, For("import", "stream-import")] = True
    xattrs: Annotated[
        bool,
        Field(
            description="Carry user extended attributes (those named user.NAME): export keeps them "
            "in object "
            "metadata (ferry-xattr-*), import sets them on the file. S3 allows 2 KB of metadata "
            "in all."
        ),
        For(*TRANSFERS, "stream-export", "stream-import"),
    ] = False
    recreate_links: Annotated[RecreateLinks, For("import", "stream-import")] = False
    check_only: Annotated[CheckOnly, For("convert")] = False
    check_tags: Annotated[
        CheckTags,
        For("convert"),
        Cli(
            "--skip-tag-check",
            help="do not look for object tags (saves one request per object)",
            negate=True,
        ),
    ] = True
    settle_seconds: Annotated[SettleSeconds, For("stream-export")] = 0.5
    batch_seconds: Annotated[BatchSeconds, For("stream-export")] = 0.5
    watch: Annotated[WatchFiles, For("stream-export")] = True
    watch_mode: Annotated[WatchMode, For("stream-export", "stream-task")] = "auto"
    scan_seconds: Annotated[ScanSeconds, For("stream-export", "stream-task")] = 5.0
    interval_seconds: Annotated[IntervalSeconds, For("stream-import")] = 5.0
    events_queue: Annotated[
        EventsQueue, For("stream-import", "stream-task"), Cli("--events-queue", "SQS_URL")
    ] = None
    max_runtime: Annotated[
        MaxRuntime, For(*STREAMS, "stream-task"), Cli("--max-runtime", "SECONDS")
    ] = None
    idle_timeout: Annotated[
        IdleTimeout, For(*STREAMS, "stream-task"), Cli("--idle-timeout", "SECONDS")
    ] = None
    auto_update: Annotated[AutoUpdate, For("stream-task")] = False

    @classmethod
    def of(cls, job: str) -> list[str]:
        """The names of the options `job` takes, in the model's order."""
        return [name for name, field in cls.model_fields.items() if job in jobs_of(field)]


def jobs_of(field: FieldInfo) -> frozenset[str]:
    return next((m.jobs for m in field.metadata if isinstance(m, For)), frozenset())


def cli_of(field: FieldInfo) -> Cli | None:
    return next((m for m in field.metadata if isinstance(m, Cli)), None)


def with_export_settings(storage: dict | None, options: Options, url: str) -> dict | None:
    """An export destination's storage options with the task's storage class and SSE-KMS key
    added as s3fs's `s3_additional_kwargs`, which every PUT and multipart upload then carries;
    a UsageError when they are given for a store that is not S3."""
    extra: dict[str, str] = {}
    if options.storage_class:
        extra["StorageClass"] = options.storage_class
    if options.sse_kms_key_id:
        extra |= {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": options.sse_kms_key_id}
    if not extra:
        return storage
    from tasks.errors import UsageError

    if not url.strip().lower().startswith(("s3://", "s3a://")):
        raise UsageError("storage_class and sse_kms_key_id apply to s3:// destinations", where=url)
    merged = dict(storage or {})
    merged["s3_additional_kwargs"] = {**(merged.get("s3_additional_kwargs") or {}), **extra}
    return merged
