"""Version deletes (a site's `replicateVersionDeletes`): the config key, the feeds' version deletes (S3 events,
CloudServer's `del` records), the "del" entry and its status, the targets' deletes (moto; CloudServer's captured
DELETE), and the pipeline end to end on the real broker and moto.

moto sends no event for a DELETE with a version id while the key has other versions; AWS S3 sends
`ObjectRemoved:Delete` with the versionId. The end-to-end tests put that event, in AWS's documented shape, into the
real SQS queue the worker reads, right after the real DELETE on the source.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from urllib.parse import quote_plus

import pytest
from crr_worker.cli_output import status_row
from crr_worker.config import ConfigError, parse_config
from crr_worker.entries import COMPLETED, ReplicationEntry, StatusEntry
from crr_worker.ledger import KnownVersions
from crr_worker.replicator import Replicator
from crr_worker.rules import parse_replication
from crr_worker.sources.base import Change
from crr_worker.sources.cloudserver import CloudServerSource
from crr_worker.sources.cloudserver_status import CloudServerStatusWriter
from crr_worker.sources.record_log import parse_read_records
from crr_worker.sources.s3 import S3Source, parse_notification
from crr_worker.targets.aws_s3 import AwsS3Target
from crr_worker.version_deletes import version_delete_entries

from tests.cloudserver_replay import CloudServerReplay, records_of
from tests.worker.harness import SITE, client, start_pipeline, wait_for
from tests.worker.test_config import SITES, VALID, with_change
from tests.worker.test_scality_target import credentials, make  # noqa: F401 - credentials is a fixture
from tests.worker.test_target import entry_for
from tests.worker.test_verify import verify

REPORT_VERSION = "39383230343734383535363235353939393939395247303031202030"  # s3_14/s3_15's version, hex


def removal_event(bucket: str, key: str, version_id: str) -> str:
    """The S3 event of a DELETE naming `version_id`, as AWS documents it (notification-content-structure)."""
    return json.dumps({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventName": "ObjectRemoved:Delete",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": "arn:aws:s3:::" + bucket},
               "object": {"key": quote_plus(key), "versionId": version_id}},
    }]})


# The config key.

def test_version_deletes_are_off_by_default_and_turned_on_per_site():
    assert not parse_config(VALID).sites[0].replicate_version_deletes
    config = parse_config(with_change(SITES + ".0.replicateVersionDeletes", True))
    assert config.sites[0].replicate_version_deletes


def test_a_replicate_version_deletes_that_is_not_a_boolean_is_refused_naming_the_key():
    with pytest.raises(ConfigError) as error:
        parse_config(with_change(SITES + ".0.replicateVersionDeletes", "yes"))
    assert SITES + "[0].replicateVersionDeletes" in str(error.value)


# The feeds.

def test_an_s3_event_of_a_delete_naming_a_version_is_a_version_delete_and_a_marker_event_is_not():
    (deleted,) = parse_notification(removal_event("b", "a key", "v1"))
    assert (deleted.bucket, deleted.key, deleted.version_id, deleted.removed) == ("b", "a key", "v1", True)
    marker = json.loads(removal_event("b", "k", "m1"))
    marker["Records"][0]["eventName"] = "ObjectRemoved:DeleteMarkerCreated"
    assert not parse_notification(json.dumps(marker))[0].removed
    unversioned = json.loads(removal_event("b", "k", "v"))
    del unversioned["Records"][0]["s3"]["object"]["versionId"]
    assert not parse_notification(json.dumps(unversioned))[0].removed


def cloudserver_changes(source, *samples: str) -> list[Change]:
    records = [r for sample in samples for r in records_of(sample)]
    page = parse_read_records({"result": {"info": {"start": 1, "end": None}, "log": records}}, 1)
    return [c for r in page.records if (c := source.change_of(r))]


def test_a_cloudserver_del_of_a_versioned_key_is_a_version_delete_with_the_wire_version_id(tmp_path):
    source = CloudServerSource(parse_config(cloudserver_config(tmp_path)), [])
    (change,) = cloudserver_changes(source, "s3_15_log_after_delete_specific_version")
    assert (change.bucket, change.key, change.version_id, change.removed) == (
        "src-bucket", "docs/report.txt", REPORT_VERSION, True)
    assert change.entry is None


def test_a_cloudserver_delete_marker_removal_is_a_version_delete_and_mpu_shadow_deletes_are_not(tmp_path):
    source = CloudServerSource(parse_config(cloudserver_config(tmp_path)), [])
    removals = [c for c in cloudserver_changes(source, "s3_17_log_after_put_delete_marker_and_delete_marker_removal",
                                                "s3_21_log_after_multipart_upload") if c.removed]
    assert [(c.bucket, c.key) for c in removals] == [("src-bucket", "tmp/dm-removal.txt")]


def cloudserver_config(tmp_path) -> dict:
    path = tmp_path / "credentials"
    path.write_text("[r]\naws_access_key_id = k\naws_secret_access_key = s\n")
    path.chmod(0o600)
    return {"kafka": {"hosts": "127.0.0.1:9092"},
            "queuePopulator": {"logSource": "dmd", "dmd": {"host": "127.0.0.1", "port": 9993}},
            "extensions": {"replication": {
                "source": {"endpoint": "http://127.0.0.1:1", "credentials": {"file": str(path), "profile": "r"}},
                "destination": {"bootstrapList": [{"site": "zenko", "servers": ["127.0.0.1:1"], "canonicalId": "c",
                                                   "credentials": {"file": str(path), "profile": "r"}}]}}}}


# The entry and its status.

def test_a_del_entry_and_its_status_keep_saying_deleted_through_kafka():
    entry = ReplicationEntry(bucket="b", key="k", version_id="v1", sites=("s",), destination="arn:aws:s3:::t",
                             deleted=True)
    _, value = entry.to_kafka()
    assert json.loads(value)["type"] == "del"
    assert ReplicationEntry.from_kafka(value).deleted
    status = StatusEntry(entry, "s", COMPLETED)
    again = StatusEntry.from_kafka(status.to_kafka()[1])
    assert again.entry.deleted and again.to_dict()["versionDeleted"] is True
    assert status_row(again)[3] == "v1 (deleted)"
    assert ReplicationEntry.from_kafka(entry.for_sites(("s",)).to_kafka()[1]).deleted  # a replay stays a delete


def test_a_version_delete_goes_only_to_sites_that_delete_versions_and_were_sent_the_version(tmp_path):
    data = with_change(SITES + ".0.replicateVersionDeletes", True)
    config = parse_config(data)
    deleting, other = config.sites[0].site, config.sites[1].site
    document = {"Role": "arn:aws:iam::1:role/r", "Rules": [
        {"ID": "a", "Prefix": "", "Status": "Enabled",
         "Destination": {"Bucket": "arn:aws:s3:::t", "StorageClass": "%s,%s" % (deleting, other)}}]}
    replication = parse_replication("b", document, None)
    known = KnownVersions()
    sent = [StatusEntry(ReplicationEntry(bucket="b", key="k", version_id="v1", sites=(s,)), s, COMPLETED)
            for s in (deleting, other)]
    known.learn(sent)

    (entry,) = version_delete_entries(config, replication, known, Change("b", "k", version_id="v1", removed=True))
    assert entry.deleted and entry.sites == (deleting,) and entry.destination == "arn:aws:s3:::t"
    assert version_delete_entries(config, replication, known, Change("b", "k", version_id="v2", removed=True)) == []


def test_the_cloudserver_status_writer_writes_nothing_back_for_a_version_delete(tmp_path):
    writer = CloudServerStatusWriter(parse_config(cloudserver_config(tmp_path)))  # its endpoint refuses connections
    entry = ReplicationEntry(bucket="b", key="k", version_id="v1", sites=("zenko",), deleted=True)
    assert writer.write(StatusEntry(entry, "zenko", COMPLETED)) is False
    writer.close()


# The targets.

@pytest.fixture
def deleting(pair):
    site = dict(pair.config["extensions"]["replication"]["destination"]["bootstrapList"][0],
                replicateVersionDeletes=True)
    pair.write_config(**{"extensions.replication.destination.bootstrapList": [site]})
    config = pair.load()
    source = S3Source(config.source, SITE)
    target = AwsS3Target(config.site(SITE), config.queue_processor)
    yield config, source, target
    target.close()


def replicated(pair, source, target, key: str, body: bytes):
    reply = pair.source.put_object(Bucket=pair.source_bucket, Key=key, Body=body)
    entry = entry_for(pair, key, reply, len(body))
    target.replicate(entry, source, threading.Event())
    return entry


def target_sources(pair, key: str) -> list[str]:
    """The target's versions of `key`, newest first: each replica's scal-version-id, "marker" for a marker."""
    reply = pair.target.list_object_versions(Bucket=pair.target_bucket, Prefix=key)
    listed = [(v, False) for v in reply.get("Versions", [])] + [(m, True) for m in reply.get("DeleteMarkers", [])]
    listed.sort(key=lambda vm: (bool(vm[0].get("IsLatest")), vm[0]["LastModified"]), reverse=True)
    return ["marker" if is_marker else pair.target.head_object(
        Bucket=pair.target_bucket, Key=key, VersionId=v["VersionId"])["Metadata"]["scal-version-id"]
        for v, is_marker in listed]


@pytest.mark.integration
def test_every_replica_of_a_deleted_version_goes_and_the_others_stay(pair, deleting):
    config, source, target = deleting
    first = replicated(pair, source, target, "k", b"one")
    second = replicated(pair, source, target, "k", b"two")
    older = [v["VersionId"] for v in pair.target.list_object_versions(Bucket=pair.target_bucket,
                                                                      Prefix="k")["Versions"]
             if not v["IsLatest"]][0]
    pair.target.copy_object(Bucket=pair.target_bucket, Key="k", MetadataDirective="COPY",
                            CopySource={"Bucket": pair.target_bucket, "Key": "k", "VersionId": older})
    assert sorted(target_sources(pair, "k")) == sorted([first.version_id, first.version_id, second.version_id])
    pair.source.delete_object(Bucket=pair.source_bucket, Key="k", VersionId=first.version_id)

    replicator = Replicator(config, SITE, source, target, threading.Event())
    status = replicator.replicate(replace(first, deleted=True), threading.Event())

    assert status.status == COMPLETED and status.target_version_id
    assert target_sources(pair, "k") == [second.version_id]


@pytest.mark.integration
def test_a_delete_marker_removed_from_the_source_goes_from_above_the_newest_version(pair, deleting):
    config, source, target = deleting
    kept = replicated(pair, source, target, "k", b"kept")
    marker_id = pair.source.delete_object(Bucket=pair.source_bucket, Key="k")["VersionId"]
    marker = ReplicationEntry(bucket=pair.source_bucket, key="k", version_id=marker_id, is_delete_marker=True,
                              sites=(SITE,), destination="arn:aws:s3:::%s" % pair.target_bucket)
    target.replicate(marker, source, threading.Event())
    assert target_sources(pair, "k") == ["marker", kept.version_id]
    pair.source.delete_object(Bucket=pair.source_bucket, Key="k", VersionId=marker_id)

    replicator = Replicator(config, SITE, source, target, threading.Event())
    status = replicator.replicate(replace(marker, deleted=True), threading.Event())

    assert status.status == COMPLETED
    assert target_sources(pair, "k") == [kept.version_id]
    assert pair.target.get_object(Bucket=pair.target_bucket, Key="k")["Body"].read() == b"kept"


@pytest.mark.integration
def test_a_version_delete_naming_a_version_the_source_still_has_keeps_its_replica(pair, deleting):
    config, source, target = deleting
    entry = replicated(pair, source, target, "k", b"still here")
    replicator = Replicator(config, SITE, source, target, threading.Event())

    outcome = replicator.replicate(replace(entry, deleted=True), threading.Event())

    assert outcome is True  # no status: the version's own stays in the ledger
    assert target_sources(pair, "k") == [entry.version_id]


def test_a_scality_site_deletes_the_replica_by_the_source_version_id_as_cloudserver_answers(credentials):  # noqa: F811
    with CloudServerReplay() as replay:
        replay.serve("s3_14_delete_object_specific_version")  # signed by the target account's key, as captured
        target, source = make(replay, credentials)
        entry = ReplicationEntry(bucket="src-bucket", key="docs/report.txt", version_id=REPORT_VERSION,
                                 sites=("zenko",), destination="arn:aws:s3:::src-bucket", deleted=True)

        removed = target.delete_replica(entry, [])

        assert removed.target_version_id == REPORT_VERSION
        assert not replay.mismatches and not replay.unmatched
        target.close()
        source.close()


# End to end.

def queue_drained(pair) -> bool:
    """Whether the worker's queue holds no message, visible or taken: the populator handled every event."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = client("sqs", pair.sandbox.source.url).get_queue_attributes(QueueUrl=pair.queue_url,
                                                                            AttributeNames=names)
    return all(value == "0" for value in attributes["Attributes"].values())


