"""A CloudServer source end to end: the record log read by a real populator, entries through the sandbox's real
Kafka, a real processor writing to moto as the aws_s3 target, and the status written back to CloudServer.

CloudServer itself is the recorded-response server (tests/cloudserver_replay.py): it replays the captured
record log, metadata and object of the version `repl/hello.txt` and checks every request against the captured
one, so the worker passes only if it speaks CloudServer's wire format.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest
from crr_worker.object_md import wire_version_id

from tests.cloudserver_replay import CloudServerReplay, load_sample, records_of
from tests.worker.harness import WorkerProcesses, client, log_records, wait_for

pytestmark = pytest.mark.integration

SITE = "zenko"  # the site the captured version's replicationInfo names; an aws_s3 site here, on moto
SOURCE_BUCKET, KEY = "src-bucket", "repl/hello.txt"
VERSION = wire_version_id("98204748538625999999RG001  10")
REPLICATION_KEY = "replicationKey1"
BART = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"  # the captured target account
TARGET_ROUTES = ("/_/backbeat/data/target-bucket/", "/_/backbeat/metadata/target-bucket/")


@pytest.fixture
def replay():
    with CloudServerReplay() as server:
        server.serve_record_log(records_of("s3_27_log_after_target_replica_write"))
        server.serve("s5_01_source_get_metadata")
        server.serve("s5_02_source_get_object_version", access_key=REPLICATION_KEY)
        server.serve("s5_07_source_put_metadata_completed", allow=["replicationInfo.backends[0].dataStoreVersionId"])
        yield server


def write_worker_config(sandbox, tmp_path, replay, site: dict) -> WorkerProcesses:
    """A worker reading `replay` as its CloudServer, replicating to `site` (credentials profiles: replication,
    target, bart), with topics and groups of its own."""
    tag = uuid.uuid4().hex[:10]
    credentials = str(tmp_path / "credentials")
    with open(os.open(credentials, os.O_WRONLY | os.O_CREAT, 0o600), "w") as out:
        out.write("[replication]\naws_access_key_id = %s\naws_secret_access_key = replicationSecretKey1\n"
                  "[target]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
                  "[bart]\naws_access_key_id = accessKey1\naws_secret_access_key = verySecretKey1\n" % REPLICATION_KEY)
    port = int(replay.url.rsplit(":", 1)[1])
    config = {
        "kafka": {"hosts": sandbox.kafka_bootstrap, "partitions": 2},
        "queuePopulator": {"logSource": "dmd", "dmd": {"host": "127.0.0.1", "port": port}, "pollIntervalS": 0.2},
        "extensions": {"replication": {
            "source": {"endpoint": replay.url, "credentials": {"file": credentials, "profile": "replication"}},
            "destination": {"bootstrapList": [dict(site, credentials={"file": credentials,
                                                                     "profile": site["credentials"]})]},
            "topic": "crr-cs-%s" % tag,
            "replicationStatusTopic": "crr-cs-%s-status" % tag,
            "ledgerTopic": "crr-cs-%s-ledger" % tag,
            "replicationStatusProcessor": {"groupId": "crr-cs-%s-status-group" % tag},
            "queueProcessor": {"groupId": "crr-cs-%s-group" % tag},
        }},
    }
    config_path = str(tmp_path / "config.json")
    with open(config_path, "w") as out:
        json.dump(config, out)
    return WorkerProcesses(config_path, str(tmp_path))


@pytest.fixture
def cloudserver_pair(sandbox, tmp_path, replay):
    """A worker reading `replay` as its CloudServer and writing to a moto bucket (an aws_s3 site)."""
    target = client("s3", sandbox.target.url)
    bucket = "crr-cs-%s" % uuid.uuid4().hex[:10]
    target.create_bucket(Bucket=bucket)
    target.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    workers = write_worker_config(sandbox, tmp_path, replay, {
        "site": SITE, "type": "aws_s3", "endpoint": sandbox.target.url, "bucket": bucket, "credentials": "target"})
    yield workers, target, bucket
    workers.stop_all()


@pytest.fixture
def scality_workers(sandbox, tmp_path):
    """A worker replicating between two CloudServers, both the one replayed CloudServer (as captured: the
    capture's source and target buckets live on one server), through its /_/backbeat routes."""
    with CloudServerReplay() as server:
        server.serve_record_log(records_of("s3_27_log_after_target_replica_write"))
        server.serve("s1_04_get_bucket_replication_src", access_key=REPLICATION_KEY)
        server.serve("s5_02_source_get_object_version", access_key=REPLICATION_KEY)
        server.serve_for("s5_e07_get_metadata_missing_key", "/_/backbeat/metadata/target-bucket/" + KEY,
                         {"versionId": VERSION}, access_key="accessKey1")
        server.serve("s5_03_target_put_data")
        server.serve("s5_04_target_put_metadata_replica")
        server.serve("s5_01_source_get_metadata")
        server.serve("s5_07_source_put_metadata_completed")
        address = server.url.split("//", 1)[1]
        workers = write_worker_config(sandbox, tmp_path, server, {
            "site": SITE, "servers": [address], "canonicalId": BART, "displayName": "Bart", "credentials": "bart"})
        yield workers, server
        workers.stop_all()


def _status_puts(replay) -> list:
    return replay.requests_to("PUT", "/_/backbeat/metadata/src-bucket/")


def _replicas(target, bucket) -> list[dict]:
    return target.list_object_versions(Bucket=bucket).get("Versions", [])


def test_a_version_from_the_record_log_reaches_the_target_as_replica_and_the_source_says_completed(
        replay, cloudserver_pair):
    workers, target, bucket = cloudserver_pair
    assert workers.run("check-config").returncode == 0
    for command in (["status-processor"], ["processor", "--site", SITE], ["populator"]):
        workers.start(*command)
    (put,) = wait_for(lambda: _status_puts(replay), 120, 0.5, "the status written back to CloudServer")

    (replica,) = _replicas(target, bucket)
    head = target.head_object(Bucket=bucket, Key=KEY, VersionId=replica["VersionId"])
    assert head["Metadata"] == {"scal-replication-status": "REPLICA", "scal-version-id": VERSION, "color": "blue"}
    assert head["ContentType"] == "text/plain"
    assert target.get_object(Bucket=bucket, Key=KEY)["Body"].read() == load_sample(
        "s5_02_source_get_object_version")["response"]["body"].encode()
    tags = target.get_object_tagging(Bucket=bucket, Key=KEY, VersionId=replica["VersionId"])["TagSet"]
    assert tags == [{"Key": "project", "Value": "alpha"}]

    written = put.json()
    assert written["replicationInfo"]["status"] == "COMPLETED"
    assert written["replicationInfo"]["backends"] == [
        {"site": SITE, "status": "COMPLETED", "dataStoreVersionId": replica["VersionId"]}]
    assert replay.mismatches == [] and replay.unmatched == []


def test_a_range_read_again_without_its_checkpoint_is_published_again_and_not_written_twice(
        replay, cloudserver_pair, sandbox):
    workers, target, bucket = cloudserver_pair
    workers.start("status-processor")
    workers.start("processor", "--site", SITE, name="processor")
    first = workers.start("populator")
    wait_for(lambda: _status_puts(replay), 120, 0.5, "the first copy's status")
    workers.terminate(first)
    assert any(r.get("message") == "reading the change log" and r.get("seq") == 1 for r in log_records(first))

    # A restart after the checkpoint resumes after the records it covered.
    resumed = workers.start("populator")
    wait_for(lambda: [r for r in log_records(resumed) if r.get("message") == "reading the change log"], 60, 0.3,
             "the populator to resume")
    record = next(r for r in log_records(resumed) if r.get("message") == "reading the change log")
    assert record["checkpointed"] is True and record["seq"] == 5
    workers.terminate(resumed)

    # A crash between publishing and checkpointing is the same as no checkpoint: the range is read again.
    config = json.load(open(workers.config_path))
    topic = config["extensions"]["replication"]["topic"] + "-checkpoints"
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=sandbox.kafka_bootstrap)
    producer.send(topic, key=b"dmd:s3-recordlog", value=json.dumps({"nextSeq": 1}).encode()).get(timeout=30)
    producer.close()
    again = workers.start("populator")
    wait_for(lambda: len(_status_puts(replay)) == 2, 120, 0.5, "the re-published version's status")
    workers.terminate(again)
    processor = next(p for p in workers.running if p.label.startswith("processor"))
    workers.terminate(processor)
    assert len(_replicas(target, bucket)) == 1
    stopped = next(r for r in log_records(processor) if r.get("message") == "processor stopped")
    assert (stopped["completed"], stopped["skipped"]) == (1, 1)
    assert replay.mismatches == [] and replay.unmatched == []


