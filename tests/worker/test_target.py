"""The aws_s3 target on its own, against the sandbox's moto source and target: the idempotence check that runs
alongside the source GET."""

from __future__ import annotations

import threading

import pytest
from botocore.exceptions import ClientError
from crr_worker.entries import ReplicationEntry
from crr_worker.sources.s3 import S3Source
from crr_worker.targets.aws_s3 import AwsS3Target

from tests.worker.harness import SITE

pytestmark = pytest.mark.integration


@pytest.fixture
def parts(pair):
    config = pair.load()
    source = S3Source(config.source, SITE)
    target = AwsS3Target(config.site(SITE), config.queue_processor)
    yield source, target
    target.close()


def entry_for(pair, key: str, reply: dict, size: int) -> ReplicationEntry:
    return ReplicationEntry(bucket=pair.source_bucket, key=key, version_id=reply["VersionId"], size=size,
                            etag=reply["ETag"].strip('"'), sites=(SITE,),
                            destination="arn:aws:s3:::%s" % pair.target_bucket)


def target_versions(pair, key: str) -> list[str]:
    reply = pair.target.list_object_versions(Bucket=pair.target_bucket, Prefix=key)
    return [v["VersionId"] for v in reply.get("Versions", [])]


def test_a_version_is_written_once_then_found_even_after_its_source_version_is_gone(pair, parts):
    source, target = parts
    entry = entry_for(pair, "k", pair.source.put_object(Bucket=pair.source_bucket, Key="k", Body=b"abc"), 3)

    first = target.replicate(entry, source, threading.Event())
    again = target.replicate(entry, source, threading.Event())
    pair.source.delete_object(Bucket=pair.source_bucket, Key="k", VersionId=entry.version_id)
    after_delete = target.replicate(entry, source, threading.Event())

    assert (first.skipped, first.bytes_copied) == (False, 3)
    assert (again.skipped, again.target_version_id) == (True, first.target_version_id)
    assert (after_delete.skipped, after_delete.target_version_id) == (True, first.target_version_id)
    assert target_versions(pair, "k") == [first.target_version_id]


def test_a_version_gone_from_the_source_before_its_replica_was_written_is_an_error(pair, parts):
    source, target = parts
    entry = entry_for(pair, "gone", pair.source.put_object(Bucket=pair.source_bucket, Key="gone", Body=b"x"), 1)
    pair.source.delete_object(Bucket=pair.source_bucket, Key="gone", VersionId=entry.version_id)

    with pytest.raises(ClientError):
        target.replicate(entry, source, threading.Event())
    assert target_versions(pair, "gone") == []


def test_a_site_without_bucket_match_stores_keys_under_the_source_bucket_and_finds_them_there(pair):
    pair.write_config(**{"extensions.replication.destination.bootstrapList": [
        dict(pair.config["extensions"]["replication"]["destination"]["bootstrapList"][0], bucketMatch=False)]})
    config = pair.load()
    source = S3Source(config.source, SITE)
    target = AwsS3Target(config.site(SITE), config.queue_processor)
    try:
        entry = entry_for(pair, "k", pair.source.put_object(Bucket=pair.source_bucket, Key="k", Body=b"abc"), 3)
        first = target.replicate(entry, source, threading.Event())
        again = target.replicate(entry, source, threading.Event())
    finally:
        target.close()
    key = "%s/k" % pair.source_bucket
    assert target_versions(pair, key) == [first.target_version_id] and again.skipped
    assert target_versions(pair, "k") == []
