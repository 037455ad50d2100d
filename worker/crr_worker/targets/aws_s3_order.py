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
from collections.abc import Iterator
from dataclasses import dataclass

from botocore.exceptions import ClientError

from crr_worker.entries import ReplicationEntry
from crr_worker.logs import log
from crr_worker.sources.base import Source, VersionInfo

LOG = logging.getLogger("crr_worker.targets.aws_s3")
SOURCE_VERSION_KEY = "scal-version-id"
MAX_COPY_OBJECT = 5 * 1024**3  # CopyObject's limit; above, the copy goes part by part
COPY_PART_SIZE = 512 * 1024**2
MAX_VERSIONS_LISTED = 1000  # versions of one key looked at on the target (newest first)


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


def head_latest(data, bucket: str, key: str) -> TargetLatest:
    """The key's latest version, by one HEAD of the lean client (crr_worker.s3_data.S3Data)."""
    try:
        head = data.head_object(bucket, key)
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


def key_versions(s3, bucket: str, key: str, limit: int = MAX_VERSIONS_LISTED) -> Iterator[tuple[dict, bool]]:
    """(listed version, is a delete marker) of exactly `key` on the target, newest first, at most `limit`; pages
    are read until the listing passes the key."""
    paginator = s3.get_paginator("list_object_versions")
    found = 0
    for page in paginator.paginate(Bucket=bucket, Prefix=key):
        listed = [(v, False) for v in page.get("Versions", [])] + [(m, True) for m in page.get("DeleteMarkers", [])]
        # the latest first (S3 says which), then by time: a version and a marker of one second stay apart
        mine = sorted(((v, m) for v, m in listed if v["Key"] == key),
                      key=lambda vm: (bool(vm[0].get("IsLatest")), vm[0]["LastModified"]), reverse=True)
        for version, is_marker in mine:
            yield version, is_marker
            found += 1
            if found >= limit:
                return
        if any(v["Key"] > key for v, _ in listed):
            return


def restore_latest(s3, bucket: str, key: str, before: TargetLatest, newer: list[VersionInfo]) -> str | None:
    """After an older version of `key` was written over `before`, put `before` back on top when it replicated a
    newer one (was_newer); returns the version id of what was put back, None when nothing needed to be."""
    if not was_newer(before, newer):
        return None
    if not before.exists or before.is_marker:
        return _put_back(s3, bucket, key, {}, True, None)
    listed = {"VersionId": before.version_id, "Size": before.size}
    return _put_back(s3, bucket, key, listed, False, before.head)


def restore_newest(s3, bucket: str, key: str, newer: list[VersionInfo]) -> str | None:
    """Put back on top the replica of the newest source version of `newer` the target holds, or a delete marker
    when a marker is newer than it and the target holds one, unless that is the latest already; returns the version
    id of what was put back, None when nothing was.

    Called when a re-queued entry (a retry or a replay) finds its late write already done: the restore that
    followed it may have failed (an error, a kill), and the late version must not stay the latest. Right after a
    write, restore_latest decides from the latest before it instead."""
    if not newer:
        return None
    listed = list(key_versions(s3, bucket, key))
    heads: dict[str, dict] = {}
    for item in reversed(newer):
        if item.is_delete_marker:  # markers carry nothing to find them by: one held on the target stands for it
            if not any(is_marker for _, is_marker in listed):
                continue
            if any(is_marker and version.get("IsLatest") for version, is_marker in listed):
                return None
            return _put_back(s3, bucket, key, {}, True, None)
        for version, is_marker in listed:
            if is_marker or replica_source_id(s3, bucket, key, version, heads) != item.version_id:
                continue
            if version.get("IsLatest"):
                return None
            return _put_back(s3, bucket, key, version, False, heads.get(version["VersionId"]))
    return None


def replica_source_id(s3, bucket: str, key: str, version: dict, heads: dict[str, dict]) -> str | None:
    """The scal-version-id of a listed target version, HEADed once per `heads` (a dict kept for one operation)."""
    version_id = version["VersionId"]
    if version_id not in heads:
        heads[version_id] = s3.head_object(Bucket=bucket, Key=key, VersionId=version_id)
    return (heads[version_id].get("Metadata") or {}).get(SOURCE_VERSION_KEY)


def _put_back(s3, bucket: str, key: str, version: dict, is_marker: bool, head: dict | None) -> str | None:
    if is_marker:
        restored = s3.delete_object(Bucket=bucket, Key=key).get("VersionId")
    elif version.get("Size", 0) <= MAX_COPY_OBJECT:
        restored = s3.copy_object(Bucket=bucket, Key=key, MetadataDirective="COPY", TaggingDirective="COPY",
                                  CopySource={"Bucket": bucket, "Key": key, "VersionId": version["VersionId"]},
                                  ).get("VersionId")
    else:
        restored = _copy_in_parts(s3, bucket, key, version["VersionId"], version["Size"], head or {})
    log(LOG, logging.INFO, "a late version was written: the newer latest put back on top", bucket=bucket, key=key,
        restored=(head or {}).get("Metadata", {}).get(SOURCE_VERSION_KEY) or "delete marker",
        target_version_id=restored or "")
    return restored


def _copy_in_parts(s3, bucket: str, key: str, version_id: str, size: int, head: dict) -> str | None:
    """A copy of a replica over 5 GiB on top of its key, part by part (UploadPartCopy); aborted on any error."""
    created = {name: head[name] for name in ("ContentType", "ContentEncoding", "ContentDisposition",
                                             "ContentLanguage", "CacheControl", "Metadata") if head.get(name)}
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **created)["UploadId"]
    source = {"Bucket": bucket, "Key": key, "VersionId": version_id}
    try:
        parts = []
        for number, start in enumerate(range(0, size, COPY_PART_SIZE), start=1):
            end = min(start + COPY_PART_SIZE, size) - 1
            reply = s3.upload_part_copy(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                        CopySource=source, CopySourceRange="bytes=%d-%d" % (start, end))
            parts.append({"PartNumber": number, "ETag": reply["CopyPartResult"]["ETag"]})
        reply = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                             MultipartUpload={"Parts": parts})
    except BaseException:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise
    _copy_tags(s3, bucket, key, version_id, reply.get("VersionId"))
    return reply.get("VersionId")


def _copy_tags(s3, bucket: str, key: str, from_id: str, to_id: str | None) -> None:
    tags = s3.get_object_tagging(Bucket=bucket, Key=key, VersionId=from_id).get("TagSet", [])
    if tags and to_id:
        s3.put_object_tagging(Bucket=bucket, Key=key, VersionId=to_id, Tagging={"TagSet": tags})
