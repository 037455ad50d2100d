"""Unit specifications of the worker's pure parts: entries, status precedence, retries, rules, notifications."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from crr_worker.config import Backoff, RetryPolicy
from crr_worker.entries import COMPLETED, FAILED, PENDING, ReplicationEntry, StatusEntry, key_digest
from crr_worker.ledger import KnownVersions, apply_standings
from crr_worker.retry import ReplicationFailed, Stopped, call_with_retries, is_retryable
from crr_worker.rules import parse_replication
from crr_worker.sources.s3 import _page_versions, parse_notification
from kafka.structs import TopicPartition

ENTRY = ReplicationEntry(bucket="src", key="a b/ü", version_id="v1", size=3, etag="abc", sites=("aws1",),
                         destination="arn:aws:s3:::tgt", role="arn:aws:iam::1:role/r", storage_class="aws1",
                         enqueued_at=1000)


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "PutObject")


def test_replication_entry_has_backbeats_shape_and_round_trips():
    key, value = ENTRY.to_kafka()
    envelope = json.loads(value)
    assert key == b"src/a b/\xc3\xbc"
    assert envelope["type"] == "put" and envelope["bucket"] == "src" and envelope["key"] == "a b/ü\u0000v1"
    info = json.loads(envelope["value"])["replicationInfo"]
    assert info["status"] == PENDING and info["backends"] == [{"site": "aws1", "status": PENDING,
                                                                "dataStoreVersionId": ""}]
    assert info["destination"] == "arn:aws:s3:::tgt" and info["storageClass"] == "aws1"
    assert ReplicationEntry.from_kafka(value) == ENTRY


def test_status_entry_round_trips_with_site_and_target_version():
    status = StatusEntry(ENTRY, "aws1", COMPLETED, target_version_id="t1", updated_at=5)
    value = status.to_kafka()[1]
    assert json.loads(value)["site"] == "aws1" and "replayCount" in json.loads(value)
    assert StatusEntry.from_kafka(value) == status


def test_an_outcome_is_not_overwritten_by_the_late_pending_of_the_same_generation():
    done = StatusEntry(ENTRY, "aws1", COMPLETED, updated_at=10)
    assert not StatusEntry(ENTRY, "aws1", PENDING, updated_at=20).supersedes(done)
    assert done.supersedes(StatusEntry(ENTRY, "aws1", PENDING, updated_at=20))


def test_within_a_generation_completed_beats_a_later_failure_and_a_later_outcome_of_one_kind_wins():
    done = StatusEntry(ENTRY, "aws1", COMPLETED, target_version_id="t1", updated_at=10)
    failed_later = StatusEntry(ENTRY, "aws1", FAILED, reason="NoSuchUpload", updated_at=20)
    assert not failed_later.supersedes(done) and done.supersedes(failed_later)
    assert StatusEntry(ENTRY, "aws1", COMPLETED, target_version_id="t2", updated_at=30).supersedes(done)
    assert StatusEntry(ENTRY, "aws1", FAILED, reason="y", updated_at=30).supersedes(failed_later)
    assert not StatusEntry(ENTRY, "aws1", PENDING, updated_at=30).supersedes(StatusEntry(ENTRY, "aws1", PENDING))


def test_a_retry_generation_supersedes_an_earlier_failure():
    failed = StatusEntry(ENTRY, "aws1", FAILED, reason="x", updated_at=10)
    retried = StatusEntry(ENTRY.for_sites(("aws1",)), "aws1", PENDING)
    assert retried.supersedes(failed) and retried.entry.replay_count == 1


def test_standings_follow_the_ledger_records_skipping_what_is_not_a_status_and_honouring_tombstones():
    pending = StatusEntry(ENTRY, "aws1", PENDING, updated_at=10)
    done = StatusEntry(ENTRY, "aws1", COMPLETED, target_version_id="t1", updated_at=20)
    other = StatusEntry(replace(ENTRY, version_id="v2"), "aws1", PENDING, updated_at=10)
    standings = {}
    apply_standings(standings, [(pending.ledger_key, pending.to_kafka()[1]), (b"junk", b"not a status"),
                                (other.ledger_key, other.to_kafka()[1])])
    assert standings == {key_digest(pending.ledger_key): pending.standing, key_digest(other.ledger_key): other.standing}
    apply_standings(standings, [(done.ledger_key, done.to_kafka()[1]), (other.ledger_key, None)])
    assert standings == {key_digest(done.ledger_key): done.standing}
    assert not pending.standing.outranks(standings[key_digest(done.ledger_key)])


def test_statuses_read_from_kafka_share_the_strings_every_status_of_a_bucket_repeats():
    first, second = (StatusEntry.from_kafka(StatusEntry(replace(ENTRY, version_id=v), "aws1", PENDING).to_kafka()[1])
                     for v in ("v1", "v2"))
    assert first.entry.sites is second.entry.sites and first.entry.destination is second.entry.destination
    assert first.entry.role is second.entry.role and first.site is second.site


def test_known_versions_hold_each_site_and_version_apart():
    known = KnownVersions()
    known.learn([StatusEntry(replace(ENTRY, key="a"), "aws1", PENDING)])
    known.learn([StatusEntry(replace(ENTRY, key="a"), "aws2", COMPLETED),
                 StatusEntry(replace(ENTRY, key="a\u0000v", version_id="1"), "aws1", FAILED)])
    assert ("aws1", "src", "a", "v1") in known and ("aws2", "src", "a", "v1") in known
    assert ("aws1", "src", "a", "v2") not in known and ("aws1", "src", "a\u0000", "v1") not in known
    assert len(known) == 3


POLICY = RetryPolicy(max_retries=3, timeout_s=60, backoff=Backoff(min_ms=1, max_ms=2, jitter=0.1, factor=2))


@pytest.mark.parametrize("error", [client_error("SlowDown", 503), client_error("InternalError", 500),
                                   client_error("RequestTimeout", 400), EndpointConnectionError(endpoint_url="x")])
def test_throttling_5xx_and_connection_errors_are_retryable(error):
    assert is_retryable(error)


@pytest.mark.parametrize("error", [client_error("AccessDenied", 403), client_error("NoSuchBucket", 404),
                                   client_error("InvalidAccessKeyId", 403)])
def test_access_and_missing_bucket_errors_are_not_retryable(error):
    assert not is_retryable(error)


def test_retryable_error_is_retried_until_success():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise client_error("SlowDown", 503)
        return "ok"

    assert call_with_retries(flaky, POLICY, threading.Event(), random.Random(1)) == "ok" and len(calls) == 3


def test_budget_spent_fails_with_the_last_reason():
    def always():
        raise client_error("SlowDown", 503)

    with pytest.raises(ReplicationFailed) as failure:
        call_with_retries(always, POLICY, threading.Event(), random.Random(1))
    assert "SlowDown" in failure.value.reason and failure.value.tries == 3


def test_non_retryable_error_fails_at_once():
    calls = []

    def denied():
        calls.append(1)
        raise client_error("AccessDenied", 403)

    with pytest.raises(ReplicationFailed) as failure:
        call_with_retries(denied, POLICY, threading.Event())
    assert len(calls) == 1 and "AccessDenied" in failure.value.reason


def test_stop_abandons_instead_of_failing():
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        call_with_retries(lambda: "never", POLICY, stop)


def test_backoff_grows_by_factor_and_is_capped():
    from crr_worker.retry import Backoff as Delays

    delays = Delays(RetryPolicy(9, 900, Backoff(1000, 4000, 0.0, 2.0)), random.Random(0))
    assert [delays.delay_s(n) for n in range(4)] == [1.0, 2.0, 4.0, 4.0]


def test_rule_storage_class_names_sites_and_prefix_selects_keys():
    replication = parse_replication("src", {"Role": "r", "Rules": [
        {"ID": "logs", "Prefix": "logs/", "Status": "Enabled",
         "Destination": {"Bucket": "arn:aws:s3:::t", "StorageClass": "aws1,aws2"}},
        {"ID": "off", "Filter": {"Prefix": "tmp/"}, "Status": "Disabled", "Destination": {"Bucket": "x"}},
    ]}, default_site="aws1")
    assert replication.rule_for("logs/a").sites == ("aws1", "aws2")
    assert replication.rule_for("tmp/a") is None and replication.rule_for("other") is None


def test_rule_without_storage_class_goes_to_the_default_site():
    replication = parse_replication("src", {"Rules": [{"Filter": {"Prefix": ""}, "Status": "Enabled",
                                                       "Destination": {"Bucket": "arn:aws:s3:::t"}}]}, "aws1")
    assert replication.rule_for("k").sites == ("aws1",)


TAG_RULES = {"Role": "r", "Rules": [
    {"ID": "gold", "Priority": 2, "Status": "Enabled", "Destination": {"Bucket": "t", "StorageClass": "aws2"},
     "Filter": {"And": {"Prefix": "docs/", "Tags": [{"Key": "tier", "Value": "gold"}, {"Key": "keep", "Value": "1"}]}}},
    {"ID": "tagged", "Priority": 1, "Status": "Enabled", "Destination": {"Bucket": "t", "StorageClass": "aws1"},
     "Filter": {"Tag": {"Key": "replicate", "Value": "yes"}}},
]}


def test_tag_filtered_rules_apply_only_to_versions_carrying_all_their_tags():
    replication = parse_replication("src", TAG_RULES, "aws1")
    assert replication.rule_for("docs/a", lambda: {"tier": "gold", "keep": "1", "x": "y"}).rule_id == "gold"
    assert replication.rule_for("docs/a", lambda: {"tier": "gold", "replicate": "yes"}).rule_id == "tagged"
    assert replication.rule_for("other", lambda: {"tier": "gold", "keep": "1"}) is None
    assert replication.rule_for("other", lambda: {"replicate": "no"}) is None
    assert replication.rule_for("docs/a") is None  # no tags to read: a delete marker


def test_tags_are_read_only_when_a_tag_filtered_rule_covers_the_key():
    reads = []

    def read_tags():
        reads.append(1)
        return {}

    replication = parse_replication("src", {"Rules": [
        {"ID": "tagged", "Status": "Enabled", "Destination": {"Bucket": "t"},
         "Filter": {"And": {"Prefix": "docs/", "Tags": [{"Key": "a", "Value": "b"}]}}},
        {"ID": "all", "Prefix": "", "Status": "Enabled", "Destination": {"Bucket": "t"}},
    ]}, "aws1")
    assert replication.rule_for("logs/x", read_tags).rule_id == "all"
    assert reads == []
    assert replication.rule_for("docs/x", read_tags).rule_id == "all"
    assert reads == [1]
    assert replication.sites_for("docs/x") == {"aws1"}

    outranked = parse_replication("src", {"Rules": [
        {"ID": "tagged", "Priority": 1, "Status": "Enabled", "Destination": {"Bucket": "t"},
         "Filter": {"Tag": {"Key": "a", "Value": "b"}}},
        {"ID": "first", "Priority": 5, "Status": "Enabled", "Destination": {"Bucket": "t"}, "Filter": {"Prefix": ""}},
    ]}, "aws1")
    assert outranked.rule_for("docs/x", read_tags).rule_id == "first"
    assert reads == [1]  # the untagged rule wins whatever the tags: none read


def test_notification_keys_are_url_decoded_and_test_events_ignored():
    body = json.dumps({"Records": [{"eventName": "ObjectCreated:Put", "s3": {
        "bucket": {"name": "b"}, "object": {"key": "a+b%2Bc%25%2F%C3%BC%2F%2Fx"}}}]})
    (change,) = parse_notification(body)
    assert (change.bucket, change.key) == ("b", "a b+c%/ü//x")
    assert parse_notification(json.dumps({"Event": "s3:TestEvent"})) == []
    assert parse_notification("not json") == []


def test_listing_page_yields_markers_and_versions_of_a_key_newest_first():
    t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    page = {"Versions": [{"Key": "k", "VersionId": "v2", "LastModified": t, "IsLatest": False},
                         {"Key": "k", "VersionId": "v1", "LastModified": t.replace(minute=0, second=0)}],
            "DeleteMarkers": [{"Key": "k", "VersionId": "dm", "LastModified": t, "IsLatest": True}]}
    assert [v.version_id for v in _page_versions("b", page)] == ["dm", "v2", "v1"]


def test_a_request_still_running_when_the_api_closes_gets_an_error_not_a_new_producer():
    from crr_worker.api import Api
    from crr_worker.config import parse_config

    config = parse_config({"kafka": {"hosts": "127.0.0.1:9"}, "extensions": {"replication": {
        "source": {"buckets": ["src"]}, "destination": {"bootstrapList": [{"site": "aws1", "type": "aws_s3"}]}}}})
    api = Api(config, topics=None, follower=None, metrics=None)
    api.close()
    with pytest.raises(RuntimeError, match="stopping"):
        api.pause("aws1", True)
    assert api.producer is None


def test_a_leadership_lease_runs_from_the_commit_sent_and_a_revocation_ends_it_at_once():
    from crr_worker.leadership import Lease

    lease = Lease(4.0)
    assert not lease.valid(0.0)
    lease.renew(sent_at=10.0)
    assert lease.valid(13.9) and not lease.valid(14.0)
    lease.revoke(now=12.0)
    assert not lease.valid(12.0)
    lease.renew(sent_at=11.5)  # a commit sent before the partition was revoked does not renew it
    assert not lease.valid(12.5)
    lease.renew(sent_at=12.5)
    assert lease.valid(16.4)


def test_a_lease_is_held_since_a_moment_only_when_it_did_not_lapse_after_it():
    from crr_worker.leadership import Lease

    lease = Lease(4.0)
    lease.renew(sent_at=10.0)
    lease.renew(sent_at=13.0)  # renewed in time: one stretch from 10.0
    assert lease.held_since(10.0, now=15.0) and not lease.held_since(9.0, now=15.0)
    lease.renew(sent_at=20.0)  # it had expired at 17.0: a new stretch
    assert lease.held_since(20.0, now=21.0) and not lease.held_since(15.0, now=21.0)
    lease.revoke(now=22.0)
    lease.renew(sent_at=22.5)
    assert lease.held_since(22.5, now=23.0) and not lease.held_since(21.0, now=23.0)
    assert not lease.held_since(22.5, now=30.0)  # expired


class _GroupMember:
    """A kafka-python consumer's group side: the first poll starts a rebalance, which a stuck member never ends
    (kafka-python 3.0 was seen to do that for minutes); otherwise this member gets the partition."""

    def __init__(self, stuck: bool):
        self.stuck, self.listener, self.held, self.closed, self.joining = stuck, None, set(), False, False

    def subscribe(self, topics, listener):
        self.listener = listener

    def topics(self):
        return {"crr-populator"}

    def poll(self, timeout_ms):
        if not self.joining:
            self.joining = True
            self.listener.on_partitions_revoked(set())
            if not self.stuck:
                self.held = {TopicPartition("crr-populator", 0)}
                self.listener.on_partitions_assigned(self.held)
        time.sleep(0.01)

    def assignment(self):
        return self.held

    def pause(self, *partitions):
        pass

    def commit(self, offsets, timeout_ms):
        pass

    def committed(self, partition, metadata, timeout_ms):
        return None

    def close(self, autocommit, timeout_ms=None):
        self.closed = True


def test_a_status_processor_stuck_joining_its_group_joins_again_as_a_new_member(monkeypatch, caplog, tmp_path):
    from crr_worker import kafka_io, status
    from crr_worker.config import parse_config

    stuck, fresh = _GroupMember(stuck=True), _GroupMember(stuck=False)
    members = [stuck, fresh]
    stop = threading.Event()
    reloaded = []

    def read_standings(config, stop_event, also=None):
        reloaded.append(True)
        stop.set()  # assigned: the new member joined
        return {}

    monkeypatch.setattr(status, "make_consumer", lambda config, group, **options: members.pop(0))
    monkeypatch.setattr(kafka_io, "wait_for_partitions", lambda consumer, topic, stop_event: None)
    monkeypatch.setattr(status, "ensure_topics", lambda config: None)
    monkeypatch.setattr(status, "make_producer", lambda config: SimpleNamespace(close=lambda timeout: None))
    monkeypatch.setattr(status, "read_standings", read_standings)
    monkeypatch.setattr(status, "STUCK_REBALANCE_S", 0.3)
    caplog.set_level(logging.INFO, logger="crr_worker.status")
    config = parse_config({"kafka": {"hosts": "127.0.0.1:9092"}, "stateDir": str(tmp_path), "extensions": {
        "replication": {"replay": {"retries": 0}, "source": {"buckets": ["b"]},
                        "destination": {"bootstrapList": [{"site": "aws1", "type": "aws_s3"}]}}}})
    processor = status.StatusProcessor(config, stop)

    worker = threading.Thread(target=processor.run)
    worker.start()
    worker.join(timeout=10)

    assert not worker.is_alive(), "the status processor did not join again"
    assert stuck.closed and fresh.closed and not members and reloaded
    assert [r.getMessage() for r in caplog.records].count("status group rebalance stuck: joining again") == 1


class _SiteGroupMember(_GroupMember):
    """A site processor's consumer: polls give no records; it fetches from what it is assigned."""

    def poll(self, timeout_ms):
        super().poll(timeout_ms)
        return {}

    def paused(self):
        return set()

    def resume(self, *partitions):
        pass

    def highwater(self, partition):
        return None  # nothing fetched yet


