"""Rules with tag filters, at the populator: moto forgets a rule's filter when it answers GetBucketReplication
(ARCHITECTURE, moto quirks), so this runs on the populator with a recording source instead of the sandbox."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from crr_worker.entries import ReplicationEntry
from crr_worker.populator import PopulatorError
from crr_worker.rules import parse_replication
from crr_worker.sources.base import Change

from tests.worker.test_batching import FakeSource, make_populator

TAG_ONLY = {"Role": "r", "Rules": [
    {"ID": "tagged", "Status": "Enabled", "Destination": {"Bucket": "arn:aws:s3:::t"},
     "Filter": {"And": {"Prefix": "docs/", "Tags": [{"Key": "replicate", "Value": "yes"}]}}},
]}
TAGGED_OVER_ALL = {"Role": "r", "Rules": [
    {"ID": "tagged", "Priority": 2, "Status": "Enabled", "Destination": {"Bucket": "t2", "StorageClass": "aws2"},
     "Filter": {"Tag": {"Key": "replicate", "Value": "yes"}}},
    {"ID": "all", "Priority": 1, "Status": "Enabled", "Destination": {"Bucket": "t1", "StorageClass": "aws1"},
     "Filter": {"Prefix": ""}},
]}


class TaggedSource(FakeSource):
    def __init__(self, versions: dict[str, list[str]], tags: dict[str, dict], rules: dict = TAG_ONLY):
        super().__init__(versions)
        self.tags, self.rules = tags, rules
        self.tag_reads: list[str] = []

    def replication(self, bucket):
        return parse_replication(bucket, self.rules, "aws1")

    def version_tags(self, bucket, key, version_id):
        self.tag_reads.append(version_id)
        found = self.tags.get(version_id, {})
        if isinstance(found, Exception):
            raise found
        return found


def sent_entries(populator) -> list[ReplicationEntry]:
    return [ReplicationEntry.from_kafka(e[3]) for e in populator.producer.events if e[:2] == ("send", "repl")]


def test_only_versions_carrying_the_rules_tags_are_enqueued_and_each_is_read_once():
    source = TaggedSource({"docs/a": ["a1", "a2"], "docs/b": ["b1"], "logs/c": ["c1"]},
                          tags={"a2": {"replicate": "yes"}, "b1": {"replicate": "no"}})
    populator = make_populator(source)
    changes = [Change("src", "docs/a"), Change("src", "docs/b"), Change("src", "logs/c")]

    assert populator.handle(changes) == 1
    assert [e.version_id for e in sent_entries(populator)] == ["a2"]
    assert sorted(source.tag_reads) == ["a1", "a2", "b1"]  # logs/c: no rule covers it, no request
    assert source.listed == [["docs/a", "docs/b"]]

    assert populator.handle(changes) == 0  # the next feed or scan sees the same versions
    assert sorted(source.tag_reads) == ["a1", "a2", "b1"]


def test_changed_rules_are_applied_to_versions_decided_before():
    source = TaggedSource({"docs/a": ["a1"]}, tags={})
    populator = make_populator(source)
    assert populator.handle([Change("src", "docs/a")]) == 0
    source.rules = TAGGED_OVER_ALL
    populator.rules.clear()  # as when RULES_TTL_S has passed or a scan re-reads them
    assert populator.handle([Change("src", "docs/a")]) == 1
    assert sent_entries(populator)[0].sites == ("aws1",)


def test_a_version_deleted_since_its_listing_counts_as_untagged():
    gone = ClientError({"Error": {"Code": "NoSuchVersion", "Message": "gone"}}, "GetObjectTagging")
    source = TaggedSource({"k": ["v1"]}, tags={"v1": gone}, rules=TAGGED_OVER_ALL)
    populator = make_populator(source)
    assert populator.handle([Change("src", "k")]) == 1
    assert sent_entries(populator)[0].sites == ("aws1",)


def test_tags_that_cannot_be_read_stop_the_populator_naming_the_permission():
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetObjectTagging")
    source = TaggedSource({"docs/a": ["a1"]}, tags={"a1": denied})
    populator = make_populator(source)
    with pytest.raises(PopulatorError, match="docs/a version a1.*AccessDenied.*s3:GetObjectVersionTagging"):
        populator.handle([Change("src", "docs/a")])
    assert populator.producer.events == []
