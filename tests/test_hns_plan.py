"""The conversion rules of the seed, with its own examples. Pure: no bucket needed."""

from __future__ import annotations

from hns.plan import SourceObject, plan_conversion

TS = 1716487553


def plan(*keys, sizes=None):
    sizes = sizes or {}
    objects = [SourceObject(k, sizes.get(k, 0 if k.endswith("/") else 1), etag="e") for k in keys]
    result = plan_conversion(sorted(objects, key=lambda o: o.key), TS)
    return result, {d.key: d for d in result.decisions}


def test_empty_slash_key_becomes_a_directory():
    result, d = plan("a/b/")
    assert (d["a/b/"].status, d["a/b/"].new_path) == ("directory", "a/b")
    assert {"a", "a/b"} <= result.directories


def test_slash_key_with_data_becomes_dot_slash_ts():
    _, d = plan("a/b/", sizes={"a/b/": 10})
    assert d["a/b/"].new_path == f"a/b.slash.{TS}"
    assert (d["a/b/"].status, d["a/b/"].rule) == ("renamed", "slash")


def test_scenario_one_file_renamed_when_directory_created():
    _, d = plan("a/b", "a/b/c")
    assert d["a/b"].new_path == f"a/b.file.{TS}"
    assert d["a/b"].status == "renamed" and d["a/b"].rule == "file-then-directory"
    assert (d["a/b/c"].status, d["a/b/c"].new_path) == ("ok", "a/b/c")


def test_scenario_one_tries_one_numeric_suffix():
    _, d = plan("a/b", f"a/b.file.{TS}", "a/b/c")
    assert d["a/b"].new_path == f"a/b.file.{TS}.1"
    result, d = plan("a/b", f"a/b.file.{TS}", f"a/b.file.{TS}.1", "a/b/c")
    assert d["a/b"].status == "failed" and "taken" in d["a/b"].reason
    assert result.problems


def test_scenario_two_file_over_directory_tries_three_suffixes():
    # a key ending in '/' with data is renamed to a file whose name a directory already holds
    slash = f"a/b.slash.{TS}"
    _, d = plan(f"{slash}/x", "a/b/", sizes={"a/b/": 5})
    assert d["a/b/"].new_path == f"{slash}.file.{TS}"
    assert d["a/b/"].rule == "directory-then-file"
    taken = [f"{slash}.file.{TS}", f"{slash}.file.{TS}.1", f"{slash}.file.{TS}.2"]
    _, d = plan(f"{slash}/x", *taken, "a/b/", sizes={"a/b/": 5})
    assert d["a/b/"].new_path == f"{slash}.file.{TS}.3"
    _, d = plan(f"{slash}/x", *taken, f"{slash}.file.{TS}.3", "a/b/", sizes={"a/b/": 5})
    assert d["a/b/"].status == "failed"


def test_two_keys_for_one_path_is_a_conflict_never_an_overwrite():
    result, d = plan(f"a/b.slash.{TS}", "a/b/", sizes={"a/b/": 3})
    assert d["a/b/"].status == "failed" and "already taken" in d["a/b/"].reason
    assert d[f"a/b.slash.{TS}"].status == "ok"


def test_keys_that_cannot_be_paths_are_rejected():
    _, d = plan("a//b", "a/../b", "./x")
    assert all(d[k].status == "rejected" for k in d)


def test_tree_lists_parents_before_children_and_every_file_once():
    result, _ = plan("a/b", "a/b/c", "d/", "e/f/g")
    tree = result.tree()
    paths = [row[0] for row in tree]
    for path in paths:
        parent = path.rpartition("/")[0]
        assert not parent or paths.index(parent) < paths.index(path)
    files = {row[2]: row[0] for row in tree if row[1] == "file"}
    assert files == {"a/b": f"a/b.file.{TS}", "a/b/c": "a/b/c", "e/f/g": "e/f/g"}