def test_a_processor_stuck_joining_its_group_joins_again_as_a_new_member_and_gets_partitions(monkeypatch, caplog):
    from crr_worker import kafka_io
    from crr_worker import processor as processor_module
    from crr_worker.config import parse_config

    stuck, fresh = _SiteGroupMember(stuck=True), _SiteGroupMember(stuck=False)
    members = [stuck, fresh]
    monkeypatch.setattr(processor_module, "make_consumer", lambda config, group, **options: members.pop(0))
    monkeypatch.setattr(kafka_io, "wait_for_partitions", lambda consumer, topic, stop_event: None)
    monkeypatch.setattr(processor_module, "ensure_topics", lambda config: None)
    monkeypatch.setattr(processor_module, "make_producer", lambda config: SimpleNamespace(close=lambda timeout: None))
    monkeypatch.setattr(processor_module, "STUCK_REBALANCE_S", 0.3)
    caplog.set_level(logging.INFO, logger="crr_worker.processor")
    config = parse_config({"kafka": {"hosts": "127.0.0.1:9092"}, "extensions": {"replication": {
        "source": {"buckets": ["b"]}, "destination": {"bootstrapList": [{"site": "aws1", "type": "aws_s3"}]}}}})
    stop = threading.Event()
    processor = processor_module.Processor(config, "aws1", SimpleNamespace(), SimpleNamespace(), stop)
    processor.control = SimpleNamespace(load=lambda stop_event: None, refresh=lambda: None,
                                        paused=lambda site: False, close=lambda: None)

    worker = threading.Thread(target=processor.run)
    worker.start()
    deadline = time.monotonic() + 10
    while not fresh.held and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    worker.join(timeout=30)

    assert fresh.held, "the processor did not join again"
    assert stuck.closed and fresh.closed and not members
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("processors' group rebalance stuck: joining again") == 1


