"""`crr-worker resync` against CloudServer replayed from its captured exchanges and the sandbox's real Kafka: the
bucket's versions listed (s6_02), each one's ObjectMD read, and exactly those whose backend waits (PENDING or
FAILED) queued with that ObjectMD and their PENDING marks.

The listing names seven versions; GETs of five were captured or are derived from the captured record log
(docs/failed.txt in its FAILED state, see test_cloudserver_status.serve_derived). The other two have no captured
metadata: the replay answers them with CloudServer's 404 ObjNotFound for a deleted version (s5_e11), which resync
takes for a version deleted since the listing.

An s3 source's resync runs against the sandbox's moto pair (harness.pair): every version queued again whatever the
ledger says, and a running pipeline finds the replicas already there.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import uuid
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from urllib.parse import unquote

import pytest
from crr_worker.entries import VERSION_SEPARATOR, ReplicationEntry, StatusEntry
from crr_worker.kafka_io import CONTROL_SUFFIX, control_topic
from crr_worker.resync import Counts, Progress, resync, waiting_sites
from crr_worker.scan_report import RESYNC, ScanReport
from kafka import KafkaConsumer, TopicPartition

from tests.cloudserver_replay import CloudServerReplay, load_sample
from tests.worker.harness import SITE, WorkerProcesses, start_pipeline, target_replicas, wait_for
from tests.worker.test_api import _metric, start_api
from tests.worker.test_cloudserver_status import SPECIAL_KEY, captured_md, logged_md, serve_derived
from tests.worker.test_monitoring import finished_listing_metrics

pytestmark = pytest.mark.integration

BUCKET = "src-bucket"
FAILED_LOG = "s3_08_log_after_put_and_failed_update"
SPECIAL_VERSION = (SPECIAL_KEY, "39383230343734383533383636323939393939395247303031202039")
HELLO_VERSION = ("repl/hello.txt", "3938323034373438353338363235393939393939524730303120203130")
# (key, wire version id) -> the captured GET answering its metadata; all PENDING for the site zenko
CAPTURED_GETS = {
    SPECIAL_VERSION: "s2_09_backbeat_get_metadata_special_key",
    ("docs/report.txt", "39383230343734383535363031383939393939395247303031202034"):
        "s5_11_source_get_metadata_delete_marker",
    ("mpu/big.bin", "39383230343734383533383731313939393939395247303031202038"): "s2_08_backbeat_get_metadata_mpu",
    HELLO_VERSION: "s5_01_source_get_metadata",
}
FAILED_VERSION = ("docs/failed.txt", "39383230343734383535363131333939393939395247303031202032")
NO_CAPTURED_GET = {("docs/report.txt", "39383230343734383535363036333939393939395247303031202033"),
                   ("tmp/dm-removal.txt", "39383230343734383535353936383939393939395247303031202035")}


@pytest.fixture
def replay(request, tmp_path):
    """The listing and every metadata GET there is for its versions, signed by the replication account;
    parametrized "hello completed", repl/hello.txt answers the COMPLETED ObjectMD s5_07 wrote instead."""
    with CloudServerReplay() as server:
        server.serve("s6_02_list_object_versions_boto3", access_key="replicationKey1")
        if getattr(request, "param", None) == "hello completed":
            completed = load_sample("s5_07_source_put_metadata_completed")["request"]["body"]
            serve_derived(server, CAPTURED_GETS[HELLO_VERSION], json.dumps(completed))
        for sample in CAPTURED_GETS.values():
            server.serve(sample)
        path = "/_/backbeat/metadata/%s/%s" % (BUCKET, FAILED_VERSION[0])
        serve_derived(server, "s2_03_backbeat_get_metadata_src",
                      logged_md(FAILED_LOG, FAILED_VERSION[0], "FAILED"), path, {"versionId": FAILED_VERSION[1]})
        for key, version in NO_CAPTURED_GET:  # as for a version deleted since the listing: 404 ObjNotFound
            server.serve_for("s5_e11_get_metadata_deleted_version", "/_/backbeat/metadata/%s/%s" % (BUCKET, key),
                             {"versionId": version})
        yield server


@pytest.fixture
def workers(sandbox, tmp_path, replay):
    """`run` crr-worker with a config reads `replay` as a CloudServer (dmd) and the sandbox's Kafka."""
    tag = uuid.uuid4().hex[:10]
    credentials = str(tmp_path / "credentials")
    with open(os.open(credentials, os.O_WRONLY | os.O_CREAT, 0o600), "w") as out:
        out.write("[replication]\naws_access_key_id = replicationKey1\naws_secret_access_key = replicationSecretKey1\n")
    config = {
        "kafka": {"hosts": sandbox.kafka_bootstrap, "partitions": 2},
        "queuePopulator": {"logSource": "dmd", "dmd": {"host": "127.0.0.1", "port": 9}},
        "extensions": {"replication": {
            "source": {"endpoint": replay.url, "credentials": {"file": credentials, "profile": "replication"}},
            "destination": {"bootstrapList": [{"site": "zenko", "servers": ["127.0.0.1:8000"]},
                                              {"site": "us-east-2", "type": "aws_s3", "bucket": "target-bucket"}]},
            "topic": "crr-resync-%s" % tag,
            "replicationStatusTopic": "crr-resync-%s-status" % tag,
            "ledgerTopic": "crr-resync-%s-ledger" % tag,
        }},
    }
    config_path = str(tmp_path / "config.json")
    with open(config_path, "w") as out:
        json.dump(config, out)
    replication = config["extensions"]["replication"]
    yield SimpleNamespace(run=WorkerProcesses(config_path, str(tmp_path)).run, kafka=sandbox.kafka_bootstrap,
                          topic=replication["topic"], status_topic=replication["replicationStatusTopic"])


