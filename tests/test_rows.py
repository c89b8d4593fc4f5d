"""The manifest's row type and its enums agree with the schema, and nothing undeclared is
written. Pure: no store needed."""

from __future__ import annotations

import types
import typing
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from tasks.manifest import ALL_STATUSES, COLUMNS, MANIFEST_SCHEMA, SCHEMA_VERSION, table
from tasks.rows import (
    CONVERSION_STATUSES,
    TASK_STATUSES,
    Action,
    Kind,
    ManifestRow,
    ReasonCode,
    Status,
)


def nullable(hint) -> bool:
    return isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)


def test_the_row_type_has_the_schema_s_columns_in_order_with_the_same_nullability():
    hints = typing.get_type_hints(ManifestRow)
    assert tuple(hints) == COLUMNS == tuple(MANIFEST_SCHEMA.names)
    for field in MANIFEST_SCHEMA:
        assert nullable(hints[field.name]) == field.nullable, field.name


def test_worker_is_the_last_column_of_schema_version_3_after_version_2_s_reason_code():
    assert COLUMNS[-3:] == ("rule", "reason_code", "worker")
    assert MANIFEST_SCHEMA.field("reason_code").type == pa.string()
    assert MANIFEST_SCHEMA.field("worker").type == pa.string()
    assert MANIFEST_SCHEMA.metadata[b"ferry.manifest.version"] == SCHEMA_VERSION.encode() == b"3"


def test_the_declared_statuses_are_the_enum_s():
    assert set(TASK_STATUSES) | set(CONVERSION_STATUSES) == set(Status)
    assert ALL_STATUSES == ("ok", "skipped", "rejected", "failed", "renamed", "directory")
    assert all(type(s) is str for s in ALL_STATUSES)


def test_enum_values_are_written_as_plain_strings():
    stamp = datetime(2024, 1, 2, tzinfo=UTC)
    row = ManifestRow(
        path="a",
        kind=Kind.SYMLINK,
        action=Action.SKIP,
        status=Status.SKIPPED,
        reason="unchanged",
        reason_code=ReasonCode.UNCHANGED,
        mtime=1_700_000_000_123_456_789,
        started_at=stamp,
    )
    written = table([row])
    values = written.drop_columns(["mtime"]).to_pylist()[0]
    assert values["kind"] == "symlink" and type(values["kind"]) is str
    assert (values["action"], values["status"]) == ("skip", "skipped")
    assert (values["reason"], values["reason_code"]) == ("unchanged", "unchanged")
    assert values["started_at"] == stamp
    assert written.column("mtime").cast(pa.int64()).to_pylist() == [1_700_000_000_123_456_789]


def test_strings_become_enums_and_an_undeclared_value_raises():
    row = ManifestRow(path="a", status="ok", kind="dir", action="mkdir")
    assert row.status is Status.OK and row.kind is Kind.DIR and row.action is Action.MKDIR
    for column, value in [
        ("status", "fine"),
        ("kind", "object"),
        ("action", "teleport"),
        ("reason_code", "because"),
    ]:
        fields = {"path": "a", "status": "failed", "reason": "why", "reason_code": "vanished"}
        fields[column] = value
        with pytest.raises(ValueError, match=f"undeclared {column}: '{value}'"):
            ManifestRow(**fields)
        with pytest.raises(ValueError, match=f"undeclared {column}: '{value}'"):
            table([fields])


def test_table_refuses_an_unknown_status_from_a_row_or_a_dict():
    with pytest.raises(ValueError, match="undeclared status: 'fine'"):
        table([ManifestRow(path="a", status="fine")])
    with pytest.raises(ValueError, match="undeclared status: 'fine'"):
        table([{"path": "a", "status": "fine"}])
    with pytest.raises(ValueError, match="undeclared status: None"):
        table([{"path": "a"}])


def test_a_reason_comes_with_its_code():
    with pytest.raises(ValueError, match="reason without its code"):
        ManifestRow(path="a", status="skipped", reason="unchanged")
    with pytest.raises(ValueError, match="reason without its code"):
        ManifestRow(path="a", status="failed", reason_code="vanished")
    assert ManifestRow(path="a", status="ok").reason_code is None


def test_table_takes_rows_and_dicts_alike():
    rows = [
        ManifestRow(path="a", status=Status.OK, kind=Kind.FILE, size=3),
        {"path": "b", "status": "renamed", "new_path": "b.file.1", "rule": "slash"},
    ]
    written = table(rows)
    assert written.schema == MANIFEST_SCHEMA
    assert written.column("path").to_pylist() == ["a", "b"]
    assert written.column("size").to_pylist() == [3, None]
    assert written.column("new_path").to_pylist() == [None, "b.file.1"]


def test_every_reason_code_is_documented():
    """Each code has its meaning in a comment above it in tasks/rows.py."""
    import inspect

    import tasks.rows

    source = inspect.getsource(tasks.rows.ReasonCode)
    for code in ReasonCode:
        before = source.split(f'= "{code.value}"')[0].rstrip().rsplit("\n", 2)
        assert before[-2].strip().startswith("#:"), code