def test_a_populator_stuck_in_a_rebalance_joins_again_as_a_new_member_and_leads(monkeypatch, caplog):
    from crr_worker import kafka_io, leadership

    stuck, fresh = _GroupMember(stuck=True), _GroupMember(stuck=False)
    members = [stuck, fresh]
    monkeypatch.setattr(leadership, "make_consumer", lambda config, topic, **options: members.pop(0))
    monkeypatch.setattr(kafka_io, "wait_for_partitions", lambda consumer, topic, stop: None)
    monkeypatch.setattr(leadership, "STUCK_REBALANCE_S", 0.3)
    caplog.set_level(logging.INFO, logger="crr_worker.leadership")
    populator = leadership.Leadership(SimpleNamespace(topic="crr"), threading.Event())
    try:
        assert not populator.check()
        deadline = time.monotonic() + 10
        while not populator.check() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert populator.check(), "the populator did not lead after joining again"
    finally:
        populator.close()
    assert stuck.closed and fresh.closed and not members
    assert [r.getMessage() for r in caplog.records].count("populators' group rebalance stuck: joining again") == 1


class _RecordingProducer:
    def __init__(self):
        self.sent: list[tuple[str, bytes]] = []

    def send(self, topic, key=None, value=None):
        self.sent.append((topic, key))
        return type("Acknowledged", (), {"get": lambda self, timeout=None: None})()

    def flush(self, timeout=None):
        pass


