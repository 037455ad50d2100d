"""The aws_s3 target's latest version kept the source's, whatever order versions reach it in.

S3 makes the version written last the latest, and a replica cannot be slipped below versions already there.
Versions of a key reach a site in the source's order, except when one is written again later: a FAILED version
re-queued by `crr-worker retry` or by a replay after newer ones were replicated. Once such an older version (or
delete marker) is written, the replica that was the latest before it is put back on top: a server-side copy of
that replica (same body, metadata and tags, so same `scal-version-id`), or a new delete marker when the latest
was one. The target's version list then holds the late version below a copy of the newer replica.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from botocore.exceptions import ClientError

from crr_worker.entries import ReplicationEntry
from crr_worker.logs import log
from crr_worker.sources.base import Source, VersionInfo

LOG = logging.getLogger("crr_worker.targets.aws_s3")
SOURCE_VERSION_KEY = "scal-version-id"
MAX_COPY_OBJECT = 5 * 1024**3  # CopyObject's limit; above, the copy goes part by part
COPY_PART_SIZE = 512 * 1024**2


@dataclass(frozen=True)
class TargetLatest:
    """A key's latest version on the target: none (exists False), a delete marker, or a replica (whose version id
    is None in an unversioned bucket)."""

    exists: bool = False
    version_id: str | None = None
    is_marker: bool = False
    source_version_id: str | None = None  # the replica's scal-version-id
    size: int = 0
    head: dict | None = None  # the HEAD reply of a replica


def head_latest(s3, bucket: str, key: str) -> TargetLatest:
    """The key's latest version, by one HEAD."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            if headers.get("x-amz-delete-marker") == "true":
                return TargetLatest(True, headers.get("x-amz-version-id"), is_marker=True)
            return TargetLatest()
        raise
    metadata = head.get("Metadata") or {}
    return TargetLatest(True, head.get("VersionId"), False, metadata.get(SOURCE_VERSION_KEY),
                        head.get("ContentLength", 0), head)


def newer_versions(source: Source, entry: ReplicationEntry) -> list[VersionInfo]:
    """The source's versions and markers of entry.key written after `entry`, oldest first ([] when the source no
    longer lists it)."""
    versions = list(source.list_versions(entry.bucket, entry.key))
    ids = [v.version_id for v in versions]
    if entry.version_id not in ids:
        return []
    return versions[ids.index(entry.version_id) + 1:]


def was_newer(before: TargetLatest, newer: list[VersionInfo]) -> bool:
    """Whether the target's latest `before` is the replica of a source version newer than the one just written;
    a marker, or no version at all: whether the source has a marker newer than it (a target may make no marker
    for a key it never held: moto does so)."""
    if not before.exists or before.is_marker:
        return any(v.is_delete_marker for v in newer)
    if before.version_id is None:
        return False
    return before.source_version_id in {v.version_id for v in newer if not v.is_delete_marker}


def restore_latest(s3, bucket: str, key: str, before: TargetLatest, newer: list[VersionInfo]) -> str | None:
    """After an older version of `key` was written, put `before` back on top when it replicated a newer one;
    returns the version id of what was put back, None when nothing needed to be."""
    if not was_newer(before, newer):
        return None
    if not before.exists or before.is_marker:
        restored = s3.delete_object(Bucket=bucket, Key=key).get("VersionId")
    elif before.size <= MAX_COPY_OBJECT:
        restored = s3.copy_object(Bucket=bucket, Key=key, MetadataDirective="COPY", TaggingDirective="COPY",
                                  CopySource={"Bucket": bucket, "Key": key, "VersionId": before.version_id},
                                  ).get("VersionId")
    else:
        restored = _copy_in_parts(s3, bucket, key, before)
    log(LOG, logging.INFO, "a late version was written: the newer latest put back on top", bucket=bucket, key=key,
        restored=before.source_version_id or "delete marker", target_version_id=restored or "")
    return restored


def _copy_in_parts(s3, bucket: str, key: str, before: TargetLatest) -> str | None:
    """A copy of a replica over 5 GiB on top of its key, part by part (UploadPartCopy); aborted on any error."""
    head = before.head or {}
    created = {name: head[name] for name in ("ContentType", "ContentEncoding", "ContentDisposition",
                                             "ContentLanguage", "CacheControl", "Metadata") if head.get(name)}
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **created)["UploadId"]
    source = {"Bucket": bucket, "Key": key, "VersionId": before.version_id}
    try:
        parts = []
        for number, start in enumerate(range(0, before.size, COPY_PART_SIZE), start=1):
            end = min(start + COPY_PART_SIZE, before.size) - 1
            reply = s3.upload_part_copy(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                        CopySource=source, CopySourceRange="bytes=%d-%d" % (start, end))
            parts.append({"PartNumber": number, "ETag": reply["CopyPartResult"]["ETag"]})
        reply = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                             MultipartUpload={"Parts": parts})
    except BaseException:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise
    _copy_tags(s3, bucket, key, before.version_id, reply.get("VersionId"))
    return reply.get("VersionId")


def _copy_tags(s3, bucket: str, key: str, from_id: str, to_id: str | None) -> None:
    tags = s3.get_object_tagging(Bucket=bucket, Key=key, VersionId=from_id).get("TagSet", [])
    if tags and to_id:
        s3.put_object_tagging(Bucket=bucket, Key=key, VersionId=to_id, Tagging={"TagSet": tags})
