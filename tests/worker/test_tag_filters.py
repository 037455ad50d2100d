"""Rules with tag filters, at the populator: moto forgets a rule's filter when it answers GetBucketReplication
(ARCHITECTURE, moto quirks), so this runs on the populator with a recording source instead of the sandbox."""

from __future__ import annotations

from crr_worker.entries import ReplicationEntry
from crr_worker.rules import parse_replication
from crr_worker.sources.base import Change

from tests.worker.test_batching import FakeSource, make_populator

TAGGED_RULES = {"Role": "r", "Rules": [
    {"ID": "tagged", "Status": "Enabled", "Destination": {"Bucket": "arn:aws:s3:::t"},
     "Filter": {"And": {"Prefix": "docs/", "Tags": [{"Key": "replicate", "Value": "yes"}]}}},
]}


class TaggedSource(FakeSource):
    def __init__(self, versions: dict[str, list[str]], tags: dict[str, dict]):
        super().__init__(versions)
        self.tags = tags
        self.tag_reads: list[str] = []

    def replication(self, bucket):
        return parse_replication(bucket, TAGGED_RULES, "aws1")

    def version_tags(self, bucket, key, version_id):
        self.tag_reads.append(version_id)
        return self.tags.get(version_id, {})


def test_only_versions_carrying_the_rules_tags_are_enqueued_and_each_is_read_once():
    source = TaggedSource({"docs/a": ["a1", "a2"], "docs/b": ["b1"], "logs/c": ["c1"]},
                          tags={"a2": {"replicate": "yes"}, "b1": {"replicate": "no"}})
    populator = make_populator(source)
    changes = [Change("src", "docs/a"), Change("src", "docs/b"), Change("src", "logs/c")]

    assert populator.handle(changes) == 1
    sent = [ReplicationEntry.from_kafka(e[3]) for e in populator.producer.events if e[:2] == ("send", "repl")]
    assert [e.version_id for e in sent] == ["a2"]
    assert sorted(source.tag_reads) == ["a1", "a2", "b1"]  # logs/c: no rule covers it, no request
    assert source.listed == [["docs/a", "docs/b"]]

    assert populator.handle(changes) == 0  # the next feed or scan sees the same versions
    assert sorted(source.tag_reads) == ["a1", "a2", "b1"]
