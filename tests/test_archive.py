"""One set of archive storage classes, which import's plan and conversion's plan both apply."""

from __future__ import annotations

import pytest

from hns.plan import SourceObject, plan_conversion
from tasks.archive import ARCHIVE_CLASSES
from tasks.listing import Entry
from tasks.plan import plan_import
from tasks.rows import ReasonCode, Status


@pytest.mark.parametrize("storage_class", ["GLACIER", "ARCHIVE", "DEEP_ARCHIVE", "ColdArchive"])
def test_import_and_conversion_both_refuse_an_archived_object(storage_class):
    assert storage_class in ARCHIVE_CLASSES
    item = plan_import([Entry("f", "object", 1, storage_class=storage_class)], [])[0]
    assert (item.action, item.reason_code) == ("reject", ReasonCode.ARCHIVED)
    decision = plan_conversion([SourceObject("f", 1, storage_class=storage_class)], 1).decisions[0]
    assert (decision.status, decision.reason_code) == (Status.FAILED, ReasonCode.ARCHIVED)


@pytest.mark.parametrize("storage_class", [None, "STANDARD", "GLACIER_IR", "STANDARD_IA"])
def test_a_class_read_at_once_is_not_archived(storage_class):
    assert plan_import([Entry("f", "object", 1, storage_class=storage_class)], [])[0].action == (
        "copy"
    )
    decision = plan_conversion([SourceObject("f", 1, storage_class=storage_class)], 1).decisions[0]
    assert decision.status == Status.OK
