"""The aws_s3 target on its own, against the sandbox's moto source and target: the idempotence check that runs
alongside the source GET, a single PUT's body streamed or spooled, and the source's paged listing."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError
from crr_worker.entries import ReplicationEntry
from crr_worker.sources.s3 import FIRST_SCAN_PAGE, S3Source
from crr_worker.targets import aws_s3
from crr_worker.targets.aws_s3 import AwsS3Target
from crr_worker.targets.stream import SourceStream

from tests.worker.harness import SITE

pytestmark = pytest.mark.integration
MIB = 1024 * 1024


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


def source_md5(pair, key: str, version_id: str) -> str:
    body = pair.source.get_object(Bucket=pair.source_bucket, Key=key, VersionId=version_id)["Body"].read()
    return hashlib.md5(body).hexdigest()


def replica_of(pair, key: str, written) -> tuple[str, str]:
    """(the replica's ETag, its body's MD5)."""
    got = pair.target.get_object(Bucket=pair.target_bucket, Key=key, VersionId=written.target_version_id)
    return got["ETag"].strip('"'), hashlib.md5(got["Body"].read()).hexdigest()


def test_a_version_written_by_one_put_streams_to_its_replica_which_gets_the_same_etag(pair, parts, monkeypatch):
    source, target = parts
    body = os.urandom(9 * MIB)  # above spoolMemoryBytes: a spool would spill it to disk
    entry = entry_for(pair, "one-put", pair.source.put_object(Bucket=pair.source_bucket, Key="one-put", Body=body),
                      len(body))
    monkeypatch.setattr(aws_s3, "Spool", None)  # streamed: nothing is spooled

    written = target.replicate(entry, source, threading.Event())

    assert (written.skipped, written.bytes_copied) == (False, len(body))
    assert replica_of(pair, "one-put", written) == (entry.etag, hashlib.md5(body).hexdigest())


def test_a_version_uploaded_in_parts_has_no_md5_etag_and_is_spooled_to_its_replica(pair, parts):
    source, target = parts
    upload = pair.source.create_multipart_upload(Bucket=pair.source_bucket, Key="in-parts")["UploadId"]
    bodies = [os.urandom(5 * MIB), os.urandom(1000)]
    etags = [pair.source.upload_part(Bucket=pair.source_bucket, Key="in-parts", UploadId=upload, PartNumber=n,
                                     Body=b)["ETag"] for n, b in enumerate(bodies, start=1)]
    reply = pair.source.complete_multipart_upload(
        Bucket=pair.source_bucket, Key="in-parts", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, start=1)]})
    entry = entry_for(pair, "in-parts", reply, sum(map(len, bodies)))
    assert entry.etag.endswith("-2")

    written = target.replicate(entry, source, threading.Event())

    assert replica_of(pair, "in-parts", written)[1] == hashlib.md5(b"".join(bodies)).hexdigest()


def test_a_small_body_is_spooled_in_memory_not_streamed(pair, parts, monkeypatch):
    source, target = parts
    entry = entry_for(pair, "small", pair.source.put_object(Bucket=pair.source_bucket, Key="small", Body=b"abc"), 3)
    monkeypatch.setattr(aws_s3, "SourceStream", None)

    written = target.replicate(entry, source, threading.Event())

    assert replica_of(pair, "small", written) == (entry.etag, hashlib.md5(b"abc").hexdigest())


def test_a_body_refused_for_its_etag_s_md5_is_copied_again_spooled(pair, caplog):
    """A source whose ETag looks like an MD5 but is not the body's: the target refuses the streamed PUT
    (BadDigest; moto does not check Content-MD5, so the refusal is made here, once) and the copy is spooled."""
    config = pair.load()
    source = S3Source(config.source, SITE)
    target = AwsS3Target(config.site(SITE), dataclasses.replace(config.queue_processor, spool_memory_bytes=0))
    entry = entry_for(pair, "odd-etag", pair.source.put_object(Bucket=pair.source_bucket, Key="odd-etag",
                                                               Body=b"abc"), 3)
    put_object, refused = target.data.put_object, []

    def refuse_streams(bucket, key, body, *args, **kwargs):
        if isinstance(body, SourceStream):
            refused.append(body.read(100))
            raise ClientError({"Error": {"Code": "BadDigest", "Message": "no match"}}, "PutObject")
        return put_object(bucket, key, body, *args, **kwargs)

    target.data.put_object = refuse_streams
    try:
        written = target.replicate(entry, source, threading.Event())
    finally:
        target.close()

    assert refused == [b"abc"] and replica_of(pair, "odd-etag", written)[1] == source_md5(pair, "odd-etag",
                                                                                        entry.version_id)
    assert any("not its body's MD5" in r.getMessage() for r in caplog.records)


def test_a_bucket_s_listing_starts_with_a_small_page_then_goes_on_from_where_it_ended(pair, parts):
    """The scan's listing (crr_worker.sources.s3.FIRST_SCAN_PAGE): a key's versions split by the first page's end
    come out together, each key's oldest first, every version once."""
    source, _ = parts
    keys = ["k/%03d" % i for i in range(FIRST_SCAN_PAGE + 20)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: pair.source.put_object(Bucket=pair.source_bucket, Key=key, Body=b"1"), keys))
    split = keys[FIRST_SCAN_PAGE - 1]  # its two versions: the second (the newer) listed last on the first page
    newer = pair.source.put_object(Bucket=pair.source_bucket, Key=split, Body=b"2")["VersionId"]
    requests = []
    source.s3.meta.events.register("before-parameter-build.s3.ListObjectVersions",
                                   lambda params, **_: requests.append(dict(params)))

    listed = list(source.list_versions(pair.source_bucket))

    assert [v.key for v in listed] == sorted(keys + [split])
    assert [v.version_id for v in listed if v.key == split][-1] == newer  # oldest first
    assert len({(v.key, v.version_id) for v in listed}) == len(keys) + 1
    assert [r.get("MaxKeys") for r in requests] == [FIRST_SCAN_PAGE, None]
