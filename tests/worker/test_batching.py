"""The batch paths, without the sandbox: the populator publishes a notification batch with one flush per topic,
the s3 source lists a batch's keys together, the processor publishes finished outcomes together and counts a
record done only once Kafka acknowledged its outcome, and a GET saying "no tags" saves the tagging request."""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import pytest
from crr_worker.config import parse_config
from crr_worker.entries import COMPLETED, PENDING, ReplicationEntry, StatusEntry
from crr_worker.ledger import LedgerUnavailable
from crr_worker.populator import Populator
from crr_worker.processor import Processor, _PartitionProgress, _Record
from crr_worker.rules import parse_replication
from crr_worker.sources.base import Change, SourceObject, VersionInfo
from crr_worker.sources.s3 import S3Source, parse_notification
from crr_worker.targets.aws_s3 import _tags
from kafka import TopicPartition

RULES = {"Role": "r", "Rules": [{"Filter": {"Prefix": ""}, "Status": "Enabled",
                                 "Destination": {"Bucket": "arn:aws:s3:::t"}}]}


class FakeFuture:
    def __init__(self, error: Exception | None = None, done: bool = True):
        self.error, self.is_done = error, done

    def get(self, timeout=None):
        if self.error is not None:
            raise self.error
        return "metadata"


class FakeProducer:
    """Records sends and flushes in order; `failing` values get a failed future."""

    def __init__(self, failing: tuple[bytes, ...] = ()):
        self.events: list[tuple] = []
        self.failing = set(failing)

    def send(self, topic, key=None, value=None):
        self.events.append(("send", topic, key, value))
        return FakeFuture(RuntimeError("refused") if value in self.failing else None)

    def flush(self, timeout=None):
        self.events.append(("flush",))

    def close(self, timeout=None):
        self.events.append(("close",))


class FakeSource:
    def __init__(self, versions: dict[str, list[str]]):
        self.versions = versions
        self.listed: list[list[str]] = []

    def replication(self, bucket):
        return parse_replication(bucket, RULES, "aws1")

    def list_keys_versions(self, bucket, keys):
        self.listed.append(list(keys))
        return {key: [VersionInfo(bucket, key, v) for v in self.versions[key]] for key in keys}


def make_populator(source) -> Populator:
    config = parse_config({
        "kafka": {"hosts": "127.0.0.1:9092"},
        "extensions": {"replication": {
            "topic": "repl", "replicationStatusTopic": "status",
            "source": {"buckets": ["src"]},
            "destination": {"bootstrapList": [{"site": "aws1", "type": "aws_s3"}]},
        }},
    })
    populator = Populator(config, source, threading.Event())
    populator.producer = FakeProducer()
    return populator


def test_notification_keeps_the_events_version_id_as_a_hint():
    body = json.dumps({"Records": [{"eventName": "ObjectCreated:Put", "s3": {
        "bucket": {"name": "b"}, "object": {"key": "k", "versionId": "v9"}}}]})
    (change,) = parse_notification(body)
    assert (change.key, change.version_id, change.version) == ("k", "v9", None)


def test_a_notification_batch_is_listed_once_and_published_with_one_flush_per_topic():
    source = FakeSource({"a": ["a1", "a2"], "b": ["b1"], "c": ["c1"]})
    populator = make_populator(source)
    changes = [Change("src", "a"), Change("src", "b"), Change("src", "a"), Change("src", "c")]
    assert populator.handle(changes) == 4
    assert source.listed == [["a", "b", "c"]]
    events = populator.producer.events
    kinds = [(e[0], e[1]) if e[0] == "send" else ("flush",) for e in events]
    assert kinds == [("send", "repl")] * 4 + [("flush",)] + [("send", "status")] * 4 + [("flush",)]
    sent = [ReplicationEntry.from_kafka(e[3]).version_id for e in events[:4]]
    assert sent == ["a1", "a2", "b1", "c1"]  # versions of one key oldest first
    assert ("aws1", "src", "a", "a2") in populator.known


def test_an_event_whose_version_is_already_known_is_not_listed_again():
    source = FakeSource({"a": ["a1"], "b": ["b1"]})
    populator = make_populator(source)
    populator.known.learn([StatusEntry(ReplicationEntry(bucket="src", key="a", version_id="a1"), "aws1", PENDING)])
    assert populator.handle([Change("src", "a", version_id="a1"), Change("src", "b", version_id="b1")]) == 1
    assert source.listed == [["b"]]