def read_topic(bootstrap: str, topic: str, timeout_s: float = 30) -> list:
    """Every message of `topic` up to the end it has now (the resync exited: its sends were acknowledged)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        assert partitions, "topic %s has no partitions: resync did not create it" % topic
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        messages = []
        for _ in range(int(timeout_s / 0.2)):
            if all(consumer.position(p) >= end[p] for p in partitions):
                return messages
            for batch in consumer.poll(timeout_ms=200).values():
                messages.extend(batch)
        pytest.fail("topic %s not read to its end in %.0f s" % (topic, timeout_s))
    finally:
        consumer.close()


def queued(workers) -> dict:
    """(key, version id) -> envelope of each entry on the replication topic."""
    found = {}
    for message in read_topic(workers.kafka, workers.topic):
        envelope = json.loads(message.value)
        key, _, version_id = envelope["key"].partition(VERSION_SEPARATOR)
        assert message.key == ("%s/%s" % (envelope["bucket"], key)).encode()
        found[(key, version_id)] = envelope
    return found


def expected_md() -> dict:
    """(key, version id) -> the ObjectMD served for each version whose backend for zenko waits."""
    expected = {version: json.loads(captured_md(sample)) for version, sample in CAPTURED_GETS.items()}
    expected[FAILED_VERSION] = json.loads(logged_md(FAILED_LOG, FAILED_VERSION[0], "FAILED"))
    return expected


def answered_gone(replay) -> set:
    """(key, version id) of the metadata reads answered 404 ObjNotFound."""
    prefix = "/_/backbeat/metadata/%s/" % BUCKET
    gone = [r for r in replay.requests_to("GET", prefix) if (unquote(r.path.removeprefix(prefix)),
                                                              r.query.get("versionId")) in NO_CAPTURED_GET]
    return {(unquote(r.path.removeprefix(prefix)), r.query.get("versionId")) for r in gone}


def test_resync_queues_exactly_the_pending_and_failed_versions_with_their_object_md(workers, replay):
    result = workers.run("resync", "--bucket", BUCKET)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "re-queued 5 of 7 version(s) of bucket %s\n" % BUCKET
    entries = queued(workers)
    assert {v: json.loads(e["value"]) for v, e in entries.items()} == expected_md()
    assert {e["bucket"] for e in entries.values()} == {BUCKET}
    assert all(e["sites"] == ["zenko"] for e in entries.values())
    marks = [StatusEntry.from_kafka(m.value) for m in read_topic(workers.kafka, workers.status_topic)]
    assert sorted((m.entry.key, m.entry.version_id, m.site, m.status) for m in marks) == sorted(
        (key, version, "zenko", "PENDING") for key, version in expected_md())
    assert replay.mismatches == [] and replay.unmatched == []
    assert answered_gone(replay) == NO_CAPTURED_GET


@pytest.mark.parametrize("replay", ["hello completed"], indirect=True)
def test_resync_leaves_a_version_whose_metadata_shows_it_completed(workers, replay):
    """The first exchange registered for a route answers it: here the COMPLETED state of repl/hello.txt."""
    result = workers.run("resync", "--bucket", BUCKET)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "re-queued 4 of 7 version(s) of bucket %s\n" % BUCKET
    assert set(queued(workers)) == set(expected_md()) - {HELLO_VERSION}
    assert replay.mismatches == []


def test_resync_for_a_site_no_version_waits_for_queues_nothing(workers, replay):
    result = workers.run("resync", "--bucket", BUCKET, "--site", "us-east-2")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "re-queued 0 of 7 version(s) of bucket %s\n" % BUCKET
    assert queued(workers) == {}


def test_resync_since_a_time_reads_only_the_versions_modified_from_then(workers, replay):
    """s6_02's versions at or after 08:57:41.300Z: the special key (41.335) and repl/hello.txt (41.372)."""
    result = workers.run("resync", "--bucket", BUCKET, "--since", "2026-11-21T08:57:41.300Z")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "re-queued 2 of 7 version(s) of bucket %s\n" % BUCKET
    assert set(queued(workers)) == {SPECIAL_VERSION, HELLO_VERSION}
    assert len(replay.requests_to("GET", "/_/backbeat/metadata/")) == 2
    assert replay.unmatched == [] and replay.mismatches == []