def remove_on_source(pair, key: str, version_id: str) -> None:
    """The DELETE on the source, then S3's event of it into the worker's queue (moto sends none, see above)."""
    pair.source.delete_object(Bucket=pair.source_bucket, Key=key, VersionId=version_id)
    client("sqs", pair.sandbox.source.url).send_message(
        QueueUrl=pair.queue_url, MessageBody=removal_event(pair.source_bucket, key, version_id))


@pytest.mark.integration
def test_a_version_deleted_on_the_source_is_deleted_on_a_site_that_replicates_version_deletes(pair_factory):
    pair = pair_factory(site_extra={"replicateVersionDeletes": True})
    start_pipeline(pair)
    first = pair.source.put_object(Bucket=pair.source_bucket, Key="doc", Body=b"first")["VersionId"]
    second = pair.source.put_object(Bucket=pair.source_bucket, Key="doc", Body=b"second")["VersionId"]
    pair.wait_all_done(120)

    remove_on_source(pair, "doc", first)

    def deleted():
        status = pair.statuses().get(("doc", first))
        return status if status is not None and status.entry.deleted and status.status == COMPLETED else None

    status = wait_for(deleted, 120, what="the version delete's COMPLETED status")
    assert status.target_version_id
    assert target_sources(pair, "doc") == [second]
    code, findings, summary, _ = verify(pair)
    assert code == 0 and not findings, summary


