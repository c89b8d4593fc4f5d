"""A task's tree cut into ranges (`tasks.ranges`): the ranges cover the tree exactly once, on a
real directory and on a real bucket; ranges are planned in parallel across worker processes, and
copying starts before the whole tree is listed."""

from __future__ import annotations

import os
import random
import threading
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import manifest_rows, write_file
from flaky_proxy import FlakyProxy, TwoAtOnce

from flows import export_data, import_data
from tasks import ranges
from tasks.endpoints import parse_endpoint
from tasks.listing import list_bucket, list_directory
from tasks.ranges import Span, bucket_levels, directory_levels, expand, group
from tasks.rows import worker_id


def _random_paths(seed: int) -> list[str]:
    rnd = random.Random(seed)
    paths = []
    for n in range(150):
        depth = rnd.randint(0, 4)
        parts = [rnd.choice("abcd") + rnd.choice(["", "x", "-1", ".e"]) for _ in range(depth)]
        paths.append("/".join([*parts, f"f{n}"]))
    return paths


def _as_pairs(entries) -> list[tuple]:
    return [(e.path, e.kind, e.size, e.empty, e.link_target) for e in entries]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_ranges_of_a_directory_cover_it_exactly_once(tmp_path, seed):
    root = tmp_path / "tree"
    paths = _random_paths(seed)
    for n, path in enumerate(paths):
        if not any(p.startswith(path + "/") for p in paths):  # not in the way of a directory
            write_file(str(root / path), b"x" * n, 1_700_000_000 * 10**9)
    (root / "empty" / "deeper").mkdir(parents=True)
    os.symlink("a", root / "link-to-a")  # a link to a directory is an entry, never a span
    directory = parse_endpoint(str(root))
    whole = list_directory(directory, must_exist=True)

    shapes = set()
    for target, depth in [(2, 2), (4, 3), (64, 4), (1000, 6)]:
        spans = expand(directory_levels(str(root)), target=target, max_depth=depth)
        shapes |= {s.deep for s in spans}
        assert [s.path for s in spans] == sorted({s.path for s in spans})  # no span twice
        for count in (1, 3, 8):
            listed = []
            for rng in group(spans, count):
                listed += list_directory(directory, must_exist=True, spans=rng.spans)
            assert sorted(_as_pairs(listed)) == _as_pairs(whole), (target, depth, count)
    assert shapes == {True, False}  # cut both ways: deep spans, and shallow ones


def test_the_ranges_of_a_bucket_cover_it_exactly_once(s3_client, bucket):
    keys = {f"pre/{path}" for path in _random_paths(7)}
    keys |= {"pre/m/", "pre/m/inside", "pre/a", "pre/a/under", "pre/top", "outside/x"}
    for key in sorted(keys):
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"1" * len(key))
    prefix = parse_endpoint(f"s3://{bucket}/pre")
    whole = list_bucket(prefix)

    for target, depth in [(2, 2), (5, 3), (64, 4)]:
        spans = expand(bucket_levels(prefix), target=target, max_depth=depth)
        listed = []
        for rng in group(spans, 4):
            listed += list_bucket(prefix, spans=rng.spans)
        assert sorted(_as_pairs(listed)) == sorted(_as_pairs(whole)), (target, depth)
    assert "a" in {c for s in spans for c in s.children}  # the object "a" knows it clashes


def test_a_level_too_large_to_read_cheaply_stays_one_span(tmp_path, monkeypatch):
    root = tmp_path / "tree"
    for n in range(30):
        write_file(str(root / "big" / f"d{n}" / "f"), b"x", 10**18)
    write_file(str(root / "small" / "d" / "f"), b"x", 10**18)
    monkeypatch.setattr(ranges, "LEVEL_ENTRIES", 20)
    spans = expand(directory_levels(str(root)))
    assert Span("big") in spans  # 30 entries: not read, listed whole
    assert Span("small", deep=False, children=("small/d",)) in spans


def _is_deep_listing(method: str, path: str) -> str | None:
    """The prefix a whole-range LIST reads (not the delimited reads that cut the tree, nor the
    one-key probe that the bucket can be listed)."""
    query = parse_qs(urlsplit(path).query)
    if method != "GET" or "list-type" not in query or "delimiter" in query:
        return None
    if query.get("max-keys") == ["1"]:
        return None
    return query.get("prefix", [""])[0]


@pytest.mark.parametrize("direction", ["export", "import"])
def test_the_first_partition_copies_before_the_tree_is_listed(
    tmp_path, s3_client, bucket, reports, direction
):
    """The last range's LIST is held by a proxy until an object has been copied: the task can
    only end if copying starts before the whole tree is listed (else the hold times out, and
    the test says so)."""
    src = tmp_path / "src"
    names = [f"d{n:02d}" for n in range(70)] + ["zz"]  # more top-level spans than `expand` reads
    for name in names:
        write_file(str(src / name / "f"), name.encode(), 1_700_000_000 * 10**9)
    if direction == "import":
        for name in names:
            s3_client.put_object(Bucket=bucket, Key=f"in/{name}/f", Body=name.encode())
    copied, released = threading.Event(), []

    def hold_the_last_range(method: str, path: str) -> None:
        if method in ("PUT", "GET") and "/d0" in path and "list-type" not in path:
            copied.set()  # an object of an early range is being copied
        listed = _is_deep_listing(method, path)
        if listed is not None and listed.endswith("zz/"):
            released.append(copied.wait(timeout=120))

    with FlakyProxy(os.environ["AWS_ENDPOINT_URL"], {}, on_request=hold_the_last_range) as proxy:
        options = {"endpoint_url": proxy.url}
        if direction == "export":
            result = export_data(
                str(src), f"s3://{bucket}/out", destination_options=options, report_dir=reports
            )
        else:
            result = import_data(
                f"s3://{bucket}/in", str(tmp_path / "back"), source_options=options,
                report_dir=reports, workers=1,
            )  # fmt: skip
    assert result.counts["ok"] == len(names)
    assert released and all(released), "the last range was listed before anything was copied"


def test_ranges_are_listed_and_planned_in_parallel_on_the_workers(
    tmp_path, s3_client, bucket, reports
):
    """70 prefixes, in 8 ranges, imported with two workers. A proxy holds the first whole-range
    LIST (and its retries) until another prefix's arrives: each worker process runs one range
    at a time and lists its spans in turn, so the import only goes on if two workers list at
    once. Each range's rejected key is a row
    planned where its range was: two workers."""
    for n in range(70):
        s3_client.put_object(Bucket=bucket, Key=f"p/d{n:02d}/f", Body=b"1")
        s3_client.put_object(Bucket=bucket, Key=f"p/d{n:02d}/bad\\name", Body=b"2")
    gate = TwoAtOnce(_is_deep_listing)  # a worker lists its range's spans one at a time
    with FlakyProxy(os.environ["AWS_ENDPOINT_URL"], {}, on_request=gate) as proxy:
        result = import_data(
            f"s3://{bucket}/p",
            str(tmp_path / "back"),
            source_options={"endpoint_url": proxy.url},
            workers=2,
            report_dir=reports,
        )
    assert gate.together.is_set(), "no two ranges were listed at once"
    assert result.counts == {"ok": 70, "skipped": 0, "rejected": 70, "failed": 0}
    rows = manifest_rows(result)
    planners = {r["worker"] for r in rows.values() if r["status"] == "rejected"}
    assert len(planners) == 2 and worker_id() not in planners, planners