class _EveryBucketReplicates:
    """A source whose every bucket replicates all its keys, each key with one version."""

    def __init__(self):
        self.asked: list[str] = []

    def replication(self, bucket):
        self.asked.append(bucket)
        return parse_replication(bucket, {"Role": "r", "Rules": [{"Filter": {"Prefix": ""}, "Status": "Enabled",
                                                                   "Destination": {"Bucket": "arn:aws:s3:::t"}}]},
                                 "aws1")

    def list_keys_versions(self, bucket, keys):
        from crr_worker.sources.base import VersionInfo

        return {key: [VersionInfo(bucket, key, "v1")] for key in keys}


def test_notifications_of_buckets_outside_source_buckets_are_ignored():
    from crr_worker.config import parse_config
    from crr_worker.populator import Populator
    from crr_worker.sources.base import Change

    config = parse_config({"kafka": {"hosts": "127.0.0.1:9092"}, "extensions": {"replication": {
        "source": {"buckets": ["src"]}, "destination": {"bootstrapList": [{"site": "aws1", "type": "aws_s3"}]}}}})
    source = _EveryBucketReplicates()
    populator = Populator(config, source, threading.Event())
    populator.producer = _RecordingProducer()
    assert populator.handle([Change("other", "k"), Change("src", "k"), Change("other", "j", version_id="v1")]) == 1
    assert {key for topic, key in populator.producer.sent if topic == config.topic} == {b"src/k"}
    assert "other" not in source.asked  # not even its rules are read