class FakeS3:
    """Versions under prefixes; a listing holding more than `page` keys is truncated."""

    def __init__(self, keys: list[str], page: int = 1000):
        self.keys, self.page = keys, page
        self.calls: list[dict] = []

    def list_object_versions(self, **arguments):
        self.calls.append(arguments)
        keys = [k for k in self.keys if k.startswith(arguments.get("Prefix", ""))]
        shared = "MaxKeys" in arguments
        return {"IsTruncated": shared and len(keys) > self.page, "Versions": [
            {"Key": key, "VersionId": key + "-v", "IsLatest": True} for key in keys[:self.page]]}

    def get_paginator(self, name):
        return SimpleNamespace(paginate=lambda **arguments: [self.list_object_versions(**arguments)])


def make_source(s3) -> S3Source:
    source = S3Source.__new__(S3Source)
    source.s3, source.list_pool = s3, None
    return source


def ids(found):
    return {k: [v.version_id for v in vs] for k, vs in found.items()}


def test_keys_of_a_batch_are_listed_with_one_request_when_their_common_prefix_fits_a_page():
    s3 = FakeS3(["p/1", "p/2", "p/3", "q"])
    found = make_source(s3).list_keys_versions("src", ["p/3", "p/1"])
    assert [c.get("Prefix") for c in s3.calls] == ["p/"]
    assert ids(found) == {"p/1": ["p/1-v"], "p/3": ["p/3-v"]}


def test_an_overflowing_common_prefix_is_split_by_its_next_character_then_listed_key_by_key():
    s3 = FakeS3(["k/0%02d" % i for i in range(10)] + ["k/1%02d" % i for i in range(3)] + ["x"], page=5)
    found = make_source(s3).list_keys_versions("src", ["k/003", "k/004", "k/100", "k/102", "x"])
    assert ids(found) == {k: [k + "-v"] for k in ("k/003", "k/004", "k/100", "k/102", "x")}
    shared = [c["Prefix"] for c in s3.calls if "MaxKeys" in c]
    assert shared == ["", "k/", "k/00", "k/10"]  # "k/00" holds 10 > 5: its keys are listed one by one
    assert sorted(c["Prefix"] for c in s3.calls if "MaxKeys" not in c) == ["k/003", "k/004", "x"]


def make_processor(producer) -> Processor:
    processor = Processor.__new__(Processor)
    processor.config = SimpleNamespace(status_topic="status")
    processor.stop = threading.Event()
    processor.producer = producer
    processor.unpublished, processor.publish_after = [], 0.0
    processor.progress, processor.waiting, processor.running_keys = {}, {}, set()
    processor.holding, processor.in_flight = False, 0
    return processor


def test_outcomes_are_published_together_and_only_acknowledged_ones_become_committable():
    partition = TopicPartition("repl", 0)
    statuses = [StatusEntry(ReplicationEntry(bucket="src", key=k, version_id="v", sites=("aws1",)), "aws1",
                            COMPLETED) for k in ("a", "b")]
    producer = FakeProducer(failing=(statuses[1].to_kafka()[1],))
    processor = make_processor(producer)
    progress = processor.progress[partition] = _PartitionProgress()
    for offset, status in enumerate(statuses):
        progress.take(offset)
        record = _Record(partition, offset, status.to_kafka()[0], b"")
        processor.running_keys.add(record.key)
        processor.in_flight += 1
        processor.unpublished.append((record, status))
    processor._publish_outcomes()
    assert [e[0] for e in producer.events] == ["send", "send", "flush"]
    assert progress.outstanding == {1} and progress.committable() == 1  # b's outcome was refused: not done
    assert len(processor.unpublished) == 1 and processor.in_flight == 1
    producer.failing.clear()
    processor.publish_after = 0.0
    processor._publish_outcomes()
    assert progress.outstanding == set() and progress.committable() == 2 and processor.in_flight == 0


def test_an_outcome_refused_while_stopping_is_abandoned_not_counted_done():
    partition = TopicPartition("repl", 0)
    status = StatusEntry(ReplicationEntry(bucket="src", key="a", version_id="v", sites=("aws1",)), "aws1", PENDING)
    processor = make_processor(FakeProducer(failing=(status.to_kafka()[1],)))
    progress = processor.progress[partition] = _PartitionProgress()
    progress.take(0)
    processor.in_flight = 1
    processor.unpublished.append((_Record(partition, 0, b"src/a", b""), status))
    processor.stop.set()
    processor._publish_outcomes()
    assert processor.in_flight == 0 and not processor.unpublished and progress.committable() == 0


