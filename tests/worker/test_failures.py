"""Failures and restarts: outages, crashes, missing buckets, scale-out; nothing lost, nothing written twice."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from botocore.exceptions import ClientError

from tests.worker.harness import SITE, log_records, start_pipeline, target_replicas, wait_for

pytestmark = pytest.mark.integration
MIB = 1024 * 1024


def put_many(pair, count: int, prefix: str = "obj", size: int = 64) -> None:
    for index in range(count):
        pair.source.put_object(Bucket=pair.source_bucket, Key="%s-%04d" % (prefix, index), Body=os.urandom(size))


def assert_each_version_once(pair) -> None:
    replicas = target_replicas(pair)
    source_ids = {v["VersionId"] for v in pair.source_versions() if not v["Marker"]}
    assert set(replicas) == source_ids
    duplicates = {vid: len(copies) for vid, copies in replicas.items() if len(copies) != 1}
    assert not duplicates


def test_target_outage_of_30_s_ends_completed_without_failures(pair):
    start_pipeline(pair)
    put_many(pair, 20, "before")
    wait_for(lambda: len(target_replicas(pair)) >= 5, 60, what="replication under way")
    target = pair.sandbox.target.process
    os.kill(target.pid, signal.SIGSTOP)
    try:
        put_many(pair, 20, "during")
        time.sleep(30)
    finally:
        os.kill(target.pid, signal.SIGCONT)
    pair.wait_all_done(180)
    assert_each_version_once(pair)


def test_processor_killed_mid_run_and_mid_multipart_loses_nothing_writes_nothing_twice_leaves_no_upload(
        pair_factory):
    pair = pair_factory(queue_processor={"mpuThreshold": 5 * MIB, "mpuPartSize": 5 * MIB, "partConcurrency": 2},
                        notifications=False)
    pair.source.put_object(Bucket=pair.source_bucket, Key="big", Body=os.urandom(30 * MIB))
    put_many(pair, 60)
    (processor,) = start_pipeline(pair)
    wait_for(lambda: _multipart_started(pair), 60, 0.2, what="a multipart upload on the target")
    processor.kill()  # SIGKILL: no cleanup at all
    processor.wait()
    pair.workers.start("processor", "--site", SITE, name="processor-again")
    pair.wait_all_done(240)
    assert_each_version_once(pair)
    assert not _multipart_started(pair), "the killed processor's upload was left open"


def _multipart_started(pair) -> bool:
    return bool(pair.target.list_multipart_uploads(Bucket=pair.target_bucket).get("Uploads"))


def test_deleted_target_bucket_fails_naming_it_and_retry_completes_after_recreation(pair):
    pair.target.delete_bucket(Bucket=pair.target_bucket)
    pair.source.put_object(Bucket=pair.source_bucket, Key="lost", Body=b"x")
    start_pipeline(pair)
    statuses = pair.wait_all_done(90, expect_status="FAILED")
    (failed,) = statuses.values()
    assert "NoSuchBucket" in failed.reason and pair.target_bucket in failed.reason
    listed = pair.workers.run("failed", "--site", SITE, "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout.splitlines()[0])["key"] == "lost"

    pair.target.create_bucket(Bucket=pair.target_bucket)
    pair.target.put_bucket_versioning(Bucket=pair.target_bucket, VersioningConfiguration={"Status": "Enabled"})
    retried = pair.workers.run("retry", "--bucket", pair.source_bucket)
    assert retried.returncode == 0 and "re-queued 1" in retried.stdout, retried.stderr
    statuses = pair.wait_all_done(90)
    assert list(statuses.values())[0].entry.replay_count == 1
    assert pair.workers.run("failed", "--json").stdout == ""


def test_retry_of_old_failed_versions_keeps_the_source_latest_on_the_target_and_a_deleted_key_deleted(
        pair_factory):
    pair = pair_factory(scan_interval_s=5)  # moto notifies no delete marker: the scan finds it
    pair.target.delete_bucket(Bucket=pair.target_bucket)
    for key in ("kept", "deleted"):
        pair.source.put_object(Bucket=pair.source_bucket, Key=key, Body=b"v1 of " + key.encode())
    start_pipeline(pair)
    pair.wait_all_done(90, expect_status="FAILED")
    pair.target.create_bucket(Bucket=pair.target_bucket)
    pair.target.put_bucket_versioning(Bucket=pair.target_bucket, VersioningConfiguration={"Status": "Enabled"})
    for body in (b"v2", b"v3"):
        latest = pair.source.put_object(Bucket=pair.source_bucket, Key="kept", Body=body)["VersionId"]
    pair.source.delete_object(Bucket=pair.source_bucket, Key="deleted")
    wait_for(lambda: _completed(pair) == len(pair.source_versions()) - 2, 120, what="the newer versions replicated")

    retried = pair.workers.run("retry", "--bucket", pair.source_bucket)
    assert retried.returncode == 0 and "re-queued 2" in retried.stdout, retried.stderr
    pair.wait_all_done(120)
    head = pair.target.get_object(Bucket=pair.target_bucket, Key="kept")
    assert head["Metadata"]["scal-version-id"] == latest and head["Body"].read() == b"v3"
    with pytest.raises(ClientError) as deleted:
        pair.target.head_object(Bucket=pair.target_bucket, Key="deleted")
    assert deleted.value.response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-delete-marker") == "true"


def _completed(pair) -> int:
    return sum(1 for s in pair.statuses().values() if s.status == "COMPLETED")


def test_two_processors_share_the_work_and_one_stopping_leaves_the_rest_to_the_other(pair):
    first, second = start_pipeline(pair, processors=2)
    wait_for(lambda: _has_partitions(first) and _has_partitions(second), 60, 0.5, what="both in the group")
    put_many(pair, 40, "a")
    wait_for(lambda: len(target_replicas(pair)) >= 10, 90, what="some replicas")
    assert pair.workers.terminate(second) == 0
    put_many(pair, 40, "b")
    pair.wait_all_done(180)
    assert_each_version_once(pair)
    assert _replicated_count(first) > 0 and _replicated_count(second) > 0


def _replicated_count(proc) -> int:
    """Versions a processor copied, from its 'processor stopped' log line (it is stopped first if running)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=40)
    stopped = [r for r in log_records(proc) if r.get("message") == "processor stopped"]
    return stopped[-1]["completed"] + stopped[-1]["skipped"] if stopped else 0


def _has_partitions(proc) -> bool:
    assigned = [r for r in log_records(proc) if r.get("message") == "partitions assigned"]
    return bool(assigned and assigned[-1]["partitions"])


def test_sigterm_mid_multipart_exits_promptly_aborts_the_upload_and_a_restart_completes(pair_factory):
    pair = pair_factory(queue_processor={"mpuThreshold": 5 * MIB, "mpuPartSize": 5 * MIB, "partConcurrency": 1},
                        notifications=False)
    pair.source.put_object(Bucket=pair.source_bucket, Key="big", Body=os.urandom(40 * MIB))
    (processor,) = start_pipeline(pair)
    wait_for(lambda: _multipart_started(pair), 60, 0.2, what="a multipart upload on the target")
    processor.send_signal(signal.SIGTERM)
    assert processor.wait(timeout=30) == 0
    if not pair.statuses() or list(pair.statuses().values())[0].status == "PENDING":
        assert not _multipart_started(pair), "an abandoned multipart upload was left open"
    pair.workers.start("processor", "--site", SITE, name="processor-again")
    pair.wait_all_done(120)
    assert_each_version_once(pair)
