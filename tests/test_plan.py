from __future__ import annotations

from tasks.listing import Entry, Filter
from tasks.plan import plan_export, plan_import


def actions(items):
    return {i.path: (i.action, i.reason) for i in items}


def test_export_plans_markers_only_for_empty_directories():
    source = [Entry("a", "dir"), Entry("a/f", "file", 3, 1), Entry("e", "dir", empty=True)]
    got = actions(plan_export(source, [], prefix="p/"))
    assert got == {"a/f": ("copy", None), "e": ("mkdir", None)}


def test_export_same_size_needs_a_check_and_different_size_copies():
    source = [Entry("same", "file", 3, 1), Entry("diff", "file", 3, 1)]
    dest = [Entry("same", "object", 3, 9), Entry("diff", "object", 4, 9)]
    got = actions(plan_export(source, dest, prefix=""))
    assert got["same"][0] == "check"
    assert got["diff"][0] == "copy"


def test_overwrite_never_and_always():
    source = [Entry("f", "file", 3, 1)]
    dest = [Entry("f", "object", 4, 9)]
    assert plan_export(source, dest, prefix="", overwrite="never")[0].action == "skip"
    assert (
        plan_export(source, [Entry("f", "object", 3, 1)], prefix="", overwrite="always")[0].action
        == "copy"
    )


def test_import_rejects_file_and_directory_with_the_same_name():
    source = [Entry("a", "object", 1), Entry("a/b", "object", 1)]
    got = actions(plan_import(source, []))
    assert got["a"] == ("reject", "a directory of the same name exists in the bucket")
    assert got["a/b"][0] == "copy"


def test_import_rejects_data_under_a_slash_key_and_archived_objects():
    source = [
        Entry("d", "object", 5, holds_data=True),
        Entry("g", "object", 1, storage_class="GLACIER"),
    ]
    got = actions(plan_import(source, []))
    assert "holds data" in got["d"][1]
    assert "archived" in got["g"][1]


def test_import_skips_a_file_its_own_earlier_run_wrote():
    source = [Entry("f", "object", 3, 5, etag="abc")]
    dest = [Entry("f", "file", 3, 77, state="abc 77")]
    assert plan_import(source, dest)[0].action == "skip"
    touched = [Entry("f", "file", 3, 78, state="abc 77")]
    assert plan_import(source, touched)[0].action == "check"


def test_filters_apply_to_names_and_paths():
    selected = Filter(["*.bin", "keep/*"], ["skip.bin"])
    assert selected("x/y/a.bin")
    assert selected("keep/deep/file.txt")
    assert not selected("x/skip.bin")
    assert not selected("other.txt")


def codes(items):
    return {i.path: (i.action, i.reason_code) for i in items if i.reason is not None}


def test_every_planned_skip_and_reject_carries_its_reason_code():
    from tasks.rows import ReasonCode as R

    source = [
        Entry("kept", "dir", empty=True),
        Entry("locked", "dir", unreadable="[Errno 13] Permission denied"),
        Entry("back\\slash", "file", 1, 1),
        Entry("same", "file", 1, 1),
    ]
    dest = [Entry("kept", "dir"), Entry("same", "object", 2, 1)]
    got = codes(plan_export(source, dest, prefix="p/", overwrite="never"))
    assert got == {
        "kept": ("skip", R.EXISTS),
        "locked": ("reject", R.UNREADABLE),
        "back\\slash": ("reject", R.NAME_NOT_PORTABLE),
        "same": ("skip", R.NOT_OVERWRITTEN),
    }
    locked = next(i for i in plan_export(source, dest, prefix="p/") if i.path == "locked")
    assert locked.reason == "unreadable: [Errno 13] Permission denied"

    source = [
        Entry("d", "object", 5, holds_data=True),
        Entry("a", "object", 1),
        Entry("a/b", "object", 1),
        Entry("x/../y", "object", 1),
        Entry("m", "dir"),
        Entry("f", "object", 3, 5, etag="abc"),
    ]
    dest = [Entry("m", "dir"), Entry("f", "file", 3, 77, state="abc 77")]
    assert codes(plan_import(source, dest)) == {
        "d": ("reject", R.MARKER_WITH_DATA),
        "a": ("reject", R.FILE_DIRECTORY_CLASH),
        "x/../y": ("reject", R.NAME_NOT_PORTABLE),
        "m": ("skip", R.EXISTS),
        "f": ("skip", R.UNCHANGED),
    }