@pytest.mark.integration
def test_without_replicate_version_deletes_a_version_deleted_on_the_source_stays_on_the_site(pair):
    start_pipeline(pair)
    first = pair.source.put_object(Bucket=pair.source_bucket, Key="doc", Body=b"first")["VersionId"]
    pair.wait_all_done(120)

    remove_on_source(pair, "doc", first)
    wait_for(lambda: queue_drained(pair), 120, what="the populator to handle the event")
    # whatever the event made was published before this version's entry, on the key's partition: handled before it
    later = pair.source.put_object(Bucket=pair.source_bucket, Key="doc", Body=b"later")["VersionId"]
    wait_for(lambda: later in target_sources(pair, "doc"), 120, what="the later version's replica")

    assert target_sources(pair, "doc") == [later, first]
    assert not pair.statuses()[("doc", first)].entry.deleted


# The populator's batch (its producer recorded: the order of what it sends is the point).

def deleting_populator():
    from tests.worker.test_batching import FakeProducer, FakeSource, make_populator

    populator = make_populator(FakeSource({"k": ["v1"]}))
    populator.config = replace(populator.config, sites=tuple(replace(s, replicate_version_deletes=True)
                                                             for s in populator.config.sites))
    populator.producer = FakeProducer()
    return populator


def sent_entries(populator) -> list[ReplicationEntry]:
    return [ReplicationEntry.from_kafka(e[3]) for e in populator.producer.events if e[0] == "send" and e[1] == "repl"]


def test_a_version_written_and_deleted_in_one_batch_gets_its_delete_after_its_entry():
    populator = deleting_populator()
    put = ReplicationEntry(bucket="src", key="k", version_id="v1", sites=("aws1",), destination="arn:aws:s3:::t")

    assert populator.handle([Change("src", "k", entry=put), Change("src", "k", version_id="v1", removed=True)]) == 2

    assert [(e.version_id, e.deleted) for e in sent_entries(populator)] == [("v1", False), ("v1", True)]
    statuses = [e for e in populator.producer.events if e[0] == "send" and e[1] == "status"]
    assert len(statuses) == 1  # the entry's PENDING mark; the delete has none


def test_a_version_delete_of_a_version_never_queued_publishes_nothing():
    populator = deleting_populator()
    assert populator.handle([Change("src", "k", version_id="unknown", removed=True)]) == 0
    assert sent_entries(populator) == []