def _marker_target(pair):
    """The pair's aws_s3 target, built from its config as the processor builds it."""
    from crr_worker.targets.aws_s3 import AwsS3Target

    config = pair.load()
    return AwsS3Target(config.site("awsbackend"), config.queue_processor)


def _marker_entry(bucket: str, key: str, version_id: str = "dm") -> ReplicationEntry:
    return ReplicationEntry(bucket="src", key=key, version_id=version_id, is_delete_marker=True,
                            sites=("awsbackend",), destination="arn:aws:s3:::%s" % bucket)


def _source_listing(*version_ids: str):
    """A source whose key holds `version_ids`, oldest first."""
    from types import SimpleNamespace

    from crr_worker.sources.base import VersionInfo

    return SimpleNamespace(list_versions=lambda bucket, key: [
        VersionInfo(bucket, key, v, is_delete_marker=v.startswith("dm")) for v in version_ids])


def _target_markers(pair, bucket: str, key: str) -> list[str]:
    listed = pair.target.list_object_versions(Bucket=bucket, Prefix=key)
    return [m["VersionId"] for m in listed.get("DeleteMarkers", []) if m["Key"] == key]


@pytest.mark.integration
def test_a_replicated_delete_marker_carries_the_version_id_of_the_marker_the_target_made(pair):
    pair.target.put_object(Bucket=pair.target_bucket, Key="k", Body=b"x")
    target = _marker_target(pair)
    try:
        written = target.replicate(_marker_entry(pair.target_bucket, "k"), _source_listing("v1", "dm"),
                                   threading.Event())
        again = target.replicate(_marker_entry(pair.target_bucket, "k"), _source_listing("v1", "dm"),
                                 threading.Event())
    finally:
        target.close()
    assert _target_markers(pair, pair.target_bucket, "k") == [written.target_version_id] != [""]
    assert again.skipped and again.target_version_id == written.target_version_id


@pytest.mark.integration
def test_a_delete_that_leaves_no_marker_on_the_target_is_a_retryable_error_not_a_completion(pair):
    from crr_worker.retry import is_retryable

    unversioned = pair.target_bucket + "-plain"
    pair.target.create_bucket(Bucket=unversioned)
    pair.target.put_object(Bucket=unversioned, Key="k", Body=b"x")
    target = _marker_target(pair)
    try:
        with pytest.raises(Exception) as raised:
            target.replicate(_marker_entry(unversioned, "k"), _source_listing("v1", "dm"), threading.Event())
    finally:
        target.close()
    assert is_retryable(raised.value) and "delete marker" in str(raised.value)


