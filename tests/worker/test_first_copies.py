"""First copies (crr_worker.first_copies): the newest version of a key, new to the sites, is written without the
target's idempotence check, and the check comes back wherever a replica may already be there: a record that may
have been handled before, a try after the first, a version the previous populator announced last."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from crr_worker.config import Backoff
from crr_worker.entries import COMPLETED, PENDING, ReplicationEntry, StatusEntry
from crr_worker.first_copies import announce, last_announced, version_digest
from crr_worker.kafka_io import ensure_topics, make_producer
from crr_worker.metrics import read_lag
from crr_worker.replicator import Replicator
from crr_worker.retry import RetryableError
from crr_worker.rules import parse_replication
from crr_worker.sources.base import Change, VersionInfo
from crr_worker.sources.s3 import S3Source
from crr_worker.targets.aws_s3 import AwsS3Target
from crr_worker.targets.base import ReplicaWritten
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from tests.worker.harness import SITE, log_records, start_pipeline, target_replicas, wait_for
from tests.worker.test_batching import RULES, FakeSource, make_populator
from tests.worker.test_failures import assert_each_version_once, put_many
from tests.worker.test_resync import read_topic
from tests.worker.test_target import entry_for


def leading_populator(versions: dict[str, list[str]]):
    populator = make_populator(FakeSource(versions))
    populator.marks_first_copies = True  # as take_over_first_copies leaves it, with nothing announced before
    return populator


def sent(populator, topic: str) -> list:
    return [event for event in populator.producer.events if event[0] == "send" and event[1] == topic]


def first_copy_flags(populator) -> dict[tuple[str, str], bool]:
    entries = [ReplicationEntry.from_kafka(event[3]) for event in sent(populator, "repl")]
    return {(e.key, e.version_id): e.first_copy for e in entries}


def test_the_active_populator_marks_the_newest_version_of_each_new_key_only():
    populator = leading_populator({"a": ["v1", "v2"], "b": ["w1"]})
    populator.handle([Change("src", "a"), Change("src", "b")])
    assert first_copy_flags(populator) == {("a", "v1"): False, ("a", "v2"): True, ("b", "w1"): True}


def test_a_populator_that_is_not_the_active_one_marks_no_first_copy_and_announces_nothing():
    populator = make_populator(FakeSource({"a": ["v1"]}))  # resync and verify --repair publish like this
    populator.handle([Change("src", "a")])
    assert first_copy_flags(populator) == {("a", "v1"): False}
    assert not sent(populator, "repl-first-copies")


def test_first_copies_are_announced_and_acknowledged_before_their_entries_are_sent():
    populator = leading_populator({"a": ["v1", "v2"], "b": ["w1"]})
    populator.handle([Change("src", "a"), Change("src", "b")])
    events = populator.producer.events
    announced = events.index(sent(populator, "repl-first-copies")[0])
    assert events[announced + 1] == ("flush",)
    assert announced < events.index(sent(populator, "repl")[0])
    digests = sent(populator, "repl-first-copies")[0][3]
    assert sorted([digests[:16], digests[16:]]) == sorted([version_digest("src", "a", "v2"),
                                                           version_digest("src", "b", "w1")])


def test_a_version_the_previous_populator_announced_last_is_published_as_an_ordinary_entry():
    populator = leading_populator({"a": ["v1"], "b": ["w1"]})
    populator.unsure = {version_digest("src", "b", "w1")}
    populator.handle([Change("src", "a"), Change("src", "b")])
    assert first_copy_flags(populator) == {("a", "v1"): True, ("b", "w1"): False}


class _MarkersReplicated(FakeSource):
    def replication(self, bucket):
        rule = dict(RULES["Rules"][0], DeleteMarkerReplication={"Status": "Enabled"})
        return parse_replication(bucket, dict(RULES, Rules=[rule]), "aws1")


def test_a_delete_marker_is_never_a_first_copy():
    populator = make_populator(_MarkersReplicated({}))
    populator.marks_first_copies = True
    marker = VersionInfo("src", "gone", "m1", is_delete_marker=True)
    populator.enqueue(populator._replication("src"), iter([marker]))
    assert first_copy_flags(populator) == {("gone", "m1"): False}


def test_the_scan_marks_the_newest_version_of_each_key_a_first_copy():
    populator = leading_populator({})
    versions = [VersionInfo("src", "a", "v1"), VersionInfo("src", "a", "v2"), VersionInfo("src", "b", "w1")]
    populator.enqueue(populator._replication("src"), iter(versions))
    assert first_copy_flags(populator) == {("a", "v1"): False, ("a", "v2"): True, ("b", "w1"): True}


def test_a_cloudserver_entry_already_known_for_its_site_is_not_a_first_copy():
    populator = leading_populator({})
    entry = ReplicationEntry(bucket="src", key="k", version_id="v1", sites=("aws1",),
                             destination="arn:aws:s3:::t")
    populator.known.learn([StatusEntry(entry, "aws1", PENDING)])
    fresh = replace(entry, key="new")
    populator.handle([Change("src", "k", entry=entry), Change("src", "new", entry=fresh)])
    assert first_copy_flags(populator) == {("k", "v1"): False, ("new", "v1"): True}


def test_a_first_copy_is_one_on_the_replication_topic_only():
    entry = ReplicationEntry(bucket="b", key="k", version_id="v", sites=("s",), first_copy=True)
    assert ReplicationEntry.from_kafka(entry.to_kafka()[1]).first_copy
    assert not StatusEntry.from_kafka(StatusEntry(entry, "s", COMPLETED).to_kafka()[1]).entry.first_copy
    assert not entry.for_sites(("s",)).first_copy  # a replay or a retry: its replica may be there
    assert not entry.checked().first_copy


@pytest.mark.integration
def test_the_last_announcement_is_read_back_through_the_broker(pair):
    config = pair.load()
    ensure_topics(config)
    assert last_announced(config) == set()
    producer = make_producer(config)
    try:
        older = ReplicationEntry(bucket="b", key="old", version_id="v", first_copy=True)
        newer = [ReplicationEntry(bucket="b", key=k, version_id="v", first_copy=True) for k in ("x", "y")]
        announce(producer, config, [older])
        announce(producer, config, newer + [replace(older, key="checked", first_copy=False)])
    finally:
        producer.close(timeout=5)
    assert last_announced(config) == {version_digest("b", "x", "v"), version_digest("b", "y", "v")}


@pytest.mark.integration
def test_a_first_copy_is_written_without_looking_at_the_target(pair):
    config = pair.load()
    source, target = S3Source(config.source, SITE), AwsS3Target(config.site(SITE), config.queue_processor)
    try:
        reply = pair.source.put_object(Bucket=pair.source_bucket, Key="k", Body=b"body")
        entry = entry_for(pair, "k", reply, 4)
        target.replicate(entry, source, threading.Event())
        target.replicate(entry, source, threading.Event())  # checked: found, not written again
        assert len(target_replicas(pair)[entry.version_id]) == 1
        target.replicate(replace(entry, first_copy=True), source, threading.Event())  # not checked: written
        assert len(target_replicas(pair)[entry.version_id]) == 2
    finally:
        target.close()


class _LostReply:
    """A target whose first write is done but whose reply is lost, as a timeout after the server wrote it."""

    def __init__(self, target):
        self.target, self.tries = target, []

    def replicate(self, entry, source, stop):
        self.tries.append(entry.first_copy)
        written = self.target.replicate(entry, source, stop)
        if len(self.tries) == 1:
            raise RetryableError("the reply was lost")
        return written

    def probe(self, entry):
        self.target.probe(entry)

    def destination(self, entry):
        return self.target.destination(entry)


@pytest.mark.integration
def test_the_try_after_a_lost_reply_of_a_first_copy_checks_the_target(pair):
    config = pair.load()
    quick = Backoff(min_ms=10, max_ms=50)
    config = replace(config, sites=tuple(replace(s, retry=replace(s.retry, max_retries=3, backoff=quick))
                                         for s in config.sites))
    source, target = S3Source(config.source, SITE), AwsS3Target(config.site(SITE), config.queue_processor)
    try:
        reply = pair.source.put_object(Bucket=pair.source_bucket, Key="k", Body=b"body")
        lossy = _LostReply(target)
        replicator = Replicator(config, SITE, source, lossy, threading.Event())
        status = replicator.replicate(replace(entry_for(pair, "k", reply, 4), first_copy=True), threading.Event())
        assert status.status == COMPLETED and lossy.tries == [True, False]
        assert len(target_replicas(pair)[reply["VersionId"]]) == 1
    finally:
        target.close()


def _stopped_counts(proc) -> dict:
    return [r for r in log_records(proc) if r.get("message") == "processor stopped"][-1]


def _rewind_group(pair) -> None:
    """Commit offset 0 on every partition for the site's group (its processors stopped): all is delivered again."""
    config = pair.load()
    consumer = KafkaConsumer(bootstrap_servers=pair.sandbox.kafka_bootstrap,
                             group_id=config.queue_processor.group_id(SITE), enable_auto_commit=False)
    try:
        partitions = [TopicPartition(config.topic, p) for p in consumer.partitions_for_topic(config.topic)]
        consumer.assign(partitions)
        consumer.commit({p: OffsetAndMetadata(0, "", -1) for p in partitions})
    finally:
        consumer.close(autocommit=False)