def _target_writes(replay) -> list[str]:
    return [r.path.split("/")[3] for r in replay.requests if r.method == "PUT" and r.path.startswith(TARGET_ROUTES)]


def test_between_two_cloudservers_data_then_metadata_make_the_replica_and_the_source_says_completed(
        scality_workers):
    workers, replay = scality_workers
    assert workers.run("check-config").returncode == 0
    for command in (["status-processor"], ["processor", "--site", SITE], ["populator"]):
        workers.start(*command)
    (put,) = wait_for(lambda: _status_puts(replay), 120, 0.5, "the source's COMPLETED")
    assert _target_writes(replay) == ["data", "metadata"]
    (replica,) = replay.requests_to("PUT", TARGET_ROUTES[1])
    assert replica.query == {"versionId": VERSION} and replica.json()["replicationInfo"]["status"] == "REPLICA"
    assert put.json()["replicationInfo"]["backends"] == [
        {"site": SITE, "status": "COMPLETED", "dataStoreVersionId": VERSION}]
    assert replay.mismatches == [] and replay.unmatched == []


def test_a_processor_killed_between_data_and_metadata_names_the_orphaned_data_and_completes_once(
        scality_workers):
    workers, replay = scality_workers
    release = replay.hold("PUT", TARGET_ROUTES[1])
    workers.start("status-processor")
    killed = workers.start("processor", "--site", SITE, name="processor")
    workers.start("populator")
    wait_for(lambda: replay.held, 120, 0.3, "the replica's metadata PUT")
    killed.kill()
    killed.wait(timeout=30)
    release.set()  # the held PUT is dropped unapplied: the metadata was never written
    stored = next(r for r in log_records(killed) if r.get("message") == "replica data stored, writing its metadata")
    assert json.loads(stored["locations"])[0]["key"] == 10  # the orphan, named before the crash

    workers.start("processor", "--site", SITE, name="processor")
    wait_for(lambda: _status_puts(replay), 120, 0.5, "the source's COMPLETED after the restart")
    assert _target_writes(replay) == ["data", "data", "metadata"]  # the held one is not among the requests
    assert len(_status_puts(replay)) == 1
    assert replay.mismatches == [] and replay.unmatched == []