@pytest.mark.integration
def test_a_redelivered_marker_under_a_newer_replica_completes_with_the_marker_below_it(pair):
    bucket = pair.target_bucket
    pair.target.put_object(Bucket=bucket, Key="k", Body=b"1", Metadata={"scal-version-id": "v1"})
    marker = pair.target.delete_object(Bucket=bucket, Key="k")["VersionId"]
    pair.target.put_object(Bucket=bucket, Key="k", Body=b"2", Metadata={"scal-version-id": "v2"})
    target = _marker_target(pair)
    try:
        written = target.replicate(_marker_entry(bucket, "k"), _source_listing("v1", "dm", "v2"), threading.Event())
    finally:
        target.close()
    assert written.skipped and written.target_version_id == marker
    assert _target_markers(pair, bucket, "k") == [marker]  # nothing written over the newer replica


@pytest.mark.integration
def test_a_marker_missing_under_a_newer_replica_is_written_and_the_newer_replica_put_back_on_top(pair):
    bucket = pair.target_bucket
    newer = pair.target.put_object(Bucket=bucket, Key="k", Body=b"2", Metadata={"scal-version-id": "v2"})
    target = _marker_target(pair)
    try:
        written = target.replicate(_marker_entry(bucket, "k"), _source_listing("v1", "dm", "v2"), threading.Event())
    finally:
        target.close()
    assert not written.skipped and _target_markers(pair, bucket, "k") == [written.target_version_id]
    latest = pair.target.get_object(Bucket=bucket, Key="k")
    assert latest["Metadata"]["scal-version-id"] == "v2" and latest["Body"].read() == b"2"
    assert latest["VersionId"] != newer["VersionId"]  # a copy of it, on top of the marker


def _late_entry(pair, key: str, version_id: str, body: bytes) -> ReplicationEntry:
    return ReplicationEntry(bucket="src", key=key, version_id=version_id, size=len(body), sites=("awsbackend",),
                            destination="arn:aws:s3:::%s" % pair.target_bucket)


class _OneVersionSource:
    """A source holding `versions` of one key (oldest first), serving `body` for each non-marker version."""

    def __init__(self, versions: list[str], body: bytes):
        self.listing = _source_listing(*versions)
        self.body = body

    def list_versions(self, bucket, key=None):
        return self.listing.list_versions(bucket, key)

    def open_version(self, bucket, key, version_id, byte_range=None, part_number=None):
        import io

        from crr_worker.sources.base import SourceObject

        return SourceObject(io.BytesIO(self.body), len(self.body), "", {}, {"origin": version_id}, tag_count=0)


def _versions_newest_first(pair, key: str) -> list[str]:
    """The scal-version-id of each target version of `key` (delete markers aside), newest first."""
    listed = pair.target.list_object_versions(Bucket=pair.target_bucket, Prefix=key).get("Versions", [])
    return [pair.target.head_object(Bucket=pair.target_bucket, Key=key, VersionId=v["VersionId"])["Metadata"]
            .get("scal-version-id", "") for v in listed]


@pytest.mark.integration
def test_a_late_older_version_leaves_the_newer_replica_latest_with_its_body_metadata_and_tags(pair):
    bucket = pair.target_bucket
    pair.target.put_object(Bucket=bucket, Key="k", Body=b"new", Metadata={"scal-version-id": "v2", "origin": "v2"},
                           Tagging="team=a")
    target = _marker_target(pair)
    try:
        written = target.replicate(_late_entry(pair, "k", "v1", b"old"), _OneVersionSource(["v1", "v2"], b"old"),
                                   threading.Event())
    finally:
        target.close()
    latest = pair.target.get_object(Bucket=bucket, Key="k")
    assert latest["Body"].read() == b"new" and latest["Metadata"]["origin"] == "v2"
    assert latest["Metadata"]["scal-version-id"] == "v2" and latest["VersionId"] != written.target_version_id
    tags = pair.target.get_object_tagging(Bucket=bucket, Key="k", VersionId=latest["VersionId"])["TagSet"]
    assert tags == [{"Key": "team", "Value": "a"}]
    assert _versions_newest_first(pair, "k") == ["v2", "v1", "v2"]


@pytest.mark.integration
def test_a_late_older_version_of_a_key_deleted_on_the_source_leaves_it_deleted_on_the_target(pair):
    bucket = pair.target_bucket
    pair.target.put_object(Bucket=bucket, Key="k", Body=b"v0", Metadata={"scal-version-id": "v0"})
    pair.target.delete_object(Bucket=bucket, Key="k")  # the replica of the source's marker "dm"
    target = _marker_target(pair)
    try:
        target.replicate(_late_entry(pair, "k", "v1", b"old"), _OneVersionSource(["v0", "v1", "dm"], b"old"),
                         threading.Event())
    finally:
        target.close()
    assert _versions_newest_first(pair, "k") == ["v1", "v0"] and len(_target_markers(pair, bucket, "k")) == 2
    with pytest.raises(ClientError) as latest:
        pair.target.head_object(Bucket=bucket, Key="k")
    assert latest.value.response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-delete-marker") == "true"


