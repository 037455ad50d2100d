"""What a processor needs from a replication target; aws_s3 and scality targets implement it."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

from crr_worker.config import SiteConfig
from crr_worker.entries import ReplicationEntry
from crr_worker.retry import ReplicationFailed
from crr_worker.sources.base import Source, VersionInfo


@dataclass(frozen=True)
class ReplicaWritten:
    """A version is on the target: `target_version_id` identifies it there; `skipped` when it already was."""

    target_version_id: str
    bytes_copied: int = 0
    skipped: bool = False


class Target(Protocol):
    def replicate(self, entry: ReplicationEntry, source: Source, stop: threading.Event) -> ReplicaWritten:
        """Copy one source version to the target, once: raises on error (classified by crr_worker.retry)
        and crr_worker.retry.Stopped when `stop` is set mid-copy, leaving no partial object visible."""

    def delete_replica(self, entry: ReplicationEntry, source_versions: list[VersionInfo]) -> ReplicaWritten:
        """Delete the replica of `entry`'s version, which the source no longer has (a version delete; the key's
        versions on the source now, oldest first, are `source_versions`): returns the deleted replica's target
        version id, "" when the target held none. Idempotent."""

    def probe(self, entry: ReplicationEntry) -> None:
        """One cheap request to the site, for crr_worker.outage to tell a site that is down (this raises a site
        error, crr_worker.retry.is_site_error) from one that answers (an error reply still means it is up)."""

    def destination(self, entry: ReplicationEntry) -> str:
        """The target bucket `entry` is written to, also named in its FAILED reason; raises
        crr_worker.retry.ReplicationFailed when there is none."""

    def close(self) -> None:
        """Release threads and connections."""


def destination_bucket(site: SiteConfig, entry: ReplicationEntry) -> str:
    """The site's configured bucket, else the rule's destination bucket; ReplicationFailed when neither is set."""
    bucket = site.bucket or entry.destination_bucket
    if not bucket:
        raise ReplicationFailed("no destination bucket: the rule has none and site %s sets none" % site.site)
    return bucket
