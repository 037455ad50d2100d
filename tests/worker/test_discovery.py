"""`source.discovery: true`: every bucket of the source account that has replication rules is replicated.

The source is a moto server of this test's own: a discovery scan of the session's shared source would see (and
replicate) the buckets of every other test.
"""

from __future__ import annotations

import dataclasses

import pytest

from sandbox import moto_server, processes
from tests.worker.harness import SITE, client, log_records, start_pipeline, target_replicas, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def own_source(tmp_path):
    endpoint = moto_server.start(str(tmp_path), "source")
    yield endpoint
    processes.stop(endpoint.process)


def test_discovery_replicates_every_bucket_with_rules_and_only_those(pair, own_source):
    source = client("s3", own_source.url)
    for bucket in ("discovered", "not-replicated"):
        source.create_bucket(Bucket=bucket)
        source.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        source.put_object(Bucket=bucket, Key="k", Body=bucket.encode())
    source.put_bucket_replication(Bucket="discovered", ReplicationConfiguration={
        "Role": "arn:aws:iam::%s:role/crr" % own_source.account_id,
        "Rules": [{"ID": "all", "Prefix": "", "Status": "Enabled",
                   "Destination": {"Bucket": "arn:aws:s3:::%s" % pair.target_bucket, "StorageClass": SITE}}],
    })
    prefix = "extensions.replication.source."
    pair.write_config(**{prefix + "endpoint": own_source.url, prefix + "buckets": [], prefix + "discovery": True,
                         prefix + "notificationQueueUrl": None})
    discovered = dataclasses.replace(pair, source=source, source_bucket="discovered")

    start_pipeline(discovered)
    statuses = discovered.wait_all_done(120)
    populator = discovered.workers.running[-1]
    wait_for(lambda: any(r.get("message") == "scan done" for r in log_records(populator)), 60, 0.5,
             "the populator's first scan (both buckets) to end")
    statuses = discovered.statuses()

    (version,) = discovered.source_versions()
    assert statuses[("k", version["VersionId"])].status == "COMPLETED"
    assert [r["Key"] for copies in target_replicas(discovered).values() for r in copies] == ["k"]
    assert {s.entry.bucket for s in statuses.values()} == {"discovered"}
