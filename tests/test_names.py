from __future__ import annotations

import pytest

from tasks.names import key_problem, key_too_long, path_problem


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("a/../b", "'..' segment"),
        ("..", "'..' segment"),
        ("a\\b", "backslash"),
        ("a//b", "empty path segment"),
        ("/etc/passwd", "absolute path"),
        ("a/./b", "'.' segment"),
        ("x" * 256, "longer than 255 bytes"),
        ("é" * 128, "longer than 255 bytes"),  # 256 bytes in UTF-8
        ("a/" * 511 + "bc", "longer than 1023 characters"),
    ],
)
def test_key_problem_names_the_rule_broken(key, expected):
    assert expected in key_problem(key)


@pytest.mark.parametrize("key", ["a", "a/b/c.txt", "dir/", "x" * 255, "a-b_c!(d)*.e"])
def test_key_problem_accepts_good_keys(key):
    assert key_problem(key) is None


def test_path_problem_rejects_long_paths_and_backslashes():
    assert "1023" in path_problem("a/" * 512)
    assert "backslash" in path_problem("dir/a\\b")
    assert path_problem("dir/file.txt") is None


def test_key_too_long_counts_utf8_bytes():
    assert key_too_long("é" * 513) is not None
    assert key_too_long("e" * 1024) is None


def test_every_ferry_error_is_defined_once_and_exported_from_flows():
    import flows
    import flows.result  # EntriesFailed and TaskCancelled carry a TaskResult
    from tasks import errors

    def below(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from below(sub)

    found = {cls.__name__: cls for cls in below(errors.FerryError)}
    assert set(found) <= set(flows.__all__)
    assert {cls.__module__ for cls in found.values()} == {"tasks.errors", "flows.result"}
    for name, cls in found.items():
        assert getattr(flows, name) is cls


def test_every_row_builder_writes_the_manifest_schema_and_nothing_else(tmp_path):
    """Transfer rows, verify rows and conversion rows go through `manifest.table`, which refuses
    a key that is not a column or a status that is not declared."""
    import pytest

    from tasks.manifest import ALL_STATUSES, COLUMNS, table

    table([{"path": "a", "status": "renamed", "new_path": "a.file.1", "rule": "file-then-dir"}])
    with pytest.raises(ValueError, match="not columns: \\['colour'\\]"):
        table([{"path": "a", "status": "ok", "colour": "red"}])
    with pytest.raises(ValueError, match="undeclared status: 'fine'"):
        table([{"path": "a", "status": "fine"}])
    assert set(ALL_STATUSES) == {"ok", "skipped", "rejected", "failed", "renamed", "directory"}
    assert COLUMNS[:3] == ("path", "source", "destination")


def test_every_public_name_imports_from_flows():
    import flows
    from flows import EntriesFailed, FerryError, stream_export, stream_import  # noqa: F401

    for name in flows.__all__:
        assert getattr(flows, name) is not None, name
    assert stream_export.name == "ferry-stream-export"
    assert stream_import.name == "ferry-stream-import"


def test_the_readme_says_how_a_newcomer_types_ferry():
    import pathlib

    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    assert readme.splitlines()[3].startswith("uv run ferry demo")
    assert readme.splitlines()[4].startswith("uv run pytest")
    assert "uv tool install ." in readme and "uv run ferry …" in readme