def test_the_tagging_request_is_skipped_only_when_the_get_said_there_are_no_tags():
    asked = []
    source = SimpleNamespace(version_tags=lambda b, k, v: asked.append(k) or {"t": "1"})
    entry = ReplicationEntry(bucket="src", key="k", version_id="v", sites=("aws1",))

    def opened(count):
        return SourceObject(body=None, size=0, etag="", headers={}, metadata={}, tag_count=count)

    assert _tags(source, entry, opened(0)) == {} and asked == []
    assert _tags(source, entry, opened(2)) == {"t": "1"} and _tags(source, entry, opened(None)) == {"t": "1"}
    assert asked == ["k", "k"]


class LeadershipFor:
    """Leads for `checks` checks, then has lost it (a standby took over)."""

    def __init__(self, checks: int):
        self.left = checks

    def check(self) -> bool:
        self.left -= 1
        return self.left >= 0


def test_a_populator_that_loses_its_leadership_mid_listing_publishes_nothing_more(monkeypatch):
    monkeypatch.setattr("crr_worker.populator.FLUSH_EVERY", 4)
    populator = make_populator(FakeSource({}))
    populator.leadership = LeadershipFor(checks=6)
    replication = parse_replication("src", RULES, "aws1")
    listed = [VersionInfo("src", "k%d" % i, "v%d" % i) for i in range(10)]
    assert populator.enqueue(replication, listed) == 4
    sent = [ReplicationEntry.from_kafka(e[3]).key for e in populator.producer.events if e[:2] == ("send", "repl")]
    assert sent == ["k0", "k1", "k2", "k3"]  # the first flush; k4 and k5, taken after it, are left to the leader


def test_exact_versions_of_one_key_in_one_batch_are_all_published():
    populator = make_populator(FakeSource({}))
    changes = [Change("src", "k", version=VersionInfo("src", "k", v)) for v in ("v1", "v2", "v3")]
    assert populator.handle(changes) == 3
    events = populator.producer.events
    sent = [ReplicationEntry.from_kafka(e[3]).version_id for e in events if e[:2] == ("send", "repl")]
    assert sent == ["v1", "v2", "v3"]


def test_entries_a_source_decided_are_published_as_they_come_without_reading_rules():
    class NoRules(FakeSource):
        def replication(self, bucket):
            raise AssertionError("a decided entry needs no rules")

    populator = make_populator(NoRules({}))
    entry = ReplicationEntry(bucket="src", key="k", version_id="v1", sites=("aws1",))
    assert populator.handle([Change("src", "k", entry=entry), Change("src", "k", entry=entry)]) == 2


def test_the_versions_of_one_key_stop_being_listed_at_the_first_page_past_it():
    """`photos` under which `photos/...` holds many keys: its versions are all on the first page."""
    pages = [[("photos", "v2"), ("photos", "v1"), ("photos/0", "a")], [("photos/1", "b")], [("photos/2", "c")]]
    fetched = []

    def paginate(**arguments):
        for page in pages:
            fetched.append(page)
            yield {"Versions": [{"Key": k, "VersionId": v, "IsLatest": False} for k, v in page]}

    source = make_source(SimpleNamespace(get_paginator=lambda name: SimpleNamespace(paginate=paginate)))
    assert [v.version_id for v in source.list_versions("src", "photos")] == ["v1", "v2"]
    assert fetched == pages[:1]


class _Leading:
    def check(self) -> bool:
        return True

    def took_over(self) -> bool:
        return False

    def close(self) -> None:
        pass


@pytest.mark.parametrize("stopping", [True, False])
def test_a_ledger_read_cut_short_by_the_stop_is_a_clean_stop_and_otherwise_an_error(monkeypatch, stopping):
    populator = make_populator(FakeSource({}))

    def ledger_cut_short():
        if stopping:
            populator.stop.set()  # SIGTERM while the ledger is read at start
        raise LedgerUnavailable("the ledger topic was not read to its end")

    monkeypatch.setattr("crr_worker.populator.ensure_topics", lambda config: None)
    monkeypatch.setattr("crr_worker.populator.make_producer", lambda config: FakeProducer())
    monkeypatch.setattr("crr_worker.populator.Leadership", lambda config, stop: _Leading())
    monkeypatch.setattr(populator, "_learn_from_ledger", ledger_cut_short)  # read first, at start
    if stopping:
        populator.run()
    else:
        with pytest.raises(LedgerUnavailable):
            populator.run()
