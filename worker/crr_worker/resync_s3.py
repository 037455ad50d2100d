"""`crr-worker resync` of an s3 source: every version of a bucket queued again, whatever the ledger says.

As `mc replicate resync` does: each version (or each one last modified at or after `--since`) is published for the
served sites its bucket's rules send it to, each key's oldest first, exactly as the populator's scan publishes a
version the ledger does not know (entry, then its PENDING mark, in a new generation). A processor that finds the
replica already on the target writes no second copy and completes the version again; one that finds it missing
or gone copies it. The populator's own functions decide and publish, so a resync routes as the scan does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from datetime import datetime

from botocore.exceptions import ClientError

from crr_worker.config import WorkerConfig
from crr_worker.kafka_io import ensure_topics, make_producer
from crr_worker.ledger import KnownVersions
from crr_worker.populator import Populator, ScanProgress
from crr_worker.registry import make_source
from crr_worker.resync_progress import Counts, Progress, ResyncError, listing
from crr_worker.retry import describe
from crr_worker.sources.base import VersionInfo


class OtherSitesKnown(KnownVersions):
    """The populator's known versions for a resync: none for the sites resynced (so each version is queued for
    them), all for the others (so nothing is queued for, or FAILED for, a site not asked for)."""

    def __init__(self, sites: frozenset[str], state_dir: str | None = None):
        super().__init__(state_dir)
        self.sites = sites

    def __contains__(self, ids: tuple[str, str, str, str]) -> bool:
        return ids[0] not in self.sites or super().__contains__(ids)


def resync_s3(config: WorkerConfig, bucket: str, sites: frozenset[str], since: datetime | None,
              stop: threading.Event, progress: Progress, counts: Counts) -> None:
    """Queue every version of `bucket` (from `since`) again for `sites`, counting into `counts` and showing them
    on `progress`; stops after the versions in hand when `stop` is set."""
    ensure_topics(config)
    source = make_source(config, notifications=False)
    populator = Populator(config, source, stop)
    populator.known.close()  # the populator's own, replaced by the resync's view
    populator.known = OtherSitesKnown(sites, config.state_dir)
    try:
        replication = _replication(source, bucket)
        if replication is None or not replication.enabled:
            raise ResyncError("bucket %s has no enabled replication rule: nothing sends its versions to a site "
                               "(see `aws s3api get-bucket-replication --bucket %s`)" % (bucket, bucket))
        populator.producer = make_producer(config)
        progress.start(counts)
        scanned = ScanProgress(bucket)  # what the populator's publishing counts as queued
        versions = _counted(listing(source, bucket), since, stop, progress, counts, scanned)
        counts.queued = populator.enqueue(replication, versions, scanned)  # the scan's own publishing
    finally:
        if populator.producer is not None:
            populator.producer.close(timeout=10)
        source.close()


def _replication(source, bucket: str):
    """The bucket's replication rules (None without any); ResyncError when they cannot be read."""
    try:
        return source.replication(bucket)
    except ClientError as exc:
        raise ResyncError("cannot read the replication configuration of bucket %s: %s (the source credentials need "
                          "s3:GetReplicationConfiguration)" % (bucket, describe(exc))) from exc


def _counted(versions: Iterable[VersionInfo], since: datetime | None, stop: threading.Event, progress: Progress,
             counts: Counts, scanned: ScanProgress) -> Iterator[VersionInfo]:
    """The versions to queue (last modified at or after `since`), every one listed counted; ends when `stop`
    is set."""
    for version in versions:
        if stop.is_set():
            return
        counts.listed += 1
        counts.queued = scanned.queued
        progress.update(counts)
        if since is None or not version.last_modified or datetime.fromisoformat(version.last_modified) >= since:
            yield version