def test_resync_says_how_many_versions_were_gone_when_read_and_reports_its_start_and_end(workers, replay):
    result = workers.run("resync", "--bucket", BUCKET)

    done = [json.loads(line) for line in result.stderr.splitlines() if '"resync done"' in line]
    assert [(d["listed"], d["queued"], d["gone"]) for d in done] == [(7, 5, 2)]
    reports = [ScanReport.from_kafka(m.value) for m in read_topic(workers.kafka, workers.topic + CONTROL_SUFFIX)]
    assert [(r.kind, r.bucket, r.listed, r.queued, r.running) for r in reports] == [
        (RESYNC, BUCKET, 0, 0, True), (RESYNC, BUCKET, 7, 5, False)]


def test_resync_all_is_refused_for_an_s3_source(tmp_path):
    config = {"kafka": {"hosts": "127.0.0.1:9"}, "queuePopulator": {"logSource": "s3"},
              "extensions": {"replication": {"source": {"buckets": [BUCKET]},
                                             "destination": {"bootstrapList": [{"site": "a", "type": "aws_s3"}]}}}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))

    result = WorkerProcesses(str(path), str(tmp_path)).run("resync", "--bucket", BUCKET, "--all")

    assert result.returncode == 2
    assert "--all is for a CloudServer source" in result.stderr and result.stdout == ""


@pytest.mark.parametrize("replay", ["hello completed"], indirect=True)
def test_resync_all_of_a_cloudserver_bucket_queues_its_completed_versions_too(workers, replay):
    result = workers.run("resync", "--bucket", BUCKET, "--all")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "re-queued 5 of 7 version(s) of bucket %s\n" % BUCKET
    assert set(queued(workers)) == set(expected_md())


def pair_queued(pair) -> dict:
    """(key, version id) -> the sites of each entry on the pair's replication topic, in the topic's order."""
    replication = pair.config["extensions"]["replication"]
    found = {}
    for message in read_topic(pair.sandbox.kafka_bootstrap, replication["topic"]):
        entry = ReplicationEntry.from_kafka(message.value)
        found.setdefault((entry.key, entry.version_id), []).append(entry.sites)
    return found


def pair_marks(pair) -> list[tuple[str, str, str, str]]:
    """(key, version id, site, status) of each status on the pair's status topic (no status processor runs)."""
    topic = pair.config["extensions"]["replication"]["replicationStatusTopic"]
    marks = [StatusEntry.from_kafka(m.value) for m in read_topic(pair.sandbox.kafka_bootstrap, topic)]
    return [(m.entry.key, m.entry.version_id, m.site, m.status) for m in marks]


def put_versions(pair, keys: list[str]) -> list[tuple[str, str]]:
    return [(key, pair.source.put_object(Bucket=pair.source_bucket, Key=key, Body=key.encode())["VersionId"])
            for key in keys]


