"""The worker test harness: a replication pair on the sandbox and the worker run as real processes.

Every test gets its own buckets, SQS queue, topics and consumer groups, so tests share the session
sandbox without seeing each other's data. Worker components run as `crr-worker` subprocesses from the venv.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import boto3
import pytest
from botocore.config import Config

CRR_WORKER = os.path.join(os.path.dirname(sys.executable), "crr-worker")
SITE = "awsbackend"


def _require_worker() -> None:
    if not os.path.exists(CRR_WORKER):
        pytest.fail("crr-worker is not installed in the venv: run `.venv/bin/pip install -e ./worker`")


def client(service: str, url: str):
    config = Config(request_checksum_calculation="when_required", response_checksum_validation="when_required",
                    retries={"total_max_attempts": 3}, max_pool_connections=16)
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=config)


def wait_for(predicate, timeout_s: float, interval_s: float = 1.0, what: str = "condition"):
    """predicate()'s first truthy value, polled until `timeout_s`; fails the test naming `what` otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail("timed out after %.0f s waiting for %s" % (timeout_s, what))
        time.sleep(interval_s)


@dataclass
class WorkerProcesses:
    """crr-worker subprocesses of one test; all are stopped at teardown."""

    config_path: str
    log_dir: str
    running: list = field(default_factory=list)

    def start(self, *command: str, name: str | None = None) -> subprocess.Popen:
        _require_worker()
        label = name or "-".join(command).replace("--", "")
        log_path = os.path.join(self.log_dir, "%s-%d.log" % (label, len(self.running)))
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([CRR_WORKER, "--config", self.config_path, *command], stdout=log, stderr=log,
                                    stdin=subprocess.DEVNULL)
        proc.log_path, proc.label = log_path, label
        self.running.append(proc)
        return proc

    def run(self, *command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        _require_worker()
        return subprocess.run([CRR_WORKER, "--config", self.config_path, *command], capture_output=True,
                              text=True, timeout=timeout)

    def terminate(self, proc: subprocess.Popen, timeout: float = 40) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=timeout)

    def stop_all(self) -> None:
        for proc in self.running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.running:
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def log_records(proc) -> list[dict]:
    """The JSON log lines a crr-worker process wrote so far."""
    with open(proc.log_path) as log:
        return [json.loads(line) for line in log if line.startswith("{")]


def logged_at(record: dict) -> float:
    """When a log record was written (its `time`, 2026-12-03T15:13:22.123Z), in seconds since the epoch."""
    return datetime.fromisoformat(record["time"].replace("Z", "+00:00")).timestamp()


@dataclass
class ReplicationPair:
    """A versioned source bucket replicating to a versioned target bucket, with notifications to SQS.

    The source (the tests' `source` client and the worker's endpoint) is reached through `source_proxy`, a
    StoredReplicationProxy: moto answers GetBucketReplication with every rule as a V2 rule that does not
    replicate delete markers (ARCHITECTURE §6), the proxy with the rules as they were put, as S3 does.
    """

    sandbox: object
    source_bucket: str
    target_bucket: str
    queue_url: str
    config: dict
    config_path: str
    source: object
    target: object
    workers: WorkerProcesses
    source_proxy: object = None

    def write_config(self, **changes) -> None:
        """Rewrite the config file after applying `changes` (dotted path -> value)."""
        for path, value in changes.items():
            node = self.config
            *parents, last = path.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
        with open(self.config_path, "w") as out:
            json.dump(self.config, out, indent=2)

    def load(self):
        from crr_worker.config import load_config

        return load_config(self.config_path)

    def statuses(self) -> dict:
        """(key, version id) -> StatusEntry for this pair's site, read from the ledger."""
        from crr_worker.ledger import read_ledger

        return {(s.entry.key, s.entry.version_id): s for s in read_ledger(self.load()).values() if s.site == SITE}

    def source_versions(self) -> list[dict]:
        """Every source version and delete marker: dicts with Key, VersionId, ETag (None for markers)."""
        found = []
        for page in self.source.get_paginator("list_object_versions").paginate(Bucket=self.source_bucket):
            found += [dict(v, Marker=False) for v in page.get("Versions", [])]
            found += [dict(v, Marker=True, ETag=None) for v in page.get("DeleteMarkers", [])]
        return found

    def wait_all_done(self, timeout_s: float, expect_status: str = "COMPLETED") -> dict:
        """Statuses once every source version has left PENDING; fails if any ended other than expected."""
        wanted = {(v["Key"], v["VersionId"]) for v in self.source_versions()}

        def settled():
            statuses = self.statuses()
            done = {k: s for k, s in statuses.items() if k in wanted and s.status != "PENDING"}
            return statuses if len(done) == len(wanted) else None

        statuses = wait_for(settled, timeout_s, 2.0, "%d versions to be replicated" % len(wanted))
        wrong = {k: (s.status, s.reason) for k, s in statuses.items() if k in wanted and s.status != expect_status}
        assert not wrong, "versions not %s: %s" % (expect_status, list(wrong.items())[:5])
        return statuses