@pytest.mark.integration
def test_a_marker_for_a_key_the_target_never_held_completes_and_a_late_version_then_gets_a_marker_over_it(pair):
    from dataclasses import replace as changed

    bucket = pair.target_bucket
    target = _marker_target(pair)
    try:
        marker = target.replicate(_marker_entry(bucket, "k"), _source_listing("v1", "dm"), threading.Event())
        late = changed(_late_entry(pair, "k", "v1", b"old"), replay_count=1)  # its first copy had FAILED
        target.replicate(late, _OneVersionSource(["v1", "dm"], b"old"), threading.Event())
    finally:
        target.close()
    assert marker.target_version_id == ""  # moto makes no marker over nothing, where S3 makes one
    assert _versions_newest_first(pair, "k") == ["v1"] and len(_target_markers(pair, bucket, "k")) == 1
    with pytest.raises(ClientError):
        pair.target.head_object(Bucket=bucket, Key="k")


@pytest.mark.integration
def test_versions_written_in_the_source_order_are_not_copied_again(pair):
    target = _marker_target(pair)
    try:
        for version_id in ("v1", "v2"):
            target.replicate(_late_entry(pair, "k", version_id, version_id.encode()),
                             _OneVersionSource(["v1", "v2"], version_id.encode()), threading.Event())
        target.replicate(_late_entry(pair, "j", "v2", b"v2"), _OneVersionSource(["dm", "v2"], b"v2"), threading.Event())
    finally:
        target.close()
    assert _versions_newest_first(pair, "k") == ["v2", "v1"] and _versions_newest_first(pair, "j") == ["v2"]


class _Site:
    """A site that refuses connections until `down_for` probes have failed, then answers everything."""

    def __init__(self, down_for: int):
        self.down_for = down_for
        self.probes = 0
        self.tries = 0

    def probe(self):
        self.probes += 1
        if self.probes <= self.down_for:
            raise EndpointConnectionError(endpoint_url="http://target")

    @property
    def up(self) -> bool:
        return self.probes > self.down_for

    def copy(self):
        self.tries += 1
        if not self.up:
            raise EndpointConnectionError(endpoint_url="http://target")
        return "copied"


def _hold(interval_s: float = 0.001):
    from crr_worker.outage import SiteHold

    return SiteHold("aws1", threading.Event(), interval_s=interval_s)


def test_an_outage_of_the_site_is_waited_out_without_spending_the_versions_tries():
    site, hold = _Site(down_for=20), _hold()
    policy = RetryPolicy(max_retries=2, timeout_s=60, backoff=Backoff(min_ms=1, max_ms=2, jitter=0.1, factor=2))
    assert call_with_retries(site.copy, policy, threading.Event(), hold=hold, probe=site.probe) == "copied"
    assert site.probes == 21 and site.tries == 2 and not hold.held


def test_the_time_a_site_is_held_does_not_count_against_the_time_budget():
    site, hold = _Site(down_for=50), _hold(interval_s=0.002)
    policy = RetryPolicy(max_retries=5, timeout_s=0.05, backoff=Backoff(min_ms=1, max_ms=1, jitter=0.0, factor=1))
    outcomes = iter([EndpointConnectionError(endpoint_url="x"), client_error("InternalError", 500), "copied"])

    def copy():
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert call_with_retries(copy, policy, threading.Event(), hold=hold, probe=site.probe) == "copied"


def test_a_site_error_the_probe_answers_is_the_versions_own_and_counts_as_a_try():
    site, hold = _Site(down_for=0), _hold()

    def reset():
        raise EndpointConnectionError(endpoint_url="http://target")

    with pytest.raises(ReplicationFailed) as failure:
        call_with_retries(reset, POLICY, threading.Event(), random.Random(1), hold=hold, probe=site.probe)
    assert failure.value.tries == 3 and site.probes == 3


def test_a_version_error_fails_at_once_without_probing_the_site():
    site, hold = _Site(down_for=0), _hold()

    def denied():
        raise client_error("AccessDenied", 403)

    with pytest.raises(ReplicationFailed):
        call_with_retries(denied, POLICY, threading.Event(), hold=hold, probe=site.probe)
    assert site.probes == 0


def test_while_a_site_is_held_no_other_copy_tries_it():
    site, hold = _Site(down_for=10), _hold(interval_s=0.05)
    first = threading.Thread(target=call_with_retries, args=(site.copy, POLICY, threading.Event()),
                             kwargs={"hold": hold, "probe": site.probe})
    first.start()
    deadline = time.monotonic() + 10
    while not hold.held and time.monotonic() < deadline:
        time.sleep(0.005)
    assert hold.held
    tried_while_down = []
    assert call_with_retries(lambda: tried_while_down.append(not site.up) or "copied", POLICY, threading.Event(),
                             hold=hold, probe=site.probe) == "copied"
    first.join(10)
    assert tried_while_down == [False] and not hold.held


def test_a_probe_answered_with_an_error_reply_means_the_site_is_up():
    from crr_worker.outage import SiteHold

    def forbidden():
        raise client_error("AccessDenied", 403)

    def unavailable():
        raise client_error("503", 503)

    assert SiteHold._answers(forbidden) and not SiteHold._answers(unavailable)