@pytest.mark.integration
def test_resync_of_an_s3_bucket_requeues_every_completed_version_and_none_is_copied_twice(pair):
    start_pipeline(pair)
    written = put_versions(pair, ["a", "a", "b"])
    before = pair.wait_all_done(180)
    generations = {v: before[v].entry.enqueued_at for v in written}
    target_versions_before = sum(len(r) for r in target_replicas(pair).values())

    result = pair.workers.run("resync", "--bucket", pair.source_bucket)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "re-queued 3 of 3 version(s) of bucket %s\n" % pair.source_bucket

    def completed_again():
        statuses = pair.statuses()
        again = {v: statuses[v] for v in written if statuses[v].entry.enqueued_at > generations[v]}
        return again if len(again) == 3 and all(s.status == "COMPLETED" for s in again.values()) else None

    wait_for(completed_again, 120, 1.0, "the 3 re-queued versions to be COMPLETED again")
    replicas = target_replicas(pair)
    assert {vid: len(replicas[vid]) for _, vid in written} == {vid: 1 for _, vid in written}
    assert sum(len(r) for r in replicas.values()) == target_versions_before


@pytest.mark.integration
def test_resync_of_an_s3_bucket_queues_each_keys_versions_oldest_first_for_the_rules_sites(pair):
    written = put_versions(pair, ["k", "k", "k", "other"])

    result = pair.workers.run("resync", "--bucket", pair.source_bucket)

    assert result.returncode == 0, result.stderr
    queued_now = pair_queued(pair)
    assert queued_now == {v: [(SITE,)] for v in written}
    assert [v for v in queued_now if v[0] == "k"] == [v for v in written if v[0] == "k"]
    assert sorted(pair_marks(pair)) == sorted((key, vid, SITE, "PENDING") for key, vid in written)


@pytest.mark.integration
def test_resync_of_an_s3_bucket_since_a_time_queues_only_the_versions_modified_from_then(pair):
    put_versions(pair, ["old"])
    old_time = pair.source.head_object(Bucket=pair.source_bucket, Key="old")["LastModified"]
    wait_for(lambda: datetime.now(timezone.utc) > old_time + timedelta(seconds=1.5), 10, 0.1,
             "a second after the first version, so that --since can part them")
    newer = put_versions(pair, ["new", "old"])
    since = pair.source.head_object(Bucket=pair.source_bucket, Key="new")["LastModified"]

    result = pair.workers.run("resync", "--bucket", pair.source_bucket, "--since", since.isoformat())

    assert result.returncode == 0, result.stderr
    assert result.stdout == "re-queued 2 of 3 version(s) of bucket %s\n" % pair.source_bucket
    assert set(pair_queued(pair)) == set(newer)
    assert {mark[:2] for mark in pair_marks(pair)} == set(newer)


@pytest.mark.integration
def test_resync_of_an_s3_bucket_without_replication_rules_says_so(pair):
    result = pair.workers.run("resync", "--bucket", "no-such-bucket-%s" % uuid.uuid4().hex[:8])

    assert result.returncode == 1
    assert "has no enabled replication rule" in result.stderr and result.stdout == ""


@pytest.mark.integration
def test_resync_of_an_s3_bucket_logs_its_progress_every_ten_seconds(pair, caplog):
    """A clock moving 6 s at each reading: versions 2 and 4 are listed 12 and 24 s in, a log line due each time."""
    put_versions(pair, ["p1", "p2", "p3", "p4"])
    ticks = itertools.count(0, 6)
    progress = Progress(io.StringIO(), clock=lambda: float(next(ticks)))

    with caplog.at_level(logging.INFO, logger="crr_worker.resync"):
        counts = resync(pair.load(), pair.source_bucket, progress=progress)

    assert (counts.listed, counts.queued) == (4, 4)
    shown = [(r.fields["listed"], r.fields["queued"]) for r in caplog.records if r.getMessage() == "resync progress"]
    assert [listed for listed, _ in shown] == [2, 4]
    assert all(queued <= listed for listed, queued in shown)


@pytest.mark.integration
def test_resync_of_an_s3_bucket_reports_its_start_and_end_and_a_live_api_exports_them_as_a_resync(pair):
    put_versions(pair, ["r1", "r2", "r1"])
    api = start_api(pair)

    result = pair.workers.run("resync", "--bucket", pair.source_bucket)

    assert result.returncode == 0, result.stderr
    control = [m for m in read_topic(pair.sandbox.kafka_bootstrap, control_topic(pair.load()))
               if m.key == b"resync/%s" % pair.source_bucket.encode()]
    reports = [ScanReport.from_kafka(m.value) for m in control]
    assert [(r.kind, r.listed, r.queued, r.running) for r in reports] == [(RESYNC, 0, 0, True), (RESYNC, 3, 3, False)]
    started = finished_listing_metrics(api, 'bucket="%s",kind="resync"' % pair.source_bucket, 3)
    assert started == reports[0].started_at / 1000.0
    metrics = api.get("/metrics").text
    assert _metric(metrics, "crr_scan_running", 'bucket="%s",kind="scan"' % pair.source_bucket) is None