@pytest.mark.integration
def test_the_scan_publishes_new_keys_as_first_copies_and_redelivered_ones_are_checked(pair_factory):
    pair = pair_factory(notifications=False)
    put_many(pair, 12)
    (processor,) = start_pipeline(pair)
    pair.wait_all_done(120)
    assert pair.workers.terminate(processor) == 0
    config = pair.load()
    published = [ReplicationEntry.from_kafka(m.value) for m in read_topic(pair.sandbox.kafka_bootstrap, config.topic)]
    assert len(published) == 12 and all(e.first_copy for e in published)

    _rewind_group(pair)
    again = pair.workers.start("processor", "--site", SITE, name="processor-again")
    wait_for(lambda: _offsets_done(pair), 90, 0.5, what="the records delivered again, done and committed")
    assert pair.workers.terminate(again) == 0
    counts = _stopped_counts(again)
    assert counts["skipped"] >= 12 and (counts["first_copies"], counts["completed"]) == (0, 0)
    assert_each_version_once(pair)


def _offsets_done(pair) -> bool:
    """Whether the site's group committed the end of every partition again."""
    admin = KafkaAdminClient(bootstrap_servers=pair.sandbox.kafka_bootstrap)
    try:
        return all(lag.lag == 0 for lag in read_lag(admin, pair.load()))
    finally:
        admin.close()


class _Recording:
    """A target that records whether each write it is asked for is a first copy."""

    def __init__(self):
        self.first_copies = []

    def replicate(self, entry, source, stop):
        self.first_copies.append(entry.first_copy)
        return ReplicaWritten("t1")

    def probe(self, entry):
        pass


@pytest.mark.parametrize("first_delivery", [True, False])
def test_a_first_copy_reaches_the_target_as_one_only_on_a_first_delivery(first_delivery):
    config = make_populator(FakeSource({})).config
    target = _Recording()
    replicator = Replicator(config, "aws1", None, target, threading.Event())
    entry = ReplicationEntry(bucket="src", key="k", version_id="v", sites=("aws1",), first_copy=True)
    status = replicator.process(entry.to_kafka()[1], "partition 0 offset 0", threading.Event(), first_delivery)
    assert status.status == COMPLETED and target.first_copies == [first_delivery]
    assert replicator.counts["first_copies"] == int(first_delivery)
