"""The issue's end-to-end run: 1,000 objects of every awkward kind, replicated and checked byte for byte."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.worker.harness import body_md5, start_pipeline, target_replicas, wait_for

pytestmark = pytest.mark.integration
MIB = 1024 * 1024
AWKWARD_KEYS = ["with space", "plus+sign", "per%cent", "unicodé/ключ/鍵", "double//slash", "a b+c%20d", "dir/"]


def _write_all(pair) -> None:
    s3, bucket = pair.source, pair.source_bucket
    puts = [("empty", b"", {}), ("one-mib", os.urandom(MIB), {}),
            ("meta", b"m", {"Metadata": {"owner": "alice"}, "Tagging": "team=blue"})]
    puts += [(key, key.encode(), {}) for key in AWKWARD_KEYS]
    puts += [("versioned", b"v%d" % i, {}) for i in range(3)]
    puts += [("doomed", b"soon deleted", {})]
    small = 1000 - len(puts) - 1
    for key, body, extra in puts:
        s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: s3.put_object(Bucket=bucket, Key="small/%04d" % i, Body=os.urandom(i % 2048)),
                      range(small)))
    s3.delete_object(Bucket=bucket, Key="doomed")
    # Last, and once the rest is through: moto copies (and leaks) every object >= 5 MiB on each
    # ListObjectVersions, and the populator lists a key per notification.
    wait_for(lambda: len(pair.statuses()) >= 999, 300, 2.0, "the small objects to be queued")
    s3.put_object(Bucket=bucket, Key="seventy-mib", Body=os.urandom(70 * MIB))


def test_thousand_objects_are_replicated_with_replica_marks_versions_in_order_and_equal_bodies(pair_factory):
    # moto notifies no delete marker: the periodic scan is what finds "doomed"'s marker
    # mpuThreshold below seventy-mib's size: one version goes by multipart upload, the others by one PUT
    pair = pair_factory(queue_processor={"concurrency": 8, "mpuThreshold": 64 * MIB}, scan_interval_s=20)
    start_pipeline(pair)
    _write_all(pair)
    statuses = pair.wait_all_done(300)

    source_versions = pair.source_versions()
    assert len([v for v in source_versions if not v["Marker"]]) == 1000
    replicas = target_replicas(pair)
    for version in source_versions:
        assert statuses[(version["Key"], version["VersionId"])].status == "COMPLETED"
        if version["Marker"]:
            continue
        (replica,) = replicas[version["VersionId"]]
        assert replica["Key"] == version["Key"]
        assert replica["Metadata"]["scal-replication-status"] == "REPLICA"
        if "-" in replica["ETag"]:  # multipart: compare the bytes themselves
            assert body_md5(pair.target, pair.target_bucket, version["Key"], replica["VersionId"]) == \
                body_md5(pair.source, pair.source_bucket, version["Key"], version["VersionId"])
        else:
            assert replica["ETag"] == version["ETag"]
    assert "-" in replicas[_version_of(source_versions, "seventy-mib")][0]["ETag"]
    assert replicas[_version_of(source_versions, "meta")][0]["Metadata"]["owner"] == "alice"
    marker = pair.target.list_object_versions(Bucket=pair.target_bucket, Prefix="doomed")["DeleteMarkers"]
    assert len(marker) == 1 and marker[0]["IsLatest"]
    in_order = pair.target.list_object_versions(Bucket=pair.target_bucket, Prefix="versioned")["Versions"]
    source_order = [v["VersionId"] for v in source_versions if v["Key"] == "versioned"]
    assert [replicas_id(pair, v) for v in in_order] == source_order


def _version_of(versions, key: str) -> str:
    return next(v["VersionId"] for v in versions if v["Key"] == key and not v["Marker"])


def replicas_id(pair, target_version) -> str:
    head = pair.target.head_object(Bucket=pair.target_bucket, Key=target_version["Key"],
                                   VersionId=target_version["VersionId"])
    return head["Metadata"]["scal-version-id"]