def target_replicas(pair: ReplicationPair) -> dict[str, list[dict]]:
    """scal-version-id -> target versions carrying it (a list, so duplicates show), each with its metadata."""
    replicas: dict[str, list[dict]] = {}
    for page in pair.target.get_paginator("list_object_versions").paginate(Bucket=pair.target_bucket):
        for version in page.get("Versions", []):
            head = pair.target.head_object(Bucket=pair.target_bucket, Key=version["Key"],
                                           VersionId=version["VersionId"])
            record = dict(version, Metadata=head.get("Metadata", {}), ContentType=head.get("ContentType"))
            replicas.setdefault(head["Metadata"].get("scal-version-id", ""), []).append(record)
    return replicas


def body_md5(s3, bucket: str, key: str, version_id: str) -> str:
    digest = hashlib.md5()
    body = s3.get_object(Bucket=bucket, Key=key, VersionId=version_id)["Body"]
    for chunk in iter(lambda: body.read(1024 * 1024), b""):
        digest.update(chunk)
    return digest.hexdigest()


def make_pair(sandbox, tmp_path, queue_processor: dict | None = None, site_extra: dict | None = None,
              scan_interval_s: float = 600, notifications: bool = True) -> ReplicationPair:
    """A fresh pair. `notifications=False` leaves the scan as the only feed: moto leaks one temp-file copy of
    every object >= 5 MiB in the bucket per ListObjectVersions call (measured), and each notification costs
    one listing, so tests with big objects written before the start go without notifications."""
    tag = uuid.uuid4().hex[:10]
    credentials = _credentials_file(tmp_path)
    from tests.integration.test_crr_bucket_replication import StoredReplicationProxy

    proxy = StoredReplicationProxy(sandbox.source.url)
    source, target = client("s3", proxy.url), client("s3", sandbox.target.url)
    source_bucket, target_bucket = "crr-src-%s" % tag, "crr-tgt-%s" % tag
    for s3, bucket in ((source, source_bucket), (target, target_bucket)):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    queue_url = _notification_queue(sandbox, source, source_bucket) if notifications else None
    source.put_bucket_replication(Bucket=source_bucket, ReplicationConfiguration={
        "Role": "arn:aws:iam::%s:role/crr-%s" % (sandbox.source.account_id, tag),
        "Rules": [{"ID": "all", "Prefix": "", "Status": "Enabled",
                   "Destination": {"Bucket": "arn:aws:s3:::%s" % target_bucket, "StorageClass": SITE}}],
    })
    config = {
        "kafka": {"hosts": sandbox.kafka_bootstrap, "partitions": 4},
        "queuePopulator": {"logSource": "s3", "scanIntervalS": scan_interval_s},
        "extensions": {"replication": {
            "source": {"endpoint": proxy.url, "region": "us-east-1", "buckets": [source_bucket],
                       "notificationQueueUrl": queue_url, "credentials": credentials},
            "destination": {"bootstrapList": [
                dict({"site": SITE, "type": "aws_s3", "endpoint": sandbox.target.url, "region": "us-east-1",
                      "credentials": credentials},
                     **(site_extra or {})),
            ]},
            "topic": "crr-%s" % tag,
            "replicationStatusTopic": "crr-%s-status" % tag,
            "ledgerTopic": "crr-%s-ledger" % tag,
            "replicationStatusProcessor": {"groupId": "crr-%s-status-group" % tag},
            "queueProcessor": dict({"groupId": "crr-%s-group" % tag, "concurrency": 8}, **(queue_processor or {})),
        }},
        "log": {"logLevel": "info"},
    }
    config_path = str(tmp_path / "config.json")
    workers = WorkerProcesses(config_path, str(tmp_path))
    pair = ReplicationPair(sandbox, source_bucket, target_bucket, queue_url, config, config_path, source, target,
                           workers, proxy)
    pair.write_config()
    return pair


def _credentials_file(directory) -> dict:
    """A shared-credentials file readable by its owner only, as the worker demands."""
    path = str(directory / "credentials")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        out.write("[crr]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    return {"file": path, "profile": "crr"}


def _notification_queue(sandbox, source, bucket: str) -> str:
    sqs = client("sqs", sandbox.source.url)
    queue_url = sqs.create_queue(QueueName=bucket)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    source.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}],
    })
    return queue_url


@pytest.fixture
def pair_factory(sandbox, tmp_path):
    """Builds ReplicationPairs; their worker processes are stopped at teardown."""
    made = []

    def build(**options) -> ReplicationPair:
        directory = tmp_path / ("pair%d" % len(made))
        directory.mkdir()
        made.append(make_pair(sandbox, directory, **options))
        return made[-1]

    yield build
    for pair in made:
        pair.workers.stop_all()
        pair.source_proxy.close()


@pytest.fixture
def pair(pair_factory) -> ReplicationPair:
    return pair_factory()


def start_pipeline(pair: ReplicationPair, processors: int = 1, populator: bool = True) -> list:
    """Start status processor, processors and (unless told not to) populator; returns the processor processes."""
    pair.workers.start("status-processor")
    started = [pair.workers.start("processor", "--site", SITE, name="processor") for _ in range(processors)]
    if populator:
        pair.workers.start("populator")
    return started
