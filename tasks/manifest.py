"""The manifest: one Parquet row per entry a task touched. The schema is defined here, once; the
row type that has exactly its columns, and the enums of its status, action, kind and reason code,
are in `tasks.rows`.

A task run's report directory holds `parts/` (one part file per partition, written as soon as the
partition finishes, staged under a `_` name and renamed so dataset readers never see half a file),
the merged `manifest.parquet`, and `summary.json`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from tasks import rows as row_types
from tasks.report_dir import check_report_dir as check_report_dir
from tasks.report_dir import default_report_dir as default_report_dir
from tasks.report_dir import local_report_root as local_report_root
from tasks.rows import ROW_FIELDS, ManifestRow, declared

#: 2: `reason_code` appended (version 1 had the columns before it, in the same order).
#: 3: `worker` appended (host:pid of the process that settled the entry).
SCHEMA_VERSION = "3"

#: Every task's statuses: copied (or compared equal); left as it was (unchanged, dry run,
#: cancelled); refused before any write (a name that cannot travel, a key leaving the
#: destination); tried and failed (the reason says why). Their meanings: `tasks.rows.Status`.
STATUSES = tuple(s.value for s in row_types.TASK_STATUSES)
#: Conversion's own statuses, besides ok and failed: `renamed` (the object is reachable under
#: `new_path`, by the rule in `rule`), `directory` (a zero-byte `dir/` marker became a directory).
CONVERSION_STATUSES = tuple(s.value for s in row_types.CONVERSION_STATUSES)
ALL_STATUSES = STATUSES + CONVERSION_STATUSES

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),  # relative to the task's roots
        pa.field("source", pa.string()),  # full source path or URL
        pa.field("destination", pa.string()),  # full destination path or URL
        pa.field("kind", pa.string()),  # rows.Kind: file, dir, symlink, special
        pa.field("size", pa.int64()),  # source size in bytes
        pa.field("mtime", pa.timestamp("ns", tz="UTC")),  # source modification time
        pa.field("action", pa.string()),  # rows.Action: copy, mkdir, check, skip, reject, ...
        pa.field("status", pa.string(), nullable=False),  # rows.Status: ok, skipped, ...
        pa.field("reason", pa.string()),  # why skipped, rejected or failed, for people
        pa.field("bytes", pa.int64()),  # bytes moved
        pa.field("checksum", pa.string()),  # ETag / MD5 compared, where known
        pa.field("verified", pa.bool_()),  # null when not verified
        pa.field("attempts", pa.int32()),
        pa.field("started_at", pa.timestamp("us", tz="UTC")),
        pa.field("finished_at", pa.timestamp("us", tz="UTC")),
        pa.field("partition", pa.int32()),
        pa.field("new_path", pa.string()),  # conversion only
        pa.field("rule", pa.string()),  # conversion only
        pa.field("reason_code", pa.string()),  # rows.ReasonCode: the reason, for programs
        pa.field("worker", pa.string()),  # host:pid of the process that settled the entry
    ],
    metadata={"ferry.manifest.version": SCHEMA_VERSION},
)

COLUMNS = tuple(MANIFEST_SCHEMA.names)
assert COLUMNS == ROW_FIELDS, "tasks.rows.ManifestRow must have the schema's columns, in order"


def now() -> datetime:
    return datetime.now(UTC)


def table(rows: Iterable[ManifestRow | Mapping[str, Any]]) -> pa.Table:
    """Rows as a table of the manifest schema. A `ManifestRow` was checked when it was made; a
    dict (missing columns are null) is checked here: a key that is not a column, or a status,
    action, kind or reason code that is not declared, is a bug, and raises instead of being
    dropped."""
    records = [_values(row) for row in rows]
    columns = {name: [r[i] for r in records] for i, name in enumerate(COLUMNS)}
    mtimes = columns["mtime"]
    columns["mtime"] = [
        pa.scalar(m, pa.timestamp("ns", tz="UTC")) if isinstance(m, int) else m for m in mtimes
    ]
    return pa.Table.from_pydict(columns, schema=MANIFEST_SCHEMA)


def _values(row: ManifestRow | Mapping[str, Any]) -> tuple:
    if isinstance(row, ManifestRow):
        return row.values()
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise ValueError(f"manifest row has keys that are not columns: {sorted(unknown)}")
    values = tuple(declared(name, row.get(name)) for name in COLUMNS)
    return values if values[-1] is not None else (*values[:-1], row_types.worker_id())


class ReportDir:
    """Where one task run writes its manifest: a local path or any fsspec URL."""

    def __init__(self, url: str, task_id: str) -> None:
        base, self.task_id = url.rstrip("/"), task_id
        self.fs, root = fsspec.core.url_to_fs(base)
        self.root = f"{root}/{task_id}"
        self.parts = f"{self.root}/parts"
        self.url = base + "/" + task_id

    @property
    def manifest(self) -> str:
        return f"{self.root}/manifest.parquet"

    @property
    def manifest_url(self) -> str:
        return self.url + "/manifest.parquet"

    def write_part(self, name: str, rows: Iterable[ManifestRow | Mapping[str, Any]]) -> str:
        """Write one part file atomically; returns its path."""
        self.fs.makedirs(self.parts, exist_ok=True)
        final = f"{self.parts}/{name}.parquet"
        staging = f"{self.parts}/_{name}.{uuid.uuid4().hex[:8]}.parquet"
        pq.write_table(table(rows), staging, filesystem=self.fs)
        self.fs.mv(staging, final)
        return final

    def read_parts(self) -> pa.Table:
        """Every part file's rows (not the staging files, `_name…`), in one table. Read file by
        file: pyarrow's dataset module would load pandas, a second of start-up per command."""
        if not self.fs.exists(self.parts):
            return MANIFEST_SCHEMA.empty_table()
        names = sorted(
            path
            for path in self.fs.ls(self.parts, detail=False)
            if not path.rstrip("/").rsplit("/", 1)[-1].startswith(("_", "."))
        )
        tables = []
        for path in names:
            with self.fs.open(path, "rb") as f:
                tables.append(pq.ParquetFile(f).read().cast(MANIFEST_SCHEMA))
        return pa.concat_tables(tables) if tables else MANIFEST_SCHEMA.empty_table()

    def write_manifest(self, merged: pa.Table) -> str:
        self.fs.makedirs(self.root, exist_ok=True)
        staging = f"{self.root}/_manifest.{uuid.uuid4().hex[:8]}.parquet"
        pq.write_table(merged.cast(MANIFEST_SCHEMA), staging, filesystem=self.fs)
        self.fs.mv(staging, self.manifest)
        return self.manifest_url

    def write_summary(self, summary: Mapping[str, Any]) -> str:
        path = f"{self.root}/summary.json"
        with self.fs.open(path, "w") as f:
            json.dump(summary, f, indent=2, default=str)
        return path
