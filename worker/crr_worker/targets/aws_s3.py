"""The `aws_s3` target: any S3 API. Replicas carry REPLICA + the source version id, and are written once.

Memory stays bounded whatever the object size. A PUT needs the body's MD5 before the body: a body larger than
`spoolMemoryBytes` whose source ETag is that MD5 goes from the source GET to the target PUT as it is read
(crr_worker.targets.stream); any other through a spool that keeps at most `spoolMemoryBytes` in memory (the rest
on disk) and computes it (and over plain http the SHA-256 the PUT signs).
Objects at or above `mpuThreshold` are copied as ranged GET -> UploadPart, a bounded number of parts at a time.
The HEAD and PUT of a single copy go by the lean client (crr_worker.s3_data), the rest by boto3.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import closing
from urllib.parse import urlencode

from botocore.exceptions import ClientError

from crr_worker.aws import load_keys, make_client
from crr_worker.config import QueueProcessorConfig, SiteConfig, part_size_for
from crr_worker.entries import ReplicationEntry
from crr_worker.logs import log
from crr_worker.object_md import DELETE_TAGGING, PUT_TAGGING, object_tags
from crr_worker.retry import RetryableError, Stopped, error_code
from crr_worker.s3_data import make_data_client
from crr_worker.sources.base import Source, VersionInfo
from crr_worker.targets.aws_s3_deletes import delete_replicas
from crr_worker.targets.aws_s3_order import (
    SOURCE_VERSION_KEY,
    TargetLatest,
    head_latest,
    key_versions,
    newer_versions,
    restore_latest,
    restore_newest,
    was_newer,
)
from crr_worker.targets.bandwidth import site_bandwidth
from crr_worker.targets.base import ReplicaWritten, destination_bucket
from crr_worker.targets.spool import AnyEvent, Spool, base64_md5
from crr_worker.targets.stream import SourceStream, etag_md5

LOG = logging.getLogger("crr_worker.targets.aws_s3")
REPLICA_STATUS_KEY = "scal-replication-status"
MAX_VERSIONS_CHECKED = 50


class AwsS3Target:
    """Writes replicas of source versions into one aws_s3 site."""

    def __init__(self, site: SiteConfig, settings: QueueProcessorConfig):
        self.site = site
        self.settings = settings
        keys = load_keys(site.credentials, "site %s credentials" % site.site)
        pool = settings.concurrency + settings.part_concurrency + 2
        self.s3 = make_client("s3", site.endpoint, site.region, keys, pool, site.read_timeout_s)
        self.data = make_data_client(site.endpoint, site.region, keys, pool, site.read_timeout_s)  # HEAD, PUT
        self.parts = ThreadPoolExecutor(settings.part_concurrency, thread_name_prefix="parts-%s" % site.site)
        self.checks = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="check-%s" % site.site)
        self.bandwidth = site_bandwidth(site.bandwidth_limit)  # shared by every copy of this processor

    def close(self) -> None:
        self.checks.shutdown(wait=True, cancel_futures=True)
        self.parts.shutdown(wait=True, cancel_futures=True)
        self.data.close()

    def destination(self, entry: ReplicationEntry) -> str:
        return destination_bucket(self.site, entry)

    def probe(self, entry: ReplicationEntry) -> None:
        """One cheap request to the site (HEAD of the entry's target bucket), for crr_worker.outage to tell a site
        that is down from one that answers: raises what the client raises; an error reply still means it is up."""
        self.s3.head_bucket(Bucket=self.destination(entry))

    def key(self, entry: ReplicationEntry) -> str:
        """The replica's key: the source key, under `<source bucket>/` when the site has bucketMatch false (so
        that several source buckets can share one target bucket, as CloudServer's aws_s3 locations do)."""
        return entry.key if self.site.bucket_match else "%s/%s" % (entry.bucket, entry.key)

    def replicate(self, entry: ReplicationEntry, source: Source, stop: threading.Event) -> ReplicaWritten:
        bucket = self.destination(entry)
        if entry.is_delete_marker:
            return self._replicate_delete_marker(bucket, entry, source)
        if entry.metadata_only:
            updated = self._replicate_metadata(bucket, entry, source)
            if updated is not None:
                return updated
        if entry.size < self.settings.mpu_threshold:
            if entry.first_copy:  # nothing to look for on the site (crr_worker.first_copies)
                opened = source.open_version(entry.bucket, entry.key, entry.version_id)
                return self._put_opened(bucket, entry, source, opened, stop)
            return self._put_single(bucket, entry, source, stop)
        if entry.first_copy:
            return self._put_multipart(bucket, entry, source, stop)
        existing, before = self._check(bucket, self.key(entry), entry.version_id)
        if existing is not None:
            return self._skipped(bucket, entry, source, existing)
        written = self._put_multipart(bucket, entry, source, stop)
        self._keep_latest(bucket, entry, source, before)
        return written

    def delete_replica(self, entry: ReplicationEntry, source_versions: list[VersionInfo]) -> ReplicaWritten:
        """A version delete (crr_worker.targets.aws_s3_deletes)."""
        removed = delete_replicas(self.s3, self.destination(entry), self.key(entry), entry.version_id, source_versions)
        return ReplicaWritten(removed)

    def find_replica(self, bucket: str, key: str, source_version_id: str) -> str | None:
        """The target version id of the replica of `source_version_id`, when the target already holds one."""
        return self._check(bucket, key, source_version_id)[0]

    def _check(self, bucket: str, key: str, source_version_id: str) -> tuple[str | None, TargetLatest]:
        """(the replica's target version id or None, the key's latest version on the target).

        The latest version answers in one HEAD in the usual cases (new key, redelivered last write); older
        versions are looked at only when the latest is another version, newest first, at most 1,000.
        """
        latest = head_latest(self.data, bucket, key)
        if latest.source_version_id == source_version_id and not latest.is_marker:
            return latest.version_id, latest
        if latest.version_id is None:  # no version, or an unversioned bucket
            return None, latest
        for version, is_marker in key_versions(self.s3, bucket, key):
            if is_marker or version.get("VersionId") == latest.version_id:
                continue
            head = self.s3.head_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])
            if (head.get("Metadata") or {}).get(SOURCE_VERSION_KEY) == source_version_id:
                return version["VersionId"], latest
        return None, latest

    def _keep_latest(self, bucket: str, entry: ReplicationEntry, source: Source, before: TargetLatest) -> None:
        """A version was just written over `before`: when the source has newer versions the target already holds,
        the newest is put back on top (crr_worker.targets.aws_s3_order). The source is listed only when the key
        had a latest, or for a re-queued entry (a newer marker may be on the source while the target holds none)."""
        if before.exists or entry.replay_count:
            restore_latest(self.s3, bucket, self.key(entry), before, newer_versions(source, entry))

    def _skipped(self, bucket: str, entry: ReplicationEntry, source: Source, existing: str) -> ReplicaWritten:
        """The target holds the replica already: done, once the newest version is back on top if this re-queued
        entry (a retry or a replay: the only late writes) found its late write done but its restore not (an error
        or a kill between the two). A first delivery's redelivery lists nothing more."""
        if entry.replay_count:
            restore_newest(self.s3, bucket, self.key(entry), newer_versions(source, entry))
        return ReplicaWritten(existing, skipped=True)

    def _replicate_delete_marker(self, bucket: str, entry: ReplicationEntry, source: Source) -> ReplicaWritten:
        """A DELETE without version id, which makes the target create a delete marker; once only. Done only once the
        target confirms the marker, whose version id is returned: the DELETE's reply says `DeleteMarker: true` with
        it, or else a HEAD of the key shows the marker. A DELETE that left none (an unversioned bucket, a server
        that deleted the object instead) is a RetryableError, so it ends FAILED, not COMPLETED without a marker.

        A marker has no metadata to recognise it by, so a redelivered marker is known as done when the target's
        latest version is a marker, or is the replica of a source version newer than this marker with a marker
        below it (the newest such: markers of one key are told apart by their place only). Without one, the
        marker is written and the newer replica put back on top of it.
        """
        key = self.key(entry)
        before = head_latest(self.data, bucket, key)
        if before.is_marker and before.version_id:
            if entry.replay_count:  # a late marker whose restore may not have happened
                restore_newest(self.s3, bucket, key, newer_versions(source, entry))
            return ReplicaWritten(before.version_id, skipped=True)
        newer = newer_versions(source, entry) if before.exists or entry.replay_count else []
        if was_newer(before, newer):
            below = self._marker_below(bucket, key, before.version_id)
            if below is not None:
                return ReplicaWritten(below, skipped=True)
        marker_id = self._write_marker(bucket, key, before)
        if before.exists:
            restore_latest(self.s3, bucket, key, before, newer)
        return ReplicaWritten(marker_id)

    def _write_marker(self, bucket: str, key: str, before: TargetLatest) -> str:
        """The version id of the delete marker a DELETE of `key` made; RetryableError when it made none over a
        version. A target holding no version of the key may make none (moto): the key is absent there as on the
        source, nothing is hidden, and "" is returned (a late older version then gets a marker put over it)."""
        reply = self.s3.delete_object(Bucket=bucket, Key=key)
        if reply.get("DeleteMarker") and reply.get("VersionId"):
            return reply["VersionId"]
        latest = head_latest(self.data, bucket, key)
        if latest.is_marker and latest.version_id:
            return latest.version_id
        if not before.exists and not latest.exists and not self._any_version(bucket, key):
            log(LOG, logging.INFO, "the target holds no version of the key and made no delete marker for it",
                bucket=bucket, key=key)
            return ""
        raise RetryableError("the target made no delete marker for %s in bucket %s (is its versioning enabled?)"
                             % (key, bucket))

    def _any_version(self, bucket: str, key: str) -> bool:
        return next(key_versions(self.s3, bucket, key, limit=1), None) is not None

    def _marker_below(self, bucket: str, key: str, latest_id: str) -> str | None:
        """The version id of the newest delete marker of `key` older than its latest version `latest_id` (or of
        the newest one, when `latest_id` is not among the MAX_VERSIONS_CHECKED newest)."""
        listed = list(key_versions(self.s3, bucket, key, limit=MAX_VERSIONS_CHECKED + 1))
        at = next((n for n, (v, is_marker) in enumerate(listed) if not is_marker and v.get("VersionId") == latest_id),
                  0)
        return next((v["VersionId"] for v, is_marker in listed[at:] if is_marker and v.get("VersionId")), None)

    def _replicate_metadata(self, bucket: str, entry: ReplicationEntry, source: Source) -> ReplicaWritten | None:
        """A metadata change of a replicated version: its tags set again on the replica (PUT_TAGGING,
        DELETE_TAGGING). None when the target holds no replica of the version: it is then copied whole, as
        Backbeat does."""
        key = self.key(entry)
        existing = self.find_replica(bucket, key, entry.version_id)
        if existing is None:
            return None
        if DELETE_TAGGING in entry.content:
            self.s3.delete_object_tagging(Bucket=bucket, Key=key, VersionId=existing)
        elif PUT_TAGGING in entry.content:
            tags = _tags(source, entry, None)
            self.s3.put_object_tagging(Bucket=bucket, Key=key, VersionId=existing,
                                       Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]})
        else:
            return ReplicaWritten(existing, skipped=True)  # nothing an S3 target holds changed (e.g. an ACL)
        return ReplicaWritten(existing)

    def _write_arguments(self, entry: ReplicationEntry, opened, tags: dict) -> dict:
        metadata = {k: v for k, v in opened.metadata.items() if k not in (REPLICA_STATUS_KEY, SOURCE_VERSION_KEY)}
        metadata[REPLICA_STATUS_KEY] = "REPLICA"
        metadata[SOURCE_VERSION_KEY] = entry.version_id
        arguments = dict(opened.headers, Metadata=metadata)
        if tags:
            arguments["Tagging"] = urlencode(tags)
        return arguments

    def _put_single(self, bucket: str, entry: ReplicationEntry, source: Source,
                    stop: threading.Event) -> ReplicaWritten:
        """One PUT. The idempotence check runs while the source GET starts (each is a round trip; across regions
        that is most of a small object's copy time); the body is read only once the check found no replica, and
        is closed unread when it found one."""
        check = self.checks.submit(self._check, bucket, self.key(entry), entry.version_id)
        try:
            opened = source.open_version(entry.bucket, entry.key, entry.version_id)
        except Exception:
            existing, _ = check.result()  # the source version may be gone once replicated: the replica decides
            if existing is not None:
                return self._skipped(bucket, entry, source, existing)
            raise
        try:
            existing, before = check.result()
        except BaseException:
            opened.body.close()
            raise
        if existing is not None:
            opened.body.close()
            return self._skipped(bucket, entry, source, existing)
        written = self._put_opened(bucket, entry, source, opened, stop)
        self._keep_latest(bucket, entry, source, before)
        return written

    def _put_opened(self, bucket: str, entry: ReplicationEntry, source: Source, opened,
                    stop: threading.Event) -> ReplicaWritten:
        """One PUT of the opened source version, by the lean client: streamed when the body is larger than the
        spool's memory and the source's ETag gives its MD5, else spooled (in memory, for most small bodies). A
        streamed body the target finds not to match that MD5 is copied again, spooled."""
        try:
            tags = _tags(source, entry, opened)
        except BaseException:
            opened.body.close()
            raise
        arguments = self._write_arguments(entry, opened, tags)
        md5 = etag_md5(opened.etag, opened.encryption) if opened.size > self.settings.spool_memory_bytes else None
        if md5 is None:
            return self._put_spooled(bucket, entry, opened, arguments, stop)
        try:
            with closing(SourceStream(opened.body, opened.size, stop, self.bandwidth)) as stream:
                reply = self.data.put_object(bucket, self.key(entry), stream, opened.size, md5, **arguments)
        except ClientError as exc:
            if error_code(exc) != "BadDigest":
                raise
            log(LOG, logging.WARNING, "the source's ETag is not its body's MD5: copying the version again, spooled",
                bucket=entry.bucket, key=entry.key, version_id=entry.version_id, etag=opened.etag)
            again = source.open_version(entry.bucket, entry.key, entry.version_id)
            return self._put_spooled(bucket, entry, again, arguments, stop)
        return ReplicaWritten(reply.get("VersionId") or "", bytes_copied=opened.size)

    def _put_spooled(self, bucket: str, entry: ReplicationEntry, opened, arguments: dict,
                     stop: threading.Event) -> ReplicaWritten:
        spooled = self._spool(opened.body, opened.size, stop, sha256=not self.data.https)
        with spooled as (spool, md5):
            reply = self.data.put_object(bucket, self.key(entry), spool, opened.size, base64_md5(md5),
                                         spooled.sha256_hex, **arguments)
        return ReplicaWritten(reply.get("VersionId") or "", bytes_copied=opened.size)

    def _put_multipart(self, bucket: str, entry: ReplicationEntry, source: Source,
                       stop: threading.Event) -> ReplicaWritten:
        """Create, upload parts in parallel (bounded by the part pool), complete; abort on any error or stop."""
        head = source.open_version(entry.bucket, entry.key, entry.version_id, byte_range=(0, 0))
        head.body.close()
        tags = _tags(source, entry, head)
        self._abort_abandoned_uploads(bucket, self.key(entry))
        upload = self.s3.create_multipart_upload(Bucket=bucket, Key=self.key(entry),
                                                 **self._write_arguments(entry, head, tags))
        upload_id = upload["UploadId"]
        abort = threading.Event()
        try:
            parts = self._upload_parts(bucket, entry, source, upload_id, stop, abort)
            reply = self.s3.complete_multipart_upload(Bucket=bucket, Key=self.key(entry), UploadId=upload_id,
                                                      MultipartUpload={"Parts": parts})
        except BaseException:
            abort.set()
            self._abort_upload(bucket, self.key(entry), upload_id)
            raise
        return ReplicaWritten(reply.get("VersionId") or "", bytes_copied=entry.size)

    def _upload_parts(self, bucket, entry, source, upload_id, stop, abort) -> list[dict]:
        part_size = part_size_for(entry.size, self.settings.mpu_part_size)
        ranges = [(start, min(start + part_size, entry.size) - 1) for start in range(0, entry.size, part_size)]
        futures: list[Future] = [
            self.parts.submit(self._copy_part, bucket, entry, source, upload_id, number, byte_range, stop, abort)
            for number, byte_range in enumerate(ranges, start=1)
        ]
        try:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
                for future in done:
                    future.result()  # raises the first part error
        finally:
            abort.set()  # parts still queued or running give up at their next chunk
            for future in futures:
                future.cancel()
            wait(futures)
        return [{"PartNumber": n, "ETag": f.result()} for n, f in enumerate(futures, start=1)]

    def _copy_part(self, bucket, entry, source, upload_id, number, byte_range, stop, abort) -> str:
        either = AnyEvent(stop, abort)
        if either.is_set():
            raise Stopped()
        opened = source.open_version(entry.bucket, entry.key, entry.version_id, byte_range=byte_range)
        length = byte_range[1] - byte_range[0] + 1
        with self._spool(opened.body, length, either) as (spool, md5):
            reply = self.s3.upload_part(Bucket=bucket, Key=self.key(entry), UploadId=upload_id, PartNumber=number,
                                        Body=spool, ContentLength=length, ContentMD5=base64_md5(md5))
        return reply["ETag"]

    def _abort_abandoned_uploads(self, bucket: str, key: str) -> None:
        """Abort the uploads of `key` that an earlier attempt left open (a processor killed mid-copy).

        One processor of a site copies a key at a time (its partition's owner, one version after the other), so
        an open upload of the key is an abandoned one; without this it would hold storage until a lifecycle rule
        removes it.
        """
        for page in self.s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=key):
            for upload in page.get("Uploads", []):
                if upload["Key"] == key:
                    log(LOG, logging.INFO, "aborting an abandoned multipart upload", bucket=bucket, key=key,
                        upload_id=upload["UploadId"], initiated=str(upload.get("Initiated", "")))
                    self._abort_upload(bucket, key, upload["UploadId"])

    def _abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        """Abort, so no half-written object or stored parts remain; failure to do so is logged, not raised."""
        try:
            self.s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except Exception as exc:  # noqa: BLE001 - best effort; a lifecycle rule is the backstop
            log(LOG, logging.WARNING, "could not abort multipart upload", bucket=bucket, key=key,
                upload_id=upload_id, error=str(exc))

    def _spool(self, body, expected: int, stop, sha256: bool = False) -> Spool:
        return Spool(body, expected, self.settings.spool_memory_bytes, stop, self.bandwidth, sha256)


def _tags(source: Source, entry: ReplicationEntry, opened) -> dict[str, str]:
    """The version's tags: those of the ObjectMD the entry carries, else read (no request when the GET already
    said the version has none)."""
    if entry.object_md:
        return object_tags(entry.object_md)
    if opened is not None and opened.tag_count == 0:
        return {}
    return source.version_tags(entry.bucket, entry.key, entry.version_id)