def test_progress_is_reported_from_its_start_with_each_log_line_to_its_end_and_not_before_its_start():
    now, reported = [0.0], []
    progress = Progress(io.StringIO(), clock=lambda: now[0])
    progress.report = lambda counts, running: reported.append((counts.listed, running))
    progress.update(Counts(listed=1))
    progress.end(Counts(listed=1))
    assert reported == []  # failed before its start: nothing to report (no series for a resync that never ran)

    progress.start(Counts())
    for listed, at in ((1, 5.0), (2, 10.0), (3, 15.0), (4, 20.0)):
        now[0] = at
        progress.update(Counts(listed=listed))
    progress.end(Counts(listed=5))
    progress.end(Counts(listed=5))
    assert reported == [(0, True), (2, True), (4, True), (5, False)]


@pytest.mark.parametrize("sites, waiting", [({"zenko", "us-east-2"}, ("zenko",)), ({"us-east-2"}, ())])
def test_a_pending_version_waits_for_the_served_sites_its_backends_name(sites, waiting):
    pending = json.loads(captured_md("s5_01_source_get_metadata"))
    assert waiting_sites(pending, frozenset(sites)) == waiting


def test_a_replica_waits_for_no_site():
    replica = load_sample("s5_04_target_put_metadata_replica")["request"]["body"]
    assert waiting_sites(replica, frozenset({"zenko"})) == ()


def test_a_failed_backend_waits_and_a_completed_one_does_not():
    failed = json.loads(logged_md(FAILED_LOG, FAILED_VERSION[0], "FAILED"))
    completed = json.loads(logged_md("s3_07_log_after_backbeat_put_metadata_completed", "docs/report.txt",
                                     "COMPLETED"))
    assert waiting_sites(failed, frozenset({"zenko"})) == ("zenko",)
    assert waiting_sites(completed, frozenset({"zenko"})) == ()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_is_one_line_redrawn_at_most_every_half_second():
    """Each redraw covers the previous one: a shorter line is padded over the longer one's tail."""
    now = [0.0]
    terminal = Terminal()
    progress = Progress(terminal, clock=lambda: now[0])
    for listed, at in ((10, 0.25), (20, 0.5), (30, 0.75), (400, 1.0), (410, 1.25)):
        now[0] = at
        progress.update(Counts(listed=listed, queued=listed // 10))
    now[0] = 8.0
    progress.done(Counts(listed=500, queued=50))

    assert terminal.getvalue() == ("\rlisted 20, queued 2, 40 versions/s"
                                   "\rlisted 400, queued 40, 400 versions/s"
                                   "\rlisted 500, queued 50, 62 versions/s \n")


def test_progress_elsewhere_is_a_log_line_every_ten_seconds(caplog):
    now = [0.0]
    progress = Progress(io.StringIO(), clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="crr_worker.resync"):
        for listed, at in ((100, 5.0), (200, 10.0), (300, 15.0), (400, 21.0)):
            now[0] = at
            progress.update(Counts(listed=listed))
        progress.done(Counts(listed=500))

    shown = [r.fields["listed"] for r in caplog.records if r.getMessage() == "resync progress"]
    assert shown == [200, 400]


def test_progress_on_a_terminal_is_logged_every_ten_seconds_too_on_a_line_of_its_own(caplog):
    """The progress line is wiped before the JSON line goes to the same stderr, and drawn again after it."""
    now = [0.0]
    terminal = Terminal()
    progress = Progress(terminal, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="crr_worker.resync"):
        for listed, at in ((10, 1.0), (20, 10.0)):
            now[0] = at
            progress.update(Counts(listed=listed))

    assert [r.fields["listed"] for r in caplog.records if r.getMessage() == "resync progress"] == [20]
    first = "listed 10, queued 0, 10 versions/s"
    assert terminal.getvalue() == "\r" + first + "\r" + " " * len(first) + "\r" + "\rlisted 20, queued 0, 2 versions/s"
