"""The aws_s3 target's part of a version delete (a site's replicateVersionDeletes): the version's replicas go, and
so do delete markers the source no longer has above its newest version.

A replica is known by its scal-version-id, and there may be more than one: after a late write aws_s3_order puts a
copy of the newest replica back on top. All of them go. Markers carry nothing to know them by; but when the
source's newest is a version, markers above that version's replica on the target stand for markers the source
deleted (an "undelete"), and they go too. A marker deleted from below the source's newest stays on the target.
"""

from __future__ import annotations

import logging

from crr_worker.logs import log
from crr_worker.sources.base import VersionInfo
from crr_worker.targets.aws_s3_order import key_versions, replica_source_id

LOG = logging.getLogger("crr_worker.targets.aws_s3")


def delete_replicas(s3, bucket: str, key: str, source_version_id: str, source_versions: list[VersionInfo]) -> str:
    """Delete every replica of `source_version_id` under `key`, then the markers standing for no source marker
    above the source's newest version (`source_versions`: the key's versions on the source now, oldest first).
    Returns the target version id of a replica deleted, "" when there was none."""
    listed = list(key_versions(s3, bucket, key))
    heads: dict[str, dict] = {}
    deleted = [version["VersionId"] for version, is_marker in listed
               if not is_marker and replica_source_id(s3, bucket, key, version, heads) == source_version_id]
    for version_id in deleted:
        s3.delete_object(Bucket=bucket, Key=key, VersionId=version_id)
    left = [(version, is_marker) for version, is_marker in listed if version["VersionId"] not in deleted]
    stale = _markers_above_newest(s3, bucket, key, left, source_versions, heads)
    for version_id in stale:
        s3.delete_object(Bucket=bucket, Key=key, VersionId=version_id)
    if deleted or stale:
        log(LOG, logging.INFO, "replicas of a version deleted from the source deleted", bucket=bucket, key=key,
            source_version_id=source_version_id, replicas=",".join(deleted), delete_markers=",".join(stale))
    return deleted[0] if deleted else ""


def _markers_above_newest(s3, bucket: str, key: str, listed: list[tuple[dict, bool]],
                          source_versions: list[VersionInfo], heads: dict[str, dict]) -> list[str]:
    """The version ids of the markers on top of the target's versions (`listed`, newest first) when right below
    them is the replica of the source's newest version, itself a version: the source has no marker above it."""
    if not source_versions or source_versions[-1].is_delete_marker:
        return []
    markers = []
    for version, is_marker in listed:
        if is_marker:
            markers.append(version["VersionId"])
            continue
        return markers if replica_source_id(s3, bucket, key, version, heads) == source_versions[-1].version_id else []
    return []
