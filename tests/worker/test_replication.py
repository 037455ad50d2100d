"""Replication through the real pipeline: crr-worker processes, a Kafka broker, moto source and target."""

from __future__ import annotations

import pytest

from tests.worker.harness import SITE, start_pipeline, target_replicas, wait_for

pytestmark = pytest.mark.integration

ODD_KEYS = ["with space", "plus+sign", "per%cent", "unicodé/ключ/鍵", "double//slash", "dir/", "a b+c%20d"]


def assert_replicated(pair, statuses) -> None:
    """Every source version has exactly one REPLICA on the target with its scal-version-id and same bytes."""
    replicas = target_replicas(pair)
    for version in pair.source_versions():
        status = statuses[(version["Key"], version["VersionId"])]
        if version["Marker"]:
            continue
        copies = replicas.get(version["VersionId"], [])
        assert len(copies) == 1, "%s/%s has %d replicas" % (version["Key"], version["VersionId"], len(copies))
        replica = copies[0]
        assert replica["Key"] == version["Key"]
        assert replica["Metadata"]["scal-replication-status"] == "REPLICA"
        assert replica["ETag"] == version["ETag"]
        assert status.target_version_id == replica["VersionId"]


def test_objects_written_before_the_worker_started_are_replicated_by_the_scan(pair):
    for key in ODD_KEYS:
        pair.source.put_object(Bucket=pair.source_bucket, Key=key, Body=key.encode())
    start_pipeline(pair)
    statuses = pair.wait_all_done(120)
    assert_replicated(pair, statuses)


def test_metadata_tags_and_headers_are_carried(pair):
    start_pipeline(pair)
    pair.source.put_object(Bucket=pair.source_bucket, Key="doc.txt", Body=b"hello", ContentType="text/plain",
                           CacheControl="max-age=60", ContentDisposition="attachment", ContentEncoding="identity",
                           Metadata={"owner": "alice"}, Tagging="team=blue&tier=1")
    wait_for(lambda: pair.source_versions() and pair.wait_all_done(90), 90, what="doc.txt replicated")
    head = pair.target.head_object(Bucket=pair.target_bucket, Key="doc.txt")
    assert head["ContentType"] == "text/plain"
    assert head["CacheControl"] == "max-age=60"
    assert head["ContentDisposition"] == "attachment"
    assert head["ContentEncoding"] == "identity"
    assert head["Metadata"]["owner"] == "alice"
    assert head["Metadata"]["scal-replication-status"] == "REPLICA"
    tags = pair.target.get_object_tagging(Bucket=pair.target_bucket, Key="doc.txt")["TagSet"]
    assert {t["Key"]: t["Value"] for t in tags} == {"team": "blue", "tier": "1"}


def test_versions_of_one_key_keep_their_order_and_delete_markers_are_replicated(pair_factory):
    pair = pair_factory(scan_interval_s=5)  # moto notifies no delete marker: a scan finds it
    start_pipeline(pair)
    ids = [pair.source.put_object(Bucket=pair.source_bucket, Key="k", Body=b"v%d" % i)["VersionId"] for i in range(3)]
    pair.source.delete_object(Bucket=pair.source_bucket, Key="k")
    statuses = pair.wait_all_done(90)
    assert_replicated(pair, statuses)
    listing = pair.target.list_object_versions(Bucket=pair.target_bucket, Prefix="k")
    assert [m["IsLatest"] for m in listing.get("DeleteMarkers", [])] == [True]
    newest_first = [pair.target.head_object(Bucket=pair.target_bucket, Key="k", VersionId=v["VersionId"])
                    ["Metadata"]["scal-version-id"] for v in listing["Versions"]]
    assert newest_first == list(reversed(ids))


def test_status_command_prints_completed_with_the_target_version(pair):
    pair.source.put_object(Bucket=pair.source_bucket, Key="one", Body=b"1")
    start_pipeline(pair)
    statuses = pair.wait_all_done(90)
    result = pair.workers.run("status", pair.source_bucket, "one", "--json")
    assert result.returncode == 0, result.stderr
    assert '"status": "COMPLETED"' in result.stdout
    (status,) = statuses.values()
    assert status.target_version_id in result.stdout
    assert status.site == SITE