def _bare_processor():
    from crr_worker.processor import Processor

    processor = Processor.__new__(Processor)
    processor.progress, processor.waiting, processor.rewind, processor.revocations = {}, {}, {}, {}
    processor.first_new, processor.unmeasured = {}, set()
    return processor


def test_partitions_assigned_back_are_read_again_from_the_first_offset_not_done():
    from types import SimpleNamespace

    from crr_worker.processor import _PartitionProgress
    from kafka import TopicPartition

    kept, moved, idle = (TopicPartition("repl", n) for n in range(3))
    processor = _bare_processor()
    processor.progress[kept] = _PartitionProgress(outstanding={5, 7}, next_offset=9)
    processor.progress[moved] = _PartitionProgress(outstanding=set(), next_offset=4)
    processor.progress[idle] = _PartitionProgress()
    seeks = []
    processor.consumer = SimpleNamespace(seek=lambda partition, offset: seeks.append((partition.partition, offset)))
    processor.forget([kept, moved, idle])
    processor.rewind_kept([kept, TopicPartition("repl", 3)])
    assert seeks == [(0, 5)] and not processor.rewind
    assert list(processor.progress) == [kept] and processor.progress[kept].committable() == 5  # to commit


def test_a_copy_waiting_out_an_outage_gives_up_when_its_partition_is_revoked():
    from crr_worker.outage import SiteHold
    from crr_worker.processor import _GiveUp
    from kafka import TopicPartition

    partition, site = TopicPartition("repl", 0), _Site(down_for=10**9)
    hold_stop = threading.Event()
    hold = SiteHold("aws1", hold_stop, interval_s=0.01)

    def probing_copy():  # the first copy to meet the outage probes until the site answers or the worker stops
        with pytest.raises(Stopped):
            call_with_retries(site.copy, POLICY, threading.Event(), hold=hold, probe=site.probe)

    prober = threading.Thread(target=probing_copy)
    prober.start()
    processor = _bare_processor()
    give_up = _GiveUp(threading.Event(), processor.revocations.setdefault(partition, threading.Event()))
    outcome = []

    def copy():
        try:
            call_with_retries(site.copy, POLICY, give_up, hold=hold, probe=site.probe)
        except Stopped:
            outcome.append("gave up")

    waiting = threading.Thread(target=copy)
    try:
        deadline = time.monotonic() + 10
        while not hold.held and time.monotonic() < deadline:
            time.sleep(0.005)
        waiting.start()
        processor.forget([partition])
        waiting.join(10)
        assert outcome == ["gave up"] and hold.held  # the site stays held: its outage is not the copy's
    finally:
        hold_stop.set()
        prober.join(10)


@pytest.mark.integration
def test_a_late_version_whose_restore_did_not_happen_is_put_right_when_it_is_retried(pair):
    bucket = pair.target_bucket
    pair.target.put_object(Bucket=bucket, Key="k", Body=b"new", Metadata={"scal-version-id": "v2"})
    pair.target.put_object(Bucket=bucket, Key="k", Body=b"old", Metadata={"scal-version-id": "v1"})  # then killed
    target = _marker_target(pair)
    try:
        again = target.replicate(replace(_late_entry(pair, "k", "v1", b"old"), replay_count=1),
                                 _OneVersionSource(["v1", "v2"], b"old"), threading.Event())
    finally:
        target.close()
    assert again.skipped
    assert pair.target.get_object(Bucket=bucket, Key="k")["Body"].read() == b"new"
    assert _versions_newest_first(pair, "k") == ["v2", "v1", "v2"]


@pytest.mark.integration
def test_a_late_marker_whose_restore_did_not_happen_is_put_right_when_it_is_retried(pair):
    bucket = pair.target_bucket
    for version_id in ("v1", "v3"):
        pair.target.put_object(Bucket=bucket, Key="k", Body=version_id.encode(),
                               Metadata={"scal-version-id": version_id})
    pair.target.delete_object(Bucket=bucket, Key="k")  # the late marker "dm", then killed before the restore
    target = _marker_target(pair)
    try:
        again = target.replicate(replace(_marker_entry(bucket, "k"), replay_count=1), _source_listing("v1", "dm", "v3"),
                                 threading.Event())
    finally:
        target.close()
    assert again.skipped
    latest = pair.target.get_object(Bucket=bucket, Key="k")
    assert latest["Metadata"]["scal-version-id"] == "v3" and latest["Body"].read() == b"v3"


@pytest.mark.integration
def test_the_replica_of_an_old_version_is_found_below_more_than_fifty_newer_ones(pair):
    bucket, ids = pair.target_bucket, ["v%02d" % n for n in range(60)]
    for version_id in ids:
        pair.target.put_object(Bucket=bucket, Key="k", Body=b"x", Metadata={"scal-version-id": version_id})
    target = _marker_target(pair)
    try:
        again = target.replicate(_late_entry(pair, "k", "v00", b"x"), _OneVersionSource(ids, b"x"), threading.Event())
    finally:
        target.close()
    assert again.skipped and len(_versions_newest_first(pair, "k")) == 60  # not copied a second time
